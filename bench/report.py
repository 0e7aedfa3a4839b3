"""The results: derived ratios, the stdout table and `bench/results/latest.json`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench import console_tab, pipeline, shadow

RESULTS_DIR = Path(__file__).resolve().parent / "results"
_ROLE_ABBR = {"main": "m", "gateway": "g", "worker": "w", "helper": "h"}


def _raw_b32(results: dict[str, Any], model: str) -> float | None:
    raw = (results.get("raw") or {}).get("models", {}).get(model, {})
    batches = raw.get("batches")
    return float(batches["32"]["samples_per_s"]) if batches else None


def _raw_rate(results: dict[str, Any], model: str, batch: int) -> float | None:
    raw = (results.get("raw") or {}).get("models", {}).get(model, {})
    point = raw.get("batches", {}).get(str(batch))
    return float(point["samples_per_s"]) if point else None


def _raw_fwd(results: dict[str, Any], model: str) -> float | None:
    raw = (results.get("raw") or {}).get("models", {}).get(model, {})
    value = raw.get("forward_ms_b1")
    return float(value) if value is not None else None


def _bare(results: dict[str, Any], processes: int, concurrency: int) -> dict[str, Any] | None:
    for row in results.get("bare", []):
        if row["processes"] == processes and row["concurrency"] == concurrency:
            return dict(row)
    return None


def _maas(
    results: dict[str, Any],
    model: str,
    batched: bool,
    c: int,
    protocol: str = "native",
    system: str = "maas",
) -> dict[str, Any] | None:
    for row in results.get("maas", []):
        key = (row.get("system", "maas"), row.get("protocol", "native"), row["model"])
        if key == (system, protocol, model) and (row["batching"], row["concurrency"]) == (
            batched,
            c,
        ):
            return dict(row)
    return None


def derive(results: dict[str, Any]) -> None:
    """Add `ratios` to every maas row, a `targets` summary and the load generator's ceiling."""
    bare1 = _bare(results, 1, 64)
    targets: dict[str, Any] = {}
    for row in results.get("maas", []):
        model, c, batched = row["model"], row["concurrency"], row["batching"]
        protocol, system = row.get("protocol", "native"), row.get("system", "maas")
        ratios: dict[str, float] = {}
        if system != "maas":  # the baseline's rows are compared from this checkout's
            row["ratios"] = {}
            continue
        mean_batch = row.get("server_figures", {}).get("mean_batch")
        if mean_batch is not None:
            ratios["batch"] = mean_batch
        if model == "resnet":
            _large_ratios(results, row, ratios)
        elif protocol != "native":
            _v2_ratios(results, row, ratios)
        if protocol != "native":
            row["ratios"] = {k: round(v, 3) for k, v in ratios.items()}
            for name, value in row["ratios"].items():
                targets[f"{model} {protocol} C={c}: {name}"] = value
            continue
        base = _maas(results, model, batched, c, system="base")
        if base and base["rps"] > 0:
            ratios["÷base"] = row["rps"] / base["rps"]
        if c == 64 and row["p50_ms"] > 0:
            ratios["p99/p50"] = row["p99_ms"] / row["p50_ms"]
        if c == 64 and model == "small" and bare1 and bare1["rps"] > 0:
            ratios["÷bare1"] = row["rps"] / bare1["rps"]
        raw32 = _raw_b32(results, model)
        if c == 64 and model in ("wide", "tokens") and raw32:
            ratios["÷raw32"] = row["rps"] / raw32
        other = _maas(results, model, not batched, c)
        if c == 64 and batched and other and other["rps"] > 0:
            ratios["on/off"] = row["rps"] / other["rps"]
        fwd = _raw_fwd(results, model)
        if c == 1 and fwd is not None:
            ratios["p50-fwd ms"] = row["p50_ms"] - fwd
        row["ratios"] = {k: round(v, 3) for k, v in ratios.items()}
        for name, value in row["ratios"].items():
            key = f"{model} batching {'on' if batched else 'off'} C={c}: {name}"
            targets[key] = value
    targets.update(console_tab.targets((results.get("server") or {}).get("console") or []))
    results["targets"] = targets
    results["loadgen_ceiling"] = loadgen_ceiling(results)


def _large_ratios(results: dict[str, Any], row: dict[str, Any], ratios: dict[str, float]) -> None:
    """A large-input row against raw torch: at C=c, req/s ÷ raw samples/s at batch c; at C=1,
    p50 - the raw batch-1 forward."""
    model, c = row["model"], row["concurrency"]
    rate = _raw_rate(results, model, c)
    if rate:
        ratios[f"÷raw{c}"] = row["rps"] / rate
    base = _maas(results, model, True, c, protocol=row["protocol"], system="base")
    if base and base["rps"] > 0:
        ratios["÷base"] = row["rps"] / base["rps"]
    fwd = _raw_fwd(results, model)
    if c == 1 and fwd is not None:
        ratios["p50-fwd ms"] = row["p50_ms"] - fwd


