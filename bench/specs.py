"""The benchmarked models as data: names, upload meta and one request instance each.

No torch here: the orchestrator and the load generator import this; only `bench.artifacts`
and `bench.raw` (run in their own process) build and time the modules.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

import numpy as np

MODELS: tuple[str, ...] = ("small", "wide", "tokens", "resnet")
# Models measured only in their own rows (LARGE_ROWS), not at every --concurrency natively: one
# `resnet` instance is 588 KiB of tensor bytes (3.1 MB as JSON).
LARGE: tuple[str, ...] = ("resnet",)
RESNET_SHAPE: tuple[int, ...] = (3, 224, 224)
TOKENS_LENGTH = 32  # ids per `tokens` instance, in raw timing and in requests alike
TOKENS_VOCAB = 1000
BATCHED: dict[str, Any] = {"max_batch_size": 32, "max_delay_ms": 5, "max_queue": 4096}
# Suffix of the batching-off variant of each model: the same artifact at max_batch_size 1.
UNBATCHED_SUFFIX = "-b1"

# Input width per MLP (the `tokens` instance is TOKENS_LENGTH ids instead).
MLP_INPUTS: dict[str, int] = {"small": 64, "wide": 784}


@dataclass(frozen=True)
class Variant:
    """One registered model: `base` is the artifact, `batched` says which batching meta."""

    base: str
    batched: bool

    @property
    def name(self) -> str:
        return self.base if self.batched else self.base + UNBATCHED_SUFFIX


def mlp_meta(name: str) -> dict[str, Any]:
    """Upload meta of an MLP artifact, batching on (see `variant_meta` for off)."""
    return {
        "format": "torchscript",
        "inputs": [{"name": "x", "dtype": "float32", "shape": [MLP_INPUTS[name]]}],
        "outputs": [{"name": "y", "dtype": "float32", "shape": [10]}],
        "batching": dict(BATCHED),
    }


def variant_meta(base_meta: dict[str, Any], batched: bool) -> dict[str, Any]:
    """`base_meta` with the bench's queue bound, and max_batch_size 1 when batching is off."""
    meta: dict[str, Any] = json.loads(json.dumps(base_meta))
    batching = {**meta.get("batching", {}), "max_queue": BATCHED["max_queue"]}
    if not batched:
        batching["max_batch_size"] = 1
    meta["batching"] = batching
    return meta


def resnet_meta() -> dict[str, Any]:
    """Upload meta of the ResNet-18-sized model (`bench.resnet`), batching on."""
    return {
        "format": "torchscript",
        "inputs": [{"name": "x", "dtype": "float32", "shape": list(RESNET_SHAPE)}],
        "outputs": [{"name": "y", "dtype": "float32", "shape": [1000]}],
        "batching": dict(BATCHED),
    }


def instance(name: str, seed: int = 0) -> Any:
    """One request instance for model `name` (fixed by `seed`)."""
    if name == "resnet":
        image = np.random.default_rng(seed).standard_normal(RESNET_SHAPE, dtype=np.float32)
        return image.round(4).tolist()
    rng = random.Random(seed)
    if name == "tokens":
        return [rng.randrange(TOKENS_VOCAB) for _ in range(TOKENS_LENGTH)]
    return [round(rng.gauss(0.0, 1.0), 4) for _ in range(MLP_INPUTS[name])]


def predict_body(name: str) -> bytes:
    """The request body: `{"instances": [<one instance>]}`."""
    return json.dumps({"instances": [instance(name)]}, separators=(",", ":")).encode()


# The protocols a row drives: the native dialect, and the Open Inference Protocol (v2) with
# JSON tensors or with the binary tensor extension (inputs and outputs binary, as Triton's
# clients send by default).
NATIVE, V2_JSON, V2_BINARY = "native", "v2-json", "v2-binary"
# The v2 rows of a run, beside the native rows of the same models (batching on).
V2_ROWS: tuple[tuple[str, str], ...] = (("wide", V2_BINARY), ("wide", V2_JSON), ("small", V2_JSON))
V2_CONCURRENCY: tuple[int, ...] = (1, 64)
# The large-input rows: (model, protocol, concurrency), batching on. C=8 asks for batches of 8.
LARGE_ROWS: tuple[tuple[str, str, tuple[int, ...]], ...] = (("resnet", V2_BINARY, (1, 8)),)


@dataclass(frozen=True)
class Request:
    path: str
    body: bytes
    headers: tuple[str, ...] = ()


def _v2_input(name: str) -> tuple[dict[str, Any], Any]:
    values = instance(name)
    datatype = "INT64" if name == "tokens" else "FP32"
    input_name = "ids" if name == "tokens" else "x"
    shape = [1, *RESNET_SHAPE] if name == "resnet" else [1, len(values)]
    return {"name": input_name, "shape": shape, "datatype": datatype}, values


def request_for(name: str, model: str, protocol: str) -> Request:
    """One request for `model` (registered from artifact `name`) in `protocol`."""
    if protocol == NATIVE:
        return Request(f"/v1/models/{model}:predict", predict_body(name))
    path = f"/v2/models/{model}/infer"
    tensor, values = _v2_input(name)
    if protocol == V2_JSON:
        body = {"inputs": [{**tensor, "data": values}]}
        return Request(path, json.dumps(body, separators=(",", ":")).encode())
    dtype = "<i8" if tensor["datatype"] == "INT64" else "<f4"
    raw = np.asarray(values, dtype=dtype).tobytes()
    header = {
        "inputs": [{**tensor, "parameters": {"binary_data_size": len(raw)}}],
        "parameters": {"binary_data_output": True},
    }
    text = json.dumps(header, separators=(",", ":")).encode()
    headers = (
        f"Inference-Header-Content-Length: {len(text)}",
        "Content-Type: application/octet-stream",
    )
    return Request(path, text + raw, headers)
