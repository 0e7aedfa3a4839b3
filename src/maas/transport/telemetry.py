"""What a backend measures per version and per worker, in a form that travels.

Workers keep these counters in memory where the batches run (an observation is a list index
and an add) and send them with every heartbeat: `GET /admin/...` shows them, and a gateway
without a multiprocess directory renders them for Prometheus, one series per worker. Under
`maas serve`, workers also write what changed into prometheus_client's multiprocess files every
heartbeat period (`maas.worker.exposition`); gateways there expose those instead. Histograms
have fixed bounds, so merging the same metric from several workers is adding counts. These
in-memory counters start again at zero when a worker restarts; the files do not.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import msgspec
import numpy as np
from prometheus_client import Gauge
from prometheus_client import Histogram as PromHistogram

# Seconds: sub-millisecond steps matter on the CPU, seconds on a slow model or a long queue.
SECONDS_BOUNDS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
BATCH_SIZE_BOUNDS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

# Where `maas serve` has its children keep prometheus_client's multiprocess files.
MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


class Family(NamedTuple):
    name: str
    help: str


# The families the workers measure, one series per (model, version, worker).
WORKER_LABELS = ("model", "version", "worker")
QUEUE_WAIT = Family(
    "maas_queue_wait_seconds", "Time a request waited in its version's batch queue."
)
INFERENCE = Family("maas_inference_duration_seconds", "Time one batch's forward pass took.")
BATCH_SIZE = Family("maas_batch_size", "Instances per forward pass.")
QUEUE_DEPTH = Family("maas_queue_depth", "Instances waiting for a forward pass.")
PADDING_WASTE = Family(
    "maas_padding_waste_ratio", "Share of the elements fed to the model that were padding."
)


class WorkerMetrics(NamedTuple):
    queue_wait: PromHistogram
    inference: PromHistogram
    batch_size: PromHistogram
    queue_depth: Gauge
    padding_waste: Gauge


def declare_worker_metrics() -> WorkerMetrics:
    """The worker families as prometheus_client metrics in no registry, for the multiprocess
    files: workers write them, gateways describe them (a metric with labels writes nothing to
    the files until one of its series is used). The gauges keep the most recent value written
    under each label set, so a restarted worker's value replaces its predecessor's."""

    def histogram(family: Family, bounds: tuple[float, ...]) -> PromHistogram:
        return PromHistogram(family.name, family.help, WORKER_LABELS, buckets=bounds, registry=None)

    def gauge(family: Family) -> Gauge:
        return Gauge(
            family.name, family.help, WORKER_LABELS, multiprocess_mode="mostrecent", registry=None
        )

    return WorkerMetrics(
        histogram(QUEUE_WAIT, SECONDS_BOUNDS),
        histogram(INFERENCE, SECONDS_BOUNDS),
        histogram(BATCH_SIZE, BATCH_SIZE_BOUNDS),
        gauge(QUEUE_DEPTH),
        gauge(PADDING_WASTE),
    )


class Histogram(msgspec.Struct, array_like=True):
    """Counts per bucket (not cumulative; the last bucket is +Inf) and the sum observed."""

    bounds: tuple[float, ...]
    counts: list[int]
    total: float = 0.0

    @classmethod
    def empty(cls, bounds: tuple[float, ...]) -> Histogram:
        return cls(bounds, [0] * (len(bounds) + 1))

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def observe_many(self, values: Any) -> None:
        """Each number of the numpy array `values`, as `observe` would, in two numpy passes."""
        if not len(values):
            return
        where = np.searchsorted(np.asarray(self.bounds), values, side="left")
        added = np.bincount(where, minlength=len(self.counts))
        self.counts = [a + int(b) for a, b in zip(self.counts, added, strict=True)]
        self.total += float(values.sum())

    @property
    def count(self) -> int:
        return sum(self.counts)

    def add(self, other: Histogram) -> None:
        """Add `other`'s observations (same bounds) to these."""
        if other.bounds != self.bounds:
            return  # a worker of another release: leave its figures out rather than mix them
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.total += other.total


