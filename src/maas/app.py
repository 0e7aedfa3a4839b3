"""`create_app(settings)`: the composition root of one gateway process.

The lifespan migrates the registry, builds every service, makes sure the bootstrap key exists,
joins the control plane (the generation watch, this gateway's row, the placement lease and the
reconciler that puts the registry's versions on the workers), optionally trains the demo
models, and tears all of that down in reverse.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

from fastapi import FastAPI
from starlette.types import Receive, Send
from starlette.types import Scope as AsgiScope

from maas import __version__
from maas.api import access_log, console, docs, fastpath, health, openapi, scrape
from maas.api import errors as api_errors
from maas.api.admin import router as admin_router
from maas.api.drain import Drain
from maas.api.native import routes as native
from maas.api.services import Readiness, Services
from maas.api.v2 import routes as v2
from maas.auth.keys import Authenticator, ensure_bootstrap_key
from maas.auth.rates import KeyRates
from maas.config import Settings
from maas.control.deployment import Deployer
from maas.control.leader import Leadership, SoleLeader, WorkerSets
from maas.control.plane import ControlPlane
from maas.control.rollouts import RolloutDriver
from maas.control.routing import Router
from maas.control.workers import WorkerDiscovery
from maas.dispatch.backend import InferenceBackend
from maas.dispatch.pool import WorkerPool
from maas.observability.metrics import RequestMetrics
from maas.observability.rollout_tallies import TallyReporter
from maas.observability.traffic import TrafficReporter
from maas.registry import db
from maas.registry.coordination import Coordination
from maas.registry.service import Registry
from maas.serving import call
from maas.serving.catalog import Catalog
from maas.serving.dataplane import DataPlane
from maas.serving.shadow import Mirror
from maas.store import deployment_store

log = logging.getLogger(__name__)

BackendFactory = Callable[[Settings], InferenceBackend]
StartupHook = Callable[[Services], Coroutine[Any, Any, None]]


def _default_backend(settings: Settings) -> InferenceBackend:
    """Worker processes when `maas serve` gave us their addresses or runs none of its own
    (remote workers announce themselves), else the worker loop on a thread of this process
    (`inproc://`): one engine either way."""
    if settings.worker_endpoints or settings.workers == 0:
        from maas.transport.curve import DeploymentKeys

        keys = DeploymentKeys.load(settings.worker_keys_dir) if settings.worker_keys_dir else None
        # What workers without the file fetch through this gateway: the deployment's store.
        store = deployment_store(settings)
        return WorkerPool(list(settings.worker_endpoints), keys=keys, artifacts=store)
    from maas.worker.cache import worker_cache
    from maas.worker.inproc import InprocWorker

    key = settings.sealing_key
    local = InprocWorker(
        torch_threads=settings.effective_torch_threads,
        artifact_key=key,
        # A store in object storage has no file on this host: the worker downloads it.
        cache=worker_cache(settings.artifact_dir / "cache", key, settings.artifact_url),
    )
    return WorkerPool([], local=local)


def create_app(
    settings: Settings,
    *,
    backend_factory: BackendFactory = _default_backend,
    on_started: StartupHook | None = None,
    calm_gc: bool = False,
) -> FastAPI:
    """Build the app. `on_started` runs in the background once serving starts (the demo);
    `calm_gc` tunes the garbage collector for a long-lived serving process."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = db.open_database(settings.database_url)
        store = deployment_store(settings)
        backend = backend_factory(settings)
        readiness = Readiness(demo=on_started is None)
        background: set[asyncio.Task[None]] = set()
        closing: list[Callable[[], Awaitable[None]]] = []
        try:
            if settings.migrate_on_start:
                await db.upgrade(database.engine)
            readiness.migrated = True
            await asyncio.to_thread(store.prepare)
            registry = Registry(database.reads, writes=database.writes)
            coordination = Coordination(database.reads, writes=database.writes)
            router = Router(registry)
            plane = ControlPlane(
                coordination,
                router,
                propagation_timeout_s=settings.propagation_timeout_ms / 1000,
                peers_dir=settings.peers_dir,
                database_url=settings.database_url,
            )
            registry.on_change(plane.committed)
            leadership = _leadership(settings, backend, coordination, plane.identity.id)
            deployer = Deployer(registry, backend, store, router, leadership)
            metrics = RequestMetrics()
            tallies = TallyReporter(
                registry, metrics, reporter=plane.identity.id, report_s=settings.rollout_report_s
            )
            router.on_reload(tallies.adopt)  # from the first read of the routing table on
            rates = KeyRates(settings.rates_dir)
            auth = Authenticator(
                registry,
                on_failure=metrics.auth_failure,
                rates=rates,
                default_rate_per_s=settings.key_rate_limit_per_s,
            )
            plane.on_adopt(lambda generation: auth.forget())
            plane.on_adopt(lambda generation: deployer.wake())
            _wake_on_worker_changes(backend, deployer)
            await backend.start()
            closing.append(backend.close)
            if isinstance(backend, WorkerPool) and not backend.runs_local:
                discovery = WorkerDiscovery(
                    coordination,
                    connect=backend.connect,
                    disconnect=backend.disconnect,
                    own=frozenset(backend.endpoints),
                    ttl_s=settings.worker_ttl_s,
                )
                _own(background, discovery.run(), "worker discovery")
            dataplane = DataPlane(
                router,
                backend,
                max_instances=settings.max_instances,
                max_instance_elements=settings.max_instance_elements,
            )
            shadow = Mirror(
                dataplane,
                metrics.shadow,
                max_in_flight=settings.shadow_max_in_flight,
                timeout_s=settings.request_timeout_ms / 1000,
            )
            closing.append(shadow.close)  # closed before the backend its mirrors use
            services = Services(
                settings=settings,
                registry=registry,
                store=store,
                backend=backend,
                deployer=deployer,
                router=router,
                auth=auth,
                dataplane=dataplane,
                catalog=Catalog(router, backend),
                readiness=readiness,
                metrics=metrics,
                shadow=shadow,
                drain=app.drain if isinstance(app, MaasApp) else Drain(),
                plane=plane,
                leadership=leadership,
            )
            if settings.bootstrap_admin_key:
                await ensure_bootstrap_key(registry, settings.bootstrap_admin_key)
            readiness.bootstrap_key = True
            await plane.start()
            closing.append(plane.close)
            deployer.start()
            closing.append(deployer.close)
            await leadership.start()
            closing.append(leadership.close)
            tallies.start()
            closing.append(tallies.close)
            if settings.traffic_report_s:
                traffic = TrafficReporter(
                    registry,
                    metrics,
                    backend,
                    reporter=plane.identity.id,
                    report_s=settings.traffic_report_s,
                    keep_s=settings.traffic_keep_s,
                )
                traffic.start()
                closing.append(traffic.close)
            rollouts = RolloutDriver(
                registry,
                router,
                coordination,
                plane,
                holder=plane.identity.id,
                tick_s=settings.rollout_tick_s,
            )
            await rollouts.start()
            closing.append(rollouts.close)
            app.state.services = services
            if calm_gc:
                calm_the_garbage_collector()
            if on_started is not None:
                _own(background, _run_hook(on_started, services), "startup hook")
            yield
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            for close in reversed(closing):
                await close()
            await database.dispose()

    app = MaasApp(
        title="maas",
        version=__version__,
        description="Model-as-a-service gateway for PyTorch models",
        lifespan=lifespan,
        docs_url=None,  # served by maas.api.docs, with no CDN
        redoc_url=None,
        # FastAPI's built-in OpenTelemetry hook asks the OTel providers (and the environment)
        # on every request; maas exposes Prometheus metrics instead.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.access_log = settings.access_log
    app.drain = Drain()
    api_errors.install(app)
    app.include_router(health.router)
    app.include_router(scrape.router)
    app.include_router(native.router)
    app.include_router(v2.router)
    app.include_router(admin_router)
    docs.install(app)
    console.install(app)
    openapi.install(app)
    return app


class MaasApp(FastAPI):
    """The FastAPI app, with the inference calls of every protocol answered before its
    middleware and routing (see `maas.api.fastpath` and `maas.serving.call`)."""

    access_log = False  # set from the settings when the gateway starts
    drain = Drain()  # replaced per app; set once the process is stopping (maas.api.drain)

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        if self.drain.active and scope["type"] == "http":
            send = self.drain.wrap(send)  # the client's next request goes to another process
        if access_log.wanted(scope, self.access_log):
            await access_log.logged(self._serve, scope, receive, send)
            return
        await self._serve(scope, receive, send)

    async def _serve(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            found = fastpath.find(scope["path"])
            if found is not None:
                codec, ref = found
                await call.serve(self.state.services, codec, ref, scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def _own(tasks: set[asyncio.Task[None]], coro: Coroutine[Any, Any, None], name: str) -> None:
    task = asyncio.create_task(coro, name=name)
    tasks.add(task)

    def _done(t: asyncio.Task[None]) -> None:
        tasks.discard(t)
        if not t.cancelled() and t.exception() is not None:
            log.error("background task %r failed", name, exc_info=t.exception())

    task.add_done_callback(_done)


async def _run_hook(hook: StartupHook, services: Services) -> None:
    try:
        await hook(services)
    except Exception as exc:
        services.readiness.reasons.append(f"startup hook failed: {type(exc).__name__}: {exc}")
        raise
    finally:
        services.readiness.demo = True


def _leadership(
    settings: Settings, backend: InferenceBackend, coordination: Coordination, holder: str
) -> Leadership:
    """A gateway that runs its models itself places them alone. One with worker processes
    competes for the lease of each worker set it reaches: its private `ipc://` workers, and the
    shared ones (`tcp://`, announced) of the whole registry, whatever its own list says."""
    if not isinstance(backend, WorkerPool) or backend.runs_local:
        return SoleLeader()
    pool = backend
    return WorkerSets(
        coordination,
        holder=holder,
        configured=settings.worker_endpoints,
        workers=lambda: [(link.name, link.endpoint) for link in pool.links],
    )


def _wake_on_worker_changes(backend: InferenceBackend, deployer: Deployer) -> None:
    """A worker that (re)starts holds nothing: placement looks again at once."""
    from maas.dispatch.link import WorkerLink
    from maas.dispatch.pool import WorkerPool

    if not isinstance(backend, WorkerPool):
        return

    async def on_boot(link: WorkerLink) -> None:
        deployer.wake()

    backend.on_worker_boot = on_boot


def calm_the_garbage_collector() -> None:
    """Keep full collections off the request path.

    A gateway holds a large, long-lived object graph (FastAPI, pydantic, SQLAlchemy); a full
    collection walks all of it and stalled requests for tens of milliseconds (the p99 at
    C=64 fell from ~100 ms to ~30 ms without it). Freezing what start-up built takes it out of
    every collection; a higher first threshold makes collections rarer. Cycles made while
    serving are still collected.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 50)
