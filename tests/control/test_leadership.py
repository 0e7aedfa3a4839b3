"""Who places versions on which workers: one lease per worker set, whatever a gateway lists.

Several gateways on one registry (real leases in SQLite), each with a fake pool that sees some
of a common set of workers and records every load and unload it is asked for. The rule: `ipc://`
workers of a gateway's own list are its private set (lease named after host and paths); every
other worker (`tcp://`, announced) is in the registry's one shared set (`placement/shared`); a
gateway loads and unloads only on the workers of the sets whose lease it holds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import pytest
import zmq

from maas.app import _leadership
from maas.config import Settings
from maas.control import leader
from maas.control.deployment import Deployer
from maas.control.leader import (
    SHARED_LEASE,
    SoleLeader,
    WorkerSets,
    private_lease_name,
)
from maas.control.routing import Router
from maas.dispatch.pool import WorkerPool
from maas.registry import db
from maas.registry.coordination import Coordination
from maas.registry.service import Registry
from maas.types import LoadSpec, VersionKey, VersionStatus, WorkerState
from support.model_files import new_version

R1, R2 = "tcp://10.0.0.1:5555", "tcp://10.0.0.2:5555"
P0 = "ipc:///run/maas-a/worker-0.sock"


@pytest.fixture(autouse=True)
def quick_renewals(monkeypatch: pytest.MonkeyPatch) -> None:
    """Renewals every 50 ms, so a handover takes a fraction of a second here."""
    monkeypatch.setattr(leader, "RENEW_S", 0.05)


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[db.Database]:
    opened = db.open_database(f"sqlite:///{tmp_path}/registry.db")
    await db.upgrade(opened.engine)
    try:
        yield opened
    finally:
        await opened.dispose()


def _coordination(database: db.Database) -> Coordination:
    return Coordination(database.reads, writes=database.writes)


async def _until(check: Callable[[], bool], what: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


# the naming and selection rule ---------------------------------------------------------------


def test_a_private_lease_is_named_after_this_host_and_its_ipc_paths_only() -> None:
    name = private_lease_name([P0, "ipc:///run/maas-a/worker-1.sock"])
    assert name.startswith("placement/")
    assert name != SHARED_LEASE
    assert name == private_lease_name(["ipc:///run/maas-a/worker-1.sock", R1, P0, R2])
    assert name != private_lease_name([P0])
    assert name != private_lease_name(["ipc:///run/maas-b/worker-0.sock"])


def test_gateways_listing_different_workers_compete_for_the_one_shared_lease() -> None:
    coordination = cast(Coordination, object())  # nothing is asked of it before start
    sets = [
        WorkerSets(coordination, holder=f"g{i}", configured=listed, workers=list)
        for i, listed in enumerate([(), (R1,), (R2, R1)])
    ]
    assert [[lease.name for lease in s.leases] for s in sets] == [[SHARED_LEASE]] * 3
    mixed = WorkerSets(coordination, holder="g3", configured=(P0, R1), workers=list)
    assert mixed.private is not None
    assert mixed.private.name == private_lease_name([P0])
    assert mixed.shared.name == SHARED_LEASE


class _Local:
    """Enough of an in-process worker for the pool to be built (never started)."""

    endpoint = "inproc://test"

    def __init__(self) -> None:
        self.context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()

    def start(self) -> None: ...

    def stop(self) -> None:
        self.context.term()


async def test_the_gateway_s_backend_decides_who_it_competes_with(tmp_path: Path) -> None:
    coordination = cast(Coordination, object())
    settings = Settings(data_dir=tmp_path, workers=0)
    inproc = WorkerPool([], local=_Local())
    remote = WorkerPool([])
    private = WorkerPool([P0, R1])
    try:
        assert isinstance(_leadership(settings, inproc, coordination, "g"), SoleLeader)
        for pool, listed in ((remote, ()), (private, (P0, R1))):
            got = _leadership(
                settings.model_copy(update={"worker_endpoints": listed}), pool, coordination, "g"
            )
            assert isinstance(got, WorkerSets)
            assert got.shared.name == SHARED_LEASE
            assert (got.private is not None) == bool(listed)
    finally:
        for pool in (inproc, remote, private):
            await pool.close()


async def test_one_leader_among_gateways_whatever_they_list(database: db.Database) -> None:
    coordination = _coordination(database)
    gateways = [
        WorkerSets(coordination, holder=f"g{i}", configured=listed, workers=list)
        for i, listed in enumerate([(), (R1,), (R2,)])
    ]
    for gateway in gateways:
        await gateway.start()
    try:
        await asyncio.sleep(0.3)  # several renewals: nobody else took it meanwhile
        assert [g.is_leader for g in gateways] == [True, False, False]
        assert await coordination.lease_holders(now=time.time()) == {"g0"}
        await gateways[0].close()  # a clean stop gives it up at once
        await _until(lambda: any(g.is_leader for g in gateways[1:]), "another to lead")
        assert sum(g.is_leader for g in gateways) == 1
    finally:
        for gateway in gateways:
            await gateway.close()


async def test_private_workers_compete_for_the_shared_lease_only_while_they_reach_one(
    database: db.Database,
) -> None:
    coordination = _coordination(database)
    links: list[tuple[str, str]] = [("w0", P0)]
    gateway = WorkerSets(coordination, holder="g0", configured=(P0,), workers=lambda: list(links))
    await gateway.start()
    try:
        assert gateway.private is not None
        assert gateway.private.is_leader
        await asyncio.sleep(0.2)
        assert not gateway.shared.is_leader
        assert await coordination.lease(SHARED_LEASE) is None
        links.append(("r1", R1))  # an announced worker joined
        await _until(lambda: gateway.shared.is_leader, "the shared lease")
        assert gateway.leads("w0")
        assert gateway.leads("r1")
        links.pop()  # and left: the lease is given up for a gateway that still reaches one
        await _until(lambda: not gateway.shared.is_leader, "the shared lease given up")
        deadline = time.monotonic() + 5
        while (lease := await coordination.lease(SHARED_LEASE)) is None or (
            lease.expires_at >= time.time()  # released, not left to run out
        ):
            assert time.monotonic() < deadline, lease
            await asyncio.sleep(0.02)
        assert gateway.private.is_leader
    finally:
        await gateway.close()


# a non-leader never loads ----------------------------------------------------------------------


@dataclasses.dataclass
class _Worker:
    endpoint: str
    versions: set[str] = dataclasses.field(default_factory=set)
    loads: list[str] = dataclasses.field(default_factory=list)  # "gateway: key"
    unloads: list[str] = dataclasses.field(default_factory=list)


class _Pool:
    """A gateway's view of the workers it reaches; loads and unloads change the shared state."""

    def __init__(self, gateway: str, workers: dict[str, _Worker], reaches: list[str]) -> None:
        self.gateway, self._all, self.reaches = gateway, workers, reaches

    def links(self) -> list[tuple[str, str]]:
        return [(name, self._all[name].endpoint) for name in self.reaches]

    def workers(self) -> list[WorkerState]:
        return [
            WorkerState(name, True, frozenset(self._all[name].versions), boot=name)
            for name in self.reaches
        ]

    async def load_on(self, worker: str, spec: LoadSpec) -> None:
        self._all[worker].loads.append(f"{self.gateway}: {spec.key}")
        self._all[worker].versions.add(str(spec.key))

    async def unload_on(self, worker: str, key: VersionKey) -> None:
        self._all[worker].unloads.append(f"{self.gateway}: {key}")
        self._all[worker].versions.discard(str(key))


