"""Instances (JSON) against a version's input signature, and results back to JSON.

The gateway turns each request's instances into numpy arrays stacked along a new batch axis,
grouping instances of equal shape so that one odd instance never breaks another's batch. Every
mismatch is an `InvalidInput` that says what was expected.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from maas.errors import InvalidInput
from maas.types import TensorSpec

# numpy has no bfloat16: such inputs travel as float32 and the runtime casts them.
_NUMPY_DTYPE = {"bfloat16": "float32"}
_INT_KINDS = "iu"


@functools.cache
def numpy_dtype(dtype: str) -> np.dtype[Any]:
    return np.dtype(_NUMPY_DTYPE.get(dtype, dtype))


@dataclass(frozen=True, slots=True)
class InstanceGroup:
    """Instances of one request that share every input's shape, ready to run as one batch."""

    positions: list[int]
    arrays: list[np.ndarray[Any, Any]]


def group_instances(instances: Sequence[Any], inputs: Sequence[TensorSpec]) -> list[InstanceGroup]:
    """Validate `instances` and stack them by shape. Raises InvalidInput on the first bad one."""
    if len(inputs) == 1:
        fast = _try_homogeneous(instances, inputs[0])
        if fast is not None:
            return [InstanceGroup(positions=list(range(len(instances))), arrays=[fast])]
    groups: dict[tuple[tuple[int, ...], ...], tuple[list[int], list[list[np.ndarray[Any, Any]]]]]
    groups = {}
    for position, instance in enumerate(instances):
        values = _split_inputs(instance, inputs, position)
        arrays = [_to_array(v, spec, position) for v, spec in zip(values, inputs, strict=True)]
        shape_key = tuple(a.shape for a in arrays)
        positions, columns = groups.setdefault(shape_key, ([], [[] for _ in inputs]))
        positions.append(position)
        for column, array in zip(columns, arrays, strict=True):
            column.append(array)
    return [
        InstanceGroup(positions=positions, arrays=[np.stack(column) for column in columns])
        for positions, columns in groups.values()
    ]


def _try_homogeneous(instances: Sequence[Any], spec: TensorSpec) -> np.ndarray[Any, Any] | None:
    """One conversion for the common case: every instance has the same shape."""
    try:
        batch = np.asarray(instances)
    except (ValueError, TypeError, OverflowError):
        return None
    if batch.dtype.kind not in "biuf" or batch.ndim != len(spec.shape) + 1:
        return None
    try:
        return _check(batch, spec, None)
    except InvalidInput:
        return None  # let the per-instance path name the offending instance


def _split_inputs(instance: Any, inputs: Sequence[TensorSpec], position: int) -> list[Any]:
    if isinstance(instance, dict):
        missing = [spec.name for spec in inputs if spec.name not in instance]
        extra = sorted(set(instance) - {spec.name for spec in inputs})
        if missing or extra:
            raise InvalidInput(
                f"instance {position}: expected inputs {[s.name for s in inputs]}, "
                f"missing {missing}, unexpected {extra}"
            )
        return [instance[spec.name] for spec in inputs]
    if len(inputs) != 1:
        raise InvalidInput(
            f"instance {position}: this model takes {len(inputs)} inputs; send an object "
            f"with keys {[s.name for s in inputs]}"
        )
    return [instance]


def _to_array(value: Any, spec: TensorSpec, position: int) -> np.ndarray[Any, Any]:
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, OverflowError):
        raise InvalidInput(
            f"instance {position}: input '{spec.name}' is not a rectangular array of numbers"
        ) from None
    return _check(array, spec, position)


def check_batch(array: np.ndarray[Any, Any], spec: TensorSpec) -> np.ndarray[Any, Any]:
    """Check a batch (instances stacked on the first axis) against `spec`, as for instances."""
    return _check(array, spec, None)


