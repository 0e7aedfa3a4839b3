"""One inference call through `maas.serving.call.serve`, the plain ASGI handler, with no HTTP
server and no app: a `CallServices`-shaped object (settings, auth, data plane over a fake
backend, metrics that record) and ASGI `receive`/`send` of the test's own. Every call is
answered in its codec's shape and counted exactly once, under the version its ref resolved
to; a client that hangs up ends the call and the backend's work with it."""

from __future__ import annotations

import asyncio
import gzip
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from maas.api.native.codec import NativeCodec
from maas.api.v2.codec import V2Codec
from maas.config import Settings
from maas.dispatch.fake import FakeCall
from maas.errors import BadRequest
from maas.types import ModelRef, VersionKey, VersionStatus
from support.serving_parts import KeyAuth, Observed, Services, call, stack, version

NATIVE = NativeCodec()
ROWS = {"instances": [[2.0, 4.0, 6.0, 8.0], [1.0, 1.0, 1.0, 1.0]]}


def halve(call: FakeCall) -> list[Any]:
    (x,) = call.inputs
    return [x[:, :3] / 2]


def settings(tmp_path: Path, **extra: Any) -> Settings:
    return Settings(data_dir=tmp_path, artifact_dir=tmp_path / "artifacts", **extra)


async def services(tmp_path: Path, handler: Any = halve, **extra: Any) -> Services:
    """m@1 and m@2 ready, production → 2; `bad`@1 still loading, production → 1."""
    _, _, plane = await stack(
        handler,
        version(number=1),
        version(number=2, max_batch_size=1),
        version("bad", 1, VersionStatus.LOADING),
        aliases=[("m", "production", 2), ("bad", "production", 1)],
    )
    return Services(settings(tmp_path, **extra), plane)


def backend_calls(gateway: Services) -> list[FakeCall]:
    return gateway.dataplane._backend.calls  # type: ignore[attr-defined, no-any-return]


async def test_a_predict_is_answered_by_its_resolved_version_and_counted_once(
    tmp_path: Path,
) -> None:
    gateway = await services(tmp_path)
    answer = await call(gateway, NATIVE, ModelRef("m"), ROWS, headers=[(b"x-request-id", b"r-1")])
    assert answer is not None
    assert answer.status == 200, answer.body
    assert answer.json() == {
        "predictions": [[1.0, 2.0, 3.0], [0.5, 0.5, 0.5]],
        "model": "m",
        "version": 2,
    }
    assert answer.headers[b"x-model-name"] == b"m"
    assert answer.headers[b"x-model-version"] == b"2"
    assert answer.headers[b"x-request-id"] == b"r-1"
    assert int(answer.headers[b"content-length"]) == len(answer.body)
    # m@2 takes batches of one: the two instances reached the backend as two calls to m@2
    assert [(c.key, len(c.inputs[0])) for c in backend_calls(gateway)] == [
        (VersionKey("m", 2), 1),
        (VersionKey("m", 2), 1),
    ]
    assert gateway.metrics.observed == [Observed("m", "2", "v1", 200)]


async def test_an_unknown_model_is_a_404_counted_once_under_unknown(tmp_path: Path) -> None:
    gateway = await services(tmp_path)
    answer = await call(gateway, NATIVE, ModelRef("nope"), ROWS)
    assert answer is not None
    assert answer.status == 404
    assert answer.json() == {
        "error": {"code": "model_not_found", "message": "model 'nope' does not exist"}
    }
    assert b"x-model-name" not in answer.headers
    assert backend_calls(gateway) == []
    assert gateway.metrics.observed == [Observed("_unknown", "_", "v1", 404)]


async def test_a_version_that_cannot_serve_is_counted_under_that_version(tmp_path: Path) -> None:
    gateway = await services(tmp_path)
    answer = await call(gateway, NATIVE, ModelRef("bad"), ROWS)
    assert answer is not None
    assert answer.status == 409
    assert answer.json()["error"]["code"] == "version_not_ready"
    assert gateway.metrics.observed == [Observed("bad", "1", "v1", 409)]


async def test_a_ref_the_path_got_wrong_is_answered_and_counted(tmp_path: Path) -> None:
    gateway = await services(tmp_path)
    answer = await call(gateway, NATIVE, BadRequest("malformed model ref 'm@a@b'"), ROWS)
    assert answer is not None
    assert (answer.status, answer.json()["error"]["code"]) == (400, "bad_request")
    assert gateway.metrics.observed == [Observed("_unknown", "_", "v1", 400)]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"instances": [[1.0, 2.0, 3.0]]}, 422, "invalid_input"),  # 3 numbers where 4 go
        ({"instances": [["a", "b", "c", "d"]]}, 422, "invalid_input"),
        ({"rows": [[1.0, 2.0, 3.0, 4.0]]}, 400, "bad_request"),
        (b"{not json", 400, "bad_request"),
    ],
    ids=["short_instance", "strings", "no_instances", "not_json"],
)
async def test_an_invalid_body_never_reaches_the_backend(
    tmp_path: Path, body: Any, status: int, code: str
) -> None:
    gateway = await services(tmp_path)
    answer = await call(gateway, NATIVE, ModelRef("m", version=1), body)
    assert answer is not None
    assert (answer.status, answer.json()["error"]["code"]) == (status, code), answer.body
    assert backend_calls(gateway) == []
    assert gateway.metrics.observed == [Observed("m", "1", "v1", status)]


