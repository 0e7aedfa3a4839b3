"""The data plane (`maas.serving.dataplane`) over a fake backend, without HTTP: a resolved ref
reaches the backend as its version's key, groups are cut to the version's batch size and put
back together in order, the request limits hold before anything is sent, and the deadline is
kept for a backend that keeps none."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from maas.dispatch.fake import FakeBackend, FakeCall
from maas.errors import DeadlineExceeded, InvalidInput, PayloadTooLarge, Unavailable
from maas.serving.dataplane import DataPlane
from maas.types import ModelRef, TensorSpec, Timing, VersionKey
from support.serving_parts import StaticRegistry, loaded, router, stack, version


def halve(call: FakeCall) -> list[Any]:
    (x,) = call.inputs
    return [x[:, :3] / 2]


def rows(count: int, start: int = 0) -> np.ndarray[Any, Any]:
    """`count` instances of 4 numbers; instance i holds start+i in every place."""
    column = np.arange(start, start + count, dtype=np.float32)[:, None]
    return np.repeat(column, 4, axis=1)


async def test_a_resolved_alias_reaches_the_backend_as_its_version_s_key() -> None:
    _, backend, plane = await stack(
        halve, version(number=1), version(number=2), aliases=[("m", "production", 2)]
    )
    record = await plane.resolve(ModelRef("m"))  # no alias named: production
    assert record.key == VersionKey("m", 2)
    x = rows(3)
    (y,) = (await plane.infer(record, [[x]], timeout_s=5))[0]
    (sent,) = backend.calls
    assert sent.key == VersionKey("m", 2)
    assert sent.timeout_s == 5
    np.testing.assert_array_equal(sent.inputs[0], x)
    np.testing.assert_array_equal(y, x[:, :3] / 2)


async def test_a_group_larger_than_the_batch_size_is_cut_and_answered_in_order() -> None:
    record = version(max_batch_size=4)
    _, backend, plane = await stack(halve, record)
    x = rows(10)
    (y,) = (await plane.infer(record, [[x]], timeout_s=5))[0]
    assert [len(c.inputs[0]) for c in backend.calls] == [4, 4, 2]
    assert [float(c.inputs[0][0, 0]) for c in backend.calls] == [0, 4, 8]
    np.testing.assert_array_equal(y, x[:, :3] / 2)  # the pieces put back in request order


async def test_each_group_is_cut_on_its_own_and_answered_as_its_own_group() -> None:
    record = version(max_batch_size=3)
    _, backend, plane = await stack(halve, record)
    small, large = rows(2), rows(7, start=100)
    answers = await plane.infer(record, [[small], [large]], timeout_s=5)
    assert sorted(len(c.inputs[0]) for c in backend.calls) == [1, 2, 3, 3]
    assert [len(group[0]) for group in answers] == [2, 7]
    np.testing.assert_array_equal(answers[0][0], small[:, :3] / 2)
    np.testing.assert_array_equal(answers[1][0], large[:, :3] / 2)


async def test_a_group_within_the_batch_size_goes_whole() -> None:
    record = version(max_batch_size=4)
    _, backend, plane = await stack(halve, record)
    await plane.infer(record, [[rows(4)]], timeout_s=5)
    assert [len(c.inputs[0]) for c in backend.calls] == [4]


async def test_a_cut_request_takes_the_timing_of_its_last_piece() -> None:
    class Stamping(FakeBackend):
        """Stamps each piece's instants with the first number of its first instance."""

        async def infer(
            self,
            key: VersionKey,
            inputs: list[Any],
            *,
            timeout_s: float | None = None,
            timing: Timing | None = None,
        ) -> list[Any]:
            assert timing is not None
            first = float(inputs[0][0, 0])
            timing.sent = timing.arrived = timing.taken = timing.done = first
            return await super().infer(key, inputs, timeout_s=timeout_s, timing=timing)

    record = version(max_batch_size=4)
    plane = DataPlane(router(StaticRegistry()), await loaded(Stamping(halve), record))
    timing = Timing()
    await plane.infer(record, [[rows(10)]], timeout_s=5, timing=timing)
    assert timing.done == 8.0  # the piece of instances 8 and 9 finished last


async def test_more_instances_than_the_version_queues_are_refused_before_sending() -> None:
    record = version(max_batch_size=4, max_queue=6)
    _, backend, plane = await stack(halve, record)
    with pytest.raises(InvalidInput, match=r"holds 7 instances; m@1 queues at most 6"):
        await plane.infer(record, [[rows(3)], [rows(4)]], timeout_s=5)
    assert backend.calls == []
    await plane.infer(record, [[rows(6)]], timeout_s=5)  # as many as it queues: accepted
    assert len(backend.calls) == 2


async def test_the_request_limits_hold_before_anything_is_sent() -> None:
    record = version()
    registry, backend, _ = await stack(halve, record)
    plane = DataPlane(router(registry), backend, max_instances=5, max_instance_elements=3)
    with pytest.raises(PayloadTooLarge, match="holds 4 numbers; at most 3 per instance"):
        await plane.infer(record, [[rows(1)]], timeout_s=5)
    wide = version(inputs=(TensorSpec("x", "float32", (2,)),))
    with pytest.raises(PayloadTooLarge, match="holds 6 instances; at most 5 per request"):
        await plane.infer(wide, [[np.zeros((3, 2), np.float32)]] * 2, timeout_s=5)
    assert backend.calls == []


async def test_a_backend_that_keeps_no_deadline_is_held_to_it() -> None:
    reached = asyncio.Event()

    async def never(call: FakeCall) -> list[Any]:
        reached.set()
        await asyncio.Event().wait()  # a model that never answers
        raise AssertionError("unreachable")

    record = version()
    _, backend, plane = await stack(never, record)
    assert not backend.enforces_deadlines
    with pytest.raises(DeadlineExceeded, match="deadline of 50 ms passed"):
        await plane.infer(record, [[rows(1)]], timeout_s=0.05)
    assert reached.is_set()


async def test_a_version_no_worker_holds_is_unavailable() -> None:
    record = version()
    _, backend, plane = await stack(halve, record)
    await backend.unload(record.key)
    with pytest.raises(Unavailable, match="no ready worker holds m@1"):
        await plane.infer(record, [[rows(1)]], timeout_s=5)
