"""The words of a rollout (CONTRACT: Shadow and rollouts): its plan, its states, the figures
gateways count for it and the verdict an interval ends in. Data only: the registry stores it
(`maas.registry.rollouts`), the leader judges it (`maas.control.rollouts`), every gateway
counts its figures (`maas.observability.rollout_tallies`)."""

from __future__ import annotations

import bisect
import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any


class RolloutState(enum.StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABORTED = "aborted"

    @property
    def active(self) -> bool:
        """Whether the rollout still owns its alias (no manual change of it then)."""
        return self in (RolloutState.RUNNING, RolloutState.PAUSED)


class Verdict(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"  # too few requests: hold, never fail


class OnFailure(enum.StrEnum):
    ROLLBACK = "rollback"
    PAUSE = "pause"


# `maas_rollout_phase`: the newest rollout of an alias, as one number.
PHASE_CODES = {"shadow": 1, "steps": 2, "paused": 3, "succeeded": 4, "failed": 5, "aborted": 6}


@dataclass(frozen=True, slots=True)
class Guards:
    """What fails an interval: the candidate's error rate, its p99 (absolute, and over the
    stable version's p99 in the same window), and in the shadow phase the share of instances
    whose answers disagree. None: not guarded."""

    max_error_rate: float | None = 0.01
    max_p99_ratio: float | None = None
    max_p99_ms: float | None = None
    max_disagreement: float | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Guards:
        return cls(**{f.name: data.get(f.name) for f in fields(cls)})

    def to_json(self) -> dict[str, float | None]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class RolloutPlan:
    """How a rollout walks: an optional shadow phase of `shadow_s`, then the candidate's weight
    steps (percent of the alias's traffic), one interval of `interval_s` or more each; an
    interval needs `min_requests` of the candidate's to be judged. `failure_limit` failed
    intervals (in a row, at one step) trigger `on_failure`."""

    steps: tuple[int, ...] = (1, 10, 50, 100)
    interval_s: float = 60.0
    min_requests: int = 100
    shadow_s: float = 0.0
    guards: Guards = field(default_factory=Guards)
    failure_limit: int = 1
    on_failure: OnFailure = OnFailure.ROLLBACK

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RolloutPlan:
        return cls(
            steps=tuple(int(s) for s in data["steps"]),
            interval_s=float(data["interval_s"]),
            min_requests=int(data["min_requests"]),
            shadow_s=float(data.get("shadow_s") or 0.0),
            guards=Guards.from_json(data.get("guards") or {}),
            failure_limit=int(data.get("failure_limit") or 1),
            on_failure=OnFailure(data.get("on_failure") or OnFailure.ROLLBACK.value),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "steps": list(self.steps),
            "interval_s": self.interval_s,
            "min_requests": self.min_requests,
            "shadow_s": self.shadow_s,
            "guards": self.guards.to_json(),
            "failure_limit": self.failure_limit,
            "on_failure": self.on_failure.value,
        }


# Request durations, for p99s: buckets 25 % apart from 50 us to about a minute.
LATENCY_BOUNDS: tuple[float, ...] = tuple(5e-5 * 1.25**i for i in range(64))


def _empty() -> list[int]:
    return [0] * (len(LATENCY_BOUNDS) + 1)


@dataclass(slots=True)
class VersionFigures:
    """What one version answered in a window: requests, errors (5xx, or a failure once the
    request reached the model), and as counts per LATENCY_BOUNDS bucket their durations
    (`buckets`, end to end at the gateway) and their forward times on the worker (`forward`,
    the batch that carried each: what the version itself costs, whatever it queued behind)."""

    requests: int = 0
    errors: int = 0
    buckets: list[int] = field(default_factory=_empty)
    forward: list[int] = field(default_factory=_empty)

    def observe(self, seconds: float, error: bool, forward_s: float | None = None) -> None:
        self.requests += 1
        self.errors += error
        self.buckets[bisect.bisect_left(LATENCY_BOUNDS, seconds)] += 1
        if forward_s is not None:
            self.forward[bisect.bisect_left(LATENCY_BOUNDS, forward_s)] += 1

    def minus(self, base: VersionFigures) -> VersionFigures:
        return VersionFigures(
            self.requests - base.requests,
            self.errors - base.errors,
            [a - b for a, b in zip(self.buckets, base.buckets, strict=True)],
            [a - b for a, b in zip(self.forward, base.forward, strict=True)],
        )

    def add(self, other: VersionFigures) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets, strict=True)]
        self.forward = [a + b for a, b in zip(self.forward, other.forward, strict=True)]

    def copy(self) -> VersionFigures:
        return VersionFigures(self.requests, self.errors, list(self.buckets), list(self.forward))

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    def quantile_ms(self, q: float = 0.99) -> float | None:
        """The `q` quantile of the durations in milliseconds (None without any)."""
        return quantile_ms(self.buckets, q)

    def forward_quantile_ms(self, q: float = 0.99) -> float | None:
        """The `q` quantile of the forward times in milliseconds (None without any)."""
        return quantile_ms(self.forward, q)

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "buckets": self.buckets,
            "forward": self.forward,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> VersionFigures:
        size = len(LATENCY_BOUNDS) + 1
        if not data or len(data.get("buckets") or ()) != size:
            return cls()  # none yet, or a gateway of another release: left out
        forward = data.get("forward") or ()
        return cls(
            int(data["requests"]),
            int(data["errors"]),
            [int(b) for b in data["buckets"]],
            [int(b) for b in forward] if len(forward) == size else _empty(),
        )


