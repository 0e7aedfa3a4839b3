"""Loading and running one ONNX version with ONNX Runtime (`"format": "onnx"`).

onnxruntime is imported here only, when an ONNX version loads. The session gets the worker's
thread budget for its intra-op pool (the number torch gets), one inter-op thread, sequential
execution and no spinning: a spinning pool burns the cores every other op of the process needs
between forwards (onnxruntime#13808). It runs on the CUDA execution provider when the version's
device is a GPU and this onnxruntime has that provider, else on the CPU one. The session's own
inputs and outputs are held against the signature before anything runs, with the upload's
rules (`maas.store.onnx_graph.compare`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import IO, Any

import numpy as np

from maas.errors import InvalidArtifact, InvalidInput, ModelLoadError
from maas.store.onnx_graph import GraphTensor, compare, dtype_name
from maas.types import LoadSpec
from maas.worker.checking import check_output

log = logging.getLogger(__name__)

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"
# "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid dimensions ..." → the last part.
_ORT_PREFIX = re.compile(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ")
_TYPE = re.compile(r"^tensor\((\w+)\)$")
_MAX_CHARS = 500


class OnnxModel:
    """A loaded ONNX version (a `maas.worker.checking.Model`); `session` is ONNX Runtime's."""

    def __init__(self, spec: LoadSpec, session: Any, device: str) -> None:
        self.spec = spec
        self.device = device
        self.session = session
        self.warmup_batch_s = 0.0
        self._outputs = [t.name for t in spec.outputs]
        self._inputs = [(t.name, np.dtype(t.dtype)) for t in spec.inputs]

    def run(self, inputs: Sequence[np.ndarray[Any, Any]]) -> list[np.ndarray[Any, Any]]:
        batch = len(inputs[0])
        feeds = {
            name: np.ascontiguousarray(array, dtype=dtype)
            for (name, dtype), array in zip(self._inputs, inputs, strict=True)
        }
        try:
            arrays: list[np.ndarray[Any, Any]] = self.session.run(self._outputs, feeds)
        except Exception as exc:  # onnxruntime's errors derive from Exception only
            # The instances matched the signature, so the model itself refused them.
            raise InvalidInput(f"the model rejected the input: {_cause(exc)}") from None
        for array, spec in zip(arrays, self.spec.outputs, strict=True):
            if not isinstance(array, np.ndarray):
                raise ModelLoadError(f"output '{spec.name}' is not a tensor")
            check_output(array.shape, spec, batch)
        return arrays


def load_onnx(spec: LoadSpec, artifact: IO[bytes], device: str, *, threads: int) -> OnnxModel:
    """A session of the ONNX model `artifact` (opened and verified) on `device` ("cpu" or
    "cuda:N", resolved from the version's) with `threads` intra-op threads, its signature
    checked against `spec`'s; ModelLoadError saying what is wrong."""
    import onnxruntime as ort

    providers: list[Any] = [CPU_PROVIDER]
    if device.startswith("cuda"):
        if CUDA_PROVIDER in ort.get_available_providers():
            index = int(device.partition(":")[2] or 0)
            providers = [(CUDA_PROVIDER, {"device_id": index}), CPU_PROVIDER]
        elif spec.device == "auto":
            log.info("%s: this onnxruntime has no CUDA provider, running on the CPU", spec.key)
            device = "cpu"
        else:
            raise ModelLoadError(
                f"device {spec.device} requested but this worker's onnxruntime has no "
                f"{CUDA_PROVIDER} (it has {', '.join(ort.get_available_providers())}): "
                "install onnxruntime-gpu on the worker, or set the version's device to cpu"
            )
    try:
        session = ort.InferenceSession(
            artifact.read(), sess_options=session_options(threads), providers=providers
        )
    except Exception as exc:
        raise ModelLoadError(
            f"cannot load the onnx artifact: {type(exc).__name__}: {_cause(exc)}"
        ) from None
    if len(providers) > 1 and CUDA_PROVIDER not in session.get_providers():
        # ONNX Runtime falls back to the CPU when the CUDA provider cannot start (no driver,
        # no cuDNN); a version that asked for the GPU must not quietly run without it.
        if spec.device != "auto":
            raise ModelLoadError(
                f"device {spec.device} requested but ONNX Runtime could not start its "
                f"{CUDA_PROVIDER} (CUDA or cuDNN libraries missing?)"
            )
        device = "cpu"
    try:
        compare(
            [_graph_tensor(arg) for arg in session.get_inputs()],
            [_graph_tensor(arg) for arg in session.get_outputs()],
            spec.inputs,
            spec.outputs,
            spec.max_batch_size,
        )
    except InvalidArtifact as exc:
        raise ModelLoadError(exc.message) from None
    return OnnxModel(spec, session, device)


def session_options(threads: int) -> Any:
    """ONNX Runtime's session options for a worker of `threads` threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


def _graph_tensor(arg: Any) -> GraphTensor:
    """An input or output as ONNX Runtime reports it (a NodeArg: name, "tensor(float)", shape
    of ints, names and None)."""
    match = _TYPE.match(arg.type)
    if match is None:
        return GraphTensor(arg.name, f"a {arg.type}", None)
    shape = arg.shape
    dims = None if shape is None else tuple(d if isinstance(d, int | str) else None for d in shape)
    return GraphTensor(arg.name, dtype_name(match.group(1)), dims)


def _cause(exc: BaseException) -> str:
    text = _ORT_PREFIX.sub("", str(exc).strip()) or type(exc).__name__
    return " ".join(text.split())[:_MAX_CHARS]