def _v2_ratios(results: dict[str, Any], row: dict[str, Any], ratios: dict[str, float]) -> None:
    """A v2 row against the native row of the same model and C, and binary against JSON."""
    model, c = row["model"], row["concurrency"]
    native = _maas(results, model, True, c)
    if native and native["rps"] > 0:
        ratios["÷native"] = row["rps"] / native["rps"]
    if row["protocol"] == "v2-binary":
        as_json = _maas(results, model, True, c, protocol="v2-json")
        if as_json and as_json["rps"] > 0:
            ratios["÷v2json"] = row["rps"] / as_json["rps"]
    if c == 1 and native:
        ratios["p50-native ms"] = row["p50_ms"] - native["p50_ms"]


def loadgen_ceiling(results: dict[str, Any]) -> dict[str, Any] | None:
    """The generator's own cost and ceiling, from the fastest bare run (the cheapest server)."""
    rows = [r for r in results.get("bare", []) if r["loadgen"]["cores"] > 0 and r["rps"] > 0]
    if not rows:
        return None
    best = max(rows, key=lambda r: r["rps"])
    cores = best["loadgen"]["cores"]
    everything = results.get("bare", []) + results.get("maas", [])
    return {
        "max_observed_rps": round(best["rps"], 1),
        "at": f"bare {best['processes']} process(es), C={best['concurrency']}",
        "loadgen_cores": cores,
        "cpu_us_per_request": round(cores / best["rps"] * 1e6, 1),
        "rps_per_full_core": round(best["rps"] / cores, 1),
        "saturated_rows": sum(1 for r in everything if r.get("loadgen_saturated")),
    }


def _cores(row: dict[str, Any]) -> str:
    roles = row["roles"]
    return " ".join(
        f"{_ROLE_ABBR.get(role, role)}{roles[role]['cores']:.2f}"
        for role in sorted(roles, key=lambda r: list(_ROLE_ABBR).index(r) if r in _ROLE_ABBR else 9)
    )


def _rss(row: dict[str, Any]) -> str:
    roles = row["roles"]
    return " ".join(
        f"{_ROLE_ABBR.get(role, role)}" + ",".join(f"{mb:.0f}" for mb in roles[role]["rss_mb"])
        for role in sorted(roles, key=lambda r: list(_ROLE_ABBR).index(r) if r in _ROLE_ABBR else 9)
    )


_HEAD = (
    f"{'system':<8} {'model':<7} {'proto':<9} {'batch':<5} {'C':>3} {'req/s':>8} {'p50 ms':>7} "
    f"{'p99 ms':>7} {'err':>7}  {'server cores':<18} {'lg':>5} {'oth':>5} {'µs/req':>6}  "
    f"{'RSS MB':<22} ratios"
)


def _server_us(row: dict[str, Any]) -> str:
    """Server CPU per request, all its processes together, in µs."""
    if not row["rps"]:
        return "-"
    cores = sum(entry["cores"] for entry in row["roles"].values())
    return f"{cores / row['rps'] * 1e6:.0f}"


def _line(system: str, model: str, batch: str, row: dict[str, Any], protocol: str = "-") -> str:
    errors = f"{row['non_2xx']}/{row['conn_errors']}"
    ratios = "  ".join(f"{k} {v:.2f}" for k, v in row.get("ratios", {}).items())
    if row.get("loadgen_saturated"):
        ratios += "  [loadgen saturated]"
    if row.get("server_log_lines"):
        ratios += f"  [server log +{row['server_log_lines']} lines]"
    if row["requests"] == 0:
        ratios += "  [NO RESPONSES]"
    if not row.get("server_alive", True):
        ratios += "  [SERVER DIED]"
    return (
        f"{system:<8} {model:<7} {protocol:<9} {batch:<5} {row['concurrency']:>3} "
        f"{row['rps']:>8.1f} "
        f"{row['p50_ms']:>7.2f} {row['p99_ms']:>7.2f} {errors:>7}  {_cores(row):<18} "
        f"{row['loadgen']['cores']:>5.2f} {row.get('other_cores', 0.0):>5.2f} "
        f"{_server_us(row):>6}  {_rss(row):<22} {ratios}"
    ).rstrip()


