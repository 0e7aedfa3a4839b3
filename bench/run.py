"""`make bench`: raw torch ceiling, bare FastAPI ceiling, then maas under load; see README.md.

python -m bench.run [--quick] [--models small,wide,tokens] [--concurrency 1,16,64] ...
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from bench import procstats, report, specs
from bench.console_tab import console_rows, unavailable
from bench.measure import run_point
from bench.pipeline import PIPELINE_MODELS, pipeline_rows
from bench.points import Target, measure_request
from bench.raw_child import build_and_time_raw, retime_raw, say
from bench.register import RegistrationFailed, admin_client, register, wait_servable
from bench.server import (
    ManagedProcess,
    ProcessFailed,
    free_port,
    start_bare,
    start_maas,
)
from bench.shadow import shadow_rows

BARE_CONCURRENCY = (64, 1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    cores = os.cpu_count() or 1
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    p.add_argument("--duration", type=float, help="measured seconds per row (5; --quick 1)")
    p.add_argument("--warmup", type=float, help="warm-up seconds per row (1; --quick 0.3)")
    p.add_argument(
        "--models", default=",".join(specs.MODELS), help="subset of small,wide,tokens,resnet"
    )
    p.add_argument("--concurrency", default="1,16,64", help="connections, comma-separated")
    p.add_argument("--gateways", type=int, default=cores, help=f"maas --gateways ({cores})")
    p.add_argument("--workers", type=int, default=1, help="maas --workers (1)")
    p.add_argument("--quick", action="store_true", help="short periods: a smoke check")
    p.add_argument("--skip-bare", action="store_true", help="no bare FastAPI ceiling")
    p.add_argument("--skip-raw", action="store_true", help="no raw torch timing (still builds)")
    p.add_argument("--raw-seconds", type=float, help="timing per raw batch size (1; --quick 0.2)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, registry)")
    p.add_argument("--out", type=Path, help="JSON path (bench/results/latest.json)")
    p.add_argument("--skip-v2", action="store_true", help="no Open Inference Protocol rows")
    p.add_argument(
        "--skip-pipeline",
        action="store_true",
        help="no ONNX / int8 / image rows (they need wide in --models)",
    )
    p.add_argument(
        "--skip-shadow",
        action="store_true",
        help="no rows of small with and without a shadow (they need small in --models)",
    )
    p.add_argument(
        "--console",
        action="store_true",
        help="also each model's native rows (batching on) without, then with, the operator "
        "console open on its page in a headless chromium (needs playwright and chromium)",
    )
    p.add_argument(
        "--baseline",
        type=Path,
        help="a checkout of another commit: its maas serves the native rows too, each run "
        "right after this checkout's (compare within one run)",
    )
    p.add_argument("--baseline-concurrency", default="64", help="the C of the baseline's rows (64)")
    args = p.parse_args(argv)
    args.duration = args.duration or (1.0 if args.quick else 5.0)
    args.warmup = args.warmup if args.warmup is not None else (0.3 if args.quick else 1.0)
    args.raw_seconds = args.raw_seconds or (0.2 if args.quick else 1.0)
    args.model_list = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = set(args.model_list) - set(specs.MODELS)
    if unknown or not args.model_list:
        p.error(f"--models takes a subset of {','.join(specs.MODELS)}")
    args.c_list = [int(c) for c in args.concurrency.split(",") if c.strip()]
    args.baseline_concurrency = [int(c) for c in args.baseline_concurrency.split(",") if c]
    if args.baseline is not None and not (args.baseline / "src" / "maas").is_dir():
        p.error(f"--baseline {args.baseline} is not a maas checkout (no src/maas)")
    if not args.c_list or min(args.c_list) < 1 or args.gateways < 1 or args.workers < 1:
        p.error("--concurrency, --gateways and --workers take positive integers")
    return args


def write_bodies(work: Path, models: list[str]) -> dict[str, Path]:
    paths = {}
    for name in models:
        paths[name] = work / f"body-{name}.json"
        paths[name].write_bytes(specs.predict_body(name))
    return paths


def bench_bare(
    args: argparse.Namespace, work: Path, body: Path, rows: list[dict[str, Any]]
) -> None:
    """Bare FastAPI in 1 and G processes at each of BARE_CONCURRENCY; appends to `rows`."""
    for processes in sorted({1, args.gateways}):
        port = free_port()
        say(f"bare FastAPI, {processes} process(es) on :{port}")
        with start_bare(port, processes, work) as server:
            for c in BARE_CONCURRENCY:
                row = run_point(
                    port=port,
                    path="/v1/models/bare:predict",
                    body_file=body,
                    concurrency=c,
                    warmup_s=args.warmup,
                    duration_s=args.duration,
                    server=server,
                    log_dir=work,
                    label=f"bare{processes}-c{c}",
                )
                rows.append({"system": "bare", "processes": processes, **row})
                say(f"  C={c}: {row['rps']:.0f} req/s, p50 {row['p50_ms']:.2f} ms")


def bench_maas(
    args: argparse.Namespace,
    work: Path,
    raw: dict[str, Any],
    rows: list[dict[str, Any]],
    info: dict[str, Any],
) -> None:
    """Start maas (and the baseline's, with --baseline), register every model twice (batching
    on, off) and load each at every C, then the v2 rows.

    Rows are appended to `rows` as they are measured and the server's processes and log go
    into `info`, so a failure part-way still leaves what was measured.
    """
    log_lines: dict[str, int] = {}
    info["log_lines"] = log_lines
    with contextlib.ExitStack() as stack:
        target = _start(stack, args, work, "maas", None)
        server = target.server
        baseline = None
        if args.baseline is not None:
            baseline = _start(stack, args, work, "base", args.baseline / "src")
        try:
            log_lines["start"] = len(server.log_since(0))
            _load_all(args, target, baseline, raw, rows, info)
        finally:
            at_end = server.log_size()
            server.stop()
            log_lines["shutdown"] = len(server.log_since(at_end))
            info["log"] = server.log_since(0)[-400:]


def _start(
    stack: contextlib.ExitStack,
    args: argparse.Namespace,
    work: Path,
    system: str,
    source: Path | None,
) -> Target:
    port = free_port()
    secret = secrets.token_hex(16)  # 32 characters
    data_dir = work / f"{system}-data"
    data_dir.mkdir()
    what = f"maas serve --workers {args.workers} --gateways {args.gateways} on :{port}"
    say(what + (f" from {source}" if source else ""))
    server = stack.enter_context(
        start_maas(
            port,
            workers=args.workers,
            gateways=args.gateways,
            data_dir=data_dir,
            secret=secret,
            source=source,
        )
    )
    return Target(system, server, port, secret)


def _register(
    target: Target, variants: list[specs.Variant], raw: dict[str, Any], hits: int
) -> dict[str, str]:
    """Register every variant on `target`; returns those that never became servable."""
    with admin_client(target.base_url, target.secret) as client:
        for v in variants:
            entry = raw["models"][v.base]
            meta = specs.variant_meta(json.loads(Path(entry["meta"]).read_text()), v.batched)
            version = register(client, v.name, Path(entry["artifact"]).read_bytes(), meta)
            say(f"  {target.system}: registered {v.name}@{version} (production)")
    unservable: dict[str, str] = {}
    for v in variants:
        try:
            wait_servable(target.base_url, v.name, v.base, hits=hits, timeout_s=30)
        except RegistrationFailed as exc:  # measure the others; the run still fails at the end
            unservable[v.name] = str(exc)
            say(f"  skipping {v.name} on {target.system}: {exc}")
    return unservable


def _load_all(
    args: argparse.Namespace,
    target: Target,
    baseline: Target | None,
    raw: dict[str, Any],
    rows: list[dict[str, Any]],
    info: dict[str, Any],
) -> None:
    server = target.server
    variants = [
        specs.Variant(m, b)
        for m in args.model_list
        for b in (True, False)
        if b or m not in specs.LARGE  # a large model's rows are batching-on only
    ]
    unservable = _register(target, variants, raw, hits=2 * args.gateways)
    info["unservable"] = unservable
    if baseline is not None:
        info["baseline_unservable"] = _register(baseline, variants, raw, hits=2 * args.gateways)
    info["log_lines"]["registration"] = len(server.log_since(0)) - info["log_lines"]["start"]
    info["processes"] = _server_processes(server)
    for v in (v for v in variants if v.name not in unservable and v.base not in specs.LARGE):
        for c in args.c_list:
            _point(args, target, v, specs.NATIVE, c, rows)
            measured_there = baseline is not None and c in args.baseline_concurrency
            if measured_there and v.name not in info["baseline_unservable"]:
                assert baseline is not None
                _point(args, baseline, v, specs.NATIVE, c, rows)
    large = [m for m in args.model_list if m in specs.LARGE and m not in unservable]
    if large and not args.skip_raw:  # minutes after the first timing: the machine drifts
        retime_raw(args, server.log_path.parent, large, raw)
    for base, protocol, concurrency in specs.LARGE_ROWS:
        if base in large:
            for c in concurrency:
                _point(args, target, specs.Variant(base, True), protocol, c, rows)
                if baseline is not None and base not in info["baseline_unservable"]:
                    _point(args, baseline, specs.Variant(base, True), protocol, c, rows)
    if not args.skip_v2:
        for base, protocol in specs.V2_ROWS:
            v = specs.Variant(base, True)
            if base not in args.model_list or v.name in unservable:
                continue
            for c in specs.V2_CONCURRENCY:
                _point(args, target, v, protocol, c, rows)
    if not args.skip_pipeline and "wide" in args.model_list and "wide" not in unservable:
        info["pipeline"] = []
        pipeline_rows(args, target, raw, info["pipeline"])
    if not args.skip_shadow and "small" in args.model_list and "small" not in unservable:
        info["shadow"] = []
        shadow_rows(args, target, raw, info["shadow"])
    if args.console:
        info["console"] = []
        models = [m for m in args.model_list if m not in specs.LARGE and m not in unservable]
        info["console_skipped"] = console_rows(args, target, models, info["console"])


def _point(
    args: argparse.Namespace,
    target: Target,
    v: specs.Variant,
    protocol: str,
    c: int,
    rows: list[dict[str, Any]],
) -> None:
    request = specs.request_for(v.base, v.name, protocol)
    fields = {"model": v.base, "batching": v.batched, "protocol": protocol}
    rows.append(measure_request(args, target, v.name, request, c, fields))


def _server_processes(server: ManagedProcess) -> list[dict[str, Any]]:
    samples = procstats.snapshot(server.pid)
    return [
        {"pid": s.pid, "role": procstats.role(s, server.pid), "cmdline": s.cmdline[:120]}
        for s in samples.values()
    ]


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so every `with` stops its children on the way out."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="maas-bench-"))
    results: dict[str, Any] = {
        "meta": {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "models": args.model_list,
            "concurrency": args.c_list,
            "gateways": args.gateways,
            "workers": args.workers,
            "quick": args.quick,
            "argv": sys.argv[1:] if argv is None else argv,
            "baseline": str(args.baseline) if args.baseline else None,
            "console": args.console,
        }
    }
    results["bare"], results["maas"], results["server"] = [], [], {}
    if args.console and (why := unavailable()) is not None:
        say(f"--console: {why}; this run will have no console rows")
    failure: str | None = None
    try:
        with _terminate_as_interrupt():
            built = list(args.model_list)
            if not args.skip_pipeline and "wide" in built:
                built += PIPELINE_MODELS
            raw = build_and_time_raw(args, work, built)
            results["raw"] = raw
            bodies = write_bodies(work, args.model_list)
            if not args.skip_bare:
                bare_body = bodies.get("small") or next(iter(bodies.values()))
                bench_bare(args, work, bare_body, results["bare"])
            bench_maas(args, work, raw, results["maas"], results["server"])
    except KeyboardInterrupt:
        say("interrupted; children stopped")
        return 130
    except (ProcessFailed, RegistrationFailed, RuntimeError, httpx.HTTPError) as exc:
        failure = f"{type(exc).__name__}: {exc}"
        say(f"failed: {failure}")
    finally:
        if args.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    results["failure"] = failure
    report.derive(results)
    print(report.render(results))
    path = report.write_json(results, args.out)
    say(f"wrote {path}")
    measured = results["maas"] + results["server"].get("console", [])
    failed = [r for r in measured if r["non_2xx"] or r["conn_errors"] or not r["requests"]]
    unservable = results["server"].get("unservable") or results["server"].get("baseline_unservable")
    return 1 if failure or failed or unservable or not results["maas"] else 0


if __name__ == "__main__":
    sys.exit(main())
