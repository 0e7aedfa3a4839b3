"""The access log: admin changes always, every request with MAAS_ACCESS_LOG, one format."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from support.fake_gateway import fake_archive, fake_gateway, meta
from support.inprocess_gateway import ADMIN, make_settings

ROW = {"instances": [[1.0, 2.0, 3.0, 4.0]]}


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "maas.access"]


async def test_admin_changes_are_logged_with_their_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="maas.access")
    async with fake_gateway(make_settings(tmp_path)) as gw:
        await gw.deploy("mlp", fake_archive(), meta())
        caplog.clear()
        assert (await gw.client.get("/admin/models", headers=ADMIN)).status_code == 200
        assert (await gw.predict("/v1/models/mlp:predict", ROW)).status_code == 200
        refused = await gw.client.post("/admin/models/mlp/promote", json={"version": 9})
        assert refused.status_code == 401
        await gw.client.post("/admin/models/mlp/promote", json={"version": 1}, headers=ADMIN)
    lines = _lines(caplog)
    assert len(lines) == 2, lines  # reads and inference are not logged by default
    assert lines[0].startswith('127.0.0.1 "POST /admin/models/mlp/promote" 401 ')
    assert lines[0].endswith(" key=-")
    assert lines[1].startswith('127.0.0.1 "POST /admin/models/mlp/promote" 200 ')
    assert lines[1].endswith(" ms key=bootstrap-admin")


async def test_every_request_is_logged_when_asked(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="maas.access")
    async with fake_gateway(make_settings(tmp_path, access_log=True)) as gw:
        await gw.deploy("mlp", fake_archive(), meta())
        caplog.clear()
        await gw.predict("/v1/models/mlp:predict", ROW)
        await gw.predict("/v1/models/nope:predict", ROW)
        await gw.client.get("/healthz")
    lines = _lines(caplog)
    assert [line.split(" ms ")[0].rsplit(" ", 1)[0] for line in lines] == [
        '127.0.0.1 "POST /v1/models/mlp:predict" 200',
        '127.0.0.1 "POST /v1/models/nope:predict" 404',
        '127.0.0.1 "GET /healthz" 200',
    ]
