"""An audit of the operator console in a real browser (Debian's chromium through Playwright)
against a real `maas serve` holding 50 models and 500 versions:

- axe-core (vendored by axe-playwright-python: nothing is fetched) finds no violation on the
  sign-in page, the models, model, cluster, keys and audit-log pages, with a confirmation
  dialog open, on a model's page with live traffic in its charts, or in its rollout form;
- the keyboard alone signs in, reaches a model's "Promote production…" button, opens its
  confirmation with Enter and closes it with Escape;
- the models page's first paint and the time until its table holds all 50 models, the median
  of 5 fresh navigations, go to `test-artifacts/console/first-paint.json`. They are reported,
  never asserted: timing goals are read, not enforced, on a shared machine.

Of the 500 versions, 499 are unloaded rows written through the `Registry` before the server
starts (`support.console_seed`); digits@10 is a real upload, ready on a worker and `production`.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.console_seed import seed_unloaded
from support.control import upload, wait_ready_version
from support.inprocess_gateway import ADMIN, ADMIN_SECRET
from support.model_files import mlp_meta, tiny_mlp, torchscript_bytes
from support.processes import maas_server

CHROMIUM = shutil.which("chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"

try:
    from playwright.sync_api import Page, expect, sync_playwright
except ImportError:  # pragma: no cover - the dev extra installs it
    sync_playwright = None  # type: ignore[assignment]
try:
    from axe_playwright_python.sync_playwright import Axe
except ImportError:  # pragma: no cover - the dev extra installs it
    Axe = None  # type: ignore[assignment,misc]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make chromium)"),
    pytest.mark.skipif(sync_playwright is None, reason="playwright is not installed"),
    pytest.mark.skipif(Axe is None, reason="axe-playwright-python is not installed"),
]

MODELS, PER_MODEL = 50, 10
REAL = "digits"  # the one model with a loaded version: its 10th, aliased production
NAVIGATIONS = 5


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("console-audit")
    names = [REAL] + [f"model-{i:02d}" for i in range(1, MODELS)]
    seed_unloaded(data, {name: PER_MODEL - (name == REAL) for name in names})
    env = {"MAAS_BOOTSTRAP_ADMIN_KEY": ADMIN_SECRET}
    with maas_server(data, "--gateways", "1", "--workers", "1", env=env) as served:
        number = upload(served, REAL, torchscript_bytes(tiny_mlp(seed=1)), mlp_meta())
        assert number == PER_MODEL
        wait_ready_version(served, REAL, number)
        aliased = httpx.put(
            f"{served}/admin/models/{REAL}/aliases/production",
            json={"version": number},
            headers=ADMIN,
        )
        assert aliased.status_code == 200, aliased.text
        yield served


def sign_in(page: Page, url: str) -> None:
    page.goto(f"{url}/console")
    page.get_by_label("Admin key").fill(ADMIN_SECRET)
    page.get_by_role("button", name="Sign in").click()
    expect(models_table(page).get_by_role("link", name=REAL)).to_be_visible()


def models_table(page: Page) -> Any:
    return page.get_by_role("table", name="Every model this key may see")


def describe(violations: list[dict[str, Any]]) -> str:
    lines = []
    for v in violations:
        lines.append(f"{v['id']} ({v['impact']}): {v['help']} [{v['helpUrl']}]")
        for node in v["nodes"]:
            lines.append(f"    {', '.join(map(str, node['target']))}: {node['html'][:160]}")
            lines.append(f"      {node.get('failureSummary', '').replace(chr(10), ' ')}")
    return "\n".join(lines)


def audit(page: Page, where: str | None = None) -> list[dict[str, Any]]:
    """axe on the page as it is now; its violations. With `where`, its violations and "needs
    review" findings go to `axe-<where>.json`, and are printed."""
    assert Axe is not None
    results = Axe().run(page, options={"resultTypes": ["violations", "incomplete"]}).response
    found, review = results["violations"], results["incomplete"]
    if where is not None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        engine = results["testEngine"]["version"]
        report = {"axe": engine, "violations": found, "incomplete": review}
        (ARTIFACTS / f"axe-{where}.json").write_text(json.dumps(report, indent=1))
        if found:
            print(f"\naxe violations on {where}:\n{describe(found)}")
        if review:
            print(f"\naxe, needs review on {where}: {', '.join(v['id'] for v in review)}")
    return found  # type: ignore[no-any-return]


def assert_clean(page: Page, where: str) -> None:
    """No axe violation on the page."""
    unexpected = audit(page, where)
    assert not unexpected, f"axe on {where}:\n{describe(unexpected)}"


