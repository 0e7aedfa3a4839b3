"""The operator console in a real browser: Debian's chromium, driven by Playwright, against a
real `maas serve`. Signing in (a wrong key refused, the key never in a URL or a cookie), what a
key limited to one model sees, a canary, a rollback and a promotion made from the page and
found in the registry and the audit log, and the page's names for assistive technology.

Screenshots of the pages go to `test-artifacts/console/` (docs/console.md shows them)."""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.control import upload, wait_ready_version
from support.inprocess_gateway import ADMIN, ADMIN_SECRET
from support.model_files import mlp_meta, tiny_mlp, torchscript_bytes
from support.processes import deploy, maas_server

CHROMIUM = shutil.which("chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"

try:
    from playwright.sync_api import Page, expect, sync_playwright
except ImportError:  # pragma: no cover - the dev extra installs it
    sync_playwright = None  # type: ignore[assignment]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make chromium)"),
    pytest.mark.skipif(sync_playwright is None, reason="playwright is not installed"),
]


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("console")
    env = {"MAAS_BOOTSTRAP_ADMIN_KEY": ADMIN_SECRET}
    with maas_server(data, "--gateways", "1", "--workers", "1", env=env) as served:
        deploy(served, torchscript_bytes(tiny_mlp(seed=1)), mlp_meta(), name="digits")
        second = upload(served, "digits", torchscript_bytes(tiny_mlp(seed=2)), mlp_meta())
        wait_ready_version(served, "digits", second)
        deploy(served, torchscript_bytes(tiny_mlp(seed=3)), mlp_meta(), name="other")
        yield served


def sign_in(page: Page, url: str, secret: str = ADMIN_SECRET) -> None:
    page.goto(f"{url}/console")
    page.get_by_label("Admin key").fill(secret)
    page.get_by_role("button", name="Sign in").click()


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def routes(url: str, model: str = "digits") -> list[dict[str, int]]:
    answer = httpx.get(f"{url}/admin/models/{model}/aliases/production", headers=ADMIN)
    return answer.json()["routes"]  # type: ignore[no-any-return]


def test_a_wrong_key_is_refused_and_the_right_one_signs_in(url: str, page: Page) -> None:
    page.goto(f"{url}/console")
    shot(page, "sign-in")
    page.get_by_label("Admin key").fill("not-a-key-at-all-0123456789")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("key")
    expect(page.get_by_role("heading", name="Models")).to_be_hidden()
    sign_in(page, url)
    table = page.get_by_role("table", name="Every model this key may see")
    expect(table).to_contain_text("digits")
    expect(table).to_contain_text("production: 1 (100 %)")
    shot(page, "models")
    # The key is in the tab's session storage only: never a URL, never a cookie.
    assert ADMIN_SECRET not in page.url
    assert page.context.cookies() == []
    stored = page.evaluate("sessionStorage.getItem('maas-console-key')")
    assert stored == ADMIN_SECRET
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0


def test_a_key_limited_to_one_model_sees_only_it(url: str, page: Page) -> None:
    body = {"name": "other-team", "scopes": ["admin"], "models": ["other"]}
    created = httpx.post(f"{url}/admin/keys", json=body, headers=ADMIN)
    assert created.status_code == 201, created.text
    sign_in(page, url, created.json()["secret"])
    table = page.get_by_role("table", name="Every model this key may see")
    expect(table).to_contain_text("other")
    expect(table).not_to_contain_text("digits")


def confirm(page: Page, effect: str) -> None:
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(effect)
    dialog.get_by_role("button", name="Apply").click()
    expect(dialog).to_be_hidden()


def test_a_canary_a_rollback_and_a_promotion_from_the_page(url: str, page: Page) -> None:
    sign_in(page, url)
    page.get_by_role("link", name="digits").click()
    expect(page.get_by_role("heading", name="Model digits")).to_be_visible()
    shot(page, "model")

    page.get_by_role("button", name="Canary on production…").click()
    page.get_by_role("dialog").get_by_label("Canary percent").fill("20")
    shot(page, "confirm-canary")
    confirm(page, "production of digits: 1 (100 %) → 1 (80 %) + 2 (20 %)")
    expect(page.get_by_role("status")).to_contain_text("canary on production of digits: done")
    assert routes(url) == [{"version": 1, "weight": 80}, {"version": 2, "weight": 20}]

    page.get_by_role("button", name="Roll back production…").click()
    confirm(page, "production of digits: 1 (80 %) + 2 (20 %) → what it pointed at before")
    expect(page.get_by_role("table", name="Aliases")).to_contain_text("1 (100 %)")
    assert routes(url) == [{"version": 1, "weight": 100}]

    page.get_by_role("button", name="Promote production…").click()
    page.get_by_role("dialog").get_by_label("Version").select_option("2")
    confirm(page, "production of digits: 1 (100 %) → 2 (100 %)")
    expect(page.get_by_role("table", name="Aliases")).to_contain_text("2 (100 %)")
    assert routes(url) == [{"version": 2, "weight": 100}]
    expect(page.locator("#history")).to_contain_text("promote by bootstrap-admin")
    shot(page, "model-after")

    events = httpx.get(f"{url}/admin/events?model=digits&action=alias", headers=ADMIN).json()
    made = [(e["action"], e["key"]) for e in reversed(events["events"])][-3:]
    assert made == [
        ("alias.set", "bootstrap-admin"),
        ("alias.rollback", "bootstrap-admin"),
        ("alias.promote", "bootstrap-admin"),
    ]


