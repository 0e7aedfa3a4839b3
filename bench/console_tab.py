"""The console rows (`--console`, issue 32): a model's native rows measured twice back to back,
once with no browser anywhere ("tab closed"), then while a headless chromium has the operator
console open on that model's page, signed in with the bench's admin key, polling the admin
routes every 2 s as an operator's tab does ("tab open").

The browser is Debian's chromium, driven by Playwright's async API on a thread of its own (its
event loop is not the load generator's, which runs in its own process anyway); the browser
itself runs in Playwright's driver process and chromium's. Every admin request the page sends
is counted from the browser (`request`, `response` and `requestfailed` events), so a row shows
that the tab really polled while it was measured. The tab's own CPU (driver and chromium) is
sampled over the row too: on a machine the size of the bench's, that CPU is taken from the
server's cores, which a real operator's browser on another machine would not take.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import shutil
import threading
import time
from collections import Counter
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlsplit

from bench import procstats, specs
from bench.points import Target, measure_request
from bench.raw_child import say

ADMIN_PREFIX = "/admin/"
# The console polls every 2 s (POLL_MS in console.js): a console row measures at least two
# intervals, so even a --quick row sees the tab poll (both rows of a pair alike).
MIN_DURATION_S = 4.0
READY_TIMEOUT_S = 60.0


class ConsoleUnavailable(RuntimeError):
    """The tab could not be opened: no playwright, no chromium, or it failed to start."""


def unavailable() -> str | None:
    """Why no console tab can be opened here, or None when playwright and chromium are here."""
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (the dev extra has it: .venv/bin/pip install -e .[dev])"
    if shutil.which("chromium") is None:
        return "chromium is not installed (make chromium: Debian's package `chromium`)"
    return None


class ConsoleTab:
    """A headless chromium tab on `{base_url}/console#/models/{model}`, signed in with `secret`
    and left polling until the `with` block ends. `counts()` tells what it sent so far."""

    def __init__(self, base_url: str, secret: str, model: str) -> None:
        self.url = f"{base_url}/console#/models/{quote(model, safe='')}"
        self.model = model
        self._secret = secret
        self._lock = threading.Lock()
        self._sent: Counter[str] = Counter()  # admin path -> requests sent
        self._answered: Counter[str] = Counter()  # "2xx", "4xx", "5xx", "failed"
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="console-tab", daemon=True)
        self.driver_pid: int | None = None

    def __enter__(self) -> ConsoleTab:
        self._thread.start()
        if not self._ready.wait(READY_TIMEOUT_S):
            self._close()
            raise ConsoleUnavailable(f"the console tab was not ready after {READY_TIMEOUT_S} s")
        if self._error is not None:
            self._close()
            raise ConsoleUnavailable(f"{type(self._error).__name__}: {self._error}")
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._close()

    @property
    def alive(self) -> bool:
        """The tab is still open and polling (no error since it signed in)."""
        return self._thread.is_alive() and self._error is None

    @property
    def error(self) -> str | None:
        return None if self._error is None else f"{type(self._error).__name__}: {self._error}"

    def counts(self) -> dict[str, Counter[str]]:
        """Admin requests sent so far, by path, and their answers, by class."""
        with self._lock:
            return {"sent": Counter(self._sent), "answered": Counter(self._answered)}

    def snapshot(self) -> dict[int, procstats.Sample]:
        """CPU and RSS of the tab's processes: Playwright's driver and chromium below it."""
        return procstats.snapshot(self.driver_pid) if self.driver_pid else {}

    def _close(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            # RuntimeError: the loop closed meanwhile, the thread is ending anyway
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        self._thread.join(timeout=30.0)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the orchestrator's thread
            self._error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        from playwright.async_api import Request, Response, async_playwright, expect

        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()

        def sent(request: Request) -> None:
            path = urlsplit(request.url).path
            if path.startswith(ADMIN_PREFIX):
                with self._lock:
                    self._sent[path] += 1

        def answered(response: Response) -> None:
            if urlsplit(response.url).path.startswith(ADMIN_PREFIX):
                with self._lock:
                    self._answered[f"{response.status // 100}xx"] += 1

        def failed(request: Request) -> None:
            if urlsplit(request.url).path.startswith(ADMIN_PREFIX):
                with self._lock:
                    self._answered["failed"] += 1

        async with async_playwright() as playwright:
            self.driver_pid = _driver_pid()
            browser = await playwright.chromium.launch(
                executable_path=shutil.which("chromium"), args=["--no-sandbox"]
            )
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 800})
                page.on("request", sent)
                page.on("response", answered)
                page.on("requestfailed", failed)
                await page.goto(self.url)
                await page.get_by_label("Admin key").fill(self._secret)
                await page.get_by_role("button", name="Sign in").click()
                title = page.locator("#model-title")
                await expect(title).to_have_text(f"Model {self.model}", timeout=30_000)
                await expect(title).to_be_visible()
                state = await page.evaluate("document.visibilityState")
                if state != "visible":  # the console polls only while the tab is visible
                    raise ConsoleUnavailable(f"the tab's visibilityState is {state!r}")
                self._ready.set()
                await self._stop.wait()
            finally:
                await browser.close()


def _driver_pid() -> int | None:
    """Playwright's driver: the child of this process that runs `run-driver`."""
    me = os.getpid()
    for sample in procstats.snapshot(me).values():
        if sample.ppid == me and "run-driver" in sample.cmdline:
            return sample.pid
    return None


