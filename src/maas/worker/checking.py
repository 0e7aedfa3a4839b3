"""What every runtime's load ends with, whatever ran the forward: warm-up with synthetic batches
of the sizes the version will run, every output held against the signature, and the version's
golden examples replayed. `Model` is what the worker asks of a loaded version (TorchScript and
`torch.export` in `maas.worker.runtime`, ONNX in `maas.worker.onnx_runtime`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from maas.checks.arrays import group_instances
from maas.errors import InvalidInput, ModelLoadError
from maas.types import LoadSpec, TensorSpec
from maas.worker.diagnosis import with_hint

WARMUP_LENGTH = 8  # the length a synthetic instance gives an axis of any length (-1)


class Model(Protocol):
    """A loaded version: `run` takes one stacked array per input (in `spec.inputs` order) and
    returns one per output; InvalidInput when the model refuses them, ModelLoadError when its
    outputs disagree with the signature."""

    spec: LoadSpec
    # Seconds of a forward at max_batch_size, measured at warm-up: the first estimate of what
    # a batch costs, before any traffic.
    warmup_batch_s: float

    @property
    def device(self) -> object: ...

    def run(self, inputs: Sequence[np.ndarray[Any, Any]]) -> list[np.ndarray[Any, Any]]: ...


def check_output(shape: tuple[int, ...], spec: TensorSpec, batch: int) -> None:
    """ModelLoadError unless an output of `shape` holds `batch` rows of the declared shape."""
    if not shape or shape[0] != batch:
        rows = shape[0] if shape else "no"
        raise ModelLoadError(f"output '{spec.name}' has {rows} rows for a batch of {batch}")
    instance = shape[1:]
    ok = len(instance) == len(spec.shape) and all(
        want in (-1, got) for got, want in zip(instance, spec.shape, strict=True)
    )
    if not ok:
        raise ModelLoadError(
            f"output '{spec.name}' has shape {list(instance)} per instance, "
            f"signature declares {list(spec.shape)}"
        )


def warm_up(model: Model) -> None:
    """Run the batch sizes the version will see, so the first request pays no warm-up, and
    keep how long the largest took."""
    sizes = sorted({1, model.spec.max_batch_size})
    for size in sizes:
        inputs = [synthetic(spec, size) for spec in model.spec.inputs]
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


def synthetic(spec: TensorSpec, batch: int) -> np.ndarray[Any, Any]:
    """A batch of `batch` instances of `spec`, every value its lowest (or 0)."""
    shape = [batch] + [
        min(WARMUP_LENGTH, spec.max_shape[i])
        if (d == -1 and spec.max_shape)
        else (WARMUP_LENGTH if d == -1 else d)
        for i, d in enumerate(spec.shape)
    ]
    fill = spec.min if spec.min is not None else 0
    dtype = "float32" if spec.dtype == "bfloat16" else spec.dtype
    return np.full(shape, fill, dtype=dtype)


def check_golden(model: Model) -> None:
    """ModelLoadError naming the first golden example the model does not answer as given."""
    for index, example in enumerate(model.spec.golden):
        try:
            groups = group_instances(example.inputs, model.spec.inputs)
        except InvalidInput as exc:
            raise ModelLoadError(f"golden example {index}: {exc.message}") from None
        got: list[Any] = [None] * len(example.inputs)
        step = model.spec.max_batch_size  # batches as requests get them
        for group in groups:
            for start in range(0, len(group.positions), step):
                try:
                    outputs = model.run([a[start : start + step] for a in group.arrays])
                except InvalidInput as exc:
                    raise ModelLoadError(f"golden example {index}: {exc.message}") from None
                for row, position in enumerate(group.positions[start : start + step]):
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
