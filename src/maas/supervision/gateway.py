"""A gateway process of `maas serve`: the FastAPI app under uvicorn, on the listening socket
its supervisor bound and handed it.

The supervisor starts each gateway as a `multiprocessing` spawn child whose target is
`run_gateway` (`maas.supervision.children`), so this module is what a new gateway imports
first: it keeps its imports light, and `run_gateway` keeps its name and arguments. A rolling
restart (SIGHUP) takes up a new install of the package, so the supervisor that starts the
replacement may be older than the code the replacement runs: `maas.supervisor.run_gateway`,
where the function lived before, still names it too.

The gateway ends with its supervisor (`maas.supervision.lifeline`), leads a process group of
its own (a Ctrl-C reaches the supervisor only, which stops the gateways in order), says when it
serves through the supervisor's Event, and stops by draining (`maas.api.drain`).
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from maas.config import Settings
from maas.supervision.logs import LOG_FORMAT, uvicorn_log_config

# uvicorn's own graceful shutdown after the drain; the supervisor waits that long too (on top of
# MAAS_DRAIN_S) before it kills a gateway that has not exited.
STOP_GRACE_S = 10.0
_BODY_HIGH_WATER = 1024 * 1024


def run_gateway(
    settings_data: dict[str, Any],
    listener: socket.socket,
    demo: bool,
    log_level: str,
    serving: Any = None,
    supervisor_pid: int | None = None,
) -> None:
    """A gateway process: the FastAPI app under uvicorn, on the supervisor's socket. It ends
    with its supervisor (`maas.supervision.lifeline`): no restart would come, and it holds the
    port."""
    if supervisor_pid is not None:
        from maas.supervision import lifeline

        lifeline.hold(supervisor_pid)
    import uvicorn
    import uvicorn.protocols.http.httptools_impl as httptools_impl

    # uvicorn stops reading a connection once 64 KiB of body wait for the app, and starts again
    # when the app takes them: a 588 KiB image tensor took ten such turns, about 1.2 ms of this
    # process at 8 concurrent requests (bench, resnet rows). The inference route reads every
    # body whole (up to MAAS_MAX_BODY_BYTES) at once, so nothing is gained by pausing sooner.
    setattr(httptools_impl, "HIGH_WATER_LIMIT", _BODY_HIGH_WATER)  # noqa: B010 - not exported

    os.setpgrp()  # like the workers: stopped by the supervisor, in order, not by a Ctrl-C
    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT)
    logging.getLogger("alembic").setLevel(logging.WARNING)

    from maas.api.drain import Drain, DrainingServer
    from maas.app import MaasApp, create_app

    settings = Settings(**settings_data)
    hook = None
    if demo:
        from maas.demo.setup import install_demo, wait_for_demo

        hook = install_demo if settings.gateway_index == 0 else wait_for_demo
    app = create_app(settings, on_started=hook, calm_gc=True)
    config = uvicorn.Config(
        app,
        log_level=log_level,
        log_config=uvicorn_log_config(),
        access_log=False,  # maas writes its own (maas.api.access_log)
        timeout_graceful_shutdown=int(STOP_GRACE_S),
    )
    drain = app.drain if isinstance(app, MaasApp) else Drain()
    on_serving = serving.set if serving is not None else None
    server = DrainingServer(config, drain, settings.drain_s, on_serving=on_serving)
    server.run(sockets=[listener])
