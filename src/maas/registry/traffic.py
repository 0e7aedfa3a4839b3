"""Registry operations on traffic samples: what each gateway process answered per model and
report period (`maas.observability.traffic` writes them, the console's charts read them).

Samples are not part of the catalogue: writing one raises no generation and no audit row, and
each is kept only for minutes (a writer drops what is older than it keeps, its own and those
of gateways that are gone)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select

from maas.registry.base import RegistryBase
from maas.registry.tables import TrafficSample


@dataclass(frozen=True, slots=True)
class Sample:
    reporter: str
    at: float
    figures: dict[str, Any]


class Traffic(RegistryBase):
    async def report_traffic(
        self,
        *,
        reporter: str,
        at: float,
        figures: dict[str, dict[str, Any]],
        drop_before: float | None = None,
    ) -> None:
        """Gateway `reporter`'s period ending at `at`, one row per model in `figures`; with
        `drop_before`, every sample older than that goes in the same transaction."""
        async with self._writes.begin() as session:
            if drop_before is not None:
                await session.execute(delete(TrafficSample).where(TrafficSample.at < drop_before))
            session.add_all(
                TrafficSample(reporter=reporter, model=model, at=at, figures=counted)
                for model, counted in figures.items()
            )

    async def traffic(self, *, model: str, since: float) -> list[Sample]:
        """Every gateway's samples of `model` after `since`, oldest first."""
        async with self._sessions() as session:
            query = (
                select(TrafficSample.reporter, TrafficSample.at, TrafficSample.figures)
                .where(TrafficSample.model == model, TrafficSample.at > since)
                .order_by(TrafficSample.at, TrafficSample.id)
            )
            return [Sample(*row) for row in (await session.execute(query)).all()]
