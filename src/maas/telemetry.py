"""What a backend measures per version and per worker, in a form that travels.

Workers keep these counters where the batches run and send them with every heartbeat; a
gateway merges what its workers sent and `maas.metrics` renders it for Prometheus. Histograms
have fixed bounds, so merging the same metric from several workers is adding counts. Counters
start again at zero when a worker restarts, as Prometheus counters do after a process restart.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import msgspec

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

    @property
    def count(self) -> int:
        return sum(self.counts)

    def add(self, other: Histogram) -> None:
        """Add `other`'s observations (same bounds) to these."""
        if other.bounds != self.bounds:
            return  # a worker of another release: leave its figures out rather than mix them
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.total += other.total


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


@dataclass(slots=True)
class BackendTelemetry:
    """A backend's figures at one moment: its workers, and its versions merged over them."""

    workers: list[WorkerHealth] = field(default_factory=list)
    versions: dict[str, VersionTelemetry] = field(default_factory=dict)

    def merge(self, key: str, telemetry: VersionTelemetry) -> None:
        merged = self.versions.get(key)
        if merged is None:
            merged = self.versions[key] = VersionTelemetry()
        merged.add(telemetry)