async def test_a_body_over_the_cap_is_refused_even_compressed(tmp_path: Path) -> None:
    gateway = await services(tmp_path, max_body_bytes=1024)
    padded = b'{"instances": [[1, 2, 3, 4]], "pad": "' + b" " * 2000 + b'"}'
    answer = await call(gateway, NATIVE, ModelRef("m"), padded)
    assert answer is not None
    assert answer.status == 413
    small = gzip.compress(padded)
    assert len(small) < 1024
    answer = await call(
        gateway, NATIVE, ModelRef("m"), small, headers=[(b"content-encoding", b"gzip")]
    )
    assert answer is not None
    assert (answer.status, answer.json()["error"]["code"]) == (413, "payload_too_large")
    assert backend_calls(gateway) == []
    assert [o.code for o in gateway.metrics.observed] == [413, 413]


async def test_a_client_that_hangs_up_ends_the_call_and_the_backend_s_work(
    tmp_path: Path,
) -> None:
    reached, abandoned = asyncio.Event(), asyncio.Event()

    async def stuck(call: FakeCall) -> list[Any]:
        reached.set()
        try:
            await asyncio.Event().wait()  # a forward that would outlast the client
        except asyncio.CancelledError:
            abandoned.set()
            raise
        raise AssertionError("unreachable")

    gateway = await services(tmp_path, stuck)
    hang_up = asyncio.Event()
    served = asyncio.create_task(
        call(gateway, NATIVE, ModelRef("m", version=1), ROWS, hang_up=hang_up)
    )
    await asyncio.wait_for(reached.wait(), 5)
    hang_up.set()
    answer = await asyncio.wait_for(served, 5)  # the call ends: it does not wait on the model
    assert abandoned.is_set()
    assert answer is not None
    assert (answer.status, answer.json()["error"]["code"]) == (499, "client_disconnected")
    assert gateway.metrics.observed == [Observed("m", "1", "v1", 499)]


async def test_the_request_s_deadline_header_bounds_the_backend(tmp_path: Path) -> None:
    async def stuck(call: FakeCall) -> list[Any]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    gateway = await services(tmp_path, stuck)
    answer = await call(
        gateway, NATIVE, ModelRef("m", version=1), ROWS, headers=[(b"x-request-timeout-ms", b"50")]
    )
    assert answer is not None
    assert (answer.status, answer.json()["error"]["code"]) == (504, "deadline_exceeded")
    (sent,) = backend_calls(gateway)
    assert sent.timeout_s == pytest.approx(0.05)
    assert gateway.metrics.observed == [Observed("m", "1", "v1", 504)]


async def test_a_backend_bug_is_a_500_that_tells_nothing_and_is_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(call: FakeCall) -> list[Any]:
        raise RuntimeError("secret detail of the bug")

    gateway = await services(tmp_path, broken)
    answer = await call(gateway, NATIVE, ModelRef("m", version=1), ROWS)
    assert answer is not None
    assert answer.status == 500
    assert b"secret detail" not in answer.body
    assert answer.json()["error"]["code"] == "internal_error"
    assert "secret detail of the bug" in caplog.text  # the log has it
    assert gateway.metrics.observed == [Observed("m", "1", "v1", 500)]


async def test_with_keys_required_a_refused_key_learns_nothing_of_the_model(
    tmp_path: Path,
) -> None:
    gateway = await services(tmp_path, require_infer_key=True)
    gateway.auth = KeyAuth("good-key", models={"m"})
    for ref in (ModelRef("m"), ModelRef("nope")):  # no key: 401 whether the model exists or not
        answer = await call(gateway, NATIVE, ref, ROWS)
        assert answer is not None
        assert answer.status == 401
        assert answer.headers[b"www-authenticate"] == b"Bearer"
    forbidden = await call(
        gateway, NATIVE, ModelRef("nope"), ROWS, headers=[(b"authorization", b"Bearer good-key")]
    )
    assert forbidden is not None
    assert forbidden.status == 403  # not 404: a key for other models cannot probe for names
    allowed = await call(
        gateway, NATIVE, ModelRef("m"), ROWS, headers=[(b"authorization", b"Bearer good-key")]
    )
    assert allowed is not None
    assert allowed.status == 200
    assert gateway.auth.asked == [
        (None, "m"),
        (None, "nope"),
        ("Bearer good-key", "nope"),
        ("Bearer good-key", "m"),
    ]
    assert [o.code for o in gateway.metrics.observed] == [401, 401, 403, 200]
    assert len(backend_calls(gateway)) == 2  # the allowed call only (cut in two)


async def test_without_keys_required_auth_is_never_asked(tmp_path: Path) -> None:
    gateway = await services(tmp_path)
    answer = await call(gateway, NATIVE, ModelRef("m"), ROWS)
    assert answer is not None
    assert answer.status == 200
    assert gateway.auth.asked == []


async def test_the_v2_codec_is_counted_under_its_own_protocol(tmp_path: Path) -> None:
    gateway = await services(tmp_path)
    body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [2, 4, 6, 8]}]}
    answer = await call(gateway, V2Codec(), ModelRef("m", version=1), body)
    assert answer is not None
    assert answer.status == 200, answer.body
    (output,) = answer.json()["outputs"]
    assert output["name"] == "y"
    np.testing.assert_allclose(output["data"], [1.0, 2.0, 3.0])
    missing = await call(gateway, V2Codec(), ModelRef("nope"), body)
    assert missing is not None
    assert missing.status == 404
    assert missing.json() == {"error": "model 'nope' does not exist"}  # v2's error shape
    assert gateway.metrics.observed == [
        Observed("m", "1", "v2", 200),
        Observed("_unknown", "_", "v2", 404),
    ]
