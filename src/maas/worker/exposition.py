"""A worker's figures in prometheus_client's multiprocess files, so that each is exposed once.

Under `maas serve` every child inherits one `PROMETHEUS_MULTIPROC_DIR`. A worker there writes,
every `FLUSH_S` (a timer on its loop, never on the request path), what its in-memory telemetry
gained since the last write: the histograms' bucket counts and sums as increments, the queue
depth and padding waste as gauges whose most recent value wins. A scrape on any gateway of that
`maas serve` reads the same files, so every gateway process exposes the same figures, each once
under its worker's `worker` label.

The files of a dead worker stay in the directory and keep counting: its successor (a new pid, so
a new file, under the same `worker` label) adds to them, and no counter goes back, SIGKILL
included. What a killed worker observed after its last write was never exposed, so nothing that
was seen disappears. A successor's queue starts empty: it sets its predecessor's queue-depth
series to 0 when it starts.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client.multiprocess import MultiProcessCollector

from maas.transport import telemetry

log = logging.getLogger(__name__)

FLUSH_S = 0.2  # about the heartbeat period


def multiprocess_dir() -> str | None:
    return os.environ.get(telemetry.MULTIPROCESS_DIR_ENV) or None


# One version's figures as the worker holds them: key, telemetry, queue depth, padding waste.
Figures = tuple[str, telemetry.VersionTelemetry, int, float]


@dataclass(slots=True, eq=False)
class _Written:
    """What the files hold of one version: the in-memory figures the increments were taken
    from (a reloaded version has new ones, from zero), and their values at the last write."""

    source: telemetry.VersionTelemetry
    histograms: tuple[Any, Any, Any]  # the labelled series: queue wait, inference, batch size
    depth: Any
    waste: Any
    counts: list[list[int]]
    totals: list[float]
    last_depth: float | None = None
    last_waste: float | None = None


class Exposition:
    """Writes a worker's figures into the multiprocess files; `flush` is called on a timer."""

    def __init__(self, worker: str, path: str) -> None:
        self.worker = worker
        self.path = path
        self._metrics = telemetry.declare_worker_metrics()
        self._written: dict[str, _Written] = {}

    def forget_predecessor(self) -> None:
        """Set the queue-depth series a predecessor under this worker name left to 0: its queue
        died with it (its counters stay: they are what it did)."""
        for metric in MultiProcessCollector(None, path=self.path).collect():  # type: ignore[no-untyped-call]
            if metric.name != telemetry.QUEUE_DEPTH.name:
                continue
            for sample in metric.samples:
                labels = sample.labels
                if labels.get("worker") == self.worker and sample.value:
                    series = self._metrics.queue_depth.labels(
                        labels.get("model", ""), labels.get("version", ""), self.worker
                    )
                    series.set(0)

    def flush(self, figures: Iterable[Figures]) -> None:
        """Write what changed since the last flush; a version no longer listed ends at depth 0."""
        listed = set()
        for key, source, depth, waste in figures:
            listed.add(key)
            written = self._written.get(key)
            if written is None or written.source is not source:
                written = self._written[key] = self._start(key, source)
            hists = (source.queue_wait, source.inference, source.batch_size)
            for index, (hist, series) in enumerate(zip(hists, written.histograms, strict=True)):
                written.totals[index] = telemetry.write_increments(
                    series, hist, written.counts[index], written.totals[index]
                )
            if depth != written.last_depth:
                written.depth.set(depth)
                written.last_depth = depth
            if waste != written.last_waste:
                written.waste.set(waste)
                written.last_waste = waste
        for key in [k for k in self._written if k not in listed]:
            self._written.pop(key).depth.set(0)

    def _start(self, key: str, source: telemetry.VersionTelemetry) -> _Written:
        model, _, version = key.rpartition("@")
        labels = (model, version, self.worker)
        m = self._metrics
        return _Written(
            source=source,
            # `labels` creates each series (at 0) in the files: it is exposed from the start.
            histograms=(
                m.queue_wait.labels(*labels),
                m.inference.labels(*labels),
                m.batch_size.labels(*labels),
            ),
            depth=m.queue_depth.labels(*labels),
            waste=m.padding_waste.labels(*labels),
            counts=[
                [0] * len(h.counts)
                for h in (source.queue_wait, source.inference, source.batch_size)
            ],
            totals=[0.0, 0.0, 0.0],
        )
