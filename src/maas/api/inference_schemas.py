"""Wire shapes of the inference routes' answers, native (TF Serving / KServe v1) and Open
Inference Protocol (v2), for /openapi.json: documentation only. The routes build their bodies
as dicts (the inference POSTs with orjson, straight from arrays); tests/fuzz checks every
answer against these."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from maas.api.answers import TensorSpecOut

# native -----------------------------------------------------------------------------------


class ModelNames(BaseModel):
    models: list[str] = Field(description="every model's name")


class VersionState(BaseModel):
    error_code: Literal["OK", "UNKNOWN"]
    error_message: str


class ModelVersionStatus(BaseModel):
    version: str = Field(description="the version number, as a string (as TF Serving writes it)")
    state: Literal["START", "LOADING", "AVAILABLE", "UNLOADING", "END"]
    status: VersionState


class ModelStatus(BaseModel):
    """200 when it can serve; 503 with `ready: false` while it cannot."""

    name: str
    ready: bool
    model_version_status: list[ModelVersionStatus]


class NativeMetadata(BaseModel):
    name: str
    versions: list[int] = Field(description="the versions the name or ref stands for")
    inputs: list[TensorSpecOut]
    outputs: list[TensorSpecOut]


class Predictions(BaseModel):
    predictions: list[Any] = Field(
        description="one per instance, in order: the output itself when the model has one, "
        "else an object of its named outputs"
    )
    model: str
    version: int = Field(description="the version that answered")


class Classification(BaseModel):
    result: list[list[tuple[str, float]]] = Field(
        description="one list per instance, in order: its `top_k` best classes as [label, "
        "score] pairs, best first (scores softmaxed when the version's postprocess says so)"
    )
    model: str
    version: int = Field(description="the version that answered")


# v2 ---------------------------------------------------------------------------------------


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class Live(BaseModel):
    live: bool


class ServerReady(BaseModel):
    ready: bool
    reasons: list[str] | None = Field(None, description="why not (only when not ready)")


class V2Tensor(BaseModel):
    name: str
    datatype: str = Field(description="FP32, INT64, BOOL, ... (the protocol's names)")
    shape: list[int] = Field(description="-1 first: the batch axis")


class V2Metadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[V2Tensor]
    outputs: list[V2Tensor]


class V2Readiness(BaseModel):
    """200 when it can serve; 503 with `ready: false` while it cannot."""

    name: str
    ready: bool
    versions: list[str]


class ConfigTensor(BaseModel):
    name: str
    data_type: str = Field(description="TYPE_FP32, ... (Triton's names)")
    dims: list[int]


class DynamicBatching(BaseModel):
    max_queue_delay_microseconds: int


class V2Config(BaseModel):
    """The parts of a Triton model configuration that mean something for a maas version."""

    name: str
    versions: list[str]
    platform: str
    backend: str
    max_batch_size: int
    input: list[ConfigTensor]
    output: list[ConfigTensor]
    dynamic_batching: DynamicBatching


class V2Output(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    data: list[Any] | None = Field(None, description="row-major values (absent when binary)")
    parameters: dict[str, Any] | None = Field(
        None, description='{"binary_data_size": N} when the values follow the JSON as bytes'
    )


class V2Answer(BaseModel):
    model_name: str
    model_version: str
    id: str | None = Field(None, description="the request's id, when it sent one")
    outputs: list[V2Output]
