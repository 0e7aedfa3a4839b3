"""The gateway ↔ worker hop alone, at C=1: one `maas worker` process on `ipc://`, then one on
`tcp://` (CurveZMQ, loopback), each driven by a WorkerPool in this process, next to the raw
in-process forward of the same model. Prints p50/p99 per link and what each adds to the raw
forward; `--out` writes them as JSON.

    .venv/bin/python -m bench.link --model small --requests 3000
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.artifacts import build, mlp
from bench.specs import MLP_INPUTS
from maas.dispatch.pool import WorkerPool
from maas.transport.curve import DeploymentKeys, make_keys
from maas.types import ArtifactFormat, LoadSpec, TensorSpec, VersionKey


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _percentiles(samples: list[float]) -> dict[str, float]:
    ms = np.array(samples) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def _raw(name: str, requests: int) -> dict[str, float]:
    torch.set_num_threads(1)
    module = mlp(name)
    x = torch.randn(1, MLP_INPUTS[name])
    samples = []
    with torch.inference_mode():
        for _ in range(requests):
            started = time.perf_counter()
            module(x)
            samples.append(time.perf_counter() - started)
    return _percentiles(samples)


async def _link(
    endpoint: str, keys: DeploymentKeys | None, spec: LoadSpec, requests: int
) -> dict[str, float]:
    pool = WorkerPool([endpoint], keys=keys)
    await pool.start()
    try:
        await pool.load(spec)
        x = (
            np.random.default_rng(0)
            .standard_normal((1, MLP_INPUTS[spec.key.model]))
            .astype(np.float32)
        )
        for _ in range(200):  # warm both ends
            await pool.infer(spec.key, [x], timeout_s=5)
        samples = []
        for _ in range(requests):
            started = time.perf_counter()
            await pool.infer(spec.key, [x], timeout_s=5)
            samples.append(time.perf_counter() - started)
        return _percentiles(samples)
    finally:
        await pool.close()


def _worker(endpoint: str, keys_dir: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "maas",
            "worker",
            "--listen",
            endpoint,
            "--threads",
            "1",
            "--log-level",
            "warning",
        ],
        env={**os.environ, "MAAS_WORKER_KEYS_DIR": str(keys_dir)},
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="small", choices=sorted(MLP_INPUTS))
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="maas-link-") as tmp:
        folder = Path(tmp)
        data, _meta = build(args.model)
        path = folder / "model.pt"
        path.write_bytes(data)
        spec = LoadSpec(
            key=VersionKey(args.model, 1),
            path=str(path),
            sha256=hashlib.sha256(data).hexdigest(),
            format=ArtifactFormat.TORCHSCRIPT,
            inputs=(TensorSpec("x", "float32", (MLP_INPUTS[args.model],)),),
            outputs=(TensorSpec("y", "float32", (10,)),),
            device="cpu",
            max_batch_size=1,
        )
        make_keys(folder / "keys")
        keys = DeploymentKeys.load(folder / "keys")
        rows: dict[str, Any] = {"raw": _raw(args.model, args.requests)}
        for name, endpoint, link_keys in (
            ("ipc", f"ipc://{folder}/w.sock", None),
            ("tcp+curve", f"tcp://127.0.0.1:{_free_port()}", keys),
        ):
            process = _worker(endpoint, folder / "keys")
            try:
                rows[name] = asyncio.run(_link(endpoint, link_keys, spec, args.requests))
            finally:
                process.kill()
                process.wait()
    raw = rows["raw"]["p50_ms"]
    print(f"{'link':<10} {'p50 ms':>8} {'p99 ms':>8} {'p50 - raw':>10}")
    for name, row in rows.items():
        print(
            f"{name:<10} {row['p50_ms']:>8.3f} {row['p99_ms']:>8.3f} {row['p50_ms'] - raw:>10.3f}"
        )
    print(
        f"tcp+curve adds {rows['tcp+curve']['p50_ms'] - rows['ipc']['p50_ms']:.3f} ms to ipc's p50"
    )
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
