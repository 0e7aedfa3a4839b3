"""`create_app(settings)`: the composition root of one gateway process.

The lifespan migrates the registry, builds every service, makes sure the bootstrap key exists,
reloads the versions that were serving, optionally trains the demo models, and runs the
routing-table refresh loop; it tears all of that down in reverse.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from fastapi import FastAPI
from starlette.types import Receive, Send
from starlette.types import Scope as AsgiScope

from maas import __version__
from maas.api import errors as api_errors
from maas.api import fastpath
from maas.api.native import routes as native
from maas.api.routes import admin, health, metrics
from maas.api.v2 import routes as v2
from maas.artifacts import ArtifactStore
from maas.auth import Authenticator, ensure_key
from maas.config import Settings
from maas.deployment import Deployer
from maas.metrics import RequestMetrics
from maas.registry import db
from maas.registry.service import Registry
from maas.services import Readiness, Services
from maas.serving import call
from maas.serving.catalog import Catalog
from maas.serving.dataplane import DataPlane
from maas.serving.routing import Router
from maas.types import InferenceBackend, Scope

log = logging.getLogger(__name__)

BackendFactory = Callable[[Settings], InferenceBackend]
StartupHook = Callable[[Services], Coroutine[Any, Any, None]]


def _default_backend(settings: Settings) -> InferenceBackend:
    """Worker processes when `maas serve` gave us their addresses, else this process."""
    if settings.worker_endpoints:
        from maas.workers.pool import WorkerPool

        return WorkerPool(list(settings.worker_endpoints))
    from maas.workers.inprocess import InProcessBackend

    return InProcessBackend(torch_threads=settings.effective_torch_threads)


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
        store = ArtifactStore(settings.artifact_dir)
        backend = backend_factory(settings)
        readiness = Readiness(demo=on_started is None)
        background: set[asyncio.Task[None]] = set()
        deployer: Deployer | None = None
        try:
            if settings.migrate_on_start:
                await db.upgrade(database.engine)
            readiness.migrated = True
            await asyncio.to_thread(store.prepare)
            registry = Registry(database.reads, writes=database.writes)
            router = Router(registry)
            deployer = Deployer(registry, backend, store)
            _resync_restarted_workers(backend, deployer)
            await backend.start()
            services = Services(
                settings=settings,
                registry=registry,
                store=store,
                backend=backend,
                deployer=deployer,
                router=router,
                auth=Authenticator(registry),
                dataplane=DataPlane(router, backend),
                catalog=Catalog(router, backend),
                readiness=readiness,
                metrics=RequestMetrics(),
            )
            if settings.bootstrap_admin_key:
                await ensure_key(
                    registry,
                    name="bootstrap-admin",
                    secret=settings.bootstrap_admin_key,
                    scopes=[Scope.ADMIN.value],
                )
            readiness.bootstrap_key = True
            if settings.gateway_index == 0:  # one gateway puts the registry's versions back
                await deployer.restore()
            await router.refresh()
            app.state.services = services
            if calm_gc:
                calm_the_garbage_collector()
            _own(background, _refresh_loop(router, settings.routing_refresh_s), "routing refresh")
            if on_started is not None:
                _own(background, _run_hook(on_started, services), "startup hook")
            yield
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            if deployer is not None:
                await deployer.close()
            await backend.close()
            await database.dispose()

    app = MaasApp(
        title="maas",
        version=__version__,
        description="Model-as-a-service gateway for PyTorch models",
        lifespan=lifespan,
        # FastAPI's built-in OpenTelemetry hook asks the OTel providers (and the environment)
        # on every request; maas exposes Prometheus metrics instead.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    api_errors.install(app)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(native.router)
    app.include_router(v2.router)
    app.include_router(admin.router)
    return app


class MaasApp(FastAPI):
    """The FastAPI app, with the inference calls of every protocol answered before its
    middleware and routing (see `maas.api.fastpath` and `maas.serving.call`)."""

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
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


async def _refresh_loop(router: Router, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        try:
            await router.refresh()
        except Exception:
            log.warning("routing table refresh failed; keeping the last one", exc_info=True)


async def _run_hook(hook: StartupHook, services: Services) -> None:
    try:
        await hook(services)
    except Exception as exc:
        services.readiness.reasons.append(f"startup hook failed: {type(exc).__name__}: {exc}")
        raise
    finally:
        services.readiness.demo = True


def _resync_restarted_workers(backend: InferenceBackend, deployer: Deployer) -> None:
    from maas.workers.pool import WorkerLink, WorkerPool

    if not isinstance(backend, WorkerPool):
        return
    pool = backend

    async def on_boot(link: WorkerLink) -> None:
        await deployer.resync(
            functools.partial(pool.load_on, link),
            link.name,
            belongs=lambda spec: link in pool.targets(spec),
        )

    pool.on_worker_boot = on_boot


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
