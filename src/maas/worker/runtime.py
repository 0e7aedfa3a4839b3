"""Loading one version, whatever its format, and running the torch ones: TorchScript or
torch.export, never plain pickle (ONNX runs in `maas.worker.onnx_runtime`).

A load verifies the artifact's sha256, loads it onto its device, warms it up with synthetic
batches of the sizes it will run, checks every output against the signature, and replays the
version's golden examples (`maas.worker.checking`). Anything wrong raises ModelLoadError with a
message for the operator.
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

from maas.errors import InvalidArtifact, InvalidInput, ModelLoadError
from maas.store.local import open_verified
from maas.store.sealing import ArtifactKey
from maas.types import ArtifactFormat, LoadSpec
from maas.worker.checking import Model, check_golden, check_output, warm_up
from maas.worker.diagnosis import cause, complaints, not_tensors

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
# The version number of an upload's trial load: the version does not exist yet
# (maas.registry.service.draft_record), so there is no number to name.
_TRIAL = 0
# Inputs may be read-only views on the request's bytes; torch only reads them.
warnings.filterwarnings("ignore", message="The given NumPy array is not writable")


def resolve_device(requested: str, auto: str | None = None) -> torch.device:
    """`auto` takes `auto` (the worker's device) when given, else the first CUDA device when
    there is one, else the CPU; ModelLoadError for a CUDA device this machine does not have."""
    if requested == "auto":
        if auto is None:
            return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
        requested = auto
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
    """A loaded torch version (a `maas.worker.checking.Model`)."""

    def __init__(self, spec: LoadSpec, module: Any, device: torch.device) -> None:
        self.spec = spec
        self.device = device
        self._module = module
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
            check_output(tuple(tensor.shape), spec, batch)
            if tensor.dtype == torch.bfloat16:
                tensor = tensor.float()
            arrays.append(tensor.detach().cpu().numpy())
        return arrays


def load_model(
    spec: LoadSpec,
    key: ArtifactKey | None = None,
    *,
    threads: int | None = None,
    auto_device: str | None = None,
) -> Model:
    """Verify, load, warm up and check one version (a sealed artifact opened in memory with
    `key`). `auto_device`: where a version of device `auto` runs (the worker's device; unset:
    the first GPU, else the CPU); `threads`: ONNX Runtime's intra-op threads (unset: torch's).
    Blocking: call it off the event loop."""
    started = time.perf_counter()
    try:
        artifact = open_verified(Path(spec.path), spec.sha256, key)
    except InvalidArtifact as exc:
        raise ModelLoadError(exc.message) from None
    with artifact:
        device = resolve_device(spec.device, auto_device)
        model: Model
        if spec.format is ArtifactFormat.ONNX:
            from maas.worker.onnx_runtime import load_onnx  # onnxruntime only for ONNX

            budget = threads if threads is not None else torch.get_num_threads()
            model = load_onnx(spec, artifact, str(device), threads=budget)
        else:
            model = LoadedModel(spec, _load_torch(spec, artifact, device), device)
    warm_up(model)
    check_golden(model)
    took = time.perf_counter() - started
    if spec.key.version == _TRIAL:
        log.info(
            "checked the upload of %s (load, warm-up, golden checks) on %s in %.1f s",
            spec.key.model,
            model.device,
            took,
        )
    else:
        log.info("loaded %s on %s in %.1f s", spec.key, model.device, took)
    return model


def _load_torch(spec: LoadSpec, artifact: IO[bytes], device: torch.device) -> Any:
    with complaints() as found:
        try:
            return _load_module(artifact, spec.format, device)
        except ModelLoadError:
            raise
        except Exception as exc:  # torch raises many types for a corrupt or foreign file
            # The client never sees this worker's log: the cause goes into the message.
            reason = found.explain(exc)
            raise ModelLoadError(f"cannot load the {spec.format} artifact: {reason}") from None


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
