"""Where a batch's forward runs: inline on the worker's loop, or on the forward thread while the
loop goes on reading (`maas.worker.forwarding.off_loop`)."""

from __future__ import annotations

import numpy as np

from maas.worker.batcher import Batch
from maas.worker.forwarding import HOP_WORTH_S, LONG_FORWARD_S, READ_AHEAD_BYTES, off_loop


def _batch(nbytes: int) -> Batch:
    return Batch(items=[], inputs=[np.zeros(nbytes, np.uint8)], count=1)


def test_small_requests_run_inline_however_long_up_to_the_heartbeat_bound() -> None:
    small = _batch(READ_AHEAD_BYTES // 2)  # what arrives meanwhile waits in the socket
    assert not off_loop(0.0001, small)
    assert not off_loop(LONG_FORWARD_S * 0.9, small)


def test_long_forwards_leave_the_loop_whatever_their_inputs() -> None:
    assert off_loop(LONG_FORWARD_S * 1.1, _batch(16))


def test_large_inputs_leave_the_loop_once_a_forward_is_worth_a_thread_hop() -> None:
    image = _batch(3 * 224 * 224 * 4)  # 588 KiB
    assert off_loop(HOP_WORTH_S * 1.5, image)
    assert not off_loop(HOP_WORTH_S / 2, image)  # a quicker forward blocks reading less
