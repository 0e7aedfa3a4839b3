"""A backend without workers, for tests of the layers above the seam, as httpx's `MockTransport`
is a transport without a network: every inference goes to a handler function that decides its
outputs (or raises what a worker would), so tests of the API and serving layers run without
torch and without worker processes.

    def halve(call: FakeCall) -> list[np.ndarray]:
        (x,) = call.inputs
        return [x[:, :3] / 2]

    app = create_app(settings, backend_factory=lambda _: FakeBackend(halve))

It has one worker, always healthy. Loads succeed unless `on_load` raises (ModelLoadError: the
version fails, as it would on a worker); an upload still passes the gateway's format check,
which `fake_archive()` does. No `Timing` is stamped: no worker measured anything.
"""

from __future__ import annotations

import inspect
import io
import zipfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from maas.errors import Unavailable
from maas.transport.telemetry import BackendTelemetry, WorkerHealth
from maas.types import LoadSpec, Timing, VersionKey, WorkerState

if TYPE_CHECKING:
    from maas.dispatch.backend import InferenceBackend

WORKER = "fake"


@dataclass(frozen=True, slots=True)
class FakeCall:
    """One inference as the backend received it."""

    key: VersionKey
    inputs: list[Any]  # one array per declared input, stacked along the batch axis
    spec: LoadSpec  # what the version was loaded with: its declared inputs and outputs
    timeout_s: float | None


# The outputs of a call (one array per declared output, same batch axis), now or awaited.
Handler = Callable[[FakeCall], list[Any] | Awaitable[list[Any]]]
LoadHook = Callable[[LoadSpec], None]


class FakeBackend:
    # The data plane then keeps each deadline itself, as it does for any such backend.
    enforces_deadlines = False

    def __init__(self, handler: Handler, *, on_load: LoadHook | None = None) -> None:
        self.handler = handler
        self.on_load = on_load  # sees every load and trial load; raises to fail it
        self.calls: list[FakeCall] = []  # every inference that reached the backend, in order
        self.loaded: dict[VersionKey, LoadSpec] = {}
        self.running = False

    async def start(self) -> None:
        self.running = True

    async def close(self) -> None:
        self.running = False

    async def check(self, spec: LoadSpec) -> None:
        if self.on_load is not None:
            self.on_load(spec)

    def is_loaded(self, key: VersionKey) -> bool:
        return key in self.loaded

    def workers(self) -> list[WorkerState]:
        held = frozenset(str(key) for key in self.loaded)
        return [WorkerState(WORKER, True, held, boot=WORKER, device="cpu")]

    async def load_on(self, worker: str, spec: LoadSpec) -> None:
        _only(worker)
        if self.on_load is not None:
            self.on_load(spec)
        self.loaded[spec.key] = spec

    async def unload_on(self, worker: str, key: VersionKey) -> None:
        _only(worker)
        await self.unload(key)

    async def unload(self, key: VersionKey) -> None:
        """Forget `key` behind placement's back, as a worker that lost it would."""
        self.loaded.pop(key, None)

    async def infer(
        self,
        key: VersionKey,
        inputs: list[Any],
        *,
        timeout_s: float | None = None,
        timing: Timing | None = None,
    ) -> list[Any]:
        spec = self.loaded.get(key)
        if spec is None:
            raise Unavailable(f"no ready worker holds {key}")
        call = FakeCall(key, inputs, spec, timeout_s)
        self.calls.append(call)
        outputs = self.handler(call)
        if inspect.isawaitable(outputs):
            return await outputs
        return outputs

    def describe(self) -> list[dict[str, Any]]:
        return [
            {
                "id": WORKER,
                "pid": None,
                "host": None,
                "device": "cpu",
                "memory_total_bytes": None,
                "memory_free_bytes": None,
                "threads": None,
                "healthy": True,
                "queue_depth": 0,
                "versions": sorted(str(key) for key in self.loaded),
                "loading": [],
                "restarts": 0,
                "endpoint": "fake://",
                "gateways": 1,
                "reason": None,
                "stats": [],
            }
        ]

    def telemetry(self) -> BackendTelemetry:
        return BackendTelemetry(workers=[WorkerHealth(WORKER, True, 0)])

    async def refresh(self) -> None:
        pass


def _only(worker: str) -> None:
    if worker != WORKER:
        raise Unavailable(f"no worker named {worker}")


def fake_archive(fmt: str = "torchscript", tag: str = "") -> bytes:
    """A zip laid out as torch writes a `fmt` ("torchscript" or "torch_export") archive, enough
    for the gateway's check
    (`maas.store.archive`) and loadable by no worker. A different `tag` makes
    different bytes (another artifact); the same one, the same bytes."""
    names = ["archive_format"] if fmt == "torch_export" else ["constants.pkl", "code/m.py"]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name in [*names, "tag"]:
            # A fixed time: the bytes, and so the sha256, depend on the arguments alone.
            entry = zipfile.ZipInfo(f"model/{name}", date_time=(1980, 1, 1, 0, 0, 0))
            archive.writestr(entry, tag if name == "tag" else "")
    return out.getvalue()


if TYPE_CHECKING:
    # mypy holds the fake to the protocol, so the two cannot drift apart.
    _conforms: InferenceBackend = FakeBackend(lambda call: [])
