"""Shadow traffic: a share of an alias's requests also run on its shadow version, off the
request path, and the two answers compared.

Once the primary's outputs are back, the call hands them to `Mirror.mirror` with the decoded
groups and goes on answering: `mirror` draws (`Router.shadow_of`), queues the request for its
candidate and returns, never awaiting anything. A background task per candidate runs what
queued as one batch through the same data plane (its own deadline), compares each request's
answers, and counts (`maas.observability.shadow_metrics`).
A candidate's failure of any kind is counted, never raised and never logged as a traceback:
the client's answer and status come from the primary alone.

Mirrors are bounded per gateway process (`MAAS_SHADOW_MAX_IN_FLIGHT`): when that many requests
are queued or running, the next is dropped and counted. The gateway's shutdown cancels those
still running (`close`).

Comparing: the output the primary's `postprocess` names (else its first), against the
candidate's output of that name (else its first). Per instance, with a class axis (a last axis
longer than 1) the two agree when their argmax over it is the same everywhere; without one,
when every number is within `ATOL + RTOL * |primary|`. Per request: the largest absolute
difference, and the candidate's inference time over the primary's.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from maas.errors import InvalidInput, MaasError
from maas.observability.shadow_metrics import ShadowMetrics
from maas.registry.records import VersionRecord
from maas.serving.codec import Group
from maas.serving.dataplane import DataPlane
from maas.types import ModelRef, VersionKey

log = logging.getLogger(__name__)

Array = np.ndarray[Any, Any]
# Numbers of an output without a class axis agree within this (numpy's isclose rule).
ATOL, RTOL = 1e-4, 1e-3
# Answers this large are compared on a thread, as call.py encodes them; a one-instance answer
# of at most SMALL numbers in plain Python (3.4 us instead of numpy's 7 for ten classes).
OFFLOAD_BYTES = 256 * 1024
SMALL = 32


class Mismatch(ValueError):
    """The request, or the candidate's answer, does not fit the candidate's signature."""


@dataclass(frozen=True, slots=True)
class Comparison:
    instances: int
    agreeing: int
    max_abs_diff: float


@dataclass(slots=True)
class _Mirrored:
    """One request waiting for (or in) a mirror batch: what its primary was asked and said."""

    pair: tuple[str, str, str]
    primary: VersionRecord
    groups: Sequence[Group]
    outputs: Sequence[Group]
    latency_s: float


class Mirror:
    """One gateway process's mirrors: at most `max_in_flight` requests queued or running.

    The requests mirrored to one candidate are batched: the first starts a drain task for
    the candidate, and while its batch runs, the next ones queue; the drain then sends all
    that queued as one call (the data plane cuts it to the candidate's max batch size). A
    mirror costs the gateway a list append and its share of one call, not a task and a call
    of its own."""

    def __init__(
        self,
        dataplane: DataPlane,
        metrics: ShadowMetrics,
        *,
        max_in_flight: int = 64,
        timeout_s: float = 30.0,
    ) -> None:
        self._dataplane = dataplane
        self._metrics = metrics
        self._max_in_flight = max_in_flight
        self._timeout_s = timeout_s
        self._queues: dict[VersionKey, list[_Mirrored]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._count = 0  # requests queued or in a running batch
        self._closed = False

    @property
    def in_flight(self) -> int:
        return self._count

    def mirror(
        self,
        ref: ModelRef,
        primary: VersionRecord,
        groups: Sequence[Group],
        outputs: Sequence[Group],
        *,
        since: float,
    ) -> None:
        """Mirror this request to its alias's shadow if it is drawn; returns at once. `outputs`
        are the primary's answer to `groups`, whose inference began at `since` (monotonic)."""
        candidate = self._dataplane.shadow_of(ref, primary)
        if candidate is None or self._closed:
            return
        pair = (primary.model, str(primary.version), str(candidate.version))
        if self._count >= self._max_in_flight:
            self._metrics.dropped(pair)
            return
        self._count += 1
        item = _Mirrored(pair, primary, groups, outputs, time.monotonic() - since)
        queue = self._queues.get(candidate.key)
        if queue is not None:
            queue.append(item)  # the candidate's drain takes it with its next batch
            return
        queue = self._queues[candidate.key] = [item]
        task = asyncio.create_task(self._drain(candidate, queue))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Cancel the mirrors in flight (the gateway is stopping); no new ones start."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._queues.clear()
        self._count = 0

    async def _drain(self, candidate: VersionRecord, queue: list[_Mirrored]) -> None:
        """Run what queued for `candidate`, batch after batch, until nothing is left."""
        try:
            while queue:
                batch = queue[:]
                del queue[:]
                try:
                    await self._run(candidate, batch)
                finally:
                    self._count -= len(batch)
        finally:
            if self._queues.get(candidate.key) is queue:
                del self._queues[candidate.key]

    async def _run(self, candidate: VersionRecord, batch: list[_Mirrored]) -> None:
        fitting = []
        for item in batch:
            try:
                check_inputs(candidate, item.primary, item.groups)
            except Mismatch as exc:
                log.debug("shadow %s@%s refused: %s", candidate.model, candidate.version, exc)
                self._metrics.failed(item.pair)
                continue
            fitting.append(item)
        if not fitting:
            return
        try:
            started = time.monotonic()
            answers = await self._infer(candidate, fitting)
            took = time.monotonic() - started
        except MaasError as exc:
            if len(fitting) > 1 and isinstance(exc, InvalidInput):
                # The model refused the batch: find out whose instances it refuses.
                for item in fitting:
                    await self._run(candidate, [item])
                return
            log.debug("shadow %s@%s failed: %s", candidate.model, candidate.version, exc)
            for item in fitting:
                self._metrics.failed(item.pair)
            return
        except Exception as exc:  # never the client's concern: counted, told in one line
            log.warning(
                "shadow %s@%s failed: %s: %s",
                candidate.model,
                candidate.version,
                type(exc).__name__,
                exc,
            )
            for item in fitting:
                self._metrics.failed(item.pair)
            return
        for item, answer in zip(fitting, answers, strict=True):
            await self._compare(candidate, item, answer, took)

    async def _infer(self, candidate: VersionRecord, items: list[_Mirrored]) -> list[list[Group]]:
        """The candidate's answer to each item's groups, from one call: groups of the same
        trailing shapes are stacked into one, the answers cut back apart."""
        stacks: dict[tuple[tuple[int, ...], ...], list[Group]] = {}
        for item in items:
            for group in item.groups:
                stacks.setdefault(tuple(a.shape[1:] for a in group), []).append(group)
        keys = list(stacks)
        joined = [
            [np.concatenate(columns) for columns in zip(*stacks[k], strict=True)]
            if len(stacks[k]) > 1
            else stacks[k][0]
            for k in keys
        ]
        answered = await self._dataplane.infer(candidate, joined, timeout_s=self._timeout_s)
        pieces: dict[tuple[tuple[int, ...], ...], list[Group]] = {}
        for key, parts, answer in zip(keys, (stacks[k] for k in keys), answered, strict=True):
            bounds = np.cumsum([len(part[0]) for part in parts])[:-1]
            split = [np.split(out, bounds) for out in answer]
            pieces[key] = [list(columns) for columns in zip(*split, strict=True)]
        out = []
        for item in items:
            mine = []
            for group in item.groups:
                mine.append(pieces[tuple(a.shape[1:] for a in group)].pop(0))
            out.append(mine)
        return out

    async def _compare(
        self, candidate: VersionRecord, item: _Mirrored, answers: list[Group], took: float
    ) -> None:
        try:
            ours, theirs = compared_outputs(item.primary, candidate)
            mine = [group[ours] for group in item.outputs]
            other = [group[theirs] for group in answers]
            if sum(a.nbytes for a in mine) < OFFLOAD_BYTES:
                comparison = compare(mine, other)
            else:
                comparison = await asyncio.to_thread(compare, mine, other)
        except Mismatch as exc:
            log.debug("shadow %s@%s failed: %s", candidate.model, candidate.version, exc)
            self._metrics.failed(item.pair)
            return
        ratio = took / item.latency_s if item.latency_s > 0 else 1.0
        self._metrics.compared(
            item.pair,
            instances=comparison.instances,
            agreeing=comparison.agreeing,
            max_abs_diff=comparison.max_abs_diff,
            latency_ratio=ratio,
        )


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


def _group(mine: Array, theirs: Array) -> tuple[int, float]:
    """Instances that agree, and the largest difference, of one group's answers."""
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
    return int(same.sum()), float(diff.max()) if diff.size else 0.0


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
