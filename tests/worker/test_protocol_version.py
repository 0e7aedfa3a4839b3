"""A gateway and a worker of different releases: refused and shown, never taken for dead."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from maas.dispatch import membership as membership_module
from maas.dispatch.pool import WorkerPool
from maas.errors import ModelLoadError, Unavailable
from maas.types import VersionKey
from maas.worker import loop as loop_module
from maas.worker.inproc import InprocWorker
from support.worker_process import load_spec, write_artifact


class _Double(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :3] * 2


async def _pool() -> WorkerPool:
    pool = WorkerPool([], local=InprocWorker(torch_threads=1))
    await pool.start()
    return pool


async def test_same_protocol_serves_through_the_inproc_worker_loop(tmp_path: Path) -> None:
    path, digest = write_artifact(tmp_path, _Double())
    pool = await _pool()
    try:
        (worker,) = pool.describe()
        assert worker["healthy"]
        assert worker["reason"] is None
        await pool.load(load_spec(path, digest))
        (out,) = await pool.infer(VersionKey("m", 1), [np.ones((3, 4), np.float32)])
        assert out.tolist() == [[2.0] * 3] * 3
    finally:
        await pool.close()


@pytest.mark.parametrize("side", ["worker", "gateway"])
async def test_another_protocol_is_refused_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, side: str
) -> None:
    module = loop_module if side == "worker" else membership_module
    monkeypatch.setattr(module, "PROTOCOL", 99)
    path, digest = write_artifact(tmp_path, _Double())
    pool = await _pool()
    try:
        (worker,) = pool.describe()
        assert worker["healthy"] is False
        assert "protocol" in worker["reason"]
        assert "99" in worker["reason"]
        assert pool.workers()[0].healthy is False  # placement puts nothing there
        with pytest.raises(ModelLoadError):
            await pool.load(load_spec(path, digest))
        with pytest.raises(Unavailable):
            await pool.infer(VersionKey("m", 1), [np.ones((1, 4), np.float32)])
    finally:
        await pool.close()
