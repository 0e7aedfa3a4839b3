"""The `maas_shadow_*` families: how an alias's shadow answered the requests mirrored to it.

Counted per (model, primary version, candidate version) by the gateway process that mirrored
the request (`maas.serving.shadow`), in memory, and written with the request metrics every
`FLUSH_S` (`RequestMetrics.flush`), into the same registry or multiprocess files. Versions are
a model's own (a shadow is set by an operator on a ready version), so the series stay few.

- `maas_shadow_requests_total{outcome}`: each mirrored request once: `agree` when every one of
  its instances agrees, `disagree` when one does not, `error` when the candidate failed (any
  refusal, a deadline, an overload, a signature the request does not fit), `dropped` when
  the gateway already had its bound of mirrors in flight and did not send it.
- `maas_shadow_instances_total{outcome}`: the instances of compared requests, `agree` or
  `disagree` each.
- `maas_shadow_abs_diff`: each compared request's largest absolute difference between the two
  answers (of the compared output); `maas_shadow_latency_ratio`: the candidate's time over the
  primary's, per compared request.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.metrics import MetricWrapperBase

from maas.rollout import ShadowFigures
from maas.transport import telemetry

OUTCOMES = ("agree", "disagree", "error", "dropped")
AGREE, DISAGREE, ERROR, DROPPED = range(len(OUTCOMES))
INSTANCE_OUTCOMES = OUTCOMES[:2]
ABS_DIFF_BOUNDS = (1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.1, 1.0, 10.0, 100.0)
LATENCY_RATIO_BOUNDS = (0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0)
PAIR_LABELS = ["model", "primary", "candidate"]
Array = np.ndarray[Any, Any]


class ShadowMetrics:
    """What the mirror counts; `wake` asks for the next flush (which calls `write`)."""

    def __init__(self, registry: CollectorRegistry | None, wake: Callable[[], None]) -> None:
        self._requests = Counter(
            "maas_shadow_requests",
            "Requests mirrored to an alias's shadow: agree (every instance's top-1 agrees), "
            "disagree, error (the candidate failed), dropped (too many mirrors in flight).",
            [*PAIR_LABELS, "outcome"],
            registry=registry,
        )
        self._instances = Counter(
            "maas_shadow_instances",
            "Instances of compared mirrored requests whose top-1 agrees or disagrees.",
            [*PAIR_LABELS, "outcome"],
            registry=registry,
        )
        self._abs_diff = Histogram(
            "maas_shadow_abs_diff",
            "Per compared request, the largest absolute difference between the candidate's "
            "and the primary's answers.",
            PAIR_LABELS,
            buckets=ABS_DIFF_BOUNDS,
            registry=registry,
        )
        self._latency_ratio = Histogram(
            "maas_shadow_latency_ratio",
            "Per compared request, the candidate's inference time over the primary's.",
            PAIR_LABELS,
            buckets=LATENCY_RATIO_BOUNDS,
            registry=registry,
        )
        self._wake = wake
        self._pairs: dict[tuple[str, str, str], _Pair] = {}

    @property
    def families(self) -> tuple[MetricWrapperBase, ...]:
        return (self._requests, self._instances, self._abs_diff, self._latency_ratio)

    def compared(
        self,
        pair: tuple[str, str, str],
        *,
        instances: int,
        agreeing: int,
        max_abs_diff: float,
        latency_ratio: float,
    ) -> None:
        """One mirrored request compared: (model, primary, candidate) and what it showed."""
        counts = self._pair(pair)
        counts.outcomes[AGREE if agreeing == instances else DISAGREE] += 1
        counts.outcomes_instances[AGREE] += agreeing
        counts.outcomes_instances[DISAGREE] += instances - agreeing
        if math.isfinite(max_abs_diff):  # a NaN against a number: disagrees, sum kept finite
            counts.abs_diff.observe(max_abs_diff)
        counts.latency_ratio.observe(latency_ratio)
        self._wake()

    def compared_many(
        self,
        pair: tuple[str, str, str],
        *,
        instances: Array,
        agreeing: Array,
        max_abs_diff: Array,
        latency_ratio: Array,
    ) -> None:
        """Several mirrored requests of one pair compared, one entry per request in each
        array: counted as `compared` counts each, in a few numpy passes."""
        counts = self._pair(pair)
        agreed = int(np.count_nonzero(agreeing == instances))
        counts.outcomes[AGREE] += agreed
        counts.outcomes[DISAGREE] += len(instances) - agreed
        total_agreeing = int(agreeing.sum())
        counts.outcomes_instances[AGREE] += total_agreeing
        counts.outcomes_instances[DISAGREE] += int(instances.sum()) - total_agreeing
        finite = max_abs_diff[np.isfinite(max_abs_diff)]
        counts.abs_diff.observe_many(finite)
        counts.latency_ratio.observe_many(latency_ratio)
        self._wake()

    def failed(self, pair: tuple[str, str, str]) -> None:
        self._pair(pair).outcomes[ERROR] += 1
        self._wake()

    def dropped(self, pair: tuple[str, str, str]) -> None:
        self._pair(pair).outcomes[DROPPED] += 1
        self._wake()

    def expose(self, pair: tuple[str, str, str]) -> None:
        """The pair's series exist (at 0) from now on, before its first mirror."""
        self._pair(pair).expose()

    def figures(self, pair: tuple[str, str, str]) -> ShadowFigures:
        """What was counted for the pair since this process started (a rollout's tally)."""
        counts = self._pairs.get(pair)
        if counts is None:
            return ShadowFigures()
        outcomes, instances = counts.outcomes, counts.outcomes_instances
        return ShadowFigures(
            compared=outcomes[AGREE] + outcomes[DISAGREE],
            errors=outcomes[ERROR],
            dropped=outcomes[DROPPED],
            instances=instances[AGREE] + instances[DISAGREE],
            disagreeing=instances[DISAGREE],
        )

    def write(self) -> None:
        """Write what was counted since the last `write` into the exposed series."""
        for counts in self._pairs.values():
            counts.write()

    def _pair(self, pair: tuple[str, str, str]) -> _Pair:
        counts = self._pairs.get(pair)
        if counts is None:
            counts = self._pairs[pair] = _Pair(self.families, pair)
        return counts


