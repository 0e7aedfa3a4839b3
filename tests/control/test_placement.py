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


def _on(name: str, device: str, *versions: str) -> WorkerState:
    return WorkerState(name, True, frozenset(versions), device=device)


def test_cuda_workers_come_first_where_a_version_asks_for_them() -> None:
    workers = [_on("c0", "cpu"), _on("c1", "cpu"), _on("g0", "cuda:0"), _on("g1", "cuda:0")]
    # auto: CUDA first, but any worker when every one is wanted
    assert plan([("a@1", 1)], workers, {"a@1": "auto"}) == {"a@1": ["g0"]}
    assert plan([("a@1", None)], workers, {"a@1": "auto"}) == {"a@1": ["c0", "c1", "g0", "g1"]}
    # cuda: only CUDA workers, however many replicas
    assert plan([("a@1", None)], workers, {"a@1": "cuda"}) == {"a@1": ["g0", "g1"]}
    assert plan([("a@1", 1), ("b@1", 1)], workers, {"a@1": "cuda", "b@1": "cuda:0"}) == {
        "a@1": ["g0"],
        "b@1": ["g1"],
    }
    # cpu: CPU first
    assert plan([("a@1", 1)], workers, {"a@1": "cpu"}) == {"a@1": ["c0"]}
    # no CUDA worker at all: where it will fail to load with the reason, not nowhere
    cpus = [_on("c0", "cpu")]
    assert plan([("a@1", None)], cpus, {"a@1": "cuda"}) == {"a@1": ["c0"]}
    # a holder stays a holder even if a CUDA worker is free
    assert plan([("a@1", 1)], [_on("c0", "cpu", "a@1"), _on("g0", "cuda:0")]) == {"a@1": ["c0"]}


def _with_room(name: str, free: int, *versions: str) -> WorkerState:
    return WorkerState(name, True, frozenset(versions), memory_free=free)


MB = 1 << 20


def test_a_version_goes_where_its_load_fits_in_free_memory() -> None:
    workers = [_with_room("w0", 100 * MB), _with_room("w1", 1000 * MB)]
    # 80 MB needs 160 MB to load: only w1 has it, even though w0 comes first by name.
    assert plan([("big@1", 1)], workers, sizes={"big@1": 80 * MB}) == {"big@1": ["w1"]}
    # Every worker wanted: the one without room is left out.
    assert plan([("big@1", None)], workers, sizes={"big@1": 80 * MB}) == {"big@1": ["w1"]}
    # Small ones go anywhere.
    assert plan([("s@1", None)], workers, sizes={"s@1": MB}) == {"s@1": ["w0", "w1"]}


def test_the_plan_counts_the_memory_it_has_already_given_away() -> None:
    workers = [_with_room("w0", 500 * MB), _with_room("w1", 500 * MB)]
    sizes = {"a@1": 200 * MB, "b@1": 200 * MB, "c@1": 200 * MB}
    chosen = plan([("a@1", None), ("b@1", 1), ("c@1", 1)], workers, sizes=sizes)
    # a@1 takes 400 MB of each; neither has room for b@1 or c@1 then: they go where they
    # would have gone, and their loads say what is short.
    assert chosen["a@1"] == ["w0", "w1"]
    assert chosen["b@1"] != chosen["c@1"]


def test_memory_a_worker_does_not_report_never_keeps_a_version_off() -> None:
    workers = [_with_room("w0", 0), _with_room("w1", 10 * MB)]
    assert plan([("big@1", 1)], workers, sizes={"big@1": 80 * MB}) == {"big@1": ["w0"]}
    # A holder keeps its version whatever its room now (the room already counts it).
    holders = [_with_room("w0", MB, "big@1"), _with_room("w1", 1000 * MB)]
    assert plan([("big@1", 1)], holders, sizes={"big@1": 80 * MB}) == {"big@1": ["w0"]}