def _check(
    array: np.ndarray[Any, Any], spec: TensorSpec, position: int | None
) -> np.ndarray[Any, Any]:
    """Check dtype, rank, axes and domain of one instance, or of a batch if position is None."""
    where = f"instance {position}: " if position is not None else ""
    batched = position is None
    want = numpy_dtype(spec.dtype)
    # `[]` parses as float64; an empty axis is reported by the shape checks below instead.
    kind = want.kind if array.size == 0 and array.dtype.kind == "f" else array.dtype.kind
    if kind not in "biuf":
        raise InvalidInput(f"{where}input '{spec.name}' takes {spec.dtype}; got {_describe(kind)}")
    if want.kind == "b" and kind != "b":
        raise InvalidInput(f"{where}input '{spec.name}' must be {spec.dtype} (true/false)")
    if want.kind in _INT_KINDS and kind not in _INT_KINDS:
        raise InvalidInput(
            f"{where}input '{spec.name}' must be {spec.dtype} integers, got {_describe(kind)}"
        )
    if want.kind == "f" and kind == "b":
        raise InvalidInput(f"{where}input '{spec.name}' must be {spec.dtype} numbers, got booleans")
    shape = array.shape[1:] if batched else array.shape
    if len(shape) != len(spec.shape):
        raise InvalidInput(
            f"{where}input '{spec.name}' must have rank {len(spec.shape)} "
            f"(shape {list(spec.shape)}), got rank {len(shape)} (shape {list(shape)})"
        )
    for axis, (got, expected) in enumerate(zip(shape, spec.shape, strict=True)):
        if expected != -1 and got != expected:
            raise InvalidInput(
                f"{where}input '{spec.name}' axis {axis} must have length {expected} "
                f"(shape {list(spec.shape)}), got {got}"
            )
        if expected == -1 and got < 1:
            raise InvalidInput(f"{where}input '{spec.name}' axis {axis} must not be empty")
        if spec.max_shape is not None and expected == -1 and got > spec.max_shape[axis]:
            raise InvalidInput(
                f"{where}input '{spec.name}' axis {axis} may be at most "
                f"{spec.max_shape[axis]} long, got {got}"
            )
    if want.kind in _INT_KINDS and array.size:
        info = np.iinfo(want)
        low, high = int(array.min()), int(array.max())
        if low < info.min or high > info.max:
            raise InvalidInput(f"{where}input '{spec.name}' has values outside {spec.dtype}")
    if array.size and (spec.min is not None or spec.max is not None):
        low_v, high_v = array.min(), array.max()
        if (spec.min is not None and low_v < spec.min) or (
            spec.max is not None and high_v > spec.max
        ):
            raise InvalidInput(
                f"{where}input '{spec.name}' values must lie in "
                f"[{_fmt(spec.min)}, {_fmt(spec.max)}], got values in [{low_v}, {high_v}]"
            )
    return array.astype(want, copy=False)


# What a numpy kind of parsed JSON holds, in the contract's words (numpy's dtype names, such as
# `str32` for strings, mean nothing to a client).
_KIND_WORDS = {
    "f": "floating-point numbers",
    "b": "booleans",
    "U": "string",
    "S": "string",
    "O": "null, objects or lists of uneven length",
    "c": "complex numbers",
}


def _describe(kind: str) -> str:
    return _KIND_WORDS.get(kind, "non-integers")


def _fmt(bound: float | None) -> str:
    return "-inf" if bound is None else f"{bound:g}"


def scatter_outputs(
    groups: Sequence[InstanceGroup],
    results: Sequence[Sequence[np.ndarray[Any, Any]]],
    outputs: Sequence[TensorSpec],
    count: int,
) -> list[Any]:
    """Per-instance JSON values in request order: the bare value for one output, else a dict."""
    predictions: list[Any] = [None] * count
    for group, arrays in zip(groups, results, strict=True):
        columns = [array.tolist() for array in arrays]
        for row, position in enumerate(group.positions):
            if len(outputs) == 1:
                predictions[position] = columns[0][row]
            else:
                predictions[position] = {
                    spec.name: column[row] for spec, column in zip(outputs, columns, strict=True)
                }
    return predictions
