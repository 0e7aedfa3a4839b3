"""Every client mistake on the inference path is a JSON error with CONTRACT's status.

These are the gateway's own answers: the model behind them is a handler (`fake_gateway`), and a
mistake the gateway answers never reaches it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from maas.config import Settings
from maas.dispatch.fake import FakeCall
from support.fake_gateway import fake_archive, fake_gateway, meta
from support.inprocess_gateway import ADMIN, Gateway, make_settings


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[Gateway]:
    async with fake_gateway(settings) as gw:
        yield gw


@pytest.fixture
async def served(gateway: Gateway) -> Gateway:
    await gateway.deploy("mlp", fake_archive(), meta())
    return gateway


def _error(response: Any, status: int, code: str | None = None) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert isinstance(error["message"], str)
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    message: str = error["message"]
    return message


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/v1/models/ghost:predict", "model_not_found"),
        ("/v1/models/mlp@99:predict", "version_not_found"),
        ("/v1/models/mlp/versions/99:predict", "version_not_found"),
        ("/v1/models/mlp@nosuchalias:predict", "alias_not_found"),
        ("/v1/models/mlp/labels/nosuchalias:predict", "alias_not_found"),
    ],
)
async def test_unknown_refs_are_404(served: Gateway, path: str, code: str) -> None:
    _error(await served.predict(path, {"instances": [[0, 0, 0, 0]]}), 404, code)


async def test_model_without_production_alias_is_404(served: Gateway) -> None:
    await served.create_model("bare")
    _error(await served.predict("/v1/models/bare:predict", {"instances": [[1]]}), 404)


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"",
        b"[1, 2]",
        b'{"inputs": [[1,2,3,4]]}',
        b'{"instances": []}',
        b'{"instances": {"x": 1}}',
        b'{"instances": [[1,2,3,4]]',
        '{"instances": [NaN]}',
    ],
)
async def test_malformed_bodies_are_400(served: Gateway, body: bytes | str) -> None:
    _error(await served.predict("/v1/models/mlp:predict", body), 400, "bad_request")
    assert served.services.backend.calls == []


async def test_non_integer_version_path_is_400(served: Gateway) -> None:
    response = await served.predict("/v1/models/mlp/versions/one:predict", {"instances": [[1]]})
    _error(response, 400)


@pytest.mark.parametrize(
    ("instances", "fragment"),
    [
        ([[1, 2, 3]], "axis 0 must have length 4"),
        ([[1, 2, 3, 4, 5]], "axis 0 must have length 4"),
        ([1.0], "rank 1"),
        ([[[1, 2, 3, 4]]], "rank 1"),
        ([["a", "b", "c", "d"]], "float32"),
        ([[1, [2], 3, 4]], "rectangular"),
        ([[1, 2, 3, 4], [1, 2]], "instance 1"),
        ([[True, False, True, False]], "float32"),
        ([None], "float32"),
        ([{"x": [1, 2, 3, 4], "extra": 1}], "unexpected"),
    ],
)
async def test_wrong_dtype_or_shape_is_422(
    served: Gateway, instances: list[Any], fragment: str
) -> None:
    response = await served.predict("/v1/models/mlp:predict", {"instances": instances})
    assert fragment in _error(response, 422, "invalid_input")
    assert served.services.backend.calls == []


async def test_values_outside_declared_domain_are_422(gateway: Gateway) -> None:
    bounded = meta()
    bounded["inputs"][0].update({"min": 0, "max": 10})
    await gateway.deploy("bounded", fake_archive(), bounded)
    ok = await gateway.predict("/v1/models/bounded:predict", {"instances": [[0, 1, 2, 10]]})
    assert ok.status_code == 200
    assert ok.json()["predictions"] == [[0.0, 0.5, 1.0]]
    response = await gateway.predict("/v1/models/bounded:predict", {"instances": [[0, 1, 2, 11]]})
    assert "[0, 10]" in _error(response, 422, "invalid_input")


async def test_oversized_body_is_413_json(tmp_path: Any) -> None:
    settings: Settings = make_settings(tmp_path, max_body_bytes=2048)
    async with fake_gateway(settings) as gw:
        await gw.deploy("mlp", fake_archive(), meta())
        rows = [[0.5, 0.5, 0.5, 0.5]] * 200
        _error(await gw.predict("/v1/models/mlp:predict", {"instances": rows}), 413)
        small = await gw.predict("/v1/models/mlp:predict", {"instances": rows[:2]})
        assert small.status_code == 200


async def test_bad_timeout_header_is_400(served: Gateway) -> None:
    response = await served.predict(
        "/v1/models/mlp:predict",
        {"instances": [[1, 2, 3, 4]]},
        **{"X-Request-Timeout-Ms": "soon"},
    )
    _error(response, 400)


async def test_inference_key_required_when_configured(tmp_path: Any) -> None:
    async with fake_gateway(make_settings(tmp_path, require_infer_key=True)) as gw:
        await gw.deploy("mlp", fake_archive(), meta())
        body = {"instances": [[1, 2, 3, 4]]}
        _error(await gw.predict("/v1/models/mlp:predict", body), 401, "unauthenticated")
        bad = await gw.predict("/v1/models/mlp:predict", body, Authorization="Bearer nope")
        _error(bad, 401)
        created = await gw.client.post(
            "/admin/keys", json={"name": "app", "scopes": ["infer"]}, headers=ADMIN
        )
        secret = created.json()["secret"]
        ok = await gw.predict("/v1/models/mlp:predict", body, Authorization=f"Bearer {secret}")
        assert ok.status_code == 200
        admin_ok = await gw.predict("/v1/models/mlp:predict", body, **ADMIN)
        assert admin_ok.status_code == 200


async def test_not_ready_version_is_409(gateway: Gateway) -> None:
    await gateway.create_model("mlp")
    uploaded = await gateway.upload("mlp", fake_archive(), meta(load=False))
    assert uploaded.json()["status"] == "registered"
    response = await gateway.predict("/v1/models/mlp@1:predict", {"instances": [[1, 2, 3, 4]]})
    _error(response, 409, "version_not_ready")


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/models/mlp:predict", 405),
        ("PUT", "/v1/models/mlp/versions/1:predict", 405),
        ("POST", "/v1/models/:predict", 404),
        ("POST", "/v1/models/mlp/versions/:predict", 404),
        ("POST", "/v1/models/mlp/shapes/1:predict", 404),
        ("POST", "/v1/models/mlp/versions/1/more:predict", 404),
    ],
)
async def test_paths_beside_the_predict_routes_are_json_errors(
    served: Gateway, method: str, path: str, status: int
) -> None:
    response = await served.client.request(method, path, json={"instances": [[1, 2, 3, 4]]})
    _error(response, status)


def _broken(call: FakeCall) -> list[Any]:
    """Every forward fails in a way no code path expects."""
    raise RuntimeError("the backend broke")


async def test_an_unexpected_failure_is_a_json_500_and_is_counted(tmp_path: Path) -> None:
    async with fake_gateway(make_settings(tmp_path), _broken) as gateway:
        await gateway.deploy("mlp", fake_archive(), meta())
        response = await gateway.predict("/v1/models/mlp:predict", {"instances": [[1, 2, 3, 4]]})
        message = _error(response, 500, "internal_error")
        assert "the backend broke" not in message  # details stay in the server log
        metrics = (await gateway.client.get("/metrics")).text
        assert (
            'maas_requests_total{code="500",model="mlp",protocol="v1",version="1"} 1.0' in metrics
        )
        # The gateway goes on serving.
        assert (await gateway.client.get("/healthz")).status_code == 200
