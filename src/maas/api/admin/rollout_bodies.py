"""What a client sends to start a rollout or promote one, and what the rollout routes answer:
a rollout with its intervals (each verdict and the figures that decided it) and, while it
runs, its current window so far."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator

from maas.checks.fields import Flag, Number, VersionNumber
from maas.registry.records import RolloutRecord
from maas.rollout import Guards, OnFailure, RolloutPlan
from maas.types import DEFAULT_ALIAS

Share = Annotated[float, Strict(), Field(ge=0, le=1, allow_inf_nan=False)]
Positive = Annotated[float, Strict(), Field(gt=0, le=1e9, allow_inf_nan=False)]
Seconds = Annotated[float, Strict(), Field(gt=0, le=86_400, allow_inf_nan=False)]
Step = Annotated[int, Strict(), Field(ge=1, le=100)]
Count = Annotated[int, Strict(), Field(ge=0, le=1_000_000_000)]
Limit = Annotated[int, Strict(), Field(ge=1, le=1000)]


class GuardsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_error_rate: Share | None = Field(
        0.01,
        description="the candidate's errors over its requests (5xx, or a refusal once the "
        "request reached the model); in the shadow phase, its failed mirrors",
    )
    max_p99_ratio: Positive | None = Field(
        None, description="the candidate's p99 over the stable version's in the same window"
    )
    max_p99_ms: Positive | None = Field(None, description="the candidate's p99, absolute")
    max_disagreement: Share | None = Field(
        None, description="shadow phase: share of compared instances whose answers disagree"
    )


class StartRollout(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alias: str = Field(DEFAULT_ALIAS, description="the alias to roll the candidate onto")
    candidate: VersionNumber = Field(description="a ready version of the model")
    steps: list[Step] = Field(
        [1, 10, 50, 100],
        min_length=1,
        max_length=20,
        description="the candidate's percent of the alias's traffic, step by step (rising); "
        "passing the last step gives it the whole alias",
    )
    interval_s: Seconds = Field(60.0, description="the least time per step")
    min_requests: Count = Field(
        100, description="the candidate's requests a window needs to be judged"
    )
    shadow_s: Number = Field(0.0, ge=0, le=86_400, description="a shadow phase first (seconds)")
    guards: GuardsIn = Field(default_factory=GuardsIn)
    failure_limit: Limit = Field(1, description="failed intervals before on_failure")
    on_failure: Literal["rollback", "pause"] = "rollback"

    @field_validator("steps")
    @classmethod
    def _rising(cls, steps: list[int]) -> list[int]:
        if any(b <= a for a, b in itertools.pairwise(steps)):
            raise ValueError("steps must rise, such as [1, 10, 50, 100]")
        return steps

    def plan(self) -> RolloutPlan:
        return RolloutPlan(
            steps=tuple(self.steps),
            interval_s=float(self.interval_s),
            min_requests=self.min_requests,
            shadow_s=float(self.shadow_s),
            guards=Guards(**self.guards.model_dump()),
            failure_limit=self.failure_limit,
            on_failure=OnFailure(self.on_failure),
        )


class PromoteRollout(BaseModel):
    model_config = ConfigDict(extra="forbid")

    full: Flag = Field(False, description="to the end at once: the candidate takes the alias")


class IntervalOut(BaseModel):
    """One judged window (or, as `window`, the current one so far, without a verdict)."""

    model_config = ConfigDict(extra="allow")

    at: str
    step: int = Field(description="-1: the shadow phase; else the index of the weight step")
    weight: int
    phase: Literal["shadow", "steps"]
    verdict: Literal["pass", "fail", "inconclusive"] | None = None
    elapsed_s: float
    requests: int = Field(description="the candidate's (shadow phase: the mirrors')")
    errors: int
    error_rate: float | None
    p99_ms: float | None
    stable_requests: int
    stable_p99_ms: float | None
    forward_p99_ms: float | None = Field(
        None, description="the candidate's forward p99 on the worker (the ratio guard's)"
    )
    stable_forward_p99_ms: float | None = Field(
        None, description="the stable version's, in the same window (else its last measured)"
    )
    disagreement: float | None
    mirrors_dropped: int
    breaches: list[str]


class RolloutOut(BaseModel):
    id: int
    model: str
    alias: str
    stable: int
    candidate: int
    state: Literal["running", "paused", "succeeded", "failed", "aborted"]
    phase: Literal["shadow", "steps", "paused", "succeeded", "failed", "aborted"]
    step: int = Field(description="-1: the shadow phase; else the index in `steps`")
    weight: int = Field(description="the candidate's percent of the alias's traffic")
    weights: dict[str, int] = Field(description="percent of the alias's traffic, by version")
    failures: int = Field(description="failed intervals in a row at this step")
    reason: str | None
    plan: dict[str, Any]
    intervals: list[IntervalOut]
    window: IntervalOut | None = Field(None, description="the current window so far (running)")
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    ended_at: datetime | None
    generation: int | None = None

    @classmethod
    def from_record(cls, r: RolloutRecord, window: dict[str, Any] | None = None) -> RolloutOut:
        weights = {str(r.stable): 100 - r.weight, str(r.candidate): r.weight}
        if not r.state.active:
            weights = {}
        return cls(
            id=r.id,
            model=r.model,
            alias=r.alias,
            stable=r.stable,
            candidate=r.candidate,
            state=r.state.value,
            phase=r.phase,
            step=r.step,
            weight=r.weight,
            weights=weights,
            failures=r.failures,
            reason=r.reason,
            plan=r.plan.to_json(),
            intervals=[IntervalOut(**i) for i in r.intervals],
            window=None if window is None else IntervalOut(**window),
            created_by=r.key_name,
            created_at=r.created_at,
            updated_at=r.updated_at,
            ended_at=r.ended_at,
            generation=r.generation,
        )


class RolloutList(BaseModel):
    rollouts: list[RolloutOut]
