"""A WorkerPool whose workers come and go while it runs (workers that announce themselves):
one connected later serves, and one let go mid-traffic hands its callers to the other."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from maas.types import VersionKey
from support.waiting import until
from support.worker_process import (
    SlowMLP,
    connected_pool,
    load_spec,
    worker_process,
    write_artifact,
)

KEY = VersionKey("m", 1)


async def test_a_worker_joins_serves_and_leaves_without_failing_a_call(tmp_path: Path) -> None:
    path, digest = write_artifact(tmp_path, SlowMLP())
    first, second = f"ipc://{tmp_path}/a.sock", f"ipc://{tmp_path}/b.sock"
    with worker_process(first, "a"), worker_process(second, "b"):
        async with connected_pool([first]) as pool:
            await until(lambda: all(link.healthy for link in pool.links), "a to be healthy")
            pool.connect(second)
            pool.connect(second)  # connecting twice is one link
            assert pool.endpoints == [first, second]
            await until(
                lambda: sorted(w.name for w in pool.workers() if w.healthy) == ["a", "b"],
                "b to be heard from",
            )
            await pool.load(load_spec(path, digest, max_batch_size=4, max_delay_ms=5))
            assert {w.name for w in pool.workers() if str(KEY) in w.versions} == {"a", "b"}

            x = np.ones((1, 4), np.float32)
            calls = [asyncio.ensure_future(pool.infer(KEY, [x])) for _ in range(60)]
            await asyncio.sleep(0)  # every call picked a worker and was sent
            assert len(pool.links[0].pending) > 0  # some are in flight on a
            pool.disconnect(first)  # its callers go to b
            pool.disconnect(first)  # gone already: nothing happens
            results = await asyncio.gather(*calls)
            assert len(results) == 60
            assert all(y.shape == (1, 3) for (y,) in results)
            assert pool.endpoints == [second]
            assert [w.name for w in pool.workers()] == ["b"]
            (y,) = await pool.infer(KEY, [x])
            assert y.shape == (1, 3)