def test_a_refused_action_shows_the_servers_message(url: str, page: Page) -> None:
    sign_in(page, url)
    page.get_by_role("link", name="other").click()
    page.get_by_role("button", name="Unload 1…").click()
    confirm(page, "other@1: ready → unloaded")
    alert = page.get_by_role("alert").filter(has_text="unload other@1")
    expect(alert).to_contain_text("production")  # 409 alias_in_use: production points at it


def test_every_control_has_a_name_and_the_keyboard_signs_in(url: str, page: Page) -> None:
    page.goto(f"{url}/console")
    page.get_by_label("Admin key").focus()
    page.keyboard.type(ADMIN_SECRET)
    page.keyboard.press("Enter")
    page.get_by_role("link", name="digits").click()
    expect(page.get_by_role("heading", name="Model digits")).to_be_visible()
    tree: Any = page.locator("body").aria_snapshot()
    for line in str(tree).splitlines():
        stripped = line.strip()
        for role in ("- button", "- link", "- textbox", "- combobox"):
            if stripped.startswith(role):
                assert '"' in stripped, f"a {role[2:]} without an accessible name: {stripped}"
    headers = page.evaluate(
        "[...document.querySelectorAll('table')].every(t => t.querySelector('th[scope=col]'))"
    )
    assert headers
    assert os.environ.get("MAAS_API_KEY") != ADMIN_SECRET  # nothing leaked to the environment


