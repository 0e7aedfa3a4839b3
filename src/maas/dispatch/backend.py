"""`InferenceBackend`: what the gateway's layers above dispatch ask of model execution.

Its implementations: `maas.dispatch.pool.WorkerPool` (worker processes, local or remote), the
worker loop in-process (`maas.worker.inproc`, structurally the same), and `maas.dispatch.fake`
for tests of the layers above with no torch and no worker."""

from __future__ import annotations

from typing import Any, Protocol

from maas.transport.telemetry import BackendTelemetry
from maas.types import LoadSpec, Timing, VersionKey, WorkerState


class InferenceBackend(Protocol):
    """Where model execution happens: worker processes, or the same worker loop in-process
    (`maas.dispatch.pool`); for tests of the layers above, no workers at all
    (`maas.dispatch.fake`). Only what those layers call: the composition root starts and
    closes it, uploads trial-load (`check`), placement loads onto and unloads from single
    workers, serving infers, and the admin and metrics routes read its figures.

    `infer` takes one array per declared input, all stacked along a leading batch axis, and
    returns one array per declared output with the same leading axis; `timeout_s` is what is
    left of the request's deadline, so work that would finish too late can be dropped.
    """

    # True when `infer` itself answers DeadlineExceeded once `timeout_s` has passed, so the
    # caller needs no timer of its own.
    enforces_deadlines: bool

    async def start(self) -> None: ...

    async def check(self, spec: LoadSpec) -> None:
        """Load, warm up and check `spec` on one worker without keeping it (an upload's trial);
        ModelLoadError with the cause when it cannot load."""
        ...

    def is_loaded(self, key: VersionKey) -> bool: ...

    def workers(self) -> list[WorkerState]:
        """Every worker this backend reaches, for placement (`maas.control.placement`)."""
        ...

    async def load_on(self, worker: str, spec: LoadSpec) -> None:
        """Load onto one worker; WorkerCrashedLoading if it died doing so."""
        ...

    async def unload_on(self, worker: str, key: VersionKey) -> None: ...

    async def infer(
        self,
        key: VersionKey,
        inputs: list[Any],
        *,
        timeout_s: float | None = None,
        timing: Timing | None = None,
    ) -> list[Any]:
        """`timing`, when given, is filled with when the call went out and what the worker
        measured, on this process's `time.monotonic` clock."""
        ...

    def describe(self) -> list[dict[str, Any]]:
        """One entry per worker, as `GET /admin/workers` shows it (CONTRACT)."""
        ...

    def telemetry(self) -> BackendTelemetry:
        """Worker health and per-version figures, for `/metrics` (as of the last `refresh`
        or heartbeat)."""
        ...

    async def refresh(self) -> None:
        """Bring what `telemetry` and `describe` say up to date with every worker now."""
        ...

    async def close(self) -> None: ...
