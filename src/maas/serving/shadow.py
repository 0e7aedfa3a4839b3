"""Shadow traffic: a share of an alias's requests also run on its shadow version, off the
request path, and the two answers compared.

Once the primary's outputs are back, the call hands them to `Mirror.mirror` with the decoded
groups and goes on answering: `mirror` draws (`Router.shadow_of`), queues the request for its
candidate and returns, never awaiting anything. A few background tasks per candidate run what
queued, as batches, through the same data plane (its own deadline), compare each request's
answers, and count (`maas.observability.shadow_metrics`).
A candidate's failure of any kind is counted, never raised and never logged as a traceback:
the client's answer and status come from the primary alone.

Mirrors are bounded per gateway process (`MAAS_SHADOW_MAX_IN_FLIGHT`): when that many requests
are queued or running, the next is dropped and counted. The gateway's shutdown cancels those
still running (`close`).

How the answers are compared is `maas.serving.shadow_compare`'s. Per request: whether every
instance agrees, the largest absolute difference, and the candidate's inference time over the
primary's.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from maas.errors import InvalidInput, MaasError
from maas.observability.shadow_metrics import ShadowMetrics
from maas.registry.records import VersionRecord
from maas.serving.codec import Group
from maas.serving.dataplane import DataPlane
from maas.serving.shadow_compare import (
    Mismatch,
    check_inputs,
    compare,
    compared_outputs,
    per_instance,
)
from maas.types import ModelRef, VersionKey

log = logging.getLogger(__name__)

# Answers this large are compared on a thread, as call.py encodes them.
OFFLOAD_BYTES = 256 * 1024
Shapes = tuple[tuple[int, ...], ...]  # a group's arrays' shapes past the batch axis


@dataclass(slots=True)
class _Mirrored:
    """One request waiting for (or in) a mirror batch: what its primary was asked and said."""

    pair: tuple[str, str, str]
    primary: VersionRecord
    groups: Sequence[Group]
    outputs: Sequence[Group]
    latency_s: float


@dataclass(slots=True)
class _Lane:
    """The mirrors of one candidate: those queued, and the batches of them running."""

    candidate: VersionRecord
    queue: list[_Mirrored] = field(default_factory=list)
    running: int = 0


class Mirror:
    """One gateway process's mirrors: at most `max_in_flight` requests queued or running.

    The requests mirrored to one candidate are batched: a request starts a batch of its own
    while fewer than `max_batches` of the candidate's run, else it queues, and the next batch
    to start, or a running one once done, takes everything queued as one call (the data plane
    cuts it to the candidate's max batch size). Under load a mirror costs the gateway a list
    append and its share of one call, not a task and a call of its own."""

    def __init__(
        self,
        dataplane: DataPlane,
        metrics: ShadowMetrics,
        *,
        max_in_flight: int = 64,
        timeout_s: float = 30.0,
        max_batches: int = 4,
    ) -> None:
        self._dataplane = dataplane
        self._metrics = metrics
        self._max_in_flight = max_in_flight
        self._timeout_s = timeout_s
        self._max_batches = max_batches
        self._lanes: dict[VersionKey, _Lane] = {}
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
        lane = self._lanes.get(candidate.key)
        if lane is None:
            lane = self._lanes[candidate.key] = _Lane(candidate)
        lane.queue.append(_Mirrored(pair, primary, groups, outputs, time.monotonic() - since))
        if lane.running < self._max_batches:
            lane.running += 1
            task = asyncio.create_task(self._drain(lane))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Cancel the mirrors in flight (the gateway is stopping); no new ones start."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._lanes.clear()
        self._count = 0

    async def _drain(self, lane: _Lane) -> None:
        """Run what queued for the lane's candidate as one batch, then what queued meanwhile,
        until nothing is left."""
        try:
            while lane.queue:
                batch, lane.queue = lane.queue, []
                try:
                    await self._run(lane.candidate, batch)
                finally:
                    self._count -= len(batch)
        finally:
            lane.running -= 1
            key = lane.candidate.key
            if not lane.running and not lane.queue and self._lanes.get(key) is lane:
                del self._lanes[key]

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
        stacks = _stacks(fitting)
        try:
            started = time.monotonic()
            joined = [_joined(groups) for groups in stacks.values()]
            answered = await self._dataplane.infer(candidate, joined, timeout_s=self._timeout_s)
            took = time.monotonic() - started
        except MaasError as exc:
            if len(fitting) > 1 and isinstance(exc, InvalidInput):
                # The model refused the batch: find out whose instances it refuses.
                for item in fitting:
                    await self._run(candidate, [item])
                return
            log.debug("shadow %s@%s failed: %s", candidate.model, candidate.version, exc)
            self._failed(fitting)
            return
        except Exception as exc:  # never the client's concern: counted, told in one line
            log.warning(
                "shadow %s@%s failed: %s: %s",
                candidate.model,
                candidate.version,
                type(exc).__name__,
                exc,
            )
            self._failed(fitting)
            return
        one_pair = len({i.pair for i in fitting}) == 1
        one_group = all(len(i.groups) == 1 and len(i.groups[0][0]) for i in fitting)
        if len(answered) == 1 and one_pair and one_group:
            await self._compare_all(candidate, fitting, answered[0], took)  # the usual batch
            return
        pieces = _cut(stacks, answered)
        for item in fitting:
            answers = [pieces[_shapes(group)].pop(0) for group in item.groups]
            await self._compare(candidate, item, answers, took)

    def _failed(self, items: list[_Mirrored]) -> None:
        for item in items:
            self._metrics.failed(item.pair)

    async def _compare_all(
        self, candidate: VersionRecord, items: list[_Mirrored], answer: Group, took: float
    ) -> None:
        """Compare a batch of one-group requests of one pair with the candidate's stacked
        answer to them, in one pass; counted per request as `_compare` would."""
        ours, theirs = compared_outputs(items[0].primary, candidate)
        mine = _joined([[item.outputs[0][ours]] for item in items])[0]
        other = answer[theirs]
        if mine.shape != other.shape or not len(mine):
            self._failed(items)  # an answer of another shape: as `compare` says
            return
        if mine.nbytes < OFFLOAD_BYTES:
            same, diff = per_instance(mine, other)
        else:
            same, diff = await asyncio.to_thread(per_instance, mine, other)
        rows = np.fromiter((len(item.outputs[0][ours]) for item in items), np.int64, len(items))
        if len(rows) != len(mine):  # several instances in a request: its own figures
            starts = np.concatenate(([0], np.cumsum(rows)[:-1]))
            same = np.add.reduceat(same.astype(np.int64), starts)
            diff = np.maximum.reduceat(diff, starts)
        latency = np.fromiter((item.latency_s for item in items), np.float64, len(items))
        ratio = np.divide(took, latency, out=np.ones_like(latency), where=latency > 0)
        self._metrics.compared_many(
            items[0].pair, instances=rows, agreeing=same, max_abs_diff=diff, latency_ratio=ratio
        )

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


def _shapes(group: Group) -> Shapes:
    return tuple(a.shape[1:] for a in group)


def _stacks(items: list[_Mirrored]) -> dict[Shapes, list[Group]]:
    """The items' groups by their shapes, in order: each list is stacked into one call's group."""
    stacks: dict[Shapes, list[Group]] = {}
    for item in items:
        for group in item.groups:
            stacks.setdefault(_shapes(group), []).append(group)
    return stacks


def _joined(groups: list[Group]) -> Group:
    """Groups of one shape as one: each input's arrays stacked along the batch axis."""
    if len(groups) == 1:
        return groups[0]
    return [np.concatenate(columns) for columns in zip(*groups, strict=True)]


def _cut(stacks: dict[Shapes, list[Group]], answered: list[Group]) -> dict[Shapes, list[Group]]:
    """The answers to the stacked groups, cut back into one answer per group, by shape."""
    pieces: dict[Shapes, list[Group]] = {}
    for (key, parts), answer in zip(stacks.items(), answered, strict=True):
        cuts = [0, *itertools.accumulate(len(part[0]) for part in parts)]
        pieces[key] = [
            [out[start:end] for out in answer] for start, end in itertools.pairwise(cuts)
        ]
    return pieces
