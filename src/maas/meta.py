"""The `meta` of a new version (CONTRACT: admin REST), validated before anything is stored."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from maas.errors import BadRequest, InvalidArtifact
from maas.registry.service import NewVersion
from maas.types import DTYPES, ArtifactFormat

_NAME = r"^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$"
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d{1,2})?)$")


class TensorSpecIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_NAME)
    dtype: Literal[DTYPES]  # type: ignore[valid-type]
    shape: list[int] = Field(max_length=8)
    min: float | None = None
    max: float | None = None
    max_shape: list[int] | None = None

    @field_validator("shape")
    @classmethod
    def _axes(cls, shape: list[int]) -> list[int]:
        if any(d != -1 and d < 1 for d in shape):
            raise ValueError("each axis is a positive length or -1 (any length)")
        return shape

    @model_validator(mode="after")
    def _bounds(self) -> TensorSpecIn:
        if self.max_shape is not None and (
            len(self.max_shape) != len(self.shape) or any(d < 1 for d in self.max_shape)
        ):
            raise ValueError("max_shape must give a positive bound for every axis of shape")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not exceed max")
        return self


class BatchingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_batch_size: int = Field(32, ge=1, le=4096)
    max_delay_ms: float = Field(5, ge=0, le=10_000)
    max_queue: int = Field(1024, ge=1, le=1_000_000)
    pad_value: float | None = None
    buckets: list[int] | None = None


class GoldenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: list[Any] = Field(min_length=1)
    outputs: list[Any] = Field(min_length=1)
    atol: float = Field(1e-4, ge=0)

    @model_validator(mode="after")
    def _same_length(self) -> GoldenIn:
        if len(self.inputs) != len(self.outputs):
            raise ValueError("golden inputs and outputs must have the same number of instances")
        return self


class VersionMeta(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: ArtifactFormat
    inputs: list[TensorSpecIn] = Field(min_length=1, max_length=64)
    outputs: list[TensorSpecIn] = Field(min_length=1, max_length=64)
    batching: BatchingIn = Field(default_factory=lambda: BatchingIn())
    device: str = "auto"
    replicas: int | None = Field(None, ge=1, le=1024)
    metrics: dict[str, Any] = Field(default_factory=dict)
    tags: dict[str, Any] = Field(default_factory=dict)
    golden: list[GoldenIn] = Field(default_factory=list, max_length=64)
    description: str = Field("", max_length=10_000)
    load: bool = True

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not _DEVICE.match(value):
            raise ValueError("device must be auto, cpu, cuda or cuda:N")
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> VersionMeta:
        for group in (self.inputs, self.outputs):
            names = [t.name for t in group]
            if len(names) != len(set(names)):
                raise ValueError("input and output names must be unique")
        return self

    def to_new_version(self) -> NewVersion:
        return NewVersion(
            format=self.format.value,
            inputs=[t.model_dump(exclude_none=True) for t in self.inputs],
            outputs=[t.model_dump(exclude_none=True) for t in self.outputs],
            batching=self.batching.model_dump(exclude_none=True),
            device=self.device,
            replicas=self.replicas,
            metrics=self.metrics,
            tags=self.tags,
            golden=[g.model_dump() for g in self.golden],
            description=self.description,
        )


def parse_meta(raw: bytes | str | dict[str, Any]) -> VersionMeta:
    """Parse and validate meta; malformed JSON is BadRequest, a wrong field InvalidArtifact."""
    try:
        if isinstance(raw, dict):
            return VersionMeta.model_validate(raw)
        return VersionMeta.model_validate_json(raw)
    except ValidationError as exc:
        if any(err["type"] == "json_invalid" for err in exc.errors()):
            raise BadRequest("meta is not valid JSON") from None
        raise InvalidArtifact(f"invalid meta: {_summarise(exc)}") from None


def _summarise(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "meta"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)
