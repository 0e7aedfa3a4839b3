"""The verdict on a rollout's window, from figures made up to the point."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from maas.control.rollout_judge import judge
from maas.registry.records import RolloutRecord
from maas.rollout import (
    LATENCY_BOUNDS,
    Guards,
    RolloutPlan,
    RolloutState,
    ShadowFigures,
    Verdict,
    VersionFigures,
    WindowFigures,
)

NOW = 1_000_000.0


def rollout(step: int = 0, started: float = NOW - 10, **plan: Any) -> RolloutRecord:
    guards = Guards(**plan.pop("guards", {}))
    stable_p99_ms = plan.pop("stable_p99_ms", None)
    at = datetime.now(UTC)
    return RolloutRecord(
        id=1,
        model="m",
        alias="production",
        stable=1,
        candidate=2,
        plan=RolloutPlan(**{"interval_s": 5.0, "min_requests": 100, **plan}, guards=guards),
        state=RolloutState.RUNNING,
        step=step,
        weight=0 if step < 0 else 10,
        epoch=1,
        interval_started_at=started,
        failures=0,
        stable_forward_p99_ms=stable_p99_ms,
        intervals=(),
        reason=None,
        key_name="ops",
        created_at=at,
        updated_at=at,
        ended_at=None,
    )


def served(
    requests: int, errors: int = 0, seconds: float = 0.001, forward_s: float | None = None
) -> VersionFigures:
    """`requests` answered in `seconds` each, end to end; their forwards took `forward_s`
    (default: all of it)."""
    figures = VersionFigures()
    for index in range(requests):
        figures.observe(seconds, index < errors, seconds if forward_s is None else forward_s)
    return figures


def test_enough_clean_requests_pass_once_the_interval_is_over() -> None:
    figures = WindowFigures(stable=served(900), candidate=served(100))
    assert judge(rollout(started=NOW - 1), figures, NOW) is None  # not over yet
    judged = judge(rollout(), figures, NOW)
    assert judged is not None
    assert judged.verdict is Verdict.PASS
    assert judged.interval["requests"] == 100
    assert judged.interval["error_rate"] == 0
    assert judged.interval["p99_ms"] == pytest.approx(1.0, rel=0.25)
    assert judged.interval["breaches"] == []


def test_too_few_requests_are_inconclusive_whatever_they_show() -> None:
    figures = WindowFigures(stable=served(900), candidate=served(99, errors=99))
    judged = judge(rollout(), figures, NOW)
    assert judged is not None
    assert judged.verdict is Verdict.INCONCLUSIVE
    assert judged.interval["breaches"]  # shown, but not acted on


def test_a_breach_with_enough_requests_fails_before_the_interval_is_over() -> None:
    figures = WindowFigures(stable=served(900), candidate=served(100, errors=5))
    judged = judge(rollout(started=NOW - 0.5, guards={"max_error_rate": 0.01}), figures, NOW)
    assert judged is not None
    assert judged.verdict is Verdict.FAIL
    assert judged.interval["error_rate"] == 0.05
    assert judged.interval["breaches"] == ["error rate 5.00% > 1.00%"]


def test_the_ratio_compares_forward_times_with_the_stable_versions_of_the_same_window() -> None:
    slow = WindowFigures(stable=served(900, seconds=0.001), candidate=served(300, seconds=0.021))
    judged = judge(rollout(guards={"max_p99_ratio": 2.0}), slow, NOW)
    assert judged is not None
    assert judged.verdict is Verdict.FAIL
    assert judged.interval["stable_forward_p99_ms"] == pytest.approx(1.0, rel=0.25)
    assert judged.interval["forward_p99_ms"] == pytest.approx(21.0, rel=0.25)
    assert "x the stable version's" in judged.interval["breaches"][0]
    # Queued behind the candidate's slow forwards, the stable version is slow end to end
    # too; its forwards are not, and the ratio of those still fails the candidate.
    queued = WindowFigures(
        stable=served(900, seconds=0.021, forward_s=0.001), candidate=served(300, seconds=0.021)
    )
    behind = judge(rollout(guards={"max_p99_ratio": 2.0}), queued, NOW)
    assert behind is not None
    assert behind.verdict is Verdict.FAIL
    assert behind.interval["stable_p99_ms"] == pytest.approx(21.0, rel=0.25)
    # Both slow alike: the same ratio passes, an absolute p99 bound does not.
    both = WindowFigures(stable=served(900, seconds=0.021), candidate=served(300, seconds=0.021))
    again = judge(rollout(guards={"max_p99_ratio": 2.0}), both, NOW)
    assert again is not None
    assert again.verdict is Verdict.PASS
    absolute = judge(rollout(guards={"max_p99_ms": 10.0}), both, NOW)
    assert absolute is not None
    assert absolute.verdict is Verdict.FAIL


def test_at_the_whole_alias_the_stable_p99_last_measured_stands_in() -> None:
    alone = WindowFigures(candidate=served(300, seconds=0.021))
    judged = judge(rollout(guards={"max_p99_ratio": 2.0}, stable_p99_ms=1.0), alone, NOW)
    assert judged is not None
    assert judged.verdict is Verdict.FAIL
    assert judged.interval["stable_forward_p99_ms"] == 1.0
    assert judged.interval["stable_p99_ms"] is None  # no stable traffic in this window
    unknown = judge(rollout(guards={"max_p99_ratio": 2.0}), alone, NOW)
    assert unknown is not None
    assert unknown.verdict is Verdict.PASS  # nothing to compare with: not guarded


def test_a_p99_is_judged_only_on_enough_requests_and_a_pass_waits_for_them() -> None:
    # 150 requests, over min_requests (100) but too few for a p99: not judged, not passed.
    few = WindowFigures(stable=served(900), candidate=served(150, seconds=0.021))
    judged = judge(rollout(guards={"max_p99_ms": 10.0}), few, NOW)
    assert judged is not None
    assert judged.verdict is Verdict.INCONCLUSIVE
    assert judged.interval["breaches"] == []
    assert judged.interval["p99_ms"] == pytest.approx(21.0, rel=0.25)  # shown all the same
    # Errors are judged on min_requests as ever.
    failing = WindowFigures(stable=served(900), candidate=served(150, errors=20))
    early = judge(rollout(started=NOW - 1, guards={"max_p99_ms": 10.0}), failing, NOW)
    assert early is not None
    assert early.verdict is Verdict.FAIL
    enough = WindowFigures(stable=served(900), candidate=served(200, seconds=0.021))
    late = judge(rollout(guards={"max_p99_ms": 10.0}), enough, NOW)
    assert late is not None
    assert late.verdict is Verdict.FAIL


def test_the_shadow_phase_counts_mirrors_and_their_disagreement() -> None:
    mirrors = ShadowFigures(compared=100, errors=0, dropped=3, instances=400, disagreeing=100)
    figures = WindowFigures(stable=served(100), shadow=mirrors)
    plan = {"shadow_s": 5.0, "guards": {"max_disagreement": 0.2}}
    judged = judge(rollout(step=-1, **plan), figures, NOW)
    assert judged is not None
    assert judged.verdict is Verdict.FAIL
    assert judged.interval["phase"] == "shadow"
    assert judged.interval["disagreement"] == 0.25
    assert judged.interval["mirrors_dropped"] == 3
    assert judged.interval["p99_ms"] is None


def test_figures_add_up_across_gateways_and_refuse_another_bucket_layout() -> None:
    one = WindowFigures(stable=served(10), candidate=served(5, errors=1)).to_json()
    other = WindowFigures(stable=served(20), candidate=served(5)).to_json()
    foreign = {"candidate": {"requests": 7, "errors": 0, "buckets": [7]}}
    total = WindowFigures.total([one, other, foreign])
    assert (total.stable.requests, total.candidate.requests, total.candidate.errors) == (30, 10, 1)
    assert len(total.candidate.buckets) == len(LATENCY_BOUNDS) + 1