def console_rows(
    args: argparse.Namespace, target: Target, models: list[str], rows: list[dict[str, Any]]
) -> str | None:
    """For each model (batching on) and C: a row with no tab, then one with the console open on
    that model's page. Returns why the rows were skipped, or None."""
    reason = unavailable()
    if reason is not None:
        say(f"--console: {reason}; no console rows")
        return reason
    if args.duration < MIN_DURATION_S:
        args = argparse.Namespace(**{**vars(args), "duration": MIN_DURATION_S})
    for model in models:
        variant = specs.Variant(model, True)
        request = specs.request_for(model, variant.name, specs.NATIVE)
        for c in args.c_list:
            closed = _row(args, target, variant, request, c, "tab-closed")
            rows.append(closed)
            try:
                with ConsoleTab(target.base_url, target.secret, variant.name) as tab:
                    opened = _open_row(args, target, variant, request, c, tab)
            except ConsoleUnavailable as exc:
                say(f"--console: the tab did not open ({exc}); no more console rows")
                return f"the tab did not open: {exc}"
            opened["vs_closed"] = _ratios(closed, opened)
            rows.append(opened)
    return None


def _row(
    args: argparse.Namespace,
    target: Target,
    variant: specs.Variant,
    request: specs.Request,
    c: int,
    name: str,
) -> dict[str, Any]:
    fields = {"model": variant.base, "batching": True, "protocol": specs.NATIVE, "row": name}
    return measure_request(args, target, variant.name, request, c, fields)


def _open_row(
    args: argparse.Namespace,
    target: Target,
    variant: specs.Variant,
    request: specs.Request,
    c: int,
    tab: ConsoleTab,
) -> dict[str, Any]:
    """The row measured with `tab` open; `tab` says what it sent and used meanwhile."""
    me = os.getpid()  # the orchestrator: Playwright's client (its event loop) runs here
    own_before = procstats.snapshot(me, tree=False)
    before, cpu_before, started = tab.counts(), tab.snapshot(), time.perf_counter()
    row = _row(args, target, variant, request, c, "tab-open")
    after, cpu_after = tab.counts(), tab.snapshot()
    seconds = time.perf_counter() - started
    own = procstats.usage(own_before, procstats.snapshot(me, tree=False), seconds, me)
    usage = procstats.usage(cpu_before, cpu_after, seconds, tab.driver_pid or 0)
    sent = after["sent"] - before["sent"]
    row["tab"] = {
        "url": tab.url,
        "seconds": round(seconds, 2),
        "admin_requests": sum(sent.values()),
        "admin_requests_by_path": dict(sorted(sent.items())),
        "answers": dict(sorted((after["answered"] - before["answered"]).items())),
        "cores": round(sum(p["cores"] for p in usage), 3),
        "rss_mb": round(sum(p["rss_mb"] for p in usage), 1),
        "processes": len(usage),
        "orchestrator_cores": own[0]["cores"] if own else None,
        "alive_at_end": tab.alive,
        "error": tab.error,
    }
    say(f"    the tab sent {row['tab']['admin_requests']} admin requests: {row['tab']['answers']}")
    return row


def _ratios(closed: dict[str, Any], opened: dict[str, Any]) -> dict[str, float]:
    """open ÷ closed for req/s, p50 and p99 (1.0 = no difference)."""
    ratios: dict[str, float] = {}
    for key, name in (("rps", "req/s"), ("p50_ms", "p50"), ("p99_ms", "p99")):
        if closed[key]:
            ratios[name] = round(opened[key] / closed[key], 3)
    return ratios


def targets(rows: list[dict[str, Any]]) -> dict[str, float]:
    """What the issue's target reads ("unchanged with a console tab open"), per model and C
    (a C measured more than once keeps its last pair)."""
    out: dict[str, float] = {}
    for row in rows:
        for name, value in row.get("vs_closed", {}).items():
            out[f"{row['model']} console C={row['concurrency']}: {name} open÷closed"] = value
    return out


def render(rows: list[dict[str, Any]], skipped: str | None) -> list[str]:
    """The console table: each "tab closed" row, then its "tab open" row with its ratios."""
    if skipped is not None:
        return ["", f"Console rows skipped: {skipped}"]
    if not rows:
        return []
    out = [
        "",
        f"Console rows (native, one instance per request, batching on, measured "
        f"{rows[0]['seconds']:.0f} s each; tab open = headless chromium on "
        "/console#/models/<model>, signed in, polling every 2 s)",
        f"{'model':<7} {'C':>3} {'tab':<6} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'err':>7} "
        f"{'oth':>5} {'admin req':>9} {'tab cores':>9}  open÷closed",
    ]
    for row in rows:
        tab = row.get("tab")
        requests = cores = ""
        flags = ""
        if tab is not None:
            requests = str(tab["admin_requests"])
            cores = f"{tab['cores']:.2f}"
            # 3xx: the page's revalidated reads (304, unchanged)
            bad = {k: v for k, v in tab["answers"].items() if k not in ("2xx", "3xx")}
            if bad:
                flags += f"  [answers {bad}]"
            if not tab["admin_requests"]:
                flags += "  [THE TAB SENT NOTHING]"
            if not tab["alive_at_end"]:
                flags += f"  [TAB DIED: {tab['error']}]"
        ratios = "  ".join(f"{k} {v:.2f}" for k, v in row.get("vs_closed", {}).items())
        out.append(
            f"{row['model']:<7} {row['concurrency']:>3} {row['row'][4:]:<6} {row['rps']:>8.1f} "
            f"{row['p50_ms']:>7.2f} {row['p99_ms']:>7.2f} "
            f"{row['non_2xx']:>3}/{row['conn_errors']:<3} {row.get('other_cores', 0.0):>5.2f} "
            f"{requests:>9} {cores:>9}  {ratios}{flags}".rstrip()
        )
    return out
