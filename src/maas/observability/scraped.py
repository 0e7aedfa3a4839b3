"""What `GET /metrics` reads when the scrape comes, as metric families: version statuses, alias
targets and rollouts from the routing table, the generation served, and worker health and
figures from the backend (`maas.observability.metrics` has what a gateway counts itself)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from maas.control.routing import ModelEntry
from maas.registry.records import RolloutRecord
from maas.rollout import PHASE_CODES, RolloutState
from maas.transport import telemetry
from maas.types import VersionStatus


@dataclass(frozen=True, slots=True, eq=False)
class Scrape:
    """What the registry and the backend said when a scrape came, as metric families."""

    models: dict[str, ModelEntry]
    backend: telemetry.BackendTelemetry
    generation: int = 0  # the registry generation this gateway serves
    # Each alias's newest rollout (the routing table's `rollouts`).
    rollouts: dict[tuple[str, str], RolloutRecord] = field(default_factory=dict)

    def collect(self) -> Iterator[Metric]:
        return self.families(from_backend=True)

    def families(self, *, from_backend: bool) -> Iterator[Metric]:
        """Every family read at scrape time; the workers' figures too when `from_backend`
        (else they are in the multiprocess files)."""
        yield from self._registry_families()
        yield from self._rollout_families()
        yield from self._worker_families()
        if from_backend:
            yield from self._version_families()

    def _registry_families(self) -> Iterator[Metric]:
        status = GaugeMetricFamily(
            "maas_model_version_status",
            "1 for the status each version is in, 0 for the others.",
            labels=["model", "version", "status"],
        )
        target = GaugeMetricFamily(
            "maas_alias_target",
            "Share of an alias's traffic each version gets (1 when it points at one version).",
            labels=["model", "alias", "version"],
        )
        for name, entry in sorted(self.models.items()):
            for number, version in sorted(entry.versions.items()):
                for state in VersionStatus:
                    status.add_metric(
                        [name, str(number), state.value], 1.0 if version.status is state else 0.0
                    )
            for alias, routes in sorted(entry.aliases.items()):
                total = sum(route.weight for route in routes) or 1
                for route in routes:
                    target.add_metric([name, alias, str(route.version)], route.weight / total)
        yield status
        yield target
        generation = GaugeMetricFamily(
            "maas_registry_generation", "The registry generation this gateway serves."
        )
        generation.add_metric([], self.generation)
        yield generation

    def _rollout_families(self) -> Iterator[Metric]:
        phase = GaugeMetricFamily(
            "maas_rollout_phase",
            "Where the alias's newest rollout stands: 1 shadow phase, 2 weight steps, 3 paused, "
            "4 succeeded, 5 failed (rolled back), 6 aborted.",
            labels=["model", "alias"],
        )
        weight = GaugeMetricFamily(
            "maas_rollout_weight",
            "Percent of the alias's traffic each version of a running or paused rollout gets "
            "(the candidate's is 0 in the shadow phase).",
            labels=["model", "alias", "version"],
        )
        for (model, alias), rollout in sorted(self.rollouts.items()):
            phase.add_metric([model, alias], PHASE_CODES[rollout.phase])
            if RolloutState(rollout.state).active:
                weight.add_metric([model, alias, str(rollout.stable)], 100 - rollout.weight)
                weight.add_metric([model, alias, str(rollout.candidate)], rollout.weight)
        yield phase
        yield weight

    def _worker_families(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("maas_worker_up", "1 while a worker answers.", labels=["worker"])
        restarts = CounterMetricFamily(
            "maas_worker_restarts", "Times a worker process was restarted.", labels=["worker"]
        )
        for worker in self.backend.workers:
            up.add_metric([worker.name], 1.0 if worker.up else 0.0)
            restarts.add_metric([worker.name], worker.restarts)
        yield up
        yield restarts

    def _version_families(self) -> Iterator[Metric]:
        labels = list(telemetry.WORKER_LABELS)
        queue_wait, inference, batch_size = (
            HistogramMetricFamily(family.name, family.help, labels=labels)
            for family in (telemetry.QUEUE_WAIT, telemetry.INFERENCE, telemetry.BATCH_SIZE)
        )
        depth, waste = (
            GaugeMetricFamily(family.name, family.help, labels=labels)
            for family in (telemetry.QUEUE_DEPTH, telemetry.PADDING_WASTE)
        )
        for key, worker, figures in self.backend.series():
            model, _, version = key.rpartition("@")
            series = [model, version, worker]
            for family, histogram in (
                (queue_wait, figures.queue_wait),
                (inference, figures.inference),
                (batch_size, figures.batch_size),
            ):
                family.add_metric(series, _buckets(histogram), histogram.total)
            depth.add_metric(series, figures.queue_depth)
            waste.add_metric(series, figures.padding_waste)
        yield from (queue_wait, inference, batch_size, depth, waste)


def _buckets(histogram: telemetry.Histogram) -> list[tuple[str, float]]:
    out, running = [], 0
    for bound, count in zip(histogram.bounds, histogram.counts, strict=False):
        running += count
        out.append((floatToGoString(bound), float(running)))  # type: ignore[no-untyped-call]
    out.append(("+Inf", float(histogram.count)))
    return out


class Families:
    def __init__(self, scrape: Scrape, *, from_backend: bool) -> None:
        self._scrape = scrape
        self._from_backend = from_backend

    def collect(self) -> Iterator[Metric]:
        return self._scrape.families(from_backend=self._from_backend)
