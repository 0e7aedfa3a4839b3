"""Each micro-batcher rule alone, on an explicit clock (no sleeping, no timing asserts)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from maas.errors import InvalidInput, Overloaded
from maas.types import ArtifactFormat, LoadSpec, TensorSpec, VersionKey
from maas.worker.batcher import Batch, Batcher, Pending

DELAY_S = 0.005


def spec(
    max_batch: int = 4, max_queue: int = 64, shape: tuple[int, ...] = (3,), **extra: Any
) -> LoadSpec:
    return LoadSpec(
        key=VersionKey("m", 1),
        path="/nowhere",
        sha256="0" * 64,
        format=ArtifactFormat.TORCHSCRIPT,
        inputs=(TensorSpec("x", "float32", shape),),
        outputs=(TensorSpec("y", "float32", (2,)),),
        max_batch_size=max_batch,
        max_delay_ms=DELAY_S * 1000,
        max_queue=max_queue,
        **extra,
    )


def item(
    request_id: int,
    now: float,
    rows: int = 1,
    width: int = 3,
    deadline: float = 1e9,
    gateway: bytes = b"gw",
) -> Pending:
    array = np.full((rows, width), float(request_id), dtype=np.float32)
    return Pending(request_id, gateway, [array], arrived=now, deadline=deadline)


def ids(batch: Batch | None) -> list[int]:
    assert batch is not None
    return [i.request_id for i in batch.items]


def test_a_lone_request_on_an_idle_model_runs_at_once() -> None:
    batcher = Batcher(spec())
    batcher.submit(item(1, now=0.0))
    batch = batcher.take(0.0).batch
    assert ids(batch) == [1]


def test_flushes_by_size_as_soon_as_max_batch_is_waiting() -> None:
    batcher = Batcher(spec(max_batch=4))
    batcher.submit(item(0, now=0.0, rows=4))
    assert batcher.take(0.0).batch is not None  # a batch of 4 ran: the model is under load
    batcher.finished(0.0)
    for i in range(1, 4):
        batcher.submit(item(i, now=0.001))
    assert batcher.take(0.001).batch is None  # 3 waiting, last batch held 4: linger
    batcher.submit(item(4, now=0.001))
    batch = batcher.take(0.001).batch
    assert ids(batch) == [1, 2, 3, 4]
    assert batch is not None
    assert batch.inputs[0].shape == (4, 3)


def test_flushes_by_delay_after_the_oldest_arrived() -> None:
    batcher = Batcher(spec(max_batch=8))
    batcher.submit(item(0, now=0.0, rows=8))
    assert batcher.take(0.0).batch is not None
    batcher.finished(0.0)
    batcher.submit(item(1, now=0.001))
    batcher.submit(item(2, now=0.002))
    assert batcher.take(0.002).batch is None
    assert batcher.next_wakeup() == pytest.approx(0.001 + DELAY_S)
    assert batcher.take(0.0045).batch is None
    batch = batcher.take(0.001 + DELAY_S).batch
    assert ids(batch) == [1, 2]


def test_after_an_idle_spell_the_next_request_does_not_wait() -> None:
    batcher = Batcher(spec(max_batch=8))
    batcher.submit(item(0, now=0.0, rows=8))
    assert batcher.take(0.0).batch is not None
    batcher.finished(0.0)
    batcher.submit(item(1, now=1.0))  # long after the last batch: the model sat idle
    assert batcher.take(1.0).batch is not None


def test_callers_split_by_a_slow_forward_join_one_batch_again() -> None:
    """Four callers ran while four others arrived: when that forward ends, the four waiting
    wait (at most the delay) for the four just answered, instead of running as a half batch."""
    batcher = Batcher(spec(max_batch=8))
    for i in range(4):
        batcher.submit(item(i, now=0.0))
    assert ids(batcher.take(0.0).batch) == [0, 1, 2, 3]
    for i in range(4, 8):  # they arrive during the 0.2 s forward
        batcher.submit(item(i, now=0.01))
    batcher.finished(0.2)
    # Waiting for the model was not waiting for a batch: the delay starts at the forward's end.
    assert batcher.take(0.2).batch is None
    assert batcher.next_wakeup() == pytest.approx(0.2 + DELAY_S)
    for i in range(8, 12):  # the callers just answered send again
        batcher.submit(item(i, now=0.201))
    assert ids(batcher.take(0.201).batch) == [4, 5, 6, 7, 8, 9, 10, 11]


def test_the_delay_still_bounds_the_linger_after_a_slow_forward() -> None:
    batcher = Batcher(spec(max_batch=8))
    for i in range(4):
        batcher.submit(item(i, now=0.0))
    assert batcher.take(0.0).batch is not None
    batcher.submit(item(4, now=0.01))
    batcher.finished(0.2)
    assert batcher.take(0.2 + DELAY_S / 2).batch is None
    assert ids(batcher.take(0.2 + DELAY_S).batch) == [4]  # nobody else came: it runs alone


def test_full_queue_refuses_at_once_with_retry_after_from_depth_and_batch_time() -> None:
    batcher = Batcher(spec(max_batch=2, max_queue=4))
    batcher.submit(item(0, now=0.0, rows=2))
    taken = batcher.take(0.0).batch
    assert taken is not None
    batcher.record(taken, seconds=0.040)  # measured: 40 ms per batch
    batcher.submit(item(1, now=0.0, rows=2))
    batcher.submit(item(2, now=0.0, rows=2))
    with pytest.raises(Overloaded) as refused:
        batcher.submit(item(3, now=0.0))
    # 4 instances waiting = 2 batches ahead, plus the one being formed: 3 x 40 ms.
    assert refused.value.retry_after == pytest.approx(0.120)
    batcher.record(taken, seconds=0.140)  # slower batches: a longer wait is advised
    with pytest.raises(Overloaded) as slower:
        batcher.submit(item(4, now=0.0))
    assert slower.value.retry_after > refused.value.retry_after
    assert batcher.depth == 4


def test_a_request_larger_than_the_whole_queue_is_refused_as_invalid_not_overloaded() -> None:
    batcher = Batcher(spec(max_batch=2, max_queue=4))
    with pytest.raises(InvalidInput, match="queues at most 4"):
        batcher.submit(item(1, now=0.0, rows=5))
    assert batcher.depth == 0
    batcher.submit(item(2, now=0.0, rows=4))  # one that fits the empty queue is taken


def test_requests_past_their_deadline_are_dropped_before_a_forward() -> None:
    batcher = Batcher(spec())
    batcher.submit(item(1, now=0.0, deadline=0.010))
    batcher.submit(item(2, now=0.0, deadline=0.100))
    taken = batcher.take(0.050)
    assert [i.request_id for i in taken.expired] == [1]
    assert ids(taken.batch) == [2]
    assert batcher.depth == 0


def test_cancelled_requests_are_never_computed() -> None:
    batcher = Batcher(spec())
    batcher.submit(item(1, now=0.0))
    batcher.submit(item(2, now=0.0))
    assert batcher.cancel(b"gw", 1)
    assert not batcher.cancel(b"gw", 99)
    taken = batcher.take(0.0)
    assert ids(taken.batch) == [2]
    assert taken.expired == []


def test_a_cancel_drops_only_the_request_of_the_gateway_that_sent_it() -> None:
    # Each gateway numbers its own requests: both queued a request 7.
    batcher = Batcher(spec())
    batcher.submit(item(7, now=0.0, gateway=b"first"))
    batcher.submit(item(7, now=0.0, gateway=b"second"))
    assert batcher.cancel(b"second", 7)
    assert not batcher.cancel(b"third", 7)
    taken = batcher.take(0.0)
    assert taken.batch is not None
    assert [i.reply_to for i in taken.batch.items] == [b"first"]


def test_shape_groups_never_share_a_batch() -> None:
    batcher = Batcher(spec(shape=(-1,)))
    batcher.submit(item(1, now=0.0, width=3))
    batcher.submit(item(2, now=0.0, width=5))
    batcher.submit(item(3, now=0.0, width=3))
    first = batcher.take(0.0).batch
    assert ids(first) == [1, 3]
    second = batcher.take(0.0).batch
    assert ids(second) == [2]
    assert second.inputs[0].shape == (1, 5)


def test_padding_puts_lengths_of_one_bucket_into_one_batch() -> None:
    batcher = Batcher(spec(shape=(-1,), pad_value=-1.0, buckets=(4, 8)))
    batcher.submit(item(1, now=0.0, width=2))
    batcher.submit(item(2, now=0.0, width=4))
    batcher.submit(item(3, now=0.0, width=6))  # bucket 8: another batch
    first = batcher.take(0.0).batch
    assert ids(first) == [1, 2]
    np.testing.assert_array_equal(first.inputs[0], [[1, 1, -1, -1], [2, 2, 2, 2]])
    assert batcher.stats.padding_waste == pytest.approx(2 / 8)
    second = batcher.take(0.0).batch
    assert ids(second) == [3]
    assert second is not None
    assert second.inputs[0].shape == (1, 8)


def test_no_padding_when_an_output_follows_the_variable_axis() -> None:
    per_token = dataclasses.replace(
        spec(shape=(-1,), pad_value=0.0, buckets=(8,)),
        outputs=(TensorSpec("y", "float32", (-1,)),),
    )
    batcher = Batcher(per_token)
    batcher.submit(item(1, now=0.0, width=2))
    batcher.submit(item(2, now=0.0, width=3))
    assert ids(batcher.take(0.0).batch) == [1]


def test_results_are_sliced_back_to_each_request_in_order() -> None:
    batcher = Batcher(spec(max_batch=8))
    for request_id, rows in ((1, 2), (2, 1), (3, 3)):
        batcher.submit(item(request_id, now=0.0, rows=rows))
    batch = batcher.take(0.0).batch
    assert batch is not None
    rows_of = {
        i.request_id: batch.inputs[0][s] for i, s in zip(batch.items, batch.slices(), strict=True)
    }
    for request_id, rows in ((1, 2), (2, 1), (3, 3)):
        assert rows_of[request_id].shape == (rows, 3)
        assert (rows_of[request_id] == request_id).all()
