"""Every gateway's traffic samples of a model (`maas.observability.traffic`) as one series per
version: per time bin, requests/s, the shares of 5xx and 4xx, p50 and p99 (from the duration
buckets, as Prometheus's histogram_quantile reads /metrics), the mean batch size and the
deepest queue the workers showed. Pure: what the admin route `GET /admin/models/{name}/traffic`
answers, from the rows the registry gave it.

Requests and durations are added up over gateways. The workers' figures are not (every gateway
reports the same workers): each bin takes each worker's latest batch counters, and the mean
batch size of a bin is what those counters added since the bin before (or since their first
reading in the bin), over every worker.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from maas.registry.traffic import Sample
from maas.rollout import quantile_ms
from maas.transport.telemetry import SECONDS_BOUNDS


@dataclass(frozen=True, slots=True)
class Point:
    at: float  # the bin's start, seconds since the epoch
    requests_per_s: float
    error_rate: float | None  # 5xx over requests; None without requests
    refused_rate: float | None  # 4xx over requests
    p50_ms: float | None
    p99_ms: float | None
    mean_batch_size: float | None  # None without a batch in the bin
    queue_depth: int


@dataclass(slots=True)
class _Bins:
    count: int
    requests: list[int] = field(init=False)
    errors: list[int] = field(init=False)
    refused: list[int] = field(init=False)
    buckets: list[list[int]] = field(init=False)
    depth: list[int] = field(init=False)
    # worker -> per bin its first and latest [batches, instances] (None where none said)
    batches: dict[str, list[tuple[list[float], list[float]] | None]] = field(default_factory=dict)
    before: dict[str, list[float]] = field(default_factory=dict)  # before the first bin

    def __post_init__(self) -> None:
        n = self.count
        self.requests, self.errors, self.refused = [0] * n, [0] * n, [0] * n
        self.buckets = [[0] * (len(SECONDS_BOUNDS) + 1) for _ in range(n)]
        self.depth = [0] * n


def series(
    samples: list[Sample], *, start: float, end: float, step_s: float
) -> tuple[dict[str, list[Point]], int]:
    """Per version (sorted by number), one point per `step_s` bin from `start` to `end`; and
    how many gateways reported. Samples before `start` count only as the workers' counters
    the first bin's batches are measured from."""
    count = max(0, math.floor((end - start) / step_s + 1e-9))
    versions: dict[str, _Bins] = {}
    reporters = set()
    for sample in samples:
        index = math.floor((sample.at - start) / step_s + 1e-9)
        if index >= count:
            continue
        if index >= 0:
            reporters.add(sample.reporter)
        for version, figures in sample.figures.items():
            bins = versions.get(version) or versions.setdefault(version, _Bins(count))
            _add(bins, index, figures)
    out = {
        version: _points(versions[version], start, step_s)
        for version in sorted(versions, key=lambda v: (len(v), v))
    }
    return out, len(reporters)


def _add(bins: _Bins, index: int, figures: dict[str, object]) -> None:
    workers = figures.get("batches")
    if isinstance(workers, dict):
        for worker, counters in workers.items():
            if index < 0:
                _latest(bins.before, worker, counters)
                continue
            per_bin = bins.batches.setdefault(worker, [None] * bins.count)
            seen = per_bin[index]
            if seen is None:
                per_bin[index] = (counters, counters)
            else:  # the bin's first and latest counters
                first, latest = seen
                per_bin[index] = (
                    counters if counters[0] < first[0] else first,
                    counters if counters[0] >= latest[0] else latest,
                )
    if index < 0:
        return
    requests = figures.get("requests")
    if isinstance(requests, int):
        bins.requests[index] += requests
        bins.errors[index] += int(figures.get("errors", 0))  # type: ignore[call-overload]
        bins.refused[index] += int(figures.get("refused", 0))  # type: ignore[call-overload]
    buckets = figures.get("buckets")
    if isinstance(buckets, dict):
        row = bins.buckets[index]
        for where, n in buckets.items():
            if where.isdigit() and int(where) < len(row):
                row[int(where)] += int(n)
    depth = figures.get("queue_depth")
    if isinstance(depth, int):
        bins.depth[index] = max(bins.depth[index], depth)


def _latest(into: dict[str, list[float]], worker: str, counters: list[float]) -> None:
    known = into.get(worker)
    if known is None or counters[0] >= known[0]:
        into[worker] = counters


def _points(bins: _Bins, start: float, step_s: float) -> list[Point]:
    last = dict(bins.before)  # each worker's counters as of the end of the bin before
    points = []
    for i in range(bins.count):
        batches = instances = 0.0
        for worker, per_bin in bins.batches.items():
            seen = per_bin[i]
            if seen is None:
                continue
            first, now = seen
            before = last.get(worker, first)  # first seen in this bin: from there
            if now[0] < before[0]:  # a restarted worker: from its first counters here
                before = first if first[0] <= now[0] else now
            batches += now[0] - before[0]
            instances += now[1] - before[1]
            last[worker] = now
        n = bins.requests[i]
        points.append(
            Point(
                at=start + i * step_s,
                requests_per_s=n / step_s,
                error_rate=bins.errors[i] / n if n else None,
                refused_rate=bins.refused[i] / n if n else None,
                p50_ms=quantile_ms(bins.buckets[i], 0.5, SECONDS_BOUNDS),
                p99_ms=quantile_ms(bins.buckets[i], 0.99, SECONDS_BOUNDS),
                mean_batch_size=instances / batches if batches > 0 else None,
                queue_depth=bins.depth[i],
            )
        )
    return points