def test_keys_are_made_and_revoked_from_the_page_and_the_audit_log_shows_it(
    url: str, page: Page
) -> None:
    sign_in(page, url)
    page.get_by_role("link", name="Keys").click()
    page.get_by_role("button", name="New key…").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Key name").fill("ci-bot")
    dialog.get_by_label("Models").fill("digits")
    confirm(page, 'a new infer key named "ci-bot" for digits; its secret is shown once')
    shown = page.locator("#new-secret")
    expect(shown).to_contain_text("Its secret, shown only now: ")
    secret = shown.inner_text().rsplit(": ", 1)[1]
    ok = httpx.post(
        f"{url}/v1/models/digits:predict",
        json={"instances": [[0.0] * 4]},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert ok.status_code == 200  # a working key, limited to digits
    keys = page.get_by_role("table", name="API keys")
    expect(keys).to_contain_text("ci-bot")
    shot(page, "keys")
    page.get_by_role("button", name="Revoke ci-bot…").click()
    confirm(page, "key ci-bot")
    expect(keys.get_by_role("row").filter(has_text="ci-bot")).not_to_contain_text("no")
    listed = httpx.get(f"{url}/admin/keys", headers=ADMIN).json()["keys"]
    assert [k["revoked_at"] is not None for k in listed if k["name"] == "ci-bot"] == [True]

    page.get_by_role("link", name="Audit log").click()
    page.get_by_label("Action").fill("key")
    page.get_by_role("button", name="Filter").click()
    log = page.get_by_role("table", name="Every change, newest first")
    expect(log).to_contain_text("key.revoke")
    expect(log).to_contain_text("key.create")
    shot(page, "audit-log")


def test_the_cluster_page_shows_workers_and_gateways(url: str, page: Page) -> None:
    sign_in(page, url)
    page.get_by_role("link", name="Cluster").click()
    workers = page.get_by_role("table", name="Workers")
    expect(workers).to_contain_text("healthy")
    expect(workers).to_contain_text("digits@1")
    gateways = page.get_by_role("table", name="Gateways")
    expect(gateways).to_contain_text(":")  # host:pid
    shot(page, "cluster")


def production(url: str, model: str = "digits") -> int:
    (route,) = routes(url, model)
    return route["version"]


def test_live_traffic_is_charted_after_real_traffic(url: str, page: Page) -> None:
    stop = threading.Event()

    def drive() -> None:  # about 50 requests a second while the page waits for a step
        with httpx.Client(base_url=url, headers=ADMIN) as client:
            while not stop.is_set():
                client.post("/v1/models/digits:predict", json={"instances": [[0.0] * 4]})
                stop.wait(0.02)

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    try:
        sign_in(page, url)
        page.get_by_role("link", name="digits").click()
        table = page.get_by_role("table", name="Traffic")
        version = str(production(url))
        first = page.locator("td:first-child", has_text=re.compile(f"^{version}$"))
        busy = table.locator("tbody tr").filter(has=first)
        expect(busy).to_have_count(1, timeout=20_000)
        # once a 5 s step with the driven requests is over, on every gateway
        expect(busy.locator("td").nth(1)).not_to_have_text("0.00", timeout=20_000)
        cells = busy.get_by_role("cell").all_inner_texts()
        assert float(cells[1]) > 0  # requests/s
        assert cells[2] == "0.00 %"  # no 5xx
        assert float(cells[5]) >= float(cells[4]) > 0  # p99 >= p50
        charts = page.get_by_role("img", name=re.compile("Requests per second"))
        expect(charts).to_have_count(1)
        expect(charts).to_have_attribute("aria-label", re.compile(f"{version}: [0-9.]+/s"))
        for title in ("Error rate", "Latency p50 and p99", "Mean batch size", "Queue depth"):
            expect(page.get_by_role("img", name=re.compile(title))).to_have_count(1)
        drawn = page.locator(f"#traffic-charts path[data-version='{version}']")
        assert drawn.count() >= 5  # a line in each chart (two for the latency)
        api = httpx.get(f"{url}/admin/models/digits/traffic?minutes=5&step_s=5", headers=ADMIN)
        assert int(version) in [v["version"] for v in api.json()["versions"]]
        shot(page, "traffic")
    finally:
        stop.set()
        driver.join(5)


def test_a_rollout_is_started_from_the_page_and_runs(url: str, page: Page) -> None:
    stable = production(url)
    candidate = 1 if stable == 2 else 2
    sign_in(page, url)
    page.get_by_role("link", name="digits").click()
    page.get_by_role("button", name="Start rollout on production…").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Candidate version").select_option(str(candidate))
    dialog.get_by_label("Steps (percent)").fill("50, 100")
    dialog.get_by_label("Seconds per step").fill("1")
    dialog.get_by_label("Requests per step").fill("0")
    shot(page, "confirm-rollout")
    confirm(
        page,
        f"production of digits: {stable} (100 %) → {candidate} in steps of 50 %, 100 %, each "
        f"for at least 1 s and 0 requests; back to {stable} (100 %) if its error rate passes 1 %",
    )
    rollouts = page.get_by_role("table", name="Rollouts")
    expect(rollouts).to_contain_text(f"{stable} → {candidate} on production")
    expect(rollouts).to_contain_text("succeeded", timeout=20_000)
    expect(rollouts).to_contain_text("50 %: pass, 100 %: pass")
    assert production(url) == candidate
    expect(page.locator("#history")).to_contain_text("rollout by rollout:")
    started = httpx.get(f"{url}/admin/events?model=digits&action=rollout.start", headers=ADMIN)
    assert started.json()["events"][0]["key"] == "bootstrap-admin"
    shot(page, "rollout")


def test_the_history_of_any_alias_is_a_timeline(url: str, page: Page) -> None:
    made = httpx.put(
        f"{url}/admin/models/other/aliases/staging", json={"version": 1}, headers=ADMIN
    )
    assert made.status_code in (200, 201), made.text
    sign_in(page, url)
    page.get_by_role("link", name="other").click()
    expect(page.get_by_role("heading", name="History of production")).to_be_visible()
    page.get_by_label("History of alias").select_option("staging")
    heading = page.get_by_role("heading", name="History of staging")
    expect(heading).to_be_visible()
    timeline = page.get_by_role("list", name="History of staging")
    expect(timeline).to_contain_text("set by bootstrap-admin: none → 1 (100 %)")
    expect(timeline.locator("time")).to_have_count(1)


VISIBILITY = """hidden => {
  Object.defineProperty(document, 'visibilityState',
    { configurable: true, get: () => (hidden ? 'hidden' : 'visible') });
  Object.defineProperty(document, 'hidden', { configurable: true, get: () => hidden });
  document.dispatchEvent(new Event('visibilitychange'));
}"""


def test_the_page_polls_while_visible_and_not_while_hidden(url: str, page: Page) -> None:
    sign_in(page, url)
    page.get_by_role("link", name="digits").click()
    expect(page.get_by_role("heading", name="Model digits")).to_be_visible()
    reads: list[str] = []
    page.on("request", lambda r: reads.append(r.url) if "/admin/" in r.url else None)
    page.wait_for_timeout(2500)
    assert any(r.endswith("/admin/models/digits") for r in reads)  # the model, every 2 s
    assert any("/traffic?" in r for r in reads)
    page.evaluate(VISIBILITY, True)  # the operator switched tabs
    reads.clear()
    page.wait_for_timeout(4500)
    assert reads == []
    page.evaluate(VISIBILITY, False)  # ... and back: read at once, then every 2 s again
    page.wait_for_timeout(500)
    assert any(r.endswith("/admin/models/digits") for r in reads)
