"""Declared post-processing (meta `postprocess`): an output's scores as labelled classes.

Pure numpy, no I/O: the native `:classify` verb and the Open Inference Protocol's
classification extension both answer from here.

    scores [N, C]  →  softmax (when declared)  →  the k best of each row, best first
                   →  [("8", 0.97), ("3", 0.01), ...] per instance       (:classify)
                   →  ["0.970000:8:8", "0.010000:3:3", ...] per instance (Triton's strings)

Order is by score, highest first; equal scores keep index order (the lower index first), so
an answer never depends on the sort's whims. NaN scores come last.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from maas.types import PostProcess

Array = np.ndarray[Any, Any]


def softmax(scores: Array) -> Array:
    """Each row of [N, C] logits as probabilities, computed stably (the row's maximum is
    subtracted first, so large logits never overflow). float64 stays float64; everything
    else answers float32."""
    wide = np.asarray(scores, dtype=np.float64)
    if wide.shape[-1] == 0:
        return wide.astype(_float_of(scores.dtype))
    shifted = wide - wide.max(axis=-1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=-1, keepdims=True)
    answer: Array = shifted.astype(_float_of(scores.dtype), copy=False)
    return answer


def _float_of(dtype: np.dtype[Any]) -> type[np.floating[Any]]:
    return np.float64 if dtype == np.float64 else np.float32


@dataclass(frozen=True, slots=True)
class TopK:
    """The k best classes of each instance: `indices` and `scores`, both [N, k], best first."""

    indices: Array
    scores: Array


def top_k(scores: Array, k: int) -> TopK:
    """The `k` best classes of each row of `scores` ([N, C]; k is cut to C), best first;
    ties keep index order, NaN comes last."""
    rows = as_rows(scores)
    count = max(0, min(k, rows.shape[1]))
    key = rows
    if key.dtype.kind == "b":
        key = key.astype(np.uint8)
    elif key.dtype.kind == "f" and np.isnan(key).any():
        key = np.where(np.isnan(key), -np.inf, key)
    # A stable ascending sort of each row reversed, read backwards: the highest first, and
    # among equal scores the lowest index first (no negation, so unsigned scores are safe).
    width = key.shape[1]
    reversed_order = np.argsort(key[:, ::-1], axis=1, kind="stable")[:, ::-1]
    indices = (width - 1 - reversed_order)[:, :count]
    return TopK(indices=indices, scores=np.take_along_axis(rows, indices, axis=1))


def as_rows(output: Array) -> Array:
    """An output of N instances as [N, C]: each instance's elements flattened, row-major."""
    return output.reshape(len(output), -1) if output.ndim != 2 else output


# float32 outputs this small (N x C elements) are ranked in plain Python: numpy's per-call
# cost is most of the work for one instance of ten classes (~6 us against ~21 us). The answer
# is the same: scores are rounded to float32 before they are ranked, as the numpy path ranks.
_SMALL = 4096


def classes(output: Array, post: PostProcess, k: int | None = None) -> list[list[tuple[str, Any]]]:
    """The (label, score) pairs of each instance of `output` ([N, C]), best first: the
    version's `top_k` of them (or `k`), softmaxed when `post` says so. Scores are numpy
    scalars of the answer's dtype (orjson writes them as the shortest decimal)."""
    scores = as_rows(output)
    if scores.size <= _SMALL and scores.dtype == np.float32:
        small = _small_classes(scores, post, post.top_k if k is None else k)
        if small is not None:
            return small
    if post.softmax:
        scores = softmax(scores)
    best = top_k(scores, post.top_k if k is None else k)
    labels = post.labels
    return [
        [(labels[i], score) for i, score in zip(row, values, strict=True)]
        for row, values in zip(best.indices.tolist(), best.scores, strict=True)
    ]


def _small_classes(scores: Array, post: PostProcess, k: int) -> list[list[tuple[str, Any]]] | None:
    """`classes` for a small float32 output, the same answer computed with one numpy call per
    instance (None when a NaN is in it: `top_k` orders those)."""
    answer_type = np.float32
    labels = post.labels
    answer = []
    for row in scores.tolist():
        if any(v != v for v in row):  # NaN
            return None
        if post.softmax:
            top = max(row)
            exps = [math.exp(v - top) for v in row]
            total = sum(exps)
            # Ranked as answered: rounded to the answer's dtype, as the numpy path ranks.
            row = np.array([v / total for v in exps], dtype=answer_type).tolist()
        # A stable sort: among equal scores, the lower index first.
        order = sorted(range(len(row)), key=row.__getitem__, reverse=True)[: max(0, k)]
        answer.append([(labels[i], answer_type(row[i])) for i in order])
    return answer


def triton_strings(
    output: Array, k: int, labels: Sequence[str] | None = None, *, softmax_first: bool = False
) -> list[list[str]]:
    """Triton's classification answer for `output` ([N, ...]): per instance, its min(k, C)
    best classes as `"score:index:label"` (`"score:index"` without labels), best first. The
    score is written as C++'s std::to_string writes it: `%f` for a float, `%d` for an
    integer."""
    scores = as_rows(output)
    if softmax_first:
        scores = softmax(scores)
    best = top_k(scores, k)
    fmt = "{:f}" if scores.dtype.kind == "f" else "{:d}"
    answer: list[list[str]] = []
    for row, values in zip(best.indices.tolist(), best.scores.tolist(), strict=True):
        strings = [f"{fmt.format(score)}:{index}" for index, score in zip(row, values, strict=True)]
        if labels is not None:
            strings = [f"{s}:{labels[i]}" for s, i in zip(strings, row, strict=True)]
        answer.append(strings)
    return answer
