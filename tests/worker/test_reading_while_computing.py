"""The worker keeps reading while a forward runs: large requests sent meanwhile are read,
queued and batched together when it ends, and their phases say where they waited."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from maas.types import ArtifactFormat, LoadSpec, TensorSpec, Timing, VersionKey
from support.model_files import WIDE_IN as WIDTH
from support.model_files import SlowMean
from support.worker_process import (
    connected_pool,
    taken,
    until_worker,
    wait_healthy,
    worker_process,
    write_artifact,
)

KEY = VersionKey("big", 1)


def _spec(path: Path, digest: str) -> LoadSpec:
    return LoadSpec(
        key=KEY,
        path=str(path),
        sha256=digest,
        format=ArtifactFormat.TORCHSCRIPT,
        inputs=(TensorSpec("x", "float32", (WIDTH,)),),
        outputs=(TensorSpec("y", "float32", (1,)),),
        device="cpu",
        max_batch_size=8,
        max_delay_ms=5.0,
    )


async def test_large_requests_sent_during_a_forward_are_read_meanwhile_and_batched(
    tmp_path: Path,
) -> None:
    # A forward of about 85 ms here: under the 0.1 s below which forwards used to run inline,
    # with the worker reading nothing until they ended.
    path, digest = write_artifact(tmp_path, SlowMean(rounds=150))
    endpoint = f"ipc://{tmp_path}/w.sock"
    with worker_process(endpoint):
        async with connected_pool([endpoint]) as pool:
            await wait_healthy(pool)
            await pool.load(_spec(path, digest))
            images = [np.full((1, WIDTH), float(i), np.float32) for i in range(5)]
            first_timing = Timing()
            first = asyncio.ensure_future(pool.infer(KEY, [images[0]], timing=first_timing))
            await until_worker(pool, lambda s: taken(s, KEY) == 1, "the first forward to begin")
            timings = [Timing() for _ in range(4)]
            rest = [
                asyncio.ensure_future(pool.infer(KEY, [image], timing=timing))
                for image, timing in zip(images[1:], timings, strict=True)
            ]
            outputs = await asyncio.gather(first, *rest)

    for i, (y,) in enumerate(outputs):  # each caller got its own rows
        assert y.shape == (1, 1)
        assert y[0, 0] == float(i)
    forward_end = first_timing.done
    assert first_timing.taken < forward_end
    for timing in timings:
        # Read while the first forward ran (4 MiB: a worker that read only between forwards
        # would still be reading them when it ended) ...
        assert timing.arrived < forward_end, (timing, first_timing)
        # ... queued until it ended, and run together in the next batch.
        assert timing.taken >= forward_end
        assert timing.taken == timings[0].taken
        assert timing.done == timings[0].done
        phases = timing.phases(timing.sent - 0.001, timing.done + 0.001)
        assert phases is not None
        _, transfer, queue, inference, _ = phases
        assert queue > transfer  # the wait was for the model, and it shows as such
        assert inference > 0
