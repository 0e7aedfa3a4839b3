"""A worker's clock as the gateway sees it: the offset to add to the gateway's
`time.monotonic` to get the worker's, for the request phases (`maas.types.Timing`).

A worker on this host (`ipc://`, `inproc://`) reads the same monotonic clock: the offset is 0.
For one on another host, every heartbeat is a sample, as NTP takes them: the gateway sent the
ping at t0 and read the answer at t1, the worker stamped its answer at w, so the worker's
clock read w at about (t0 + t1) / 2, give or take half the round trip. The sample with the
shortest round trip among the recent ones is the best estimate.
"""

from __future__ import annotations

from collections import deque

_SAMPLES = 25  # 5 s of heartbeats


class WorkerClock:
    def __init__(self, *, same_host: bool) -> None:
        self._same_host = same_host
        self._samples: deque[tuple[float, float]] = deque(maxlen=_SAMPLES)  # (round trip, offset)
        self.offset = 0.0

    def sample(self, sent: float, worker_clock: float, received: float) -> None:
        """A heartbeat answered: sent and received on the gateway's clock, stamped on the
        worker's."""
        if self._same_host or not sent or not worker_clock or received < sent:
            return
        self._samples.append((received - sent, worker_clock - (sent + received) / 2))
        self.offset = min(self._samples)[1]

    def here(self, worker_time: float) -> float:
        """`worker_time` on the gateway's clock (0.0 stays 0.0: not measured)."""
        return worker_time - self.offset if worker_time else 0.0
