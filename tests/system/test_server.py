"""The real thing: `python -m maas serve` under uvicorn, over real HTTP on a free port."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from support.inprocess_gateway import ADMIN, ADMIN_SECRET
from support.model_files import expected, mlp_meta, tiny_mlp, torchscript_bytes
from support.processes import maas_server

ROWS = [[0.5, 1.5, -2.0, 3.0]]


def test_real_server_upload_predict_and_limits(tmp_path: Path) -> None:
    env = {"MAAS_BOOTSTRAP_ADMIN_KEY": ADMIN_SECRET, "MAAS_MAX_BODY_BYTES": "4096"}
    with maas_server(tmp_path, env=env) as url, httpx.Client(base_url=url, timeout=30) as client:
        assert client.get("/").json() == {"status": "alive"}
        assert client.post("/admin/models", json={"name": "mlp"}, headers=ADMIN).status_code == 201
        module = tiny_mlp(seed=4)
        uploaded = client.post(
            "/admin/models/mlp/versions",
            files={"file": ("m.pt", torchscript_bytes(module))},
            data={"meta": json.dumps(mlp_meta())},
            headers=ADMIN,
        )
        assert uploaded.status_code == 201, uploaded.text
        for _ in range(200):
            status = client.get("/admin/models/mlp/versions/1", headers=ADMIN).json()["status"]
            if status != "loading":
                break
            time.sleep(0.05)
        assert status == "ready"
        aliased = client.put(
            "/admin/models/mlp/aliases/production", json={"version": 1}, headers=ADMIN
        )
        assert aliased.status_code == 200
        assert client.get("/readyz").status_code == 200

        response = client.post("/v1/models/mlp:predict", json={"instances": ROWS})
        assert response.status_code == 200
        assert response.json()["predictions"][0] == _approx(expected(module, ROWS)[0])

        too_big = client.post("/v1/models/mlp:predict", json={"instances": ROWS * 500})
        assert too_big.status_code == 413
        assert too_big.json()["error"]["code"] == "payload_too_large"
        # The server is still healthy after the oversized body.
        assert client.post("/v1/models/mlp:predict", json={"instances": ROWS}).status_code == 200
        openapi = client.get("/openapi.json").json()
        assert "/v1/models/{name}:predict" in openapi["paths"]


def _approx(values: list[float]) -> object:
    import pytest

    return pytest.approx(values, abs=1e-5)
