"""The worker loop on a thread of the gateway's own process, on an `inproc://` socket.

A gateway with no worker processes (tests, a laptop) runs the very engine a worker process
runs — batcher, deadlines, cancellation and all — and talks to it through the same pool and
messages; only the socket is a memory queue. The composition root (`maas.app`) starts it and
hands the pool its address and context, so the gateway side never imports this package.
"""

from __future__ import annotations

import asyncio
import threading
import uuid

import zmq

from maas.store.sealing import ArtifactKey
from maas.worker.cache import ArtifactCache
from maas.worker.loop import WorkerServer

WORKER_NAME = "inprocess"
_START_TIMEOUT_S = 10.0


class InprocWorker:
    def __init__(
        self,
        *,
        torch_threads: int,
        worker_id: str = WORKER_NAME,
        artifact_key: ArtifactKey | None = None,
        cache: ArtifactCache | None = None,
    ) -> None:
        self.context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.endpoint = f"inproc://maas-worker-{uuid.uuid4().hex}"
        self._server = WorkerServer(
            endpoint=self.endpoint,
            worker_id=worker_id,
            device="cpu",
            context=self.context,
            torch_threads=torch_threads,
            artifact_key=artifact_key,
            cache=cache,  # where artifacts in object storage are downloaded to
        )
        self._thread = threading.Thread(target=self._run, name=f"maas-{worker_id}", daemon=True)

    def _run(self) -> None:
        asyncio.run(self._server.serve())

    def start(self) -> None:
        """Start the loop and return once its socket is bound (blocking: call off the loop)."""
        self._thread.start()
        if not self._server.bound.wait(_START_TIMEOUT_S):
            raise RuntimeError("the in-process worker did not start")

    def stop(self) -> None:
        """Stop the loop and wait for it, then end the context (blocking: call off the loop)."""
        if self._thread.is_alive():
            self._server.stop()
            self._thread.join(_START_TIMEOUT_S)
        self.context.term()
