"""`GET /metrics`: what a gateway counts itself, and what it gathers when the scrape comes.

Request counts, durations and phases are counted by the gateway process that answered, in
memory on the request path, and written every `FLUSH_S` (a scrape writes its own process's
first). `maas serve` runs several gateways; it gives them one `PROMETHEUS_MULTIPROC_DIR`, where
each writes its figures into a file of its own, and a scrape on any of them adds up all the
files (prometheus_client's multiprocess mode, as under gunicorn). Alone, a gateway writes them
into its own in-memory registry.

The workers' figures (queue wait, forward time, batch sizes, queue depth, padding waste) are
exposed once per worker, under a `worker` label. Under `maas serve` the workers write them into
the same directory (`maas.worker.exposition`), so the scrape that adds up the gateways' files
adds up theirs too: every gateway process shows the same values, and a restarted worker's
predecessor still counts, so these counters never go back. Without that directory they come
from the backend at scrape time (the workers' latest heartbeats, or the in-process backend's
own figures, `worker="inprocess"`).

Everything else is read at scrape time (`maas.observability.scraped`): worker health and
restarts from the pool, version statuses, alias targets and rollouts from the registry, and
the registry generation the gateway serves.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import (
    Metric,
)
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.multiprocess import MultiProcessCollector

from maas.auth.keys import FAILURE_REASONS
from maas.observability.scraped import Families, Scrape
from maas.observability.shadow_metrics import ShadowMetrics
from maas.rollout import VersionFigures
from maas.transport import telemetry
from maas.types import PHASES, VersionStatus

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MULTIPROCESS_DIR_ENV = telemetry.MULTIPROCESS_DIR_ENV
# prometheus_client chooses how it stores values when it is imported; so do we.
_MULTIPROCESS_DIR = os.environ.get(MULTIPROCESS_DIR_ENV) or None

# How often a gateway writes the phases it counted (and how late a scrape of another gateway
# process may see them): the workers' period.
FLUSH_S = 0.2
# Where a request's forward time is in its phases (a rollout's ratio guard compares those).
INFERENCE = PHASES.index("inference")
# A request whose ref resolves to nothing: junk names must not create series.
UNKNOWN_MODEL, UNKNOWN_VERSION = "_unknown", "_"
# The `protocol` label: KServe's v1 (TF Serving's REST), and the Open Inference Protocol.
PROTOCOL_V1, PROTOCOL_V2 = "v1", "v2"


class RequestMetrics:
    """The request counters of one gateway process; `observe` is on the hot path."""

    def __init__(self) -> None:
        self._own_registry = None if _MULTIPROCESS_DIR else CollectorRegistry()
        self._requests = Counter(
            "maas_requests",
            "Inference requests answered, by resolved version, protocol and HTTP status.",
            ["model", "version", "protocol", "code"],
            registry=self._own_registry,
        )
        self._duration = Histogram(
            "maas_request_duration_seconds",
            "Time from a request's arrival at the route to its answer.",
            ["model", "version"],
            buckets=telemetry.SECONDS_BOUNDS,
            registry=self._own_registry,
        )
        self._phases = Histogram(
            "maas_request_phase_seconds",
            "Where an answered request's time went: decode (gateway: admission, body, "
            "decode), transfer (gateway to worker), queue (waiting for a batch), inference "
            "(the forward), reply (worker to gateway, encode, send). Per request they add up "
            "to its maas_request_duration_seconds.",
            ["model", "version", "phase"],
            buckets=telemetry.SECONDS_BOUNDS,
            registry=self._own_registry,
        )
        self._auth_failures = Counter(
            "maas_auth_failures",
            "Requests refused for their key: missing, malformed, invalid (unknown or revoked), "
            "expired, or forbidden (scope or model).",
            ["reason"],
            registry=self._own_registry,
        )
        for reason in FAILURE_REASONS:  # every series from the start, at 0
            self._auth_failures.labels(reason)
        # In multiprocess mode the workers' families come from the files too; these describe
        # them (the gateway writes nothing to them), so they are exposed before any worker wrote.
        self._worker_metrics = telemetry.declare_worker_metrics() if _MULTIPROCESS_DIR else None
        # Label lookups cost more than the increments; each series is looked up once.
        self._counters: dict[tuple[str, str, str, int], Any] = {}
        # An observation in the multiprocess files costs ~1.6 us (a lock and a file write per
        # value); six a request (duration, five phases) would be a tenth of a gateway's whole
        # request. So requests are counted in memory and written every FLUSH_S, as the workers
        # do (`flush`): the request path adds to lists and a dict.
        self._series: dict[tuple[str, str], _VersionSeries] = {}
        self._pending: dict[tuple[str, str, str, int], int] = {}
        # Per version: [requests, 5xx, 4xx] flushed so far (the console's traffic samples).
        self._answered: dict[tuple[str, str], list[int]] = {}
        self._flush_armed = False
        # What the mirrors to aliases' shadows showed (maas.serving.shadow), flushed with these.
        self.shadow = ShadowMetrics(self._own_registry, self._wake)

    def observe(
        self,
        model: str,
        version: str,
        protocol: str,
        code: int,
        seconds: float,
        phases: tuple[float, ...] | None = None,
        reached_model: bool = False,
    ) -> None:
        """One request answered; `phases` (seconds per `PHASES`) when a worker answered it;
        `reached_model` when it failed or succeeded after it was handed to the data plane."""
        key = (model, version, protocol, code)
        pending = self._pending
        pending[key] = pending.get(key, 0) + 1
        entry = self._series.get((model, version)) or self._version(model, version)
        entry.observe(seconds, phases)
        tally = entry.tally
        if tally is not None:  # a version in a running rollout: an error is a 5xx, or a
            # refusal once the request reached the model (not the client's hang-up)
            error = code >= 500 or (reached_model and 400 <= code < 499)
            tally.observe(seconds, error, None if phases is None else phases[INFERENCE])
        if not self._flush_armed:
            self._arm_flush()

    def tally(self, model: str, version: str) -> VersionFigures:
        """The version's rollout figures, counted from now on (`untally` stops them)."""
        entry = self._version(model, version)
        if entry.tally is None:
            entry.tally = VersionFigures()
        return entry.tally

    def untally(self, model: str, version: str) -> None:
        entry = self._series.get((model, version))
        if entry is not None:
            entry.tally = None

    def auth_failure(self, reason: str) -> None:
        self._auth_failures.labels(reason).inc()

    def _counter(self, model: str, version: str, protocol: str, code: int) -> Any:
        key = (model, version, protocol, code)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = self._requests.labels(model, version, protocol, code)
        return counter

    def _version(self, model: str, version: str) -> _VersionSeries:
        entry = self._series.get((model, version))
        if entry is None:
            labelled = (
                (self._duration, (model, version)),
                *((self._phases, (model, version, phase)) for phase in PHASES),
            )
            entry = self._series[(model, version)] = _VersionSeries(labelled)
        return entry

    def _wake(self) -> None:
        if not self._flush_armed:
            self._arm_flush()

    def _arm_flush(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # observed outside an event loop: write at once
            self.flush()
            return
        self._flush_armed = True
        loop.call_later(FLUSH_S, self.flush)

    def flush(self) -> None:
        """Write what was counted since the last flush into the exposed series (the
        multiprocess files under `maas serve`, where every gateway's scrape reads them). On the
        event loop, where the request path counts."""
        self._flush_armed = False
        pending, self._pending = self._pending, {}
        _count_answered(self._answered, pending)
        for key, count in pending.items():
            self._counter(*key).inc(count)
        for entry in self._series.values():
            entry.write()
        self.shadow.write()

    def answered(self) -> Iterator[tuple[str, str, list[int], list[int]]]:
        """(model, version, [requests, 5xx, 4xx], duration counts per SECONDS_BOUNDS bucket)
        of every version this process answered, in all since it started (what is counted but
        not yet flushed too): copies, for the console's traffic samples."""
        totals = {key: list(counts) for key, counts in self._answered.items()}
        _count_answered(totals, self._pending)
        for (model, version), counts in totals.items():
            entry = self._series.get((model, version))
            durations = list(entry.duration.counts) if entry is not None else []
            yield model, version, counts, durations

    def prepare(self, scrape: Scrape) -> None:
        """Before a scrape, on the event loop: every ready version's series exist (at 0 until
        its first request) and this process's figures are written up to now."""
        for name, entry in scrape.models.items():
            for number, version in entry.versions.items():
                if version.status is VersionStatus.READY:
                    self._counter(name, str(number), PROTOCOL_V1, 200)
                    self._version(name, str(number)).expose()
            for alias, shadow in entry.shadows.items():  # each shadowed route's pair, at 0
                for route in entry.aliases.get(alias, ()):
                    if route.version != shadow.version:
                        self.shadow.expose((name, str(route.version), str(shadow.version)))
        self.flush()

    def render(self, scrape: Scrape) -> bytes:
        """The exposition text (after `prepare`); reads files in multiprocess mode, so call it
        off the loop."""
        counted: Any = self._own_registry
        own: tuple[MetricWrapperBase, ...] = (
            self._requests,
            self._duration,
            self._phases,
            self._auth_failures,
            *self.shadow.families,
        )
        if counted is None:
            counted = CollectorRegistry()
            MultiProcessCollector(counted, path=_MULTIPROCESS_DIR)  # type: ignore[no-untyped-call]
            own += tuple(self._worker_metrics or ())
        registry = CollectorRegistry()
        registry.register(_Counted(counted, own))
        registry.register(Families(scrape, from_backend=self._worker_metrics is None))
        return generate_latest(registry)


def _count_answered(
    answered: dict[tuple[str, str], list[int]], pending: dict[tuple[str, str, str, int], int]
) -> None:
    """Add `pending` (counts by model, version, protocol and status) to `answered`'s
    [requests, 5xx, 4xx] per version."""
    for (model, version, _, code), count in pending.items():
        totals = answered.get((model, version))
        if totals is None:
            totals = answered[(model, version)] = [0, 0, 0]
        totals[0] += count
        if code >= 500:
            totals[1] += count
        elif code >= 400:
            totals[2] += count


class _VersionSeries:
    """One version's request histograms, the duration and the five phases: counted in memory
    on the request path, written to their labelled prometheus series by `write`. A series is
    created when something is first written to it, or by `expose` (a ready version's exist
    from the start): requests that resolve to nothing get no phase series."""

    __slots__ = (
        "counted",
        "duration",
        "labelled",
        "phases",
        "series",
        "tally",
        "totals",
        "written",
    )

    def __init__(self, labelled: tuple[tuple[Any, tuple[str, ...]], ...]) -> None:
        self.labelled = labelled  # (family, label values) of each histogram
        self.series: list[Any] = [None] * len(labelled)
        bounds = telemetry.SECONDS_BOUNDS
        self.counted = [telemetry.Histogram.empty(bounds) for _ in labelled]
        self.duration, self.phases = self.counted[0], self.counted[1:]
        self.written = [[0] * (len(bounds) + 1) for _ in labelled]
        self.totals = [0.0] * len(labelled)
        # Counted while a running rollout has this version (`RequestMetrics.tally`).
        self.tally: VersionFigures | None = None

    def observe(self, seconds: float, phases: tuple[float, ...] | None) -> None:
        self.duration.observe(seconds)
        if phases is not None:
            for histogram, value in zip(self.phases, phases, strict=True):
                histogram.observe(value)

    def expose(self) -> None:
        for index in range(len(self.labelled)):
            self._series(index)

    def write(self) -> None:
        for index, histogram in enumerate(self.counted):
            if histogram.counts != self.written[index]:
                self.totals[index] = telemetry.write_increments(
                    self._series(index), histogram, self.written[index], self.totals[index]
                )

    def _series(self, index: int) -> Any:
        series = self.series[index]
        if series is None:
            family, values = self.labelled[index]
            series = self.series[index] = family.labels(*values)
        return series


class _Counted:
    """The families counted in this process or in the multiprocess files, and those nothing
    was counted in yet (the multiprocess collector only knows families with series) as empty
    ones."""

    def __init__(self, source: CollectorRegistry, own: tuple[MetricWrapperBase, ...]) -> None:
        self._source = source
        self._own = own

    def collect(self) -> Iterator[Metric]:
        seen = set()
        for family in self._source.collect():
            seen.add(family.name)
            yield family
        for metric in self._own:
            for family in metric.describe():
                if family.name not in seen:
                    yield family
