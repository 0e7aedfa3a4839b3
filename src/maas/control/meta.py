"""The `meta` of a new version (CONTRACT: admin REST), validated before anything is stored."""

from __future__ import annotations

import math
import re
from typing import Any, Literal

import numpy as np
import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from maas.checks.arrays import numpy_dtype
from maas.checks.fields import Flag, Int, Number
from maas.checks.json_depth import deeper_than, too_deep
from maas.config import DEFAULT_MAX_JSON_DEPTH
from maas.control.steps_meta import PostprocessIn, PreprocessIn, check_steps
from maas.errors import BadRequest, InvalidArtifact
from maas.registry.service import NewVersion
from maas.types import DEFAULT_BATCHING, DTYPES, ArtifactFormat

_NAME = r"^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$"
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d{1,2})?)$")


class TensorSpecIn(BaseModel):
    """One named input or output tensor of the model."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_NAME, description="the tensor's name (the model's argument name)")
    dtype: Literal[DTYPES] = Field(description="element type")  # type: ignore[valid-type]
    shape: list[Int] = Field(
        max_length=8,
        description="one instance's shape, without the batch axis (the gateway stacks "
        "instances along a new leading axis); -1 marks an axis of any length, e.g. [64] or [-1]",
    )
    min: Number | None = Field(
        None,
        description="inputs: the lowest value of the model's domain (e.g. 0 for token ids); "
        "an instance with a smaller value answers 422",
    )
    max: Number | None = Field(
        None,
        description="inputs: the highest value of the model's domain (e.g. vocabulary size - 1); "
        "an instance with a larger value answers 422",
    )
    max_shape: list[Int] | None = Field(
        None,
        description="the longest each axis of `shape` may be, one bound per axis (caps the -1 "
        "axes, e.g. [256]); a longer instance answers 422",
    )

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


# An integer stays one, so an int64 pad id keeps its exact value.
PadValue = Int | Number


def _pad_number(value: object) -> int | float:
    """A pad value as JSON wrote it: a finite number (not a boolean), integers within int64."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not -(2**63) <= value < 2**63:
            raise ValueError(f"pad_value must lie within int64, got {value}")
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    raise ValueError(
        "pad_value must be a number, or an object of numbers by input name such as "
        '{"input_ids": 1, "attention_mask": 0}'
    )


class BatchingIn(BaseModel):
    """How instances of concurrent requests are batched together."""

    model_config = ConfigDict(extra="forbid")

    max_batch_size: Int = Field(
        DEFAULT_BATCHING.max_batch_size,
        ge=1,
        le=4096,
        description="the most instances the model runs in one batch",
    )
    max_delay_ms: Number = Field(
        DEFAULT_BATCHING.max_delay_ms,
        ge=0,
        le=10_000,
        description="the longest a batch waits for more instances",
    )
    max_queue: Int = Field(
        DEFAULT_BATCHING.max_queue,
        ge=1,
        le=1_000_000,
        description="the most instances waiting for the version; beyond it requests answer 429",
    )
    pad_value: PadValue | dict[str, PadValue] | None = Field(
        None,
        description="with it, instances whose -1 axes differ in length share a batch: those axes "
        "are padded with this value up to the next of `buckets` (used only when no output has "
        "a -1 axis); one number for every input, or an object with one per input that has a -1 "
        'axis (e.g. {"input_ids": 1, "attention_mask": 0}); unset: instances of different '
        "lengths run in separate batches",
    )
    buckets: list[Int] | None = Field(
        None,
        description="the lengths a padded -1 axis is rounded up to (e.g. [32, 64, 128, 256]; a "
        "longer one keeps its own length), so the model sees few distinct shapes",
    )

    @field_validator(
        "pad_value", mode="plain", json_schema_input_type=PadValue | dict[str, PadValue] | None
    )
    @classmethod
    def _pad_value(cls, value: object) -> int | float | dict[str, int | float] | None:
        # In place of the union's own errors, which list every branch it tried.
        if value is None:
            return None
        if isinstance(value, dict):
            return {str(name): _pad_number(v) for name, v in value.items()}
        return _pad_number(value)


