"""One measured row against a running maas: the request, the load generator, the server's
own figures before and after (shared by the model rows and the pipeline rows)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from bench import scrape
from bench.measure import run_point
from bench.raw_child import say
from bench.server import ManagedProcess, ProcessFailed
from bench.specs import Request


@dataclass
class Target:
    """A running `maas serve` under test: this checkout's, or the baseline's (`--baseline`)."""

    system: str
    server: ManagedProcess
    port: int
    secret: str

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def measure_request(
    args: argparse.Namespace,
    target: Target,
    model: str,
    request: Request,
    c: int,
    fields: dict[str, Any],
) -> dict[str, Any]:
    """`request` sent at concurrency `c` for the run's period; the row, with `fields` first and
    the server's figures of `model` (from /metrics) last."""
    server = target.server
    tag = "-".join(v for v in fields.values() if isinstance(v, str))
    label = f"{target.system}-{model}-{tag}-c{c}"
    body_file = server.log_path.parent / f"body-{model}-{tag}.bin"
    body_file.write_bytes(request.body)
    before = scrape.scrape(target.base_url)
    row = run_point(
        port=target.port,
        path=request.path,
        body_file=body_file,
        headers=request.headers,
        concurrency=c,
        warmup_s=args.warmup,
        duration_s=args.duration,
        server=server,
        log_dir=server.log_path.parent,
        label=label,
    )
    say(
        f"  {target.system} {model} {tag} C={c}: "
        f"{row['rps']:.0f} req/s, p50 {row['p50_ms']:.2f} ms, "
        f"errors {row['non_2xx']}/{row['conn_errors']}"
    )
    if not server.alive():
        raise ProcessFailed(
            f"{target.system} serve exited with {server.popen.returncode}:\n" + server.log_tail()
        )
    return {
        "system": target.system,
        **fields,
        **row,
        "server_figures": scrape.row_figures(before, scrape.scrape(target.base_url), model),
    }