def quantile_ms(
    buckets: Sequence[int], q: float, bounds: Sequence[float] = LATENCY_BOUNDS
) -> float | None:
    """The `q` quantile in milliseconds of counts per `bounds` bucket (seconds; the last
    bucket is +Inf), interpolated within its bucket (as Prometheus's histogram_quantile);
    None without observations."""
    total = sum(buckets)
    if not total:
        return None
    rank, running = q * total, 0
    for index, count in enumerate(buckets):
        if count and running + count >= rank:
            low = bounds[index - 1] if index else 0.0
            high = bounds[index] if index < len(bounds) else low
            return 1000 * (low + (high - low) * (rank - running) / count)
        running += count
    return 1000 * bounds[-1]


@dataclass(slots=True)
class ShadowFigures:
    """What the mirrors of the stable version's requests to the candidate showed: requests
    compared, the candidate's failures, mirrors dropped, and instances compared / disagreeing."""

    compared: int = 0
    errors: int = 0
    dropped: int = 0
    instances: int = 0
    disagreeing: int = 0

    def minus(self, base: ShadowFigures) -> ShadowFigures:
        return ShadowFigures(*(getattr(self, n) - getattr(base, n) for n in _SHADOW_FIELDS))

    def add(self, other: ShadowFigures) -> None:
        for name in _SHADOW_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def disagreement(self) -> float | None:
        return self.disagreeing / self.instances if self.instances else None

    @property
    def error_rate(self) -> float | None:
        mirrored = self.compared + self.errors
        return self.errors / mirrored if mirrored else None

    def to_json(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in _SHADOW_FIELDS}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> ShadowFigures:
        return cls(*(int((data or {}).get(name) or 0) for name in _SHADOW_FIELDS))


_SHADOW_FIELDS = ("compared", "errors", "dropped", "instances", "disagreeing")


@dataclass(slots=True)
class WindowFigures:
    """One rollout's figures over one window (an epoch), from one gateway or summed over all."""

    stable: VersionFigures = field(default_factory=VersionFigures)
    candidate: VersionFigures = field(default_factory=VersionFigures)
    shadow: ShadowFigures = field(default_factory=ShadowFigures)

    def add(self, other: WindowFigures) -> None:
        self.stable.add(other.stable)
        self.candidate.add(other.candidate)
        self.shadow.add(other.shadow)

    def to_json(self) -> dict[str, Any]:
        return {
            "stable": self.stable.to_json(),
            "candidate": self.candidate.to_json(),
            "shadow": self.shadow.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WindowFigures:
        return cls(
            VersionFigures.from_json(data.get("stable")),
            VersionFigures.from_json(data.get("candidate")),
            ShadowFigures.from_json(data.get("shadow")),
        )

    @classmethod
    def total(cls, reports: Sequence[Mapping[str, Any]]) -> WindowFigures:
        summed = cls()
        for report in reports:
            summed.add(cls.from_json(report))
        return summed


def rounded(value: float | None, digits: int = 4) -> float | None:
    """A figure as the status shows it (None stays None; no NaN reaches JSON)."""
    if value is None or not math.isfinite(value):
        return None
    return round(value, digits)