def render(results: dict[str, Any]) -> str:
    out: list[str] = []
    meta = results["meta"]
    out.append(
        f"maas bench — {meta['cores']} cores, measured {meta['duration_s']} s after "
        f"{meta['warmup_s']} s warm-up per row; maas --workers {meta['workers']} "
        f"--gateways {meta['gateways']}"
    )
    raw = results.get("raw")
    if raw and any("batches" in m for m in raw["models"].values()):
        out += ["", f"Raw torch ceiling (TorchScript, {raw['threads']} thread, samples/s)"]
        out.append(f"{'model':<7} {'b=1':>9} {'b=8':>9} {'b=32':>9} {'fwd b=1 ms':>11}")
        for name, m in raw["models"].items():
            if "batches" not in m:
                continue
            rates = [m["batches"].get(str(b), {}).get("samples_per_s") for b in (1, 8, 32)]
            cells = " ".join(f"{r:>9.0f}" if r is not None else f"{'-':>9}" for r in rates)
            out.append(f"{name:<7} {cells} {m['forward_ms_b1']:>11.3f}")
    if results.get("bare"):
        out += ["", "Bare FastAPI ceiling (uvicorn, uvloop, httptools, constant reply)", _HEAD]
        for row in results["bare"]:
            out.append(_line(f"bare-{row['processes']}p", "-", "-", row))
    ceiling = results.get("loadgen_ceiling")
    if ceiling:
        out += [
            "",
            f"Load generator (1 process): max {ceiling['max_observed_rps']:.0f} req/s observed "
            f"({ceiling['at']}) using {ceiling['loadgen_cores']:.2f} cores = "
            f"{ceiling['cpu_us_per_request']:.0f} µs CPU/request -> ceiling "
            f"~{ceiling['rps_per_full_core']:.0f} req/s on one full core.",
        ]
        if ceiling["saturated_rows"]:
            out.append(
                f"WARNING: in {ceiling['saturated_rows']} row(s) the generator used ≥0.9 core: "
                "one generator process may not saturate the server there."
            )
    if results.get("maas"):
        out += ["", "maas", _HEAD]
        for row in results["maas"]:
            batch = "on" if row["batching"] else "off"
            system, protocol = row.get("system", "maas"), row.get("protocol", "native")
            out.append(_line(system, row["model"], batch, row, protocol))
        phases = [row for row in results["maas"] if row.get("server_figures", {}).get("phases_ms")]
        if phases:
            out += ["", "Where a request's time went, from the server's /metrics (mean ms)"]
            for row in phases:
                figures = row["server_figures"]
                parts = "  ".join(f"{k} {v:.2f}" for k, v in figures["phases_ms"].items())
                total = sum(figures["phases_ms"].values())
                out.append(
                    f"  {row.get('system', 'maas'):<5} {row['model']:<7} "
                    f"{row.get('protocol', 'native'):<9} C={row['concurrency']:<3} {parts}  "
                    f"= {total:.2f} of duration {figures.get('duration_ms', 0.0):.2f}"
                )
    server = results.get("server") or {}
    out += pipeline.render(server.get("pipeline") or [])
    out += shadow.render(server.get("shadow") or [])
    out += console_tab.render(server.get("console") or [], server.get("console_skipped"))
    if server.get("log_lines"):
        counts = ", ".join(f"{phase} {n}" for phase, n in server["log_lines"].items())
        out.append(
            f"maas log lines (warning and up): {counts}; per row as [server log +N lines]; "
            "the text is `server.log` in the JSON"
        )
    if server.get("processes"):
        procs = "; ".join(
            f"{p['role']} {p['pid']}: {p['cmdline'][:60]}" for p in server["processes"]
        )
        out.append(f"maas processes: {procs}")
    for name, why in (server.get("unservable") or {}).items():
        out.append(f"NOT MEASURED: {name}: {why}")
    if results.get("failure"):
        first = results["failure"].splitlines()[0]
        out += ["", f"FAILED: {first} (the whole message is `failure` in the JSON)"]
    if results.get("targets"):
        out += ["", "Ratios the targets use"]
        out += [f"  {key:<44} {value:.2f}" for key, value in results["targets"].items()]
    out += [
        "",
        "err = non-2xx/connection errors; server cores and RSS per role: m main process "
        "(the one started), g gateway, w worker, h helper; lg = load generator cores; oth = "
        "cores busy outside the server and generator (other jobs: a high figure means noise); "
        "µs/req = server CPU (all its processes) per request; proto: native, v2-json, "
        "v2-binary (Open Inference Protocol, binary tensors both ways); system base: "
        "--baseline's maas, measured right after this checkout's row (÷base).",
    ]
    return "\n".join(out)


def write_json(results: dict[str, Any], path: Path | None = None) -> Path:
    target = path or RESULTS_DIR / "latest.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    return target
