"""What one gateway process counts for the running rollouts, reported to the registry, where
the rollout driver adds up every gateway's reports (no Prometheus in between).

A running rollout's window is its `epoch`. When this process's routing table first shows an
epoch (`adopt`, called by the router as it swaps snapshots, before any request reads the new
one), it notes what it had counted so far for the rollout's two versions
(`RequestMetrics.tally`) and its shadow pair (`ShadowMetrics.figures`) as the window's base;
what it counts after that, minus the base, is its share of the window. A window that ends
(a newer epoch, or the rollout stopped running) is reported once more with its final figures.
Every `report_s` the process writes its share of each open window as one row per (rollout,
epoch) of its own (`Registry.report_tallies`); a failed write is tried again next time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from maas.control.routing import Snapshot
from maas.errors import RegistryUnavailable
from maas.observability.metrics import RequestMetrics
from maas.registry.records import RolloutRecord
from maas.registry.service import Registry
from maas.rollout import RolloutState, WindowFigures

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Window:
    rollout: RolloutRecord
    base: WindowFigures


class TallyReporter:
    def __init__(
        self, registry: Registry, metrics: RequestMetrics, *, reporter: str, report_s: float
    ) -> None:
        self._registry = registry
        self._metrics = metrics
        self._reporter = reporter
        self._report_s = report_s
        self._windows: dict[int, _Window] = {}  # by rollout id: its open window here
        self._pending: dict[tuple[int, int], dict[str, Any]] = {}  # closed windows, unwritten
        self._written: dict[tuple[int, int], dict[str, Any]] = {}  # open windows, as written
        self._tracked: set[tuple[str, str]] = set()  # (model, version) counted
        self._task: asyncio.Task[None] | None = None

    def adopt(self, snapshot: Snapshot) -> None:
        """Open the windows `snapshot` shows, close those it no longer does."""
        running = {r.id: r for r in snapshot.rollouts.values() if r.state is RolloutState.RUNNING}
        for rollout_id, window in list(self._windows.items()):
            now = running.get(rollout_id)
            if now is None or now.epoch != window.rollout.epoch:
                self._pending[(rollout_id, window.rollout.epoch)] = self._share(window).to_json()
                del self._windows[rollout_id]
        for rollout_id, rollout in running.items():
            if rollout_id not in self._windows:
                self._windows[rollout_id] = _Window(rollout, self._counted(rollout))
        self._track(running.values())

    def _track(self, running: Iterable[RolloutRecord]) -> None:
        """Count the versions of running rollouts, and only those."""
        wanted = {(r.model, str(v)) for r in running for v in (r.stable, r.candidate)}
        for key in self._tracked - wanted:
            self._metrics.untally(*key)
        self._tracked = wanted

    def _counted(self, rollout: RolloutRecord) -> WindowFigures:
        """What this process counted for the rollout's versions and shadow pair, in all."""
        model, stable, candidate = rollout.model, str(rollout.stable), str(rollout.candidate)
        return WindowFigures(
            stable=self._metrics.tally(model, stable).copy(),
            candidate=self._metrics.tally(model, candidate).copy(),
            shadow=self._metrics.shadow.figures((model, stable, candidate)),
        )

    def _share(self, window: _Window) -> WindowFigures:
        now, base = self._counted(window.rollout), window.base
        return WindowFigures(
            stable=now.stable.minus(base.stable),
            candidate=now.candidate.minus(base.candidate),
            shadow=now.shadow.minus(base.shadow),
        )

    async def report(self) -> None:
        """Write this process's share of every open window, and the closed ones not written."""
        figures = dict(self._pending)
        for rollout_id, window in self._windows.items():
            key = (rollout_id, window.rollout.epoch)
            share = self._share(window).to_json()
            if self._written.get(key) != share:  # nothing new counted: nothing to write
                figures[key] = share
        if not figures:
            return
        await self._registry.report_tallies(reporter=self._reporter, figures=figures)
        open_now = {(r, w.rollout.epoch) for r, w in self._windows.items()}
        for key, written in figures.items():
            if self._pending.get(key) is written:  # not closed again meanwhile
                del self._pending[key]
            if key in open_now:
                self._written[key] = written
        self._written = {k: v for k, v in self._written.items() if k in open_now}

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="rollout tallies")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._report_s)
            try:
                await self.report()
            except RegistryUnavailable as exc:
                log.debug("rollout tallies not reported: %s", exc.message)
            except Exception:
                log.exception("reporting rollout tallies failed")

    async def close(self) -> None:
        """Stop, after one last report (what this process counted is not lost with it)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            await self.report()
        except Exception as exc:  # the registry may be gone first; nothing to do about it
            log.debug("last rollout tallies not reported: %s", exc)
