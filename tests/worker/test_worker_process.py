"""A real worker process behind the gateway's WorkerPool: batching, deadlines, crashes."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from maas.dispatch.link import WorkerLink
from maas.errors import DeadlineExceeded, ModelLoadError, Overloaded, Unavailable
from maas.types import TensorSpec, VersionKey
from support.waiting import until
from support.worker_process import (
    SlowMLP,
    connected_pool,
    heartbeats,
    load_spec,
    taken,
    until_worker,
    wait_healthy,
    worker_process,
    write_artifact,
)

KEY = VersionKey("m", 1)


def stats_of(pool, key: VersionKey = KEY) -> dict:  # type: ignore[no-untyped-def,type-arg]
    (worker,) = pool.describe()
    return next(s for s in worker["stats"] if s["key"] == str(key))


async def refreshed_stats(pool, key: VersionKey = KEY) -> dict:  # type: ignore[no-untyped-def,type-arg]
    before = pool.links[0].status
    for _ in range(200):  # the next heartbeat brings a fresh status
        await asyncio.sleep(0.02)
        if pool.links[0].status is not before:
            break
    return stats_of(pool, key)


async def test_concurrent_distinct_requests_each_get_their_own_result(tmp_path: Path) -> None:
    module = SlowMLP()
    path, digest = write_artifact(tmp_path, module)
    endpoint = f"ipc://{tmp_path}/w.sock"
    with worker_process(endpoint):
        # Two gateways' pools: one batch holds requests of both, and each gets its own rows.
        async with connected_pool([endpoint]) as pool, connected_pool([endpoint]) as other:
            await wait_healthy(pool)
            await wait_healthy(other)
            await pool.load(load_spec(path, digest, max_batch_size=8, max_delay_ms=50))
            assert pool.is_loaded(KEY)
            rng = np.random.default_rng(0)
            inputs = [
                rng.standard_normal((int(rng.integers(1, 4)), 4)).astype(np.float32)
                for _ in range(120)
            ]
            results = await asyncio.gather(
                *((pool, other)[i % 2].infer(KEY, [x]) for i, x in enumerate(inputs))
            )
            with torch.inference_mode():
                for x, (y,) in zip(inputs, results, strict=True):
                    expected = module(torch.from_numpy(x)).numpy()
                    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
            stats = await refreshed_stats(pool)
            assert stats["instances"] == sum(len(x) for x in inputs)
            assert stats["batches"] < len(inputs)  # requests from one burst shared forwards


async def test_unknown_version_and_bad_artifact_are_clear_errors(tmp_path: Path) -> None:
    path, digest = write_artifact(tmp_path, SlowMLP())
    endpoint = f"ipc://{tmp_path}/w.sock"
    with worker_process(endpoint):
        async with connected_pool([endpoint]) as pool:
            await wait_healthy(pool)
            with pytest.raises(Unavailable, match="not loaded"):
                await pool.infer(KEY, [np.zeros((1, 4), np.float32)])
            with pytest.raises(ModelLoadError, match="sha256"):
                await pool.load(load_spec(path, "0" * 64))
            corrupt = tmp_path / "corrupt.pt"
            corrupt.write_bytes(b"not a model")
            import hashlib

            with pytest.raises(ModelLoadError):
                await pool.load(load_spec(corrupt, hashlib.sha256(b"not a model").hexdigest()))
            await pool.load(load_spec(path, digest))  # the worker is still fine
            (y,) = await pool.infer(KEY, [np.zeros((2, 4), np.float32)])
            assert y.shape == (2, 3)


async def test_work_past_its_deadline_is_dropped_not_computed(tmp_path: Path) -> None:
    path, digest = write_artifact(tmp_path, SlowMLP())
    endpoint = f"ipc://{tmp_path}/w.sock"
    with worker_process(endpoint):
        async with connected_pool([endpoint]) as pool:
            await wait_healthy(pool)
            await pool.load(load_spec(path, digest))
            with pytest.raises(DeadlineExceeded):
                await pool.infer(KEY, [np.zeros((1, 4), np.float32)], timeout_s=0)
            await pool.infer(KEY, [np.zeros((1, 4), np.float32)], timeout_s=10)
            assert (await refreshed_stats(pool))["instances"] == 1


async def test_full_queue_answers_overloaded_and_cancelled_work_is_skipped(
    tmp_path: Path,
) -> None:
    path, digest = write_artifact(tmp_path, SlowMLP(rounds=400))
    endpoint = f"ipc://{tmp_path}/w.sock"
    one = np.zeros((1, 4), np.float32)
    with worker_process(endpoint):
        async with connected_pool([endpoint]) as pool:
            await wait_healthy(pool)
            await pool.load(load_spec(path, digest, max_batch_size=1, max_queue=3))
            busy = asyncio.ensure_future(pool.infer(KEY, [one]))
            await until_worker(pool, lambda s: taken(s, KEY) == 1, "the slow forward to begin")
            queued = [asyncio.ensure_future(pool.infer(KEY, [one])) for _ in range(2)]
            cancelled = asyncio.ensure_future(pool.infer(KEY, [one]))
            await until_worker(pool, lambda s: s.queue_depth == 3, "three queued behind it")
            cancelled.cancel()  # its caller leaves while it waits in the queue
            with pytest.raises(Overloaded) as refused:  # 3 instances queued: full
                await pool.infer(KEY, [one])
            assert refused.value.retry_after > 0
            await asyncio.gather(busy, *queued)
            with pytest.raises(asyncio.CancelledError):
                await cancelled
            # 1 + 2 ran; the refused and the cancelled ones never reached the model.
            assert (await refreshed_stats(pool))["instances"] == 3


async def test_a_killed_worker_fails_its_calls_fast_and_is_used_again_after_restart(
    tmp_path: Path,
) -> None:
    path, digest = write_artifact(tmp_path, SlowMLP(rounds=2000))
    endpoint = f"ipc://{tmp_path}/w.sock"
    booted: list[WorkerLink] = []
    async with connected_pool([endpoint], booted) as pool:
        with worker_process(endpoint) as first:
            await wait_healthy(pool)
            await pool.load(load_spec(path, digest))
            pending = asyncio.ensure_future(pool.infer(KEY, [np.zeros((1, 4), np.float32)]))
            await until_worker(pool, lambda s: taken(s, KEY) == 1, "its forward to begin")
            os.kill(first.pid, signal.SIGKILL)
            with pytest.raises(Unavailable):
                await asyncio.wait_for(pending, timeout=5)  # fails fast, never hangs
            await wait_healthy(pool, healthy=False)
            assert not pool.is_loaded(KEY)
        with worker_process(endpoint):
            await wait_healthy(pool)
            assert len(booted) == 2  # first sight, then the restart: both handed to the hook
            assert booted[0].status is not None
            await pool.load_on(pool.links[0].name, load_spec(path, digest))
            (y,) = await pool.infer(KEY, [np.zeros((1, 4), np.float32)])
            assert y.shape == (1, 3)


async def test_a_cancel_from_one_gateway_never_drops_another_gateways_request(
    tmp_path: Path,
) -> None:
    # Every gateway numbers its requests from 1, so two gateways' queued requests can share an
    # id; a Cancel names the request of the gateway that sent it, and no other.
    # ~1.4 s here: the queue depth it checks is seen through heartbeats, 0.2 s apart each
    slow_path, slow_digest = write_artifact(tmp_path, SlowMLP(rounds=2400))
    fast_path, fast_digest = write_artifact(tmp_path, SlowMLP())
    slow, fast = VersionKey("slow", 1), VersionKey("fast", 1)
    one = np.zeros((1, 4), np.float32)
    endpoint = f"ipc://{tmp_path}/w.sock"
    with worker_process(endpoint):
        async with connected_pool([endpoint]) as first, connected_pool([endpoint]) as second:
            await wait_healthy(first)
            await wait_healthy(second)
            await second.load(load_spec(slow_path, slow_digest, "slow", max_batch_size=1))
            await first.load(load_spec(fast_path, fast_digest, "fast", max_batch_size=1))
            await first.infer(fast, [one])

            def queued() -> int:
                status = first.links[0].status
                return status.queue_depth if status is not None else -1

            blocker = asyncio.ensure_future(second.infer(slow, [one]))  # runs on its thread
            kept = asyncio.ensure_future(second.infer(fast, [one]))  # queued behind it
            await until(lambda: queued() == 1, "the second gateway's request queued")
            dropped = asyncio.ensure_future(first.infer(fast, [one]))
            await until(lambda: queued() == 2, "the first gateway's request queued")
            shared = set(first.links[0].pending) & set(second.links[0].pending)
            assert shared, "the two gateways' requests were meant to share an id"
            dropped.cancel()  # the first gateway's caller leaves: a Cancel for its id
            (y,) = await asyncio.wait_for(kept, timeout=30)
            assert y.shape == (1, 3)
            await blocker
            with pytest.raises(asyncio.CancelledError):
                await dropped
            stats = await refreshed_stats(first, fast)
            assert stats["instances"] == 2  # the first request and `kept`; not `dropped`


async def test_a_stalled_gateway_does_not_blame_the_worker(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The gateway's own event loop blocked for longer than a worker may stay silent (a long
    import, a slow GC): the worker's replies were waiting, unread. It is not 'lost', and a load
    in flight goes on."""
    path, digest = write_artifact(tmp_path, SlowMLP())
    endpoint = f"ipc://{tmp_path}/w.sock"
    with worker_process(endpoint):
        async with connected_pool([endpoint]) as pool:
            await wait_healthy(pool)
            loading = asyncio.create_task(pool.load(load_spec(path, digest)))
            await until(lambda: pool.links[0].pending, "the load to be sent")
            time.sleep(2.5)  # noqa: ASYNC251 - block this loop, as a blocking import did
            await loading
            await heartbeats(pool, 3)  # a few after the stall
            assert pool.links[0].healthy
            assert pool.is_loaded(KEY)
    assert not [r for r in caplog.records if "lost" in r.getMessage()]


async def test_a_check_loads_without_keeping_anything(tmp_path: Path) -> None:
    path, digest = write_artifact(tmp_path, SlowMLP())
    endpoint = f"ipc://{tmp_path}/w.sock"
    with worker_process(endpoint):
        async with connected_pool([endpoint]) as pool:
            await wait_healthy(pool)
            await pool.check(load_spec(path, digest))
            status = pool.links[0].status
            assert status is not None
            assert status.versions == ()
            wide = dataclasses.replace(  # the same file, with a wrong declared width
                load_spec(path, digest), inputs=(TensorSpec("x", "float32", (9,)),)
            )
            with pytest.raises(ModelLoadError, match="the model expects 4 values"):
                await pool.check(wide)
            assert pool.links[0].healthy
