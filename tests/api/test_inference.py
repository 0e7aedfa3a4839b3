"""Upload → load → predict through the native REST routes, both artifact formats, all refs."""

from __future__ import annotations

import pytest

from support.inprocess_gateway import Gateway
from support.model_files import expected, export_bytes, mlp_meta, tiny_mlp, torchscript_bytes

ROWS = [[0.1, 0.2, 0.3, 0.4], [1.0, -1.0, 0.5, 2.0], [0.0, 0.0, 0.0, 0.0]]


@pytest.mark.parametrize(
    ("fmt", "build"), [("torchscript", torchscript_bytes), ("torch_export", export_bytes)]
)
async def test_upload_load_predict(gateway: Gateway, fmt: str, build: object) -> None:
    module = tiny_mlp(seed=1)
    artifact = build(module)  # type: ignore[operator]
    version = await gateway.deploy("mlp", artifact, mlp_meta(fmt))
    response = await gateway.predict("/v1/models/mlp:predict", {"instances": ROWS})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "mlp"
    assert body["version"] == version
    want = expected(module, ROWS)
    for got_row, want_row in zip(body["predictions"], want, strict=True):
        assert got_row == pytest.approx(want_row, abs=1e-5)
    assert response.headers["X-Model-Name"] == "mlp"
    assert response.headers["X-Model-Version"] == str(version)
    assert response.headers["X-Request-Id"]


async def test_all_four_ref_forms_and_alias_routing(gateway: Gateway) -> None:
    first, second = tiny_mlp(seed=1), tiny_mlp(seed=2)
    v1 = await gateway.deploy("mlp", torchscript_bytes(first), mlp_meta())
    v2 = await gateway.deploy("mlp", torchscript_bytes(second), mlp_meta(), alias="staging")
    cases = {
        "/v1/models/mlp:predict": (v1, first),
        "/v1/models/mlp@production:predict": (v1, first),
        f"/v1/models/mlp@{v2}:predict": (v2, second),
        f"/v1/models/mlp/versions/{v1}:predict": (v1, first),
        "/v1/models/mlp/labels/staging:predict": (v2, second),
        "/v1/models/mlp@staging:predict": (v2, second),
    }
    for path, (version, module) in cases.items():
        response = await gateway.predict(path, {"instances": ROWS[:1]})
        assert response.status_code == 200, (path, response.text)
        assert response.json()["version"] == version, path
        assert response.json()["predictions"][0] == pytest.approx(
            expected(module, ROWS[:1])[0], abs=1e-5
        )


async def test_request_id_is_echoed(gateway: Gateway) -> None:
    await gateway.deploy("mlp", torchscript_bytes(tiny_mlp()), mlp_meta())
    response = await gateway.predict(
        "/v1/models/mlp:predict", {"instances": ROWS[:1]}, **{"X-Request-Id": "abc-123"}
    )
    assert response.headers["X-Request-Id"] == "abc-123"
    missing = await gateway.predict(
        "/v1/models/nope:predict", {"instances": ROWS[:1]}, **{"X-Request-Id": "err-1"}
    )
    assert missing.status_code == 404
    assert missing.headers["X-Request-Id"] == "err-1"


async def test_request_larger_than_max_batch_is_split_in_order(gateway: Gateway) -> None:
    module = tiny_mlp(seed=3)
    await gateway.deploy("mlp", torchscript_bytes(module), mlp_meta())  # max_batch_size 8
    rows = [[float(i), float(-i), i / 10, 1.0] for i in range(21)]
    response = await gateway.predict("/v1/models/mlp:predict", {"instances": rows})
    assert response.status_code == 200
    for got_row, want_row in zip(
        response.json()["predictions"], expected(module, rows), strict=True
    ):
        assert got_row == pytest.approx(want_row, abs=1e-5)
