"""Small helpers for the control-plane system tests: admin calls, polling, and figures."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx

from support.inprocess_gateway import ADMIN
from support.model_files import mlp_meta

ROW = {"instances": [[1.0, 2.0, 3.0, 4.0]]}

T = TypeVar("T")


def wait_for(check: Callable[[], T | Literal[False] | None], what: str, timeout_s: float = 30) -> T:
    """Poll `check` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


def upload(url: str, name: str, artifact: bytes, meta: dict[str, Any] | None = None) -> int:
    """Upload a version of `name` (created if need be); its number. Its load starts."""
    created = httpx.post(url + "/admin/models", json={"name": name}, headers=ADMIN)
    assert created.status_code in (201, 409), created.text
    uploaded = httpx.post(
        f"{url}/admin/models/{name}/versions",
        files={"file": ("model.pt", artifact)},
        data={"meta": json.dumps(meta or mlp_meta())},
        headers=ADMIN,
        timeout=30,
    )
    assert uploaded.status_code == 201, uploaded.text
    number: int = uploaded.json()["version"]
    return number


def version_status(url: str, name: str, number: int) -> str:
    response = httpx.get(f"{url}/admin/models/{name}/versions/{number}", headers=ADMIN)
    assert response.status_code == 200, response.text
    status: str = response.json()["status"]
    return status


def wait_ready_version(url: str, name: str, number: int, timeout_s: float = 30) -> None:
    status = wait_for(
        lambda: (s := version_status(url, name, number)) not in ("loading", "registered") and s,
        f"{name}@{number} to settle",
        timeout_s,
    )
    assert status == "ready", f"{name}@{number} is {status}"
    wait_converged(url)


def wait_converged(url: str, timeout_s: float = 10) -> None:
    """Until every gateway serves the registry's generation of now: the admin API reads the
    registry, so 'ready' there can come up to the propagation bound (1 s) before a gateway
    that did not make the change routes to the version."""
    response = httpx.get(url + "/admin/gateways", headers=ADMIN, timeout=10)
    assert response.status_code == 200, response.text
    wanted: int = response.json()["generation"]
    wait_for(
        lambda: all(g["generation"] >= wanted for g in gateways(url)),
        f"every gateway to serve generation {wanted}",
        timeout_s,
    )


def workers(url: str) -> list[dict[str, Any]]:
    body: dict[str, Any] = httpx.get(url + "/admin/workers", headers=ADMIN).json()
    listed: list[dict[str, Any]] = body["workers"]
    return listed


def wait_loaded(url: str, keys: set[str], timeout_s: float = 30) -> list[dict[str, Any]]:
    """Until every worker of the server at `url` is healthy and holds `keys`."""
    return wait_for(
        lambda: (
            (ws := workers(url))
            and all(w["healthy"] and keys <= set(w["versions"]) for w in ws)
            and ws
        ),
        f"workers of {url} to hold {sorted(keys)}",
        timeout_s,
    )


def gateways(url: str) -> list[dict[str, Any]]:
    response = httpx.get(url + "/admin/gateways", headers=ADMIN, timeout=10)
    assert response.status_code == 200, response.text
    listed: list[dict[str, Any]] = response.json()["gateways"]
    return listed


def predicted_version(client: httpx.Client, model: str = "m") -> int:
    """Which version served one predict of `model` (the answer must be 200)."""
    response = client.post(f"/v1/models/{model}:predict", json=ROW)
    assert response.status_code == 200, response.text
    version: int = response.json()["version"]
    return version


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def distribution(label: str, seconds: list[float]) -> str:
    figures = ", ".join(
        f"{name} {1000 * percentile(seconds, q):.0f}"
        for name, q in (("min", 0), ("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))
    )
    return f"{label} (n={len(seconds)}, ms): {figures}"


def is_gateway_process(pid: int) -> bool:
    """A `maas serve` gateway is a multiprocessing spawn child (the supervisor is `maas serve`;
    its multiprocessing resource tracker is no gateway)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return "multiprocessing.spawn" in cmdline and "serve" not in cmdline.split("\0")


@dataclass(frozen=True)
class Answer:
    sent: float
    answered: float
    status: int  # 0: no HTTP answer (a connection-level error)
    version: int | None
    error: str = ""


def predict_loop(
    url: str, stop: threading.Event, out: list[Answer], *, fresh_connections: bool = False
) -> None:
    """Predict `m` until `stop`; with `fresh_connections` each request opens its own connection
    (so the kernel spreads them over the gateway processes and none outlives its answer)."""
    headers = {"Connection": "close"} if fresh_connections else {}
    with httpx.Client(base_url=url, timeout=30, headers=headers) as client:
        while not stop.is_set():
            sent = time.monotonic()
            try:
                response = client.post("/v1/models/m:predict", json=ROW)
            except httpx.HTTPError as exc:
                out.append(Answer(sent, time.monotonic(), 0, None, type(exc).__name__))
                continue
            version = response.json().get("version") if response.is_success else None
            error = "" if response.is_success else response.text[:200]
            out.append(Answer(sent, time.monotonic(), response.status_code, version, error))


def start_clients(
    url: str, count: int, out: list[Answer], *, fresh_connections: bool = False
) -> tuple[threading.Event, list[threading.Thread]]:
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=predict_loop,
            args=(url, stop, out),
            kwargs={"fresh_connections": fresh_connections},
            daemon=True,
        )
        for _ in range(count)
    ]
    for thread in threads:
        thread.start()
    return stop, threads


def stop_clients(stop: threading.Event, threads: list[threading.Thread]) -> None:
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