class GoldenIn(BaseModel):
    """Known answers, checked when the version warms up: a mismatch fails the load."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[Any] = Field(min_length=1, description="instances, as a predict request sends")
    outputs: list[Any] = Field(
        min_length=1, description="the expected output of each instance, in the same order"
    )
    atol: Number = Field(1e-4, ge=0, description="absolute tolerance of the comparison")

    @model_validator(mode="after")
    def _same_length(self) -> GoldenIn:
        if len(self.inputs) != len(self.outputs):
            raise ValueError("golden inputs and outputs must have the same number of instances")
        return self


class VersionMeta(BaseModel):
    """The `meta` part of an upload (JSON): what the artifact is and how to serve it.

    Example (the digits demo): {"format": "torchscript", "inputs": [{"name": "x", "dtype":
    "float32", "shape": [64]}], "outputs": [{"name": "logits", "dtype": "float32", "shape": [10]}]}
    """

    model_config = ConfigDict(extra="forbid")

    format: ArtifactFormat = Field(
        description="torchscript (torch.jit.save), torch_export (torch.export.save) or onnx "
        "(an ONNX model with its weights inside, served by ONNX Runtime)"
    )
    inputs: list[TensorSpecIn] = Field(
        min_length=1, max_length=64, description="the model's inputs, in argument order"
    )
    outputs: list[TensorSpecIn] = Field(
        min_length=1, max_length=64, description="the model's outputs, in return order"
    )
    batching: BatchingIn = Field(
        default_factory=lambda: BatchingIn(),
        description="batching settings (each has a default; PATCH can change them later)",
    )
    device: str = Field(
        "auto",
        description="where the version runs: auto (a GPU when the worker has one, else the "
        "CPU), cpu, cuda or cuda:N",
    )
    replicas: Int | None = Field(
        None,
        ge=1,
        le=1024,
        description="on how many workers to load it (unset: on every worker)",
    )
    metrics: dict[str, Any] = Field(
        default_factory=dict,
        description='offline evaluation figures, kept and shown as given (e.g. {"accuracy": 0.97})',
    )
    tags: dict[str, Any] = Field(
        default_factory=dict, description="free-form labels, kept and shown as given"
    )
    golden: list[GoldenIn] = Field(
        default_factory=list,
        max_length=64,
        description="known answers checked when the version warms up; a mismatch fails the load",
    )
    description: str = Field("", max_length=10_000, description="for humans")
    preprocess: dict[str, PreprocessIn] | None = Field(
        None,
        description="per input name, how an encoded image (PNG or JPEG) becomes that input: "
        'e.g. {"x": {"image": {"mode": "L", "size": [8, 8], "layout": "flat"}}}',
    )
    postprocess: PostprocessIn | None = Field(
        None,
        description="how an output answers :classify (labels, softmax, top_k), e.g. "
        '{"output": "logits", "softmax": true, "labels": ["0", "1"]}',
    )
    load: Flag = Field(
        True,
        description="false: register the version without loading it (load it later with "
        "POST .../load)",
    )

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not _DEVICE.match(value):
            raise ValueError("device must be auto, cpu, cuda or cuda:N")
        return value

    @field_validator("batching")
    @classmethod
    def _pad_values(cls, batching: BatchingIn, info: ValidationInfo) -> BatchingIn:
        inputs: list[TensorSpecIn] | None = info.data.get("inputs")
        if batching.pad_value is not None and inputs is not None:
            check_pad_values(batching.pad_value, inputs)
        return batching

    @model_validator(mode="after")
    def _unique_names(self) -> VersionMeta:
        for group in (self.inputs, self.outputs):
            names = [t.name for t in group]
            if len(names) != len(set(names)):
                raise ValueError("input and output names must be unique")
        check_steps(
            self.preprocess,
            self.postprocess,
            [(t.name, t.dtype, t.shape) for t in self.inputs],
            [(t.name, t.dtype, t.shape) for t in self.outputs],
        )
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
            preprocess=None
            if not self.preprocess
            else {
                name: step.model_dump(exclude_none=True) for name, step in self.preprocess.items()
            },
            postprocess=None if self.postprocess is None else self.postprocess.model_dump(),
        )


def check_pad_values(
    pad_value: int | float | dict[str, int | float], inputs: list[TensorSpecIn]
) -> None:
    """ValueError unless every input with a -1 axis gets a value its dtype holds, and an
    object names only such inputs."""
    variable = [t for t in inputs if -1 in t.shape]
    if isinstance(pad_value, dict):
        by_name = {t.name: t for t in inputs}
        for name in pad_value:
            if name not in by_name:
                raise ValueError(
                    f"pad_value names '{name}', which is not an input (inputs: "
                    f"{', '.join(repr(t.name) for t in inputs)})"
                )
            if -1 not in by_name[name].shape:
                raise ValueError(
                    f"pad_value names input '{name}', which has no -1 axis to pad "
                    f"(shape {by_name[name].shape})"
                )
        for spec in variable:
            if spec.name not in pad_value:
                raise ValueError(
                    f"input '{spec.name}' has a -1 axis but pad_value gives it no value: "
                    "padding needs one for every input with a -1 axis (the value the model "
                    "ignores there, such as 0 for an attention mask)"
                )
    for spec in variable:
        value = pad_value[spec.name] if isinstance(pad_value, dict) else pad_value
        why = _unfit(value, spec.dtype)
        if why:
            raise ValueError(f"pad_value of input '{spec.name}' ({spec.dtype}) {why}, got {value}")


def _unfit(value: int | float, dtype: str) -> str | None:
    """Why `value` cannot pad a tensor of `dtype`, or None when it can."""
    want = numpy_dtype(dtype)
    if want.kind == "b":
        return None if value in (0, 1) else "must be 0 or 1"
    if want.kind in "iu":
        info = np.iinfo(want)
        if not info.min <= value <= info.max:
            return f"must lie in [{info.min}, {info.max}]"
        return None if isinstance(value, int) else "must be an integer"
    limit = float(np.finfo(want).max)
    return None if -limit <= value <= limit else f"must lie within ±{limit:g}"


def parse_meta(
    raw: bytes | str | dict[str, Any],
    *,
    max_depth: int = DEFAULT_MAX_JSON_DEPTH,
    labels: list[str] | None = None,
) -> VersionMeta:
    """Parse and validate meta; malformed JSON, or JSON nested deeper than `max_depth`
    (`maas.checks.json_depth`), is BadRequest, a wrong field InvalidArtifact. `labels` (an
    upload's `labels` part) fill `postprocess.labels`."""
    try:
        value = raw if isinstance(raw, dict) else orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"meta is not valid JSON: {exc}") from None
    if deeper_than(value, max_depth):
        raise BadRequest(too_deep("meta", max_depth))
    if labels is not None:
        raw = orjson.dumps(_with_labels(value, labels))
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


def _with_labels(value: Any, labels: list[str]) -> dict[str, Any]:
    """Meta with an uploaded labels file in `postprocess.labels` (BadRequest when meta
    declares no postprocess, or labels of its own)."""
    post = value.get("postprocess") if isinstance(value, dict) else None
    if not isinstance(post, dict):
        raise BadRequest(
            "a 'labels' part needs meta.postprocess (which output the labels name), e.g. "
            '{"postprocess": {"output": "logits", "softmax": true}}'
        )
    if post.get("labels") is not None:
        raise BadRequest("labels are given twice: in meta.postprocess.labels and a 'labels' part")
    return {**value, "postprocess": {**post, "labels": labels}}