def test_the_sign_in_page_passes_axe(url: str, page: Page) -> None:
    page.goto(f"{url}/console")
    expect(page.get_by_label("Admin key")).to_be_visible()
    assert_clean(page, "sign-in")


def test_the_audit_finds_a_violation_put_there(url: str, page: Page) -> None:
    """The harness itself: axe runs under the console's CSP and a planted nameless button and
    grey-on-grey text are found, so a clean page above is clean, not unexamined."""
    page.goto(f"{url}/console")
    page.evaluate(
        """() => { const main = document.querySelector('main');
        main.append(document.createElement('button'));
        const p = document.createElement('p'); p.textContent = 'faint';
        p.style.cssText = 'color: #bbb; background: #ccc'; main.append(p); }"""
    )
    found = {v["id"] for v in audit(page)}
    assert {"button-name", "color-contrast"} <= found


PAGES = {
    "models": ("#/models", "table", "Every model this key may see"),
    "model": (f"#/models/{REAL}", "list", "History of production"),
    "cluster": ("#/cluster", "table", "Workers"),
    "keys": ("#/keys", "table", "API keys"),
    "events": ("#/events", "table", "Every change, newest first"),
}


@pytest.mark.parametrize("where", list(PAGES))
def test_each_page_passes_axe(url: str, page: Page, where: str) -> None:
    path, role, name = PAGES[where]
    sign_in(page, url)
    page.goto(f"{url}/console{path}")
    filled = page.get_by_role(role, name=name).locator("tr td, li").first  # type: ignore[arg-type]
    expect(filled).to_be_visible()
    assert_clean(page, where)


def test_an_open_confirmation_passes_axe(url: str, page: Page) -> None:
    sign_in(page, url)
    page.goto(f"{url}/console#/models/{REAL}")
    page.get_by_role("button", name="Promote production…").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(f"production of {REAL}")
    assert_clean(page, "confirm-dialog")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()


def test_live_charts_and_the_rollout_form_pass_axe(url: str, page: Page) -> None:
    stop = threading.Event()

    def drive() -> None:  # real traffic, so the charts and the traffic table have data
        with httpx.Client(base_url=url) as client:
            while not stop.is_set():
                client.post(f"/v1/models/{REAL}:predict", json={"instances": [[0.0] * 4]})
                stop.wait(0.02)

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    try:
        sign_in(page, url)
        page.goto(f"{url}/console#/models/{REAL}")
        charts = page.get_by_role("img", name=re.compile("Requests per second"))
        expect(charts).to_have_attribute("aria-label", re.compile(r"now 10: [1-9]"), timeout=20_000)
        assert_clean(page, "model-traffic")
    finally:
        stop.set()
        driver.join(5)
    page.get_by_role("button", name="Start rollout on production…").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(f"production of {REAL}: 10 (100 %)")
    assert_clean(page, "rollout-dialog")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    still_production(url)


def focused(page: Page) -> str:
    """The focused element, as `tag#id "its text or label"`."""
    described: str = page.evaluate(
        """() => { const e = document.activeElement;
        const name = e.getAttribute('aria-label') || e.textContent || e.value || '';
        return `${e.tagName.toLowerCase()}#${e.id} "${name.trim().slice(0, 60)}"`; }"""
    )
    return described


def tab_to(page: Page, wanted: str, most: int = 80) -> list[str]:
    """Tab until the focused element's description contains `wanted`; every stop on the way."""
    stops: list[str] = []
    for _ in range(most):
        page.keyboard.press("Tab")
        stops.append(focused(page))
        if wanted in stops[-1]:
            return stops
    raise AssertionError(f"{wanted} not reached in {most} tabs; focus went: {stops}")


def still_production(url: str) -> None:
    production = httpx.get(f"{url}/admin/models/{REAL}/aliases/production", headers=ADMIN)
    assert production.json()["routes"] == [{"version": PER_MODEL, "weight": 100}]


def test_the_keyboard_alone_signs_in_and_opens_and_closes_a_confirmation(
    url: str, page: Page
) -> None:
    # The page's timers stand still: its 2 s refresh would move the focus (the next test).
    page.clock.install()
    page.goto(f"{url}/console")
    page.clock.pause_at(time.time() * 1000 + 1000)
    tab_to(page, "input#key")
    page.keyboard.type(ADMIN_SECRET)
    page.keyboard.press("Enter")
    expect(models_table(page).get_by_role("link", name=REAL)).to_be_visible()
    tab_to(page, f'a# "{REAL}"')
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name=f"Model {REAL}")).to_be_visible()
    tab_to(page, '"Promote production…"')
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(f"production of {REAL}")
    assert page.evaluate("document.getElementById('confirm').contains(document.activeElement)")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert '"Promote production…"' in focused(page)  # back where the keyboard was
    still_production(url)