def write_increments(series: Any, hist: Histogram, written: list[int], total: float) -> float:
    """Add to `series` (a labelled prometheus_client histogram) what `hist` observed beyond
    `written` (updated in place); returns the sum now written. prometheus_client's `observe`
    takes one value; the per-bucket values it adds 1 to take an increment of any size, which
    keeps a flush at one write per bucket that moved, however many observations moved it."""
    counts = hist.counts
    if counts == written:
        return total
    buckets = series._buckets
    for index, (now, before) in enumerate(zip(counts, written, strict=True)):
        if now > before:
            buckets[index].inc(now - before)
            written[index] = now
    series._sum.inc(hist.total - total)
    return hist.total


class VersionTelemetry(msgspec.Struct):
    """One version on one worker (or merged over workers)."""

    queue_wait: Histogram = msgspec.field(default_factory=lambda: Histogram.empty(SECONDS_BOUNDS))
    inference: Histogram = msgspec.field(default_factory=lambda: Histogram.empty(SECONDS_BOUNDS))
    batch_size: Histogram = msgspec.field(
        default_factory=lambda: Histogram.empty(BATCH_SIZE_BOUNDS)
    )
    queue_depth: int = 0
    padding_waste: float = 0.0

    def summary(self) -> dict[str, float]:
        """The figures `GET /admin/models/{m}/versions/{v}` shows under `stats`."""
        batches = self.inference.count
        return {
            "queue_depth": self.queue_depth,
            "batches": batches,
            "instances": round(self.batch_size.total),
            "mean_batch_size": self.batch_size.total / batches if batches else 0.0,
            "mean_inference_ms": 1000 * self.inference.total / batches if batches else 0.0,
            "mean_queue_wait_ms": (
                1000 * self.queue_wait.total / self.queue_wait.count
                if self.queue_wait.count
                else 0.0
            ),
            "padding_waste": self.padding_waste,
        }

    def add(self, other: VersionTelemetry) -> None:
        self.queue_wait.add(other.queue_wait)
        self.inference.add(other.inference)
        self.batch_size.add(other.batch_size)
        self.queue_depth += other.queue_depth
        self.padding_waste = max(self.padding_waste, other.padding_waste)


@dataclass(frozen=True, slots=True)
class WorkerHealth:
    name: str
    up: bool
    restarts: int


# The worker of figures whose worker nobody named (a backend that lists several and merges).
UNKNOWN_WORKER = "_"


@dataclass(slots=True)
class BackendTelemetry:
    """A backend's figures at one moment: its workers, and its versions, per worker and merged
    over them (the sum is what `GET /admin/models/{m}/versions/{v}` shows)."""

    workers: list[WorkerHealth] = field(default_factory=list)
    versions: dict[str, VersionTelemetry] = field(default_factory=dict)
    # (version key, worker) -> that worker's figures.
    by_worker: dict[tuple[str, str], VersionTelemetry] = field(default_factory=dict)

    def merge(self, key: str, telemetry: VersionTelemetry, worker: str | None = None) -> None:
        """Add one worker's figures for `key`; `worker` defaults to the worker listed last (a
        backend lists a worker, then merges what that worker sent)."""
        merged = self.versions.get(key)
        if merged is None:
            merged = self.versions[key] = VersionTelemetry()
        merged.add(telemetry)
        if worker is None:
            worker = self.workers[-1].name if self.workers else UNKNOWN_WORKER
        own = self.by_worker.get((key, worker))
        if own is None:
            own = self.by_worker[(key, worker)] = VersionTelemetry()
        own.add(telemetry)

    def series(self) -> list[tuple[str, str, VersionTelemetry]]:
        """(version key, worker, figures), sorted: per worker where the figures were merged in;
        figures given whole (one backend in one process) belong to its only worker."""
        if self.by_worker:
            return [(key, worker, t) for (key, worker), t in sorted(self.by_worker.items())]
        worker = self.workers[0].name if len(self.workers) == 1 else UNKNOWN_WORKER
        return [(key, worker, t) for key, t in sorted(self.versions.items())]