class _Pair:
    """One (model, primary, candidate)'s counts in memory, and what of them was written."""

    __slots__ = (
        "abs_diff",
        "families",
        "labels",
        "latency_ratio",
        "outcomes",
        "outcomes_instances",
        "series",
        "written",
    )

    def __init__(self, families: tuple[Any, ...], labels: tuple[str, str, str]) -> None:
        self.families = families  # ShadowMetrics.families
        self.labels = labels
        self.outcomes = [0] * len(OUTCOMES)
        self.outcomes_instances = [0] * len(INSTANCE_OUTCOMES)
        self.abs_diff = telemetry.Histogram.empty(ABS_DIFF_BOUNDS)
        self.latency_ratio = telemetry.Histogram.empty(LATENCY_RATIO_BOUNDS)
        self.series: _Series | None = None
        # What was written: outcomes, instance outcomes, then each histogram's buckets and sum.
        self.written: tuple[list[int], list[int], list[int], list[int], list[float]] = (
            [0] * len(OUTCOMES),
            [0] * len(INSTANCE_OUTCOMES),
            [0] * (len(ABS_DIFF_BOUNDS) + 1),
            [0] * (len(LATENCY_RATIO_BOUNDS) + 1),
            [0.0, 0.0],
        )

    def expose(self) -> _Series:
        if self.series is None:
            requests, instances, abs_diff, latency_ratio = self.families
            labels = self.labels
            self.series = _Series(
                requests=[requests.labels(*labels, o) for o in OUTCOMES],
                instances=[instances.labels(*labels, o) for o in INSTANCE_OUTCOMES],
                abs_diff=abs_diff.labels(*labels),
                latency_ratio=latency_ratio.labels(*labels),
            )
        return self.series

    def write(self) -> None:
        outcomes, instances, diff_buckets, ratio_buckets, totals = self.written
        if (
            self.outcomes == outcomes
            and self.outcomes_instances == instances
            and self.abs_diff.counts == diff_buckets
            and self.latency_ratio.counts == ratio_buckets
        ):
            return
        series = self.expose()
        for counted, written, labelled in (
            (self.outcomes, outcomes, series.requests),
            (self.outcomes_instances, instances, series.instances),
        ):
            for index, (now, before) in enumerate(zip(counted, written, strict=True)):
                if now > before:
                    labelled[index].inc(now - before)
                    written[index] = now
        totals[0] = telemetry.write_increments(
            series.abs_diff, self.abs_diff, diff_buckets, totals[0]
        )
        totals[1] = telemetry.write_increments(
            series.latency_ratio, self.latency_ratio, ratio_buckets, totals[1]
        )


@dataclass(frozen=True, slots=True)
class _Series:
    """A pair's labelled prometheus series, by outcome for the counters."""

    requests: list[Any]
    instances: list[Any]
    abs_diff: Any
    latency_ratio: Any
