"""The shadow rows (issue 31): `small` answered without a shadow, then with a 100% shadow of
itself (a second version of the same artifact), back to back at each C on one server.

The model is registered again as `small-shadow` (version 1 in production, version 2 its shadow),
so the main rows' `small` is never mirrored. Each shadowed row also reports what the mirrors
did over it (`maas_shadow_requests_total` by outcome): a candidate that could not keep up
drops mirrors, and those show here rather than in the primary's figures.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench import specs
from bench.points import Target, measure_request
from bench.raw_child import say
from bench.register import RegistrationFailed, admin_client, register, wait_servable

MODEL = "small-shadow"
CONCURRENCY = (1, 64)


def shadow_rows(
    args: argparse.Namespace, target: Target, raw: dict[str, Any], rows: list[dict[str, Any]]
) -> None:
    """Register `small` twice as MODEL, then measure each C without and with the shadow."""
    entry = raw["models"]["small"]
    meta = specs.variant_meta(json.loads(Path(entry["meta"]).read_text()), True)
    artifact = Path(entry["artifact"]).read_bytes()
    with admin_client(target.base_url, target.secret) as client:
        primary = register(client, MODEL, artifact, meta)
        candidate = register(client, MODEL, artifact, meta)  # production moved to it: back
        _put_alias(client, {"version": primary})
        say(f"  maas: {MODEL}@{primary} in production, @{candidate} its shadow candidate")
        wait_servable(target.base_url, MODEL, "small", hits=2 * args.gateways, timeout_s=30)
        request = specs.Request(f"/v1/models/{MODEL}:predict", specs.predict_body("small"))
        for c in CONCURRENCY:
            rows.append(_row(args, target, request, c, "no-shadow"))
            _put_alias(client, {"shadow": {"version": candidate, "percent": 100}})
            before = _outcomes(target)
            row = _row(args, target, request, c, "shadow-100")
            after = _outcomes(target)
            row["mirrors"] = {k: after[k] - before[k] for k in after if after[k] - before[k]}
            say(f"    mirrors: {row['mirrors']}")
            rows.append(row)
            _put_alias(client, {"shadow": None})


def _row(
    args: argparse.Namespace, target: Target, request: specs.Request, c: int, name: str
) -> dict[str, Any]:
    fields = {"model": "small", "row": name}
    return measure_request(args, target, MODEL, request, c, fields)


def _put_alias(client: httpx.Client, body: dict[str, Any]) -> None:
    response = client.put(f"/admin/models/{MODEL}/aliases/production", json=body)
    if response.status_code != 200:
        raise RegistrationFailed(f"PUT production {body}: {response.status_code} {response.text}")


def _outcomes(target: Target) -> Counter[str]:
    """MODEL's mirrors so far, by outcome (every gateway process of the server added up)."""
    text = httpx.get(f"{target.base_url}/metrics", timeout=10.0).text
    counts: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        if family.name == "maas_shadow_requests":
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.labels.get("model") == MODEL:
                    counts[sample.labels["outcome"]] += int(sample.value)
    return counts


def render(rows: list[dict[str, Any]]) -> list[str]:
    """The shadow table, and what the issue's target reads from it."""
    if not rows:
        return []
    out = [
        "",
        "Shadow rows (small, native, one instance per request, batching on; the shadow is the "
        "same weights)",
        f"{'row':<12} {'C':>3} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'err':>7} "
        f"{'gw µs/req':>9} {'wk µs/req':>9}  mirrors",
    ]
    for row in rows:
        cpu = row.get("cpu_us_per_request", {})
        mirrors = ", ".join(f"{k} {v}" for k, v in sorted(row.get("mirrors", {}).items()))
        out.append(
            f"{row['row']:<12} {row['concurrency']:>3} {row['rps']:>8.1f} {row['p50_ms']:>7.2f} "
            f"{row['p99_ms']:>7.2f} {row['non_2xx']:>3}/{row['conn_errors']:<3} "
            f"{_us(cpu.get('gateway')):>9} {_us(cpu.get('worker')):>9}  {mirrors}"
        )
    for key, value in shadow_figures(rows).items():
        out.append(f"  {key:<48} {value:.3f}")
    return out


def shadow_figures(rows: list[dict[str, Any]]) -> dict[str, float]:
    def find(name: str, c: int) -> dict[str, Any] | None:
        return next((r for r in rows if r["row"] == name and r["concurrency"] == c), None)

    figures: dict[str, float] = {}
    plain, shadowed = find("no-shadow", 1), find("shadow-100", 1)
    if plain and shadowed:
        figures["shadow - none, C=1 p50 ms (target ≤ 0.2)"] = shadowed["p50_ms"] - plain["p50_ms"]
    plain, shadowed = find("no-shadow", 64), find("shadow-100", 64)
    if plain and shadowed and plain["rps"]:
        figures["shadow ÷ none, C=64 req/s"] = shadowed["rps"] / plain["rps"]
    return figures


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"
