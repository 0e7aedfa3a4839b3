"""Raw torch ceiling: samples/s of each artifact at batch 1, 8, 32 on one intra-op thread.

Run as its own process (`python -m bench.raw --out DIR`) with OMP_NUM_THREADS=1 set before
torch starts; it also writes the artifacts the gateway will load, so every figure is of the
very bytes being served. Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

BATCHES: tuple[int, ...] = (1, 8, 32)
# A batch of 32 ResNet images takes about a second a forward here; its rows go to C=8.
LARGE_BATCHES: tuple[int, ...] = (1, 8)
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _example(torch: Any, name: str, batch: int) -> Any:
    from bench.specs import MLP_INPUTS, RESNET_SHAPE, TOKENS_LENGTH, TOKENS_VOCAB

    generator = torch.Generator().manual_seed(batch)
    if name == "resnet":
        return torch.randn(batch, *RESNET_SHAPE, generator=generator)
    if name == "tokens":
        return torch.randint(0, TOKENS_VOCAB, (batch, TOKENS_LENGTH), generator=generator)
    return torch.randn(batch, MLP_INPUTS[name], generator=generator)


def _time(module: Any, example: Any, seconds: float) -> list[int]:
    """Nanoseconds per forward, for at least `seconds` (and at least 5 forwards)."""
    for _ in range(3):
        module(example)
    times: list[int] = []
    deadline = time.perf_counter_ns() + int(seconds * 1e9)
    while True:
        start = time.perf_counter_ns()
        module(example)
        end = time.perf_counter_ns()
        times.append(end - start)
        if end >= deadline and len(times) >= 5:
            return times


def measure(artifact: bytes, name: str, seconds: float) -> dict[str, Any]:
    import torch

    from bench.specs import LARGE

    if name.endswith("-onnx"):
        return _measure_onnx(torch, artifact, name, seconds)
    module = torch.jit.load(io.BytesIO(artifact), map_location="cpu")  # type: ignore[no-untyped-call]
    module.eval()
    with torch.inference_mode():
        batches = LARGE_BATCHES if name in LARGE else BATCHES
        return _figures(module, lambda b: _example(torch, name, b), batches, seconds)


def _measure_onnx(torch: Any, artifact: bytes, name: str, seconds: float) -> dict[str, Any]:
    """The ONNX twin timed by ONNX Runtime as a worker runs it: one intra-op thread, one
    inter-op thread, sequential, no spinning."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    session = ort.InferenceSession(artifact, options, providers=["CPUExecutionProvider"])
    base = name.removesuffix("-onnx")

    def run(x: Any) -> Any:
        return session.run(None, {"x": x})

    return _figures(run, lambda b: _example(torch, base, b).numpy(), BATCHES, seconds)


def _figures(
    forward: Any, example: Any, batches: tuple[int, ...], seconds: float
) -> dict[str, Any]:
    out: dict[str, Any] = {"batches": {}}
    for batch in batches:
        times = _time(forward, example(batch), seconds)
        out["batches"][str(batch)] = {
            "samples_per_s": batch * len(times) / (sum(times) / 1e9),
            "forward_ms_p50": statistics.median(times) / 1e6,
            "forwards": len(times),
        }
    out["forward_ms_b1"] = out["batches"]["1"]["forward_ms_p50"]
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="where to write the artifacts")
    parser.add_argument("--models", default="small,wide,tokens")
    parser.add_argument("--seconds", type=float, default=1.0, help="timing per batch size")
    parser.add_argument("--no-measure", action="store_true", help="only write the artifacts")
    args = parser.parse_args(argv)
    for var in _THREAD_VARS:  # before torch is imported (bench.artifacts imports it)
        os.environ[var] = "1"
    import torch

    torch.set_num_threads(1)
    from bench.artifacts import write

    result: dict[str, Any] = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "env": {var: os.environ.get(var) for var in _THREAD_VARS},
        "seconds_per_point": args.seconds,
        "models": {},
    }
    for name in args.models.split(","):
        artifact_path, meta_path, build_s = write(name, args.out)
        entry: dict[str, Any] = {
            "artifact": str(artifact_path),
            "meta": str(meta_path),
            "build_s": round(build_s, 2),
            "bytes": artifact_path.stat().st_size,
        }
        if not args.no_measure and name != "digits":
            entry.update(measure(artifact_path.read_bytes(), name, args.seconds))
        result["models"][name] = entry
        print(f"raw: {name} ready ({build_s:.1f} s to build)", file=sys.stderr, flush=True)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
