"""What `maas serve` decides for the processes it starts, on top of the user's settings.

The user's settings (`maas.config`) say how many gateways and workers to run and how to serve.
The supervisor then wires its children together: a private run directory (removed when it
stops) where the local workers listen and the gateways meet, each gateway's settings (its
index, that directory's parts, the migration already done), and each local worker's command
line and environment. It is all here, so the user's settings stay the user's, and what a child
is given can be read (and tested) in one place.

Gateways get their settings whole from the supervisor (`maas.supervision.gateway.run_gateway`),
so the internal ones are `Settings` fields (`maas.config.INTERNAL_SETTINGS`); workers get a
command line, and their environment with the user's `MAAS_*` variables.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from maas.config import INTERNAL_SETTINGS, Settings

# prometheus_client's multiprocess mode: gateways and workers write their figures there, and a
# scrape of any gateway adds them up (maas.observability.metrics).
METRICS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


@dataclass(frozen=True)
class RunDir:
    """The supervisor's private directory and what its children find in it."""

    root: Path

    def worker_endpoint(self, index: int) -> str:
        """Where local worker `index` listens (a Unix socket: it and its gateways share a host)."""
        return f"ipc://{self.root}/worker-{index}.sock"

    @property
    def peers(self) -> Path:
        """The gateways' sockets, for telling each other of a new registry generation."""
        return self.root / "peers"

    @property
    def rates(self) -> Path:
        """The gateways' one shared file of the keys' request rates."""
        return self.root / "rates"

    @property
    def metrics(self) -> Path:
        """prometheus_client's multiprocess files of every child (METRICS_VARIABLE)."""
        return self.root / "metrics"


def worker_endpoints(settings: Settings, run: RunDir) -> tuple[str, ...]:
    """Every worker a gateway uses: the local ones first (in index order), then the user's
    remote ones (MAAS_WORKER_ENDPOINTS)."""
    local = tuple(run.worker_endpoint(i) for i in range(settings.workers))
    return (*local, *settings.worker_endpoints)


def gateway_settings(settings: Settings, run: RunDir, index: int) -> Settings:
    """Gateway `index`'s settings: the user's, with every worker, and the internal ones."""
    internal = {
        "gateway_index": index,
        "peers_dir": run.peers,
        "rates_dir": run.rates,
        "migrate_on_start": False,  # the supervisor migrated, once (`maas.supervision.prepare`)
    }
    assert internal.keys() == INTERNAL_SETTINGS, "a new internal setting is wired here"
    return settings.model_copy(
        update={
            **internal,
            "worker_endpoints": worker_endpoints(settings, run),
            "bootstrap_admin_key": None,  # created once by the supervisor, not raced by G
        }
    )


def worker_command(
    settings: Settings,
    run: RunDir,
    index: int,
    *,
    name: str,
    restarts: int,
    log_level: str,
    supervisor_pid: int,
) -> list[str]:
    """`maas worker` for local worker `index` (named `name`, started `restarts` times before),
    which ends with its supervisor (`maas.supervision.lifeline`)."""
    return [
        sys.executable,
        "-m",
        "maas",
        "worker",
        "--listen",
        run.worker_endpoint(index),
        "--id",
        name,
        "--index",
        str(index),
        "--threads",
        str(settings.effective_torch_threads),
        "--restarts",
        str(restarts),
        "--log-level",
        log_level,
        "--supervisor-pid",
        str(supervisor_pid),
    ]


def worker_environment(
    settings: Settings, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """A local worker's environment: the supervisor's (its `MAAS_*` settings and
    METRICS_VARIABLE included), less the `MAAS_*` variables no setting reads (`maas serve`
    warned of them once; the worker would warn again), with the math libraries' threads."""
    environ = os.environ if environ is None else environ
    unknown = set(Settings.unknown_variables(dict(environ)))
    env = {k: v for k, v in environ.items() if k not in unknown}
    threads = str(settings.effective_torch_threads)
    # Read by the math libraries as they load: numpy's comes before `run_worker` sets them.
    env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    return env
