"""How a shadow's answers are compared with the primary's (`maas.serving.shadow` mirrors
them): the output compared, whether a request's inputs fit the candidate, and per instance
whether the two agree and by how much they differ.

Comparing: the output the primary's `postprocess` names (else its first), against the
candidate's output of that name (else its first). Per instance, with a class axis (a last axis
longer than 1) the two agree when their argmax over it is the same everywhere; without one,
when every number is within `ATOL + RTOL * |primary|`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from maas.registry.records import VersionRecord
from maas.serving.codec import Group

Array = np.ndarray[Any, Any]
# Numbers of an output without a class axis agree within this (numpy's isclose rule).
ATOL, RTOL = 1e-4, 1e-3
# A one-instance answer of at most SMALL numbers is compared in plain Python (3.4 us instead
# of numpy's 7 for ten classes).
SMALL = 32


class Mismatch(ValueError):
    """The request, or the candidate's answer, does not fit the candidate's signature."""


@dataclass(frozen=True, slots=True)
class Comparison:
    instances: int
    agreeing: int
    max_abs_diff: float


def check_inputs(candidate: VersionRecord, primary: VersionRecord, groups: Sequence[Group]) -> None:
    """Raise Mismatch unless the groups decoded for `primary` fit `candidate`'s inputs."""
    theirs = [(spec.name, spec.dtype) for spec in candidate.inputs]
    if theirs != [(spec.name, spec.dtype) for spec in primary.inputs]:
        raise Mismatch(f"its inputs {theirs} are not the primary's")
    for group in groups:
        for array, spec in zip(group, candidate.inputs, strict=True):
            shape = array.shape[1:]
            if len(shape) != len(spec.shape) or any(
                want not in (-1, got) for want, got in zip(spec.shape, shape, strict=True)
            ):
                raise Mismatch(f"input '{spec.name}' of shape {list(spec.shape)} refuses {shape}")


def compared_outputs(primary: VersionRecord, candidate: VersionRecord) -> tuple[int, int]:
    """Which output of each answer is compared: the one the primary's postprocess names, else
    its first; the candidate's of that name, else its first."""
    name = primary.postprocess.output if primary.postprocess else primary.outputs[0].name
    ours = next(i for i, spec in enumerate(primary.outputs) if spec.name == name)
    theirs = next((i for i, spec in enumerate(candidate.outputs) if spec.name == name), 0)
    return ours, theirs


def compare(primary: Sequence[Array], candidate: Sequence[Array]) -> Comparison:
    """The two answers of each group (the compared output), instance by instance."""
    instances = agreeing = 0
    largest = 0.0
    for mine, theirs in zip(primary, candidate, strict=True):
        if mine.shape != theirs.shape:
            raise Mismatch(
                f"its answer has shape {list(theirs.shape)}, the primary's {list(mine.shape)}"
            )
        rows = len(mine)
        if not rows:
            continue
        counted = _small_group(mine, theirs) if rows == 1 and mine.size <= SMALL else None
        same, diff = counted or _group(mine, theirs)
        instances += rows
        agreeing += same
        largest = max(largest, diff)
    return Comparison(instances=instances, agreeing=agreeing, max_abs_diff=largest)


def per_instance(mine: Array, theirs: Array) -> tuple[Array, Array]:
    """Per instance of two answers of one shape: whether they agree, and their largest
    absolute difference (a NaN on one side only: infinitely far apart; on both: equal)."""
    rows = len(mine)
    ours, other = mine.astype(np.float64), theirs.astype(np.float64)
    diff = np.abs(ours - other).reshape(rows, -1)
    both_nan = (np.isnan(ours) & np.isnan(other)).reshape(rows, -1)
    diff[both_nan] = 0.0
    diff[np.isnan(diff)] = np.inf  # a NaN on one side only: as far apart as can be
    if mine.ndim >= 2 and mine.shape[-1] > 1:  # a class axis: top-1 decides
        same = (ours.argmax(axis=-1) == other.argmax(axis=-1)).reshape(rows, -1).all(axis=1)
    else:
        same = (diff <= ATOL + RTOL * np.abs(ours).reshape(rows, -1)).all(axis=1)
    largest = diff.max(axis=1) if diff.shape[1] else np.zeros(rows)
    return same, largest


def _group(mine: Array, theirs: Array) -> tuple[int, float]:
    """Instances that agree, and the largest difference, of one group's answers."""
    same, largest = per_instance(mine, theirs)
    return int(same.sum()), float(largest.max()) if largest.size else 0.0


def _small_group(mine: Array, theirs: Array) -> tuple[int, float] | None:
    """`_group`'s answer for a small [1, C] float answer, in plain Python (numpy's per-call
    cost was most of the work); None when it has a NaN or an infinity (`_group` orders those)."""
    if mine.ndim != 2 or mine.dtype.kind != "f" or theirs.dtype.kind != "f":
        return None
    classes = mine.shape[1] > 1
    agreeing, largest = 0, 0.0
    for ours, other in zip(mine.tolist(), theirs.tolist(), strict=True):
        if not (math.isfinite(sum(ours)) and math.isfinite(sum(other))):
            return None
        pairs = list(zip(ours, other, strict=True))
        largest = max(largest, max((abs(p - q) for p, q in pairs), default=0.0))
        if classes:
            agreeing += ours.index(max(ours)) == other.index(max(other))
        else:
            agreeing += all(abs(p - q) <= ATOL + RTOL * abs(p) for p, q in pairs)
    return agreeing, largest
