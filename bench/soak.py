"""Soak: `maas serve` under steady load for many minutes, watching every process's memory.

One model (`small`, batching on) at C connections for `--minutes`; the RSS of every server
process is sampled every `--every` seconds. After the warm-up (the first fifth of the run, at
least a minute) each process's RSS must stay within `--rss-tolerance` (5%) of what it was
then, and no request may fail. Prints a table per process and the verdict; `--out` writes the
samples as JSON.

    make bench BENCH_ARGS=soak            # or:
    .venv/bin/python -m bench.soak --minutes 10 --concurrency 64
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench import procstats, specs
from bench.artifacts import build
from bench.measure import run_point
from bench.register import admin_client, register, wait_servable
from bench.server import free_port, start_maas


def _sample(root: int) -> dict[str, float]:
    """RSS (MB) per server process, named by its role and pid."""
    out = {}
    for pid, sample in procstats.snapshot(root).items():
        out[f"{procstats.role(sample, root)}:{pid}"] = round(sample.rss_mb, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--gateways", type=int, default=2)
    parser.add_argument("--every", type=float, default=15.0, help="seconds between samples")
    parser.add_argument("--rss-tolerance", type=float, default=0.05)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    duration_s = args.minutes * 60
    warmup_s = max(60.0, duration_s / 5)
    with tempfile.TemporaryDirectory(prefix="maas-soak-") as tmp:
        work = Path(tmp)
        data, meta = build("small")
        body = work / "body.json"
        body.write_bytes(specs.predict_body("small"))
        port, secret = free_port(), secrets.token_hex(16)
        (work / "data").mkdir()
        server = start_maas(
            port, workers=1, gateways=args.gateways, data_dir=work / "data", secret=secret
        )
        try:
            url = f"http://127.0.0.1:{port}"
            with admin_client(url, secret) as client:
                register(client, "small", data, specs.variant_meta(meta, True))
            wait_servable(url, "small", "small", hits=2 * args.gateways, timeout_s=30)
            samples: list[tuple[float, dict[str, float]]] = []
            done = threading.Event()
            began = time.monotonic()

            def watch() -> None:
                while not done.wait(args.every):
                    samples.append((time.monotonic() - began, _sample(server.pid)))

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            print(
                f"soak: small at C={args.concurrency} for {args.minutes:g} min "
                f"({args.gateways} gateways, 1 worker), RSS every {args.every:g} s",
                flush=True,
            )
            result = run_point(
                port=port,
                path="/v1/models/small:predict",
                body_file=body,
                concurrency=args.concurrency,
                warmup_s=warmup_s,
                duration_s=duration_s - warmup_s,
                server=server,
                log_dir=work,
                label="soak",
            )
            done.set()
            watcher.join(5)
            samples.append((time.monotonic() - began, _sample(server.pid)))
        finally:
            server.stop()
    return _report(args, warmup_s, samples, result)


def _report(
    args: argparse.Namespace,
    warmup_s: float,
    samples: list[tuple[float, dict[str, float]]],
    result: dict[str, Any],
) -> int:
    after = [(t, s) for t, s in samples if t >= warmup_s]
    if len(after) < 2:
        print("soak: too few samples after the warm-up", file=sys.stderr)
        return 2
    first, last = after[0][1], after[-1][1]
    print(f"{'process':<24} {'RSS at warm-up':>15} {'max after':>10} {'at end':>8} {'change':>8}")
    flat = True
    for name in sorted(first):
        series = [s[name] for _, s in after if name in s]
        start, peak, end = first[name], max(series), series[-1]
        change = (peak - start) / start if start else 0.0
        flat &= change <= args.rss_tolerance
        print(f"{name:<24} {start:>12.1f} MB {peak:>7.1f} MB {end:>5.1f} MB {change:>+7.1%}")
    gone = sorted(set(first) - set(last))
    errors = result["non_2xx"] + result["conn_errors"]
    print(
        f"requests {result['requests']} after warm-up, {result['rps']:.0f} req/s, "
        f"p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms, errors {errors} "
        f"({result['statuses']}), processes gone {gone or 'none'}"
    )
    ok = flat and errors == 0 and not gone
    print(f"soak: {'PASS' if ok else 'FAIL'} (RSS within {args.rss_tolerance:.0%} of warm-up)")
    if args.out:
        args.out.write_text(json.dumps({"samples": samples, "result": result}, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
