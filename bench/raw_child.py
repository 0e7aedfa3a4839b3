"""Raw torch timing in a child process (`bench.raw`): at the start of a run, and again for the
large models right before their rows, since the machine's speed drifts over minutes."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench.server import ManagedProcess, ProcessFailed, python_module


def say(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def build_and_time_raw(
    args: argparse.Namespace, work: Path, models: list[str], folder: str = "models"
) -> dict[str, Any]:
    """Artifacts + raw ceiling, in a child process with one torch thread from the start."""
    say("building artifacts" + ("" if args.skip_raw else " and timing raw torch (1 thread)"))
    cli = ["--out", str(work / folder), "--models", ",".join(models)]
    cli += ["--seconds", str(args.raw_seconds)] + (["--no-measure"] if args.skip_raw else [])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = ManagedProcess(
        "bench.raw",
        python_module("bench.raw", *cli),
        log_path=work / f"raw-{folder}.log",
        env=env,
        stdout_pipe=True,
    )
    with proc:
        assert proc.popen.stdout is not None
        out = proc.popen.stdout.read()
        code = proc.popen.wait()
    if code != 0 or not out.strip():
        raise ProcessFailed(f"bench.raw exited with {code}:\n{proc.log_tail()}")
    raw: dict[str, Any] = json.loads(out)
    return raw


def retime_raw(
    args: argparse.Namespace, work: Path, models: list[str], raw: dict[str, Any]
) -> None:
    """Time `models` again and keep those figures (the first ones under `timed_at_start`)."""
    fresh = build_and_time_raw(args, work, models, "models-retimed")
    for name in models:
        entry = raw["models"][name]
        entry["timed_at_start"] = {k: entry.get(k) for k in ("batches", "forward_ms_b1")}
        entry.update({k: fresh["models"][name][k] for k in ("batches", "forward_ms_b1")})
