"""What one gateway process answered per version, written to the registry every report period
as traffic samples, with what it saw of the workers then; the console's charts add up every
gateway's samples (`maas.observability.traffic_series`), on any host, with no Prometheus.

A period ends on a multiple of `report_s` of the wall clock (every gateway's periods line up),
and its sample, labelled with the period's start (a bin of the charts then holds the samples of
the periods within it), holds, per model and version, what the period added: requests, 5xx, 4xx and
the durations per SECONDS_BOUNDS bucket (the figures /metrics exposes), plus the workers'
queue depth then and their batch counters so far (every gateway sees every worker, so those
are not added up over gateways but taken once). Nothing is read on the request path: the
sample is the difference between two readings of `RequestMetrics.answered`. A period in which
nothing moved writes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from maas.dispatch.backend import InferenceBackend
from maas.errors import RegistryUnavailable
from maas.observability.metrics import UNKNOWN_MODEL, RequestMetrics
from maas.registry.service import Registry

log = logging.getLogger(__name__)

# How often a reporter also drops samples older than it keeps (seconds).
_DROP_EVERY_S = 30.0

Figures = dict[str, dict[str, Any]]  # model -> version -> figures


class TrafficReporter:
    def __init__(
        self,
        registry: Registry,
        metrics: RequestMetrics,
        backend: InferenceBackend,
        *,
        reporter: str,
        report_s: float,
        keep_s: float,
    ) -> None:
        self._registry = registry
        self._metrics = metrics
        self._backend = backend
        self._reporter = reporter
        self._report_s = report_s
        self._keep_s = keep_s
        self._read: dict[tuple[str, str], tuple[list[int], list[int]]] = {}  # last reading
        self._workers: dict[tuple[str, str], dict[str, list[float]]] = {}  # as last sampled
        self._dropped_at = 0.0
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> Figures:
        """What was answered since the last sample, and the workers' figures where they moved
        (or a queue is not empty); a version where nothing moved is left out."""
        figures: Figures = {}
        for model, version, counts, durations in self._metrics.answered():
            if model == UNKNOWN_MODEL:
                continue
            before = self._read.get((model, version))
            self._read[(model, version)] = (counts, durations)
            added = _minus(counts, before[0] if before else [])
            if not added[0]:
                continue
            moved = _minus(durations, before[1] if before else [])
            buckets = {str(i): n for i, n in enumerate(moved) if n}
            entry = {"requests": added[0], "errors": added[1], "refused": added[2]}
            figures.setdefault(model, {})[version] = {**entry, "buckets": buckets}
        self._sample_workers(figures)
        return figures

    def _sample_workers(self, figures: Figures) -> None:
        depth: dict[tuple[str, str], int] = {}
        batches: dict[tuple[str, str], dict[str, list[float]]] = {}
        for key, worker, telemetry in self._backend.telemetry().series():
            model, _, version = key.rpartition("@")
            at = (model, version)
            depth[at] = depth.get(at, 0) + telemetry.queue_depth
            batch = telemetry.batch_size
            batches.setdefault(at, {})[worker] = [batch.count, batch.total]
        for at, by_worker in batches.items():
            if by_worker == self._workers.get(at) and not depth[at] and at[0] not in figures:
                continue
            entry = figures.setdefault(at[0], {}).setdefault(at[1], {})
            entry["queue_depth"] = depth[at]
            entry["batches"] = by_worker
        self._workers = batches

    async def report(self, at: float) -> None:
        figures = self.sample()
        if not figures:
            return
        drop = None
        if at - self._dropped_at >= _DROP_EVERY_S:
            drop, self._dropped_at = at - self._keep_s, at
        await self._registry.report_traffic(
            reporter=self._reporter, at=at, figures=figures, drop_before=drop
        )

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="traffic samples")

    async def _run(self) -> None:
        self.sample()  # what was counted before the first period is not part of it
        while True:
            now = time.time()
            at = (now // self._report_s + 1) * self._report_s
            await asyncio.sleep(at - now)
            try:  # the sample is labelled with its period's start
                await self.report(round(at - self._report_s, 6))
            except RegistryUnavailable as exc:
                log.debug("traffic not reported: %s", exc.message)
            except Exception:
                log.exception("reporting traffic failed")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def _minus(now: list[int], before: list[int]) -> list[int]:
    if not before:
        return list(now)
    return [a - b for a, b in zip(now, before, strict=False)] + now[len(before) :]
