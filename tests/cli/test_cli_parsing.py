"""The CLI's own logic, in process: refs, --since, --meta, canary weights, URL and key
resolution, the streamed multipart body."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from python_multipart.multipart import MultipartParser

from maas.cli.aliases import split_weights
from maas.cli.client import resolve_key, resolve_url
from maas.cli.output import USAGE, CliError, routes_text
from maas.cli.refs import Ref, parse_ref, since, version_ref
from maas.cli.register import read_meta
from maas.cli.upload import MultipartBody


def _routes(routes: list[dict[str, int]]) -> dict[int, int]:
    return {r["version"]: r["weight"] for r in routes}


@pytest.mark.parametrize(
    ("current", "version", "weight", "expected"),
    [
        ([(1, 100)], 2, 10, {1: 90, 2: 10}),
        ([(1, 90), (2, 10)], 2, 20, {1: 80, 2: 20}),  # the canary's own share is replaced
        ([(1, 1), (2, 1), (3, 1)], 4, 1, {1: 33, 2: 33, 3: 33, 4: 1}),
        ([(1, 2), (2, 1)], 3, 50, {1: 33, 2: 17, 3: 50}),  # 33.33 / 16.67: remainder to 2
        ([(1, 1000), (2, 1)], 3, 50, {1: 50, 3: 50}),  # 2 scales to 0: dropped
        ([(1, 9), (2, 1)], 3, 99, {1: 1, 3: 99}),
    ],
)
def test_canary_weights_scale_the_current_targets_to_the_rest(
    current: list[tuple[int, int]], version: int, weight: int, expected: dict[int, int]
) -> None:
    routes = split_weights(current, version, weight)
    assert _routes(routes) == expected
    assert sum(r["weight"] for r in routes) == 100
    assert routes[-1] == {"version": version, "weight": weight}


def test_refs() -> None:
    assert parse_ref("digits") == Ref("digits")
    assert parse_ref("digits@3") == Ref("digits", version=3)
    assert parse_ref("digits@production") == Ref("digits", alias="production")
    assert str(parse_ref("digits@canary")) == "digits@canary"
    for bad in ("Digits", "digits@", "digits@Prod", "@3", "digits@0", "digits\n", "digits@prod\n"):
        with pytest.raises(CliError) as caught:
            parse_ref(bad)
        assert caught.value.exit_code == USAGE
    with pytest.raises(CliError):
        version_ref("digits@production")


def test_since_accepts_durations_and_iso_times() -> None:
    now = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    assert since("10m", now) == "2025-03-01T11:50:00+00:00"
    assert since("2h", now) == "2025-03-01T10:00:00+00:00"
    assert since("1d", now) == "2025-02-28T12:00:00+00:00"
    assert since("2025-01-31T12:00:00Z") == "2025-01-31T12:00:00+00:00"
    assert since("2025-01-31T14:00:00+02:00") == "2025-01-31T12:00:00+00:00"
    assert since("2025-01-31T12:00:00") == "2025-01-31T12:00:00+00:00"  # naive: UTC
    for bad in ("yesterday", "10 minutes", "-5m", ""):
        with pytest.raises(CliError) as caught:
            since(bad)
        assert caught.value.exit_code == USAGE


def test_meta_is_inline_json_or_a_file(tmp_path: Path) -> None:
    meta = tmp_path / "meta.json"
    meta.write_text('{"format": "torchscript"}')
    assert json.loads(read_meta(str(meta))) == {"format": "torchscript"}
    assert json.loads(read_meta(f"@{meta}")) == {"format": "torchscript"}
    assert json.loads(read_meta(' {"format": "torch_export"} ')) == {"format": "torch_export"}
    (tmp_path / "list.json").write_text("[1]")
    (tmp_path / "broken.json").write_text("{")
    for bad in ("{nope", str(tmp_path / "missing.json"), str(tmp_path / "list.json")):
        with pytest.raises(CliError) as caught:
            read_meta(bad)
        assert caught.value.exit_code == USAGE
        assert "\n" not in caught.value.format_message()
    with pytest.raises(CliError, match="line 1 column 2"):
        read_meta(str(tmp_path / "broken.json"))


def test_url_and_key_resolution(tmp_path: Path) -> None:
    assert resolve_url(environ={}) == "http://127.0.0.1:8000"
    assert resolve_url(environ={"MAAS_PORT": "9001"}) == "http://127.0.0.1:9001"
    assert resolve_url(environ={"MAAS_HOST": "0.0.0.0", "MAAS_PORT": "81"}) == (
        "http://127.0.0.1:81"
    )
    assert resolve_url(environ={"MAAS_HOST": "::"}) == "http://127.0.0.1:8000"
    assert resolve_url(environ={"MAAS_HOST": "::1"}) == "http://[::1]:8000"
    assert resolve_url(environ={"MAAS_URL": "https://maas.example/", "MAAS_PORT": "1"}) == (
        "https://maas.example"
    )
    assert resolve_url("http://flag:1", environ={"MAAS_URL": "http://env:2"}) == "http://flag:1"
    for bad in ({"MAAS_URL": "localhost:8000"}, {"MAAS_PORT": "http"}, {"MAAS_PORT": "0"}):
        with pytest.raises(CliError) as caught:
            resolve_url(environ=bad)
        assert caught.value.exit_code == USAGE

    assert resolve_key({"MAAS_API_KEY": "k1", "MAAS_DATA_DIR": str(tmp_path)})[0] == "k1"
    assert resolve_key({"MAAS_DATA_DIR": str(tmp_path)})[0] is None
    (tmp_path / "admin.key").write_text("from-file\n")
    assert resolve_key({"MAAS_DATA_DIR": str(tmp_path)}) == (
        "from-file",
        str(tmp_path / "admin.key"),
    )


def test_routes_text() -> None:
    assert routes_text([{"version": 3, "weight": 100}]) == "3"
    assert routes_text([{"version": 1, "weight": 90}, {"version": 2, "weight": 10}]) == (
        "1 (90%) + 2 (10%)"
    )
    assert routes_text(None) == "—"


def test_multipart_body_streams_what_it_declares(tmp_path: Path) -> None:
    artifact = tmp_path / 'odd "name".pt'
    payload = bytes(range(256)) * 9000  # over two chunks
    artifact.write_bytes(payload)
    body = MultipartBody.build(artifact, '{"format": "torchscript"}')
    counted: list[int] = []
    sent: list[bool] = []
    raw = b"".join(body.chunks(counted.append, lambda: sent.append(True)))
    assert len(raw) == body.length
    assert sum(counted) == len(payload)
    assert sent == [True]

    parts: dict[str, bytearray] = {}
    current: list[str] = []
    headers: list[bytes] = []

    def on_header_value(data: bytes, start: int, end: int) -> None:
        headers.append(data[start:end])

    def on_headers_finished() -> None:
        disposition = next(h for h in headers if h.startswith(b"form-data"))
        name = disposition.split(b'name="', 1)[1].split(b'"', 1)[0].decode()
        current.append(name)
        parts[name] = bytearray()
        headers.clear()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[current[-1]] += data[start:end]

    parser = MultipartParser(
        body.content_type.split("boundary=", 1)[1],
        {
            "on_header_value": on_header_value,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
        },
    )
    parser.write(raw)
    parser.finalize()
    assert bytes(parts["meta"]) == b'{"format": "torchscript"}'
    assert bytes(parts["file"]) == payload