class _Store:
    def location(self, sha256: str) -> str:
        return f"/artifacts/{sha256}"

    def path_for(self, sha256: str) -> Path:
        return Path(self.location(sha256))


@dataclasses.dataclass
class _Gateway:
    pool: _Pool
    leadership: WorkerSets
    router: Router
    deployer: Deployer

    async def place(self) -> None:
        await self.router.refresh()
        await self.deployer.reconcile()
        await self.deployer.wait_idle()


@pytest.fixture
def workers() -> dict[str, _Worker]:
    return {"r1": _Worker(R1), "r2": _Worker(R2), "w0": _Worker(P0)}


@pytest.fixture
async def gateways(
    database: db.Database, workers: dict[str, _Worker]
) -> AsyncIterator[list[_Gateway]]:
    """a and b: `--workers 0`, b listing r2; c: its own w0, and r1 announced."""
    made: list[_Gateway] = []
    views = [("a", (), ["r1", "r2"]), ("b", (R2,), ["r1", "r2"]), ("c", (P0,), ["w0", "r1"])]
    for name, listed, reaches in views:
        pool = _Pool(name, workers, reaches)
        leadership = WorkerSets(
            _coordination(database), holder=name, configured=listed, workers=pool.links
        )
        registry = Registry(database.reads, writes=database.writes)
        router = Router(registry)
        backend = cast(Any, pool)
        deployer = Deployer(registry, backend, cast(Any, _Store()), router, leadership)
        await leadership.start()  # a first: it holds the shared lease
        made.append(_Gateway(pool, leadership, router, deployer))
    try:
        yield made
    finally:
        for gateway in made:
            await gateway.leadership.close()