def test_the_focus_stays_on_a_button_across_a_refresh(url: str, page: Page) -> None:
    failed: list[str] = []  # a read the page left unread shows here as aborted
    page.on("requestfailed", lambda request: failed.append(f"{request.url} {request.failure}"))
    sign_in(page, url)
    page.goto(f"{url}/console#/models/{REAL}")
    expect(page.get_by_role("heading", name=f"Model {REAL}")).to_be_visible()
    tab_to(page, '"Promote production…"')
    with page.expect_response(lambda r: r.url.endswith(f"/admin/models/{REAL}")) as read:
        pass  # the next refresh of the model (every 2 s): nothing changed, a 304 ...
    assert read.value.status == 304
    page.wait_for_timeout(200)
    assert '"Promote production…"' in focused(page)
    # ... and when the model did change, its tables are drawn anew around the focused button
    tagged = httpx.patch(
        f"{url}/admin/models/{REAL}/versions/1", json={"tags": {"seen": "yes"}}, headers=ADMIN
    )
    assert tagged.status_code == 200, tagged.text
    with page.expect_response(
        lambda r: r.url.endswith(f"/admin/models/{REAL}") and r.status == 200
    ):
        pass
    page.wait_for_timeout(200)
    assert '"Promote production…"' in focused(page)
    assert failed == []


FILLED = """n => {
  const table = [...document.querySelectorAll('table')]
    .find(t => t.caption && t.caption.textContent.startsWith('Every model this key may see'));
  const rows = table ? table.tBodies[0].rows.length : 0;
  return rows === n && table.checkVisibility() ? performance.now() : false;
}"""
VERSIONS_LISTED = """() => [...document.querySelectorAll('tbody tr')]
  .map(r => (r.cells[2].textContent.match(/\\d+ [a-z]+/g) || []).length)
  .reduce((a, b) => a + b, 0)"""
PAINT = """() => (performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime"""
API = """() => performance.getEntriesByType('resource')
  .filter(e => e.name.endsWith('/admin/models'))
  .map(e => ({start_ms: e.startTime, end_ms: e.responseEnd, bytes: e.encodedBodySize}))[0]"""


def test_first_paint_of_50_models_and_500_versions(url: str, page: Page) -> None:
    listed = httpx.get(f"{url}/admin/models", headers=ADMIN, timeout=30).json()["models"]
    assert len(listed) == MODELS
    assert sum(len(m["versions"]) for m in listed) == MODELS * PER_MODEL

    sign_in(page, url)  # once: the key stays in the tab's session storage
    runs = []
    for _ in range(NAVIGATIONS):
        page.goto("about:blank")
        page.goto(f"{url}/console#/models", wait_until="commit")
        filled = page.wait_for_function(FILLED, arg=MODELS, polling="raf", timeout=30_000)
        request = {k: round(v, 1) for k, v in page.evaluate(API).items()}
        runs.append(
            {
                "first_contentful_paint_ms": round(page.evaluate(PAINT), 1),
                "table_filled_ms": round(filled.json_value(), 1),
                "admin_models_request": request,
            }
        )
        expect(models_table(page).locator("tbody tr")).to_have_count(MODELS)
        assert page.evaluate(VERSIONS_LISTED) == MODELS * PER_MODEL

    def median(key: str) -> float:
        return round(statistics.median(float(r[key]) for r in runs), 1)

    figures = {
        "what": f"fresh navigation to /console#/models, signed in, {MODELS} models and "
        f"{MODELS * PER_MODEL} versions; milliseconds from navigation start (median of "
        f"{NAVIGATIONS})",
        "first_contentful_paint_ms": median("first_contentful_paint_ms"),
        "table_filled_ms": median("table_filled_ms"),
        "runs": runs,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "browser": f"chromium {page.context.browser.version if page.context.browser else '?'}",
        },
    }
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "first-paint.json").write_text(json.dumps(figures, indent=1) + "\n")
    print(
        f"\nconsole first paint ({MODELS} models, {MODELS * PER_MODEL} versions, median of "
        f"{NAVIGATIONS}): first-contentful-paint {figures['first_contentful_paint_ms']} ms, "
        f"table filled {figures['table_filled_ms']} ms"
    )
