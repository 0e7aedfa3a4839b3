"""One load point: run the load generator in its own process against a server, and sample the
CPU and RSS of the server's process tree and of the generator over the measured period."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import loadgen, procstats
from bench.server import ManagedProcess, python_module

# A generator using this share of a core or more is likely the bound, not the server.
LOADGEN_SATURATED_CORES = 0.9


def run_point(
    *,
    port: int,
    path: str,
    body_file: Path,
    concurrency: int,
    warmup_s: float,
    duration_s: float,
    server: ManagedProcess,
    log_dir: Path,
    label: str,
    headers: Sequence[str] = (),
) -> dict[str, Any]:
    argv = python_module(
        "bench.loadgen",
        "--port",
        str(port),
        "--path",
        path,
        "--body-file",
        str(body_file),
        "--concurrency",
        str(concurrency),
        "--warmup",
        str(warmup_s),
        "--duration",
        str(duration_s),
        *(f"--header={line}" for line in headers),
    )
    gen = ManagedProcess(
        "loadgen", argv, log_path=log_dir / f"loadgen-{label}.log", stdout_pipe=True
    )
    # The reads below block; a watchdog ends a generator that hangs well past its schedule.
    watchdog = threading.Timer(warmup_s + duration_s + 30.0, gen.popen.kill)
    watchdog.start()
    log_offset = server.log_size()
    try:
        result = _collect(gen, server)
    finally:
        watchdog.cancel()
        gen.stop(grace_s=5.0)
    # What the server wrote meanwhile (warnings, tracebacks): a count and the first lines.
    new_lines = server.log_since(log_offset)
    result["server_log_lines"] = len(new_lines)
    result["server_log_excerpt"] = new_lines[:8]
    return result


def _collect(gen: ManagedProcess, server: ManagedProcess) -> dict[str, Any]:
    assert gen.popen.stdout is not None
    before_srv: dict[int, procstats.Sample] = {}
    before_gen: dict[int, procstats.Sample] = {}
    after_srv: dict[int, procstats.Sample] = {}
    after_gen: dict[int, procstats.Sample] = {}
    started = ended = busy_before = busy_after = 0.0
    result: dict[str, Any] | None = None
    for line in gen.popen.stdout:
        line = line.strip()
        if line == loadgen.MEASURE_START:
            started = time.perf_counter()
            before_gen = procstats.snapshot(gen.pid, tree=False)
            before_srv = procstats.snapshot(server.pid)
            busy_before = procstats.machine_busy_s()
        elif line == loadgen.MEASURE_END:
            ended = time.perf_counter()
            after_gen = procstats.snapshot(gen.pid, tree=False)
            after_srv = procstats.snapshot(server.pid)
            busy_after = procstats.machine_busy_s()
        elif line.startswith("{"):
            result = json.loads(line)
    gen.popen.wait()
    if result is None or not ended:
        raise RuntimeError(
            f"load generator exited with {gen.popen.returncode} and no result:\n" + gen.log_tail()
        )
    wall = ended - started
    server_usage = procstats.usage(before_srv, after_srv, wall, server.pid)
    gen_usage = procstats.usage(before_gen, after_gen, wall, gen.pid)
    lg = gen_usage[0] if gen_usage else {"cores": 0.0, "rss_mb": 0.0}
    result["server_alive"] = server.alive()
    result["process_usage"] = server_usage
    result["roles"] = by_role(server_usage)
    result["loadgen"] = {"cores": lg["cores"], "rss_mb": lg["rss_mb"]}
    result["loadgen_saturated"] = lg["cores"] >= LOADGEN_SATURATED_CORES
    # Everything else on the machine (other jobs, the orchestrator): a noisy row shows it here.
    ours = lg["cores"] + sum(row["cores"] for row in server_usage)
    result["other_cores"] = round(max(0.0, (busy_after - busy_before) / wall - ours), 2)
    rps = result["rps"]
    result["cpu_us_per_request"] = {
        role: round(entry["cores"] / rps * 1e6, 1) if rps else None
        for role, entry in [*result["roles"].items(), ("loadgen", lg)]
    }
    return result


def by_role(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Cores summed per role, RSS listed per process of that role."""
    roles: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = roles.setdefault(row["role"], {"cores": 0.0, "rss_mb": [], "count": 0})
        entry["cores"] = round(entry["cores"] + row["cores"], 3)
        entry["rss_mb"].append(row["rss_mb"])
        entry["count"] += 1
    return roles
