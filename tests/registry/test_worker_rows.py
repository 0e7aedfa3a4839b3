"""Workers' announcements in the registry, on SQLite and PostgreSQL: a row per worker id,
renewed in place (a restart under the same id replaces it), listed while fresh, forgotten."""

from __future__ import annotations

from maas.registry.coordination import Coordination, WorkerRecord


def _worker(worker_id: str, endpoint: str, *, at: float, started: float = 100.0) -> WorkerRecord:
    return WorkerRecord(
        id=worker_id,
        endpoint=endpoint,
        host="h",
        device="cuda:0",
        memory_total=80 << 30,
        threads=4,
        protocol=2,
        started_at=started,
        last_seen=at,
    )


async def test_announcements_are_listed_while_fresh_and_renewed_in_place(
    coordination: Coordination,
) -> None:
    await coordination.announce_worker(_worker("a", "tcp://10.0.0.1:5555", at=1000.0))
    await coordination.announce_worker(_worker("b", "tcp://10.0.0.2:5555", at=1010.0))
    assert [w.id for w in await coordination.registered_workers(seen_since=0)] == ["a", "b"]
    assert [w.id for w in await coordination.registered_workers(seen_since=1005.0)] == ["b"]

    # "a" restarted on another address: its one row says so.
    await coordination.announce_worker(
        _worker("a", "tcp://10.0.0.9:5555", at=1020.0, started=1019.0)
    )
    (a,) = [w for w in await coordination.registered_workers(seen_since=1015.0) if w.id == "a"]
    assert a == _worker("a", "tcp://10.0.0.9:5555", at=1020.0, started=1019.0)

    await coordination.forget_worker("a")
    await coordination.forget_worker("nobody")  # forgetting twice is no error
    assert [w.id for w in await coordination.registered_workers(seen_since=0)] == ["b"]
