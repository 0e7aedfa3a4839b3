"""Loading and running one version with torch: TorchScript or torch.export, never plain pickle.

A load verifies the artifact's sha256, loads it onto its device, warms it up with synthetic
batches of the sizes it will run, checks every output against the signature, and replays the
version's golden examples. Anything wrong raises ModelLoadError with a message for the operator.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from maas.checks.arrays import group_instances
from maas.errors import InvalidArtifact, InvalidInput, ModelLoadError
from maas.store.local import open_verified
from maas.store.sealing import ArtifactKey
from maas.types import ArtifactFormat, LoadSpec, TensorSpec
from maas.worker.diagnosis import cause, complaints, not_tensors, with_hint

log = logging.getLogger(__name__)

_TORCH_DTYPE = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int64": torch.int64,
    "int32": torch.int32,
    "int16": torch.int16,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "uint16": torch.uint16,
    "uint32": torch.uint32,
    "uint64": torch.uint64,
    "bool": torch.bool,
}
_WARMUP_LENGTH = 8
# The version number of an upload's trial load: the version does not exist yet
# (maas.registry.service.draft_record), so there is no number to name.
_TRIAL = 0
# Inputs may be read-only views on the request's bytes; torch only reads them.
warnings.filterwarnings("ignore", message="The given NumPy array is not writable")


def resolve_device(requested: str) -> torch.device:
    """`auto` takes the first CUDA device when there is one, else the CPU."""
    if requested == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelLoadError(f"device {requested} requested but CUDA is not available")
        if (device.index or 0) >= torch.cuda.device_count():
            raise ModelLoadError(
                f"device {requested} requested but only {torch.cuda.device_count()} CUDA devices"
            )
    return device


class LoadedModel:
    """A loaded version: `run` takes one stacked array per input and returns one per output."""

    def __init__(self, spec: LoadSpec, module: Any, device: torch.device) -> None:
        self.spec = spec
        self.device = device
        self._module = module
        # Seconds of a forward at max_batch_size, measured at warm-up: the first estimate of
        # what a batch costs, before any traffic.
        self.warmup_batch_s = 0.0

    def run(self, inputs: Sequence[np.ndarray[Any, Any]]) -> list[np.ndarray[Any, Any]]:
        batch = len(inputs[0])
        tensors = [
            torch.from_numpy(np.ascontiguousarray(array)).to(
                self.device, _TORCH_DTYPE[spec.dtype], non_blocking=True
            )
            for array, spec in zip(inputs, self.spec.inputs, strict=True)
        ]
        try:
            with torch.inference_mode():
                raw = self._module(*tensors)
        except (RuntimeError, IndexError, ValueError, TypeError, AssertionError) as exc:
            # The instances matched the signature, so the model itself refused them.
            raise InvalidInput(f"the model rejected the input: {cause(exc)}") from None
        return self._outputs(raw, batch)

    def _outputs(self, raw: Any, batch: int) -> list[np.ndarray[Any, Any]]:
        specs = self.spec.outputs
        if isinstance(raw, torch.Tensor):
            tensors = [raw]
        elif isinstance(raw, dict):
            tensors = [raw[spec.name] for spec in specs if spec.name in raw]
        elif isinstance(raw, list | tuple):
            tensors = list(raw)
        else:
            raise ModelLoadError(not_tensors(f"a {type(raw).__module__}.{type(raw).__qualname__}"))
        if len(tensors) != len(specs):
            raise ModelLoadError(
                f"model returned {len(tensors)} outputs, signature declares {len(specs)}"
            )
        arrays = []
        for tensor, spec in zip(tensors, specs, strict=True):
            if not isinstance(tensor, torch.Tensor):
                raise ModelLoadError(f"output '{spec.name}' is not a tensor")
            if tensor.shape[0] != batch:
                raise ModelLoadError(
                    f"output '{spec.name}' has {tensor.shape[0]} rows for a batch of {batch}"
                )
            _check_output_shape(tuple(tensor.shape[1:]), spec)
            if tensor.dtype == torch.bfloat16:
                tensor = tensor.float()
            arrays.append(tensor.detach().cpu().numpy())
        return arrays


def _check_output_shape(shape: tuple[int, ...], spec: TensorSpec) -> None:
    ok = len(shape) == len(spec.shape) and all(
        want in (-1, got) for got, want in zip(shape, spec.shape, strict=True)
    )
    if not ok:
        raise ModelLoadError(
            f"output '{spec.name}' has shape {list(shape)} per instance, "
            f"signature declares {list(spec.shape)}"
        )


def load_model(spec: LoadSpec, key: ArtifactKey | None = None) -> LoadedModel:
    """Verify, load, warm up and check one version (a sealed artifact opened in memory with
    `key`). Blocking: call it off the event loop."""
    started = time.perf_counter()
    try:
        artifact = open_verified(Path(spec.path), spec.sha256, key)
    except InvalidArtifact as exc:
        raise ModelLoadError(exc.message) from None
    device = resolve_device(spec.device)
    with complaints() as found:
        try:
            with artifact:
                module = _load_module(artifact, spec.format, device)
        except ModelLoadError:
            raise
        except Exception as exc:  # torch raises many types for a corrupt or foreign file
            # The client never sees this worker's log: the cause goes into the message.
            reason = found.explain(exc)
            raise ModelLoadError(f"cannot load the {spec.format} artifact: {reason}") from None
    model = LoadedModel(spec, module, device)
    _warm_up(model)
    _check_golden(model)
    took = time.perf_counter() - started
    if spec.key.version == _TRIAL:
        log.info(
            "checked the upload of %s (load, warm-up, golden checks) on %s in %.1f s",
            spec.key.model,
            device,
            took,
        )
    else:
        log.info("loaded %s on %s in %.1f s", spec.key, device, took)
    return model


def _load_module(artifact: IO[bytes], fmt: ArtifactFormat, device: torch.device) -> Any:
    if fmt is ArtifactFormat.TORCHSCRIPT:
        module = torch.jit.load(artifact, map_location=device)  # type: ignore[no-untyped-call]
        module.eval()
        return module
    program = torch.export.load(artifact)  # a file object: it wants .pt2 names otherwise
    module = program.module()
    if device.type != "cpu":
        module = module.to(device)
    return module


def _warm_up(model: LoadedModel) -> None:
    """Run the batch sizes the version will see, so the first request pays no warm-up."""
    sizes = sorted({1, model.spec.max_batch_size})
    for size in sizes:
        inputs = [_synthetic(spec, size) for spec in model.spec.inputs]
        started = time.perf_counter()
        try:
            model.run(inputs)
            model.warmup_batch_s = time.perf_counter() - started
        except (InvalidInput, ModelLoadError) as exc:
            shapes = ", ".join(f"{list(a.shape)}" for a in inputs)
            message = exc.message.removeprefix("the model rejected the input: ")
            raise ModelLoadError(
                f"warm-up forward of a batch of {size} (inputs {shapes}) failed: "
                + with_hint(message, model.spec.inputs, model.spec.outputs)
            ) from None


def _synthetic(spec: TensorSpec, batch: int) -> np.ndarray[Any, Any]:
    shape = [batch] + [
        min(_WARMUP_LENGTH, spec.max_shape[i])
        if (d == -1 and spec.max_shape)
        else (_WARMUP_LENGTH if d == -1 else d)
        for i, d in enumerate(spec.shape)
    ]
    fill = spec.min if spec.min is not None else 0
    dtype = "float32" if spec.dtype == "bfloat16" else spec.dtype
    return np.full(shape, fill, dtype=dtype)


def _check_golden(model: LoadedModel) -> None:
    for index, example in enumerate(model.spec.golden):
        try:
            groups = group_instances(example.inputs, model.spec.inputs)
        except InvalidInput as exc:
            raise ModelLoadError(f"golden example {index}: {exc.message}") from None
        got: list[Any] = [None] * len(example.inputs)
        for group in groups:
            outputs = model.run(group.arrays)
            for row, position in enumerate(group.positions):
                got[position] = [out[row] for out in outputs]
        for position, expected in enumerate(example.outputs):
            actual = got[position][0] if len(model.spec.outputs) == 1 else got[position]
            want = np.asarray(expected, dtype=np.float64)
            have = np.asarray(actual, dtype=np.float64)
            if have.shape != want.shape or not np.allclose(have, want, atol=example.atol, rtol=0):
                raise ModelLoadError(
                    f"golden example {index}, instance {position}: output differs from the "
                    f"expected values beyond atol={example.atol}"
                )
