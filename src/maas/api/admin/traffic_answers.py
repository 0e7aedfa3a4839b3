"""What `GET /admin/models/{name}/traffic` answers: a model's traffic per version and time
bin, over every gateway (`maas.observability.traffic_series` computes it)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Self

from pydantic import BaseModel, Field

from maas.api.answers import Number, Timestamp
from maas.observability.traffic_series import Point


class TrafficPoint(BaseModel):
    """One time bin of one version, over every gateway."""

    at: Timestamp = Field(description="the bin's start")
    requests_per_s: Number
    error_rate: Number | None = Field(description="5xx answers over requests; null without any")
    refused_rate: Number | None = Field(description="4xx answers over requests")
    p50_ms: Number | None = Field(description="median time from arrival to answer")
    p99_ms: Number | None
    mean_batch_size: Number | None = Field(description="instances per batch on the workers")
    queue_depth: int = Field(description="the most instances waiting on the workers")

    @classmethod
    def from_point(cls, p: Point) -> Self:
        return cls(
            at=datetime.fromtimestamp(p.at, UTC),
            requests_per_s=round(p.requests_per_s, 3),
            error_rate=_rounded(p.error_rate, 5),
            refused_rate=_rounded(p.refused_rate, 5),
            p50_ms=_rounded(p.p50_ms, 3),
            p99_ms=_rounded(p.p99_ms, 3),
            mean_batch_size=_rounded(p.mean_batch_size, 2),
            queue_depth=p.queue_depth,
        )


class VersionTraffic(BaseModel):
    version: int
    points: list[TrafficPoint] = Field(description="oldest first, one per step")


class TrafficOut(BaseModel):
    """A model's traffic per version over the last minutes, over every gateway."""

    model: str
    since: Timestamp = Field(description="the first bin's start")
    until: Timestamp = Field(description="the last bin's end (the bins after it are not over)")
    step_s: Number = Field(description="each bin's length")
    report_s: Number = Field(description="how often each gateway writes what it answered")
    gateways: int = Field(description="gateway processes that reported in these bins")
    versions: list[VersionTraffic] = Field(
        description="the versions that had traffic or a worker's figures in these minutes"
    )


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
