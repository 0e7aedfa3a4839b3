"""A revoked key is refused on every gateway of the registry by the time the revocation
returns: here two `maas serve` instances on one registry, the key revoked through one and used
on the other (which had it cached)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from support.inprocess_gateway import ADMIN, ADMIN_SECRET
from support.processes import maas_server

pytestmark = pytest.mark.slow


def test_a_revoked_key_is_refused_on_the_other_instance_when_the_call_returns(
    tmp_path: Path,
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shared = {
        "MAAS_DATABASE_URL": f"sqlite:///{tmp_path}/registry.db",
        "MAAS_BOOTSTRAP_ADMIN_KEY": ADMIN_SECRET,
        "MAAS_GATEWAYS": "1",
    }
    with (
        maas_server(tmp_path / "a", env=shared) as a,
        maas_server(tmp_path / "b", env=shared) as b,
    ):
        created = httpx.post(
            a + "/admin/keys", json={"name": "ops", "scopes": ["admin"]}, headers=ADMIN
        )
        assert created.status_code == 201
        ops = {"Authorization": f"Bearer {created.json()['secret']}"}
        for _ in range(3):  # B knows the key and keeps its answer cached
            assert httpx.get(b + "/admin/models", headers=ops).status_code == 200

        started = time.monotonic()
        revoked = httpx.delete(f"{a}/admin/keys/{created.json()['id']}", headers=ADMIN)
        answered = time.monotonic() - started
        assert revoked.status_code == 200, revoked.text
        propagated = revoked.json()["propagated"]
        assert propagated["missing"] == []
        assert propagated["confirmed"] == propagated["gateways"] == 2
        refused = httpx.get(b + "/admin/models", headers=ops)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "unauthenticated"
        assert httpx.get(a + "/admin/models", headers=ops).status_code == 401
        print(f"revocation confirmed by both instances in {answered * 1000:.0f} ms")
