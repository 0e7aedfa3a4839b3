"""Registering the benchmarked models on a running gateway, over the admin REST API only."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from bench.specs import predict_body


class RegistrationFailed(RuntimeError):
    pass


def admin_client(base_url: str, secret: str) -> httpx.Client:
    return httpx.Client(
        base_url=base_url, headers={"Authorization": f"Bearer {secret}"}, timeout=120.0
    )


def _check(response: httpx.Response, *ok: int) -> dict[str, Any]:
    if response.status_code not in ok:
        raise RegistrationFailed(
            f"{response.request.method} {response.request.url.path} answered "
            f"{response.status_code}: {response.text[:500]}"
        )
    body: dict[str, Any] = response.json()
    return body


def register(
    client: httpx.Client, name: str, artifact: bytes, meta: dict[str, Any], timeout_s: float = 180
) -> int:
    """Create `name`, upload `artifact` as a new version, wait until it is ready and point
    `production` at it. Returns the version."""
    _check(client.post("/admin/models", json={"name": name}), 200, 201, 409)
    created = _check(
        client.post(
            f"/admin/models/{name}/versions",
            files={"file": (f"{name}.pt", artifact, "application/octet-stream")},
            data={"meta": json.dumps(meta)},
        ),
        201,
    )
    version = int(created["version"])
    deadline = time.monotonic() + timeout_s
    status = created["status"]
    while status != "ready":
        if status == "failed":
            raise RegistrationFailed(f"{name}@{version} failed to load: {created['load_error']}")
        if time.monotonic() > deadline:
            raise RegistrationFailed(f"{name}@{version} still {status} after {timeout_s:.0f} s")
        time.sleep(0.2)
        created = _check(client.get(f"/admin/models/{name}/versions/{version}"), 200)
        status = created["status"]
    _check(client.put(f"/admin/models/{name}/aliases/production", json={"version": version}), 200)
    return version


def wait_servable(base_url: str, model: str, body_of: str, *, hits: int, timeout_s: float) -> None:
    """Until `hits` predictions in a row, each on a fresh connection, answer 200.

    Fresh connections reach each gateway process in turn, which matters while other gateways
    may still be refreshing their view of the aliases.
    """
    body = predict_body(body_of)
    url = f"{base_url}/v1/models/{model}:predict"
    deadline = time.monotonic() + timeout_s
    streak = 0
    last = ""
    while streak < hits:
        if time.monotonic() > deadline:
            raise RegistrationFailed(f"{model} not servable after {timeout_s:.0f} s: {last}")
        response = httpx.post(url, content=body, headers={"Content-Type": "application/json"})
        if response.status_code == 200:
            streak += 1
        else:
            streak = 0
            last = f"{response.status_code} {response.text[:200]}"
            time.sleep(0.2)
