"""Placement: every healthy worker unless `replicas` says fewer; stable; least-loaded first."""

from __future__ import annotations

from maas.control.placement import plan
from maas.types import WorkerState


def _worker(name: str, *versions: str, healthy: bool = True) -> WorkerState:
    return WorkerState(name, healthy, frozenset(versions))


def test_without_replicas_a_version_goes_on_every_healthy_worker() -> None:
    workers = [_worker("w0"), _worker("w1"), _worker("w2", healthy=False)]
    assert plan([("a@1", None)], workers) == {"a@1": ["w0", "w1"]}


def test_replicas_keep_a_version_where_it_is() -> None:
    workers = [_worker("w0"), _worker("w1", "a@1"), _worker("w2")]
    assert plan([("a@1", 1)], workers) == {"a@1": ["w1"]}
    # Topped up with the least-loaded other worker when it asks for more.
    workers = [_worker("w0", "x@1", "y@1"), _worker("w1", "a@1"), _worker("w2", "x@1")]
    assert plan([("a@1", 2)], workers) == {"a@1": ["w1", "w2"]}


def test_new_versions_spread_over_the_workers_the_plan_filled_least() -> None:
    workers = [_worker("w0"), _worker("w1"), _worker("w2")]
    chosen = plan([(f"m@{n}", 1) for n in range(1, 7)], workers)
    per_worker = {w.name: sum(w.name in c for c in chosen.values()) for w in workers}
    assert per_worker == {"w0": 2, "w1": 2, "w2": 2}


def test_a_lost_worker_s_versions_move_to_the_others() -> None:
    workers = [_worker("w0", "a@1", healthy=False), _worker("w1"), _worker("w2", "b@1")]
    assert plan([("a@1", 1)], workers) == {"a@1": ["w1"]}
    assert plan([("a@1", 5)], workers) == {"a@1": ["w1", "w2"]}
    assert plan([("a@1", 1)], [_worker("w0", healthy=False)]) == {"a@1": []}