def _loads(workers: dict[str, _Worker]) -> dict[str, list[str]]:
    return {name: w.loads for name, w in workers.items()}


async def test_only_each_set_s_leader_loads_and_unloads_on_it(
    database: db.Database, gateways: list[_Gateway], workers: dict[str, _Worker]
) -> None:
    a, b, c = gateways
    assert a.leadership.shared.is_leader
    assert c.leadership.private is not None
    assert c.leadership.private.is_leader
    assert not c.leadership.shared.is_leader
    registry = Registry(database.reads, writes=database.writes)
    await registry.create_model(name="m", description="", actor="test")
    meta = dataclasses.replace(new_version(), replicas=1)
    version = await registry.add_version(
        model="m", sha256="ab" * 32, size=1, meta=meta, status=VersionStatus.REGISTERED, actor="t"
    )
    await b.deployer.start_load(version.key)
    for _ in range(3):  # every gateway tries, several times over
        for gateway in (b, c, a):
            await gateway.place()
    # One replica in each set, each from that set's leader only: b leads nothing.
    assert _loads(workers) == {"r1": ["a: m@1"], "r2": [], "w0": ["c: m@1"]}
    assert (await registry.get_version(version.key)).status is VersionStatus.READY

    await a.leadership.close()  # a stops: b or c takes the shared set over
    await _until(
        lambda: b.leadership.shared.is_leader or c.leadership.shared.is_leader, "a new leader"
    )
    successor = b if b.leadership.shared.is_leader else c
    await registry.set_status(version.key, VersionStatus.UNLOADED)
    for _ in range(3):
        for gateway in (a, b, c):
            await gateway.place()
    assert workers["r1"].unloads == [f"{successor.pool.gateway}: m@1"]
    assert workers["w0"].unloads == ["c: m@1"]
    assert _loads(workers) == {"r1": ["a: m@1"], "r2": [], "w0": ["c: m@1"]}  # none again


class _Lapsed(SoleLeader):
    """Led everything when the plan was made, and no longer by the time of the load."""

    def leads(self, worker: str) -> bool:
        return False


async def test_a_lease_lost_between_plan_and_load_stops_the_load(
    database: db.Database, workers: dict[str, _Worker]
) -> None:
    registry = Registry(database.reads, writes=database.writes)
    router = Router(registry)
    pool = _Pool("a", workers, ["r1"])
    deployer = Deployer(registry, cast(Any, pool), cast(Any, _Store()), router, _Lapsed())
    await registry.create_model(name="m", description="", actor="test")
    version = await registry.add_version(
        model="m",
        sha256="cd" * 32,
        size=1,
        meta=new_version(),
        status=VersionStatus.LOADING,
        actor="t",
    )
    await router.refresh()
    await deployer.reconcile()
    await deployer.wait_idle()
    assert workers["r1"].loads == []
    assert (await registry.get_version(version.key)).status is VersionStatus.LOADING
