"""The verdict on a rollout's window, from what every gateway counted in it.

In the shadow phase the window's requests are the mirrors compared (and failed): the guards
are the candidate's error rate on them and the share of instances whose answers disagree. In a
weight step they are the candidate's own requests: its error rate, its p99 (absolute, and over
the stable version's p99 in the same window; at 100 % the stable version's last measured p99).

- a guard breached once the window has `min_requests`: **fail**, at once (a bad candidate is
  acted on as soon as the evidence is in, not at the interval's end);
- the interval over with `min_requests` and no breach: **pass**;
- the interval over with fewer: **inconclusive** (the rollout holds, the window goes on);
- else no verdict yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from maas.registry.records import RolloutRecord
from maas.rollout import Verdict, VersionFigures, WindowFigures, rounded

# The stable version's p99 needs this many of its requests in the window to be measured.
MIN_STABLE_REQUESTS = 20


@dataclass(frozen=True, slots=True)
class Judgement:
    verdict: Verdict
    interval: dict[str, Any]  # what the rollout's status and the audit row show of the window


def judge(rollout: RolloutRecord, figures: WindowFigures, now: float) -> Judgement | None:
    """The verdict on `rollout`'s current window at `now` (Unix seconds), or None (not yet)."""
    window = measure(rollout, figures, now)
    plan = rollout.plan
    enough = window["requests"] >= plan.min_requests
    length = plan.shadow_s if rollout.step < 0 else plan.interval_s
    if enough and window["breaches"]:
        verdict = Verdict.FAIL
    elif window["elapsed_s"] < length:
        return None
    elif not enough:
        verdict = Verdict.INCONCLUSIVE
    else:
        verdict = Verdict.PASS
    return Judgement(verdict, {**window, "verdict": verdict.value})


def measure(rollout: RolloutRecord, figures: WindowFigures, now: float) -> dict[str, Any]:
    """What the window shows so far, with the guards it breaches (`breaches`): an interval of
    the rollout's status, less its verdict."""
    guards = rollout.plan.guards
    shadow_phase = rollout.step < 0
    stable_p99 = _stable_p99(figures.stable) or rollout.stable_p99_ms
    if shadow_phase:
        mirrors = figures.shadow
        requests, errors = mirrors.compared + mirrors.errors, mirrors.errors
        error_rate, p99, disagreement = mirrors.error_rate, None, mirrors.disagreement
    else:
        candidate = figures.candidate
        requests, errors = candidate.requests, candidate.errors
        error_rate, p99, disagreement = candidate.error_rate, candidate.quantile_ms(), None
    ratio_limit = None
    if stable_p99 and guards.max_p99_ratio is not None:
        ratio_limit = guards.max_p99_ratio * stable_p99
    breaches = [
        text
        for text, value, limit in (
            ("error rate {:.2%} > {:.2%}", error_rate, guards.max_error_rate),
            ("p99 {:.2f} ms > {:g} ms", p99, guards.max_p99_ms),
            (
                f"p99 {{:.2f}} ms > {{:.2f}} ms ({guards.max_p99_ratio} x the stable "
                f"version's {stable_p99 or 0:.2f} ms)",
                p99,
                ratio_limit,
            ),
            ("disagreement {:.2%} > {:.2%}", disagreement, guards.max_disagreement),
        )
        if value is not None and limit is not None and value > limit
        for text in [text.format(value, limit)]
    ]
    return {
        "at": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds"),
        "step": rollout.step,
        "weight": rollout.weight,
        "phase": "shadow" if shadow_phase else "steps",
        "elapsed_s": round(now - rollout.interval_started_at, 3),
        "requests": requests,
        "errors": errors,
        "error_rate": rounded(error_rate, 6),
        "p99_ms": rounded(p99, 3),
        "stable_requests": figures.stable.requests,
        "stable_p99_ms": rounded(stable_p99, 3),
        "disagreement": rounded(disagreement, 6),
        "mirrors_dropped": figures.shadow.dropped,
        "breaches": breaches,
    }


def _stable_p99(stable: VersionFigures) -> float | None:
    return stable.quantile_ms() if stable.requests >= MIN_STABLE_REQUESTS else None
