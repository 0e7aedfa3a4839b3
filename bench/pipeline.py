"""The pipeline rows (issue 30): the same `wide` weights served by ONNX Runtime beside
TorchScript, the int8 version `maas models optimize` derives from it beside its fp32 parent,
and the `digits` demo answering `:classify` for PNG images beside the same digit sent as
tensors. Each pair is measured back to back in one run, on one server.

Rows (native protocol, one instance per request, batching on):
- `wide` (TorchScript) then `wide-onnx` (ONNX export of the same weights), at C=1 and C=64;
- `wide-onnx@1` (fp32, again) then `wide-onnx@2` (int8, derived through the admin route), at
  C=64;
- `digits`: tensors to `:predict`, tensors to `:classify`, a PNG to `:classify` as a
  multipart `image` part (what `curl -F image=@digit-8.png` sends) and as a raw `image/png`
  body, at C=64.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import httpx

from bench.points import Target, measure_request
from bench.raw_child import say
from bench.register import RegistrationFailed, admin_client, register
from bench.specs import BATCHED, Request, instance, predict_body

PIPELINE_MODELS = ["wide-onnx", "digits"]
_EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"
_BOUNDARY = "maasbenchboundary"


def pipeline_rows(
    args: argparse.Namespace, target: Target, raw: dict[str, Any], rows: list[dict[str, Any]]
) -> None:
    """Register the pipeline models on `target`, then measure each pair; rows go to `rows`."""
    with admin_client(target.base_url, target.secret) as client:
        fp32 = _register(client, "wide-onnx", raw)
        int8, figures = _optimize(client, "wide-onnx", fp32)
        say(f"  maas: wide-onnx@{int8} is int8: {json.dumps(figures)}")
        _register(client, "digits", raw)
    png = (_EXAMPLES / "digit-8.png").read_bytes()
    requests = {
        "wide": Request("/v1/models/wide:predict", predict_body("wide")),
        "wide-onnx": Request(f"/v1/models/wide-onnx@{fp32}:predict", predict_body("wide")),
        "wide-onnx-fp32": Request(f"/v1/models/wide-onnx@{fp32}:predict", predict_body("wide")),
        "wide-int8": Request(f"/v1/models/wide-onnx@{int8}:predict", predict_body("wide")),
        "predict-tensor": Request("/v1/models/digits:predict", _digit_body(png)),
        "classify-tensor": Request("/v1/models/digits:classify", _digit_body(png)),
        "classify-png-multipart": _multipart("/v1/models/digits:classify", png),
        "classify-png-raw": Request(
            "/v1/models/digits:classify", png, ("Content-Type: image/png",)
        ),
    }
    _check_all(target, requests)
    plan: list[tuple[str, str, int]] = []
    for c in (1, 64):
        plan += [("wide", "wide", c), ("wide-onnx", "wide-onnx", c)]
    plan += [("wide-onnx", "wide-onnx-fp32", 64), ("wide-onnx", "wide-int8", 64)]
    plan += [
        ("digits", name, 64)
        for name in ("predict-tensor", "classify-tensor", "classify-png-multipart")
    ]
    plan.append(("digits", "classify-png-raw", 64))
    for model, name, c in plan:
        fields: dict[str, Any] = {"model": model, "row": name}
        if name == "wide-int8":
            fields["int8"] = figures
        rows.append(measure_request(args, target, model, requests[name], c, fields))


def _register(client: httpx.Client, name: str, raw: dict[str, Any]) -> int:
    entry = raw["models"][name]
    meta = json.loads(Path(entry["meta"]).read_text())
    meta["batching"] = {**meta.get("batching", {}), "max_queue": BATCHED["max_queue"]}
    version = register(client, name, Path(entry["artifact"]).read_bytes(), meta)
    say(f"  maas: registered {name}@{version} (production)")
    return version


def _optimize(client: httpx.Client, model: str, parent: int) -> tuple[int, dict[str, Any]]:
    """The int8 version derived from `model@parent` through the admin route, once ready, and
    the figures it was measured with (agreement on 256 random instances)."""
    holdout = [instance("wide", seed) for seed in range(256)]
    response = client.post(
        f"/admin/models/{model}/versions/{parent}/optimize",
        json={"method": "int8_dynamic", "holdout": {"instances": holdout}},
        timeout=600,
    )
    if response.status_code != 201:
        raise RegistrationFailed(f"optimize answered {response.status_code}: {response.text}")
    version = int(response.json()["version"])
    deadline = time.monotonic() + 300
    while True:
        answer = client.get(f"/admin/models/{model}/versions/{version}").json()
        if answer["status"] == "ready":
            return version, answer["metrics"]
        if answer["status"] == "failed" or time.monotonic() > deadline:
            raise RegistrationFailed(
                f"{model}@{version}: {answer['status']} {answer['load_error']}"
            )
        time.sleep(0.2)


def _digit_body(png: bytes) -> bytes:
    """The PNG's digit as the 64 numbers the model takes (what the image decodes to)."""
    from io import BytesIO

    from PIL import Image

    pixels = list(Image.open(BytesIO(png)).getdata())
    row = [round((255 - p) * 16 / 255, 4) for p in pixels]
    return json.dumps({"instances": [row]}, separators=(",", ":")).encode()


