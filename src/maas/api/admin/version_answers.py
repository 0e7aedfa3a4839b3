"""The version answers of the admin API: a version, its batching, its live figures, and
the version with them (`VersionDetail`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

from pydantic import BaseModel, ConfigDict, Field

from maas.api.answers import Number, TensorSpecOut, Timestamp
from maas.types import ArtifactFormat, VersionStatus

if TYPE_CHECKING:
    from maas.registry.records import VersionRecord


class DerivedFromOut(BaseModel):
    """The parent of a derived version, and how it was derived."""

    version: int = Field(description="the parent version")
    method: str = Field(description="int8_dynamic: ONNX Runtime's dynamic int8 quantisation")
    min_agreement: Number = Field(
        description="the top-1 agreement with the parent below which it is not aliased unless "
        "forced"
    )


class BatchingOut(BaseModel):
    """How requests to the version are batched together."""

    model_config = ConfigDict(extra="allow")

    max_batch_size: int = Field(description="most instances in one batch")
    max_delay_ms: Number = Field(description="longest a batch waits to fill up")
    max_queue: int = Field(description="most instances waiting; more answer 429")
    pad_value: int | float | dict[str, int | float] | None = Field(
        None,
        description="value that pads -1 axes to one length in a batch, as given: one number for "
        "every input, or one per input name (only when set)",
    )
    buckets: list[int] | None = Field(
        None, description="lengths that -1 axes are padded up to (only when set)"
    )


class VersionOut(BaseModel):
    """A version of a model."""

    model: str
    version: int
    status: VersionStatus = Field(
        description="registered -> loading -> ready, or failed (see load_error); unloaded; "
        "archived. Only ready versions serve traffic."
    )
    sha256: str = Field(description="the artifact's content hash")
    size: int = Field(description="the artifact's size in bytes")
    format: ArtifactFormat
    inputs: list[TensorSpecOut]
    outputs: list[TensorSpecOut]
    batching: BatchingOut
    device: str = Field(description="auto, cpu, cuda or cuda:N")
    replicas: int | None = Field(
        description="on how many workers it is loaded; null: on every worker"
    )
    metrics: dict[str, Any] = Field(description="offline evaluation figures, as uploaded")
    tags: dict[str, Any]
    description: str
    load_error: str | None = Field(description="why the last load failed (status failed)")
    created_at: Timestamp
    updated_at: Timestamp
    loaded_at: Timestamp | None = Field(description="when it last became ready")
    derived_from: DerivedFromOut | None = Field(
        None, description="the parent of a derived (e.g. int8) version; null otherwise"
    )
    preprocess: dict[str, Any] | None = Field(
        None, description="declared pre-processing by input name (meta.preprocess)"
    )
    postprocess: dict[str, Any] | None = Field(
        None, description="declared post-processing (meta.postprocess)"
    )

    @classmethod
    def from_record(cls, v: VersionRecord, **more: Any) -> Self:
        """The version `v` (`more`: a subclass's own fields)."""
        return cls(
            model=v.model,
            version=v.version,
            status=v.status,
            sha256=v.sha256,
            size=v.size,
            format=v.format,
            inputs=[s.to_json() for s in v.inputs],  # only the bounds it declared
            outputs=[s.to_json() for s in v.outputs],
            batching={  # as stored (only the keys it has), with the three sizes at least
                "max_batch_size": v.batch.max_batch_size,
                "max_delay_ms": v.batch.max_delay_ms,
                "max_queue": v.batch.max_queue,
                **v.batching,
            },
            device=v.device,
            replicas=v.replicas,
            metrics=v.metrics,
            tags=v.tags,
            description=v.description,
            load_error=v.load_error,
            created_at=v.created_at,
            updated_at=v.updated_at,
            loaded_at=v.loaded_at,
            derived_from=None if v.derived_from is None else v.derived_from.to_json(),
            preprocess=None
            if not v.preprocess
            else {name: step.to_json() for name, step in v.preprocess.items()},
            postprocess=None if v.postprocess is None else v.postprocess.to_json(),
            **more,
        )


class VersionStatsOut(BaseModel):
    """Live figures of the version on the workers serving it (only `loaded` until one does)."""

    model_config = ConfigDict(extra="allow")

    loaded: bool = Field(description="whether a worker holds it now")
    queue_depth: int | None = Field(None, description="instances waiting now")
    batches: int | None = Field(None, description="batches run")
    instances: int | None = Field(None, description="instances run")
    mean_batch_size: Number | None = None
    mean_inference_ms: Number | None = None
    mean_queue_wait_ms: Number | None = None
    padding_waste: Number | None = Field(
        None, description="share of a batch's elements that were padding"
    )


class VersionDetail(VersionOut):
    """A version of a model, with its live figures."""

    stats: VersionStatsOut

    @classmethod
    def with_stats(cls, v: VersionRecord, *, loaded: bool, figures: dict[str, Any]) -> Self:
        """`v` with `figures` (a summary of its telemetry; empty while no worker serves it)."""
        return cls.from_record(v, stats=VersionStatsOut(loaded=loaded, **figures))
