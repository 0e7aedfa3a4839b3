"""`maas serve --demo` start-up: admin key file, both demos registered, aliased and serving."""

from __future__ import annotations

import functools
import stat

from sklearn.datasets import load_digits

from maas.config import Settings
from maas.demo.artifact import DemoModel
from maas.demo.setup import ADMIN_KEY_FILE, install_demo
from support.inprocess_gateway import running_gateway


async def test_demo_install_serves_both_models(
    settings: Settings, digits_demo: DemoModel, tokens_demo: DemoModel
) -> None:
    hook = functools.partial(
        install_demo, trainers=[("digits", lambda: digits_demo), ("tokens", lambda: tokens_demo)]
    )
    async with running_gateway(settings, on_started=hook) as gw:
        ready = await gw.wait_ready()
        assert ready.status_code == 200, ready.text

        key_file = settings.data_dir / ADMIN_KEY_FILE
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        admin = {"Authorization": f"Bearer {key_file.read_text().strip()}"}
        listed = await gw.client.get("/admin/models/digits", headers=admin)
        assert listed.status_code == 200, listed.text

        version = await gw.client.get("/admin/models/digits/versions/1", headers=admin)
        assert version.json()["status"] == "ready"
        assert version.json()["metrics"]["accuracy"] >= 0.95
        # Production came with readiness, recorded once, as the system's change.
        history = await gw.client.get(
            "/admin/models/digits/aliases/production/history", headers=admin
        )
        rows = [(h["action"], h["key"], h["to"]) for h in history.json()["history"]]
        assert rows == [("set", "system", [{"version": 1, "weight": 100}])]

        bunch = load_digits()
        rows = bunch.data[-20:].tolist()
        response = await gw.predict("/v1/models/digits@production:predict", {"instances": rows})
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["model"], body["version"]) == ("digits", 1)
        predicted = [max(range(10), key=logits.__getitem__) for logits in body["predictions"]]
        correct = sum(p == t for p, t in zip(predicted, bunch.target[-20:], strict=True))
        assert correct >= 17

        response = await gw.predict(
            "/v1/models/tokens:predict", {"instances": [[1, 2, 3], [900, 901, 902, 903, 4]]}
        )
        assert response.status_code == 200, response.text
        assert [len(p) for p in response.json()["predictions"]] == [2, 2]

        bad = await gw.predict("/v1/models/tokens:predict", {"instances": [[1000]]})
        assert bad.status_code == 422, bad.text


async def test_demo_install_is_idempotent_across_restarts(
    settings: Settings, digits_demo: DemoModel
) -> None:
    trained: list[str] = []

    def train() -> DemoModel:
        trained.append("digits")
        return digits_demo

    hook = functools.partial(install_demo, trainers=[("digits", train)])
    for _ in range(2):
        async with running_gateway(settings, on_started=hook) as gw:
            assert (await gw.wait_ready()).status_code == 200
            secret = (settings.data_dir / ADMIN_KEY_FILE).read_text().strip()
            model = await gw.client.get(
                "/admin/models/digits", headers={"Authorization": f"Bearer {secret}"}
            )
            assert model.status_code == 200
            assert [v["version"] for v in model.json()["versions"]] == [1]
    assert trained == ["digits"]
