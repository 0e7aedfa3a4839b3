"""Real models through a real worker: padded token batches, and the CUDA device when present."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from maas.control.meta import parse_meta
from maas.demo.artifact import DemoModel, load_artifact
from maas.types import ArtifactFormat, LoadSpec, TensorSpec, VersionKey
from maas.worker.main import choose_device
from support.worker_process import (
    SlowMLP,
    connected_pool,
    load_spec,
    until_worker,
    wait_healthy,
    worker_process,
    write_artifact,
)


def _tokens_spec(tmp_path: Path, demo: DemoModel) -> LoadSpec:
    path = tmp_path / "tokens.pt"
    path.write_bytes(demo.artifact)
    meta = parse_meta(demo.meta).to_new_version()
    return LoadSpec(
        key=VersionKey("tokens", 1),
        path=str(path),
        sha256=hashlib.sha256(demo.artifact).hexdigest(),
        format=ArtifactFormat.TORCHSCRIPT,
        inputs=tuple(TensorSpec.from_json(t) for t in meta.inputs),
        outputs=tuple(TensorSpec.from_json(t) for t in meta.outputs),
        device="cpu",
        max_batch_size=32,
        max_delay_ms=50,
        pad_value=meta.batching["pad_value"],
        buckets=tuple(meta.batching["buckets"]),
    )


async def test_sequences_of_different_lengths_share_padded_batches_with_unpadded_results(
    tmp_path: Path, tokens_demo: DemoModel
) -> None:
    spec = _tokens_spec(tmp_path, tokens_demo)
    module = load_artifact(tokens_demo.artifact)
    rng = np.random.default_rng(1)
    sequences = [rng.integers(0, 1000, size=(1, int(n))) for n in rng.integers(1, 60, size=60)]
    endpoint = f"ipc://{tmp_path}/w.sock"
    with worker_process(endpoint):
        async with connected_pool([endpoint]) as pool:
            await wait_healthy(pool)
            await pool.load(spec)
            results = await asyncio.gather(*(pool.infer(spec.key, [s]) for s in sequences))
            for ids, (logits,) in zip(sequences, results, strict=True):
                with torch.inference_mode():
                    alone = module(torch.from_numpy(ids)).numpy()
                np.testing.assert_allclose(logits, alone, atol=1e-4)
            await until_worker(
                pool,
                lambda s: sum(v.telemetry.batch_size.total for v in s.stats) == len(sequences),
                "the worker's figures to count every sequence",
            )
            (worker,) = pool.describe()
            (stats,) = worker["stats"]
            assert stats["instances"] == len(sequences)
            # Fewer forwards than distinct lengths: sequences of one bucket were padded together.
            assert stats["batches"] < len({s.shape[1] for s in sequences})
            assert 0 < stats["padding_waste"] < 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
async def test_a_worker_runs_on_cuda_when_there_is_one(tmp_path: Path) -> None:
    assert choose_device(0) == "cuda:0"
    module = SlowMLP()
    path, digest = write_artifact(tmp_path, module)
    endpoint = f"ipc://{tmp_path}/w.sock"
    with worker_process(endpoint):
        async with connected_pool([endpoint]) as pool:
            await wait_healthy(pool)
            (worker,) = pool.describe()
            assert worker["device"] == "cuda:0"
            spec = dataclasses.replace(load_spec(path, digest), device="auto")
            await pool.load(spec)
            x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
            (y,) = await pool.infer(spec.key, [x])
            with torch.inference_mode():
                np.testing.assert_allclose(y, module(torch.from_numpy(x)).numpy(), atol=1e-4)