def _multipart(path: str, png: bytes) -> Request:
    head = (
        f'--{_BOUNDARY}\r\nContent-Disposition: form-data; name="image"; '
        'filename="digit-8.png"\r\nContent-Type: image/png\r\n\r\n'
    ).encode()
    body = head + png + f"\r\n--{_BOUNDARY}--\r\n".encode()
    return Request(path, body, (f"Content-Type: multipart/form-data; boundary={_BOUNDARY}",))


def _check_all(target: Target, requests: dict[str, Request]) -> None:
    """Each request answers 200 once before it is measured (a wrong body fails here, loudly)."""
    for name, request in requests.items():
        headers = dict(line.split(": ", 1) for line in request.headers)
        headers.setdefault("Content-Type", "application/json")
        response = httpx.post(
            target.base_url + request.path, content=request.body, headers=headers, timeout=30
        )
        if response.status_code != 200:
            raise RegistrationFailed(f"{name}: {response.status_code} {response.text[:300]}")


def render(rows: list[dict[str, Any]]) -> list[str]:
    """The pipeline table and the ratios the issue's targets ask for."""
    if not rows:
        return []
    out = [
        "",
        "Pipeline rows (native, one instance per request, batching on)",
        f"{'row':<24} {'C':>3} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'err':>7} "
        f"{'gw µs/req':>9} {'wk µs/req':>9}",
    ]
    for row in rows:
        cpu = row.get("cpu_us_per_request", {})
        out.append(
            f"{row['row']:<24} {row['concurrency']:>3} {row['rps']:>8.1f} {row['p50_ms']:>7.2f} "
            f"{row['p99_ms']:>7.2f} {row['non_2xx']:>3}/{row['conn_errors']:<3} "
            f"{_us(cpu.get('gateway')):>9} {_us(cpu.get('worker')):>9}"
        )
    ratios = pipeline_ratios(rows)
    out += [f"  {key:<48} {value:.2f}" for key, value in ratios.items()]
    int8 = next((r["int8"] for r in rows if "int8" in r), None)
    if int8:
        shown = {k: int8[k] for k in ("agreement", "max_abs_diff") if k in int8}
        out.append(f"  int8 figures from optimize: {json.dumps(shown)}")
    return out


def pipeline_ratios(rows: list[dict[str, Any]]) -> dict[str, float]:
    def find(name: str, c: int) -> dict[str, Any] | None:
        return next((r for r in rows if r["row"] == name and r["concurrency"] == c), None)

    ratios: dict[str, float] = {}
    pairs = (
        ("onnx ÷ torchscript, wide C=64 req/s", "wide-onnx", "wide", 64, "rps"),
        ("onnx ÷ torchscript, wide C=1 p50", "wide-onnx", "wide", 1, "p50_ms"),
        ("int8 ÷ fp32 onnx, wide C=64 req/s", "wide-int8", "wide-onnx-fp32", 64, "rps"),
        (
            "classify png (multipart) ÷ predict tensor, C=64 req/s",
            "classify-png-multipart",
            "predict-tensor",
            64,
            "rps",
        ),
    )
    for key, top, bottom, c, field in pairs:
        a, b = find(top, c), find(bottom, c)
        if a and b and b[field]:
            ratios[key] = a[field] / b[field]
    return ratios


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"
