"""The verdict on a rollout's window, from what every gateway counted in it.

In the shadow phase the window's requests are the mirrors compared (and failed): the guards
are the candidate's error rate on them and the share of instances whose answers disagree. In a
weight step they are the candidate's own requests: its error rate, its p99 end to end at the
gateway (`max_p99_ms`), and its forward p99 on the worker over the stable version's in the same
window (`max_p99_ratio`; at 100 % the stable version's last measured one). The ratio compares
forwards, not end-to-end times: versions sharing a worker queue behind each other's forwards,
so a slow candidate slows the stable version's end-to-end times too and would hide in a ratio
of those.

- a guard breached once the window has `min_requests`: **fail**, at once (a bad candidate is
  acted on as soon as the evidence is in, not at the interval's end); a p99 guard is judged
  from `P99_MIN_REQUESTS` of the candidate's requests on, and a plan with one needs that many
  for a pass;
- the interval over with `min_requests` and no breach: **pass**;
- the interval over with fewer: **inconclusive** (the rollout holds, the window goes on);
- else no verdict yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from maas.registry.records import RolloutRecord
from maas.rollout import Verdict, WindowFigures, rounded

# A p99 is judged on at least this many requests: of fewer it is their largest, or next to
# it, and a candidate's few requests would be held to the tail of the stable version's many.
# A window whose plan guards a p99 needs this many of the candidate's requests to pass.
P99_MIN_REQUESTS = 200


@dataclass(frozen=True, slots=True)
class Judgement:
    verdict: Verdict
    interval: dict[str, Any]  # what the rollout's status and the audit row show of the window


def judge(rollout: RolloutRecord, figures: WindowFigures, now: float) -> Judgement | None:
    """The verdict on `rollout`'s current window at `now` (Unix seconds), or None (not yet)."""
    window = measure(rollout, figures, now)
    plan, guards = rollout.plan, rollout.plan.guards
    needed = plan.min_requests
    if rollout.step >= 0 and (guards.max_p99_ms is not None or guards.max_p99_ratio is not None):
        needed = max(needed, P99_MIN_REQUESTS)
    enough = window["requests"] >= needed
    length = plan.shadow_s if rollout.step < 0 else plan.interval_s
    if window["requests"] >= plan.min_requests and window["breaches"]:
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
    measured = figures.stable.requests >= P99_MIN_REQUESTS
    stable_p99 = figures.stable.quantile_ms() if measured else None
    stable_forward = figures.stable.forward_quantile_ms() if measured else None
    stable_forward = stable_forward or rollout.stable_forward_p99_ms
    if shadow_phase:
        mirrors = figures.shadow
        requests, errors = mirrors.compared + mirrors.errors, mirrors.errors
        error_rate, disagreement = mirrors.error_rate, mirrors.disagreement
        p99 = forward = None
    else:
        candidate = figures.candidate
        requests, errors = candidate.requests, candidate.errors
        error_rate, disagreement = candidate.error_rate, None
        p99, forward = candidate.quantile_ms(), candidate.forward_quantile_ms()
    judged = requests >= P99_MIN_REQUESTS  # the candidate's p99s mean something
    ratio_limit = None
    if stable_forward and guards.max_p99_ratio is not None:
        ratio_limit = guards.max_p99_ratio * stable_forward
    breaches = [
        text
        for text, value, limit in (
            ("error rate {:.2%} > {:.2%}", error_rate, guards.max_error_rate),
            ("p99 {:.2f} ms > {:g} ms", p99 if judged else None, guards.max_p99_ms),
            (
                f"forward p99 {{:.2f}} ms > {{:.2f}} ms ({guards.max_p99_ratio} x the stable "
                f"version's {stable_forward or 0:.2f} ms)",
                forward if judged else None,
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
        "forward_p99_ms": rounded(forward, 3),
        "stable_forward_p99_ms": rounded(stable_forward, 3),
        "disagreement": rounded(disagreement, 6),
        "mirrors_dropped": figures.shadow.dropped,
        "breaches": breaches,
    }
