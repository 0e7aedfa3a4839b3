"""Request bodies of the admin API: what a client sends to create a model or a key, move an
alias, promote, roll back or change a version. Each refuses keys it does not know (422)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator, model_validator

from maas.checks.fields import Flag, Int, IsoTime, Number, VersionNumber
from maas.registry.records import Route
from maas.types import MODEL_NAME_RE, Scope, Shadow

Percent = Annotated[int, Strict(), Field(ge=1, le=100)]
_FORCE = (
    "route to a derived version even when its measured agreement with its parent is below its "
    "min_agreement (audited as alias.force)"
)


class CreateModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=MODEL_NAME_RE.pattern)
    description: str = Field("", max_length=10_000)


class RouteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: VersionNumber
    weight: Int = Field(ge=1, le=1_000_000)


class ShadowIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: VersionNumber = Field(description="the candidate: a ready version of the model")
    percent: Percent = Field(description="share of the alias's requests mirrored to it")

    def to_shadow(self) -> Shadow:
        return Shadow(self.version, self.percent)


class SetAlias(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: VersionNumber | None = None
    routes: list[RouteIn] | None = Field(None, min_length=1, max_length=32)
    expected_current: VersionNumber | None = None
    force: Flag = Field(False, description=_FORCE)
    shadow: ShadowIn | None = Field(
        None,
        description="mirror a share of the alias's requests to a candidate version (its answers "
        "never reach the client); null removes the shadow, absent leaves it as it is. Alone "
        "(no version or routes), it changes only the shadow of an alias that exists",
    )

    @model_validator(mode="after")
    def _one_target(self) -> SetAlias:
        if self.version is not None and self.routes is not None:
            raise ValueError('give either "version" or "routes", not both')
        if self.version is None and self.routes is None:
            if "shadow" not in self.model_fields_set:
                raise ValueError('give "version" or "routes" (or "shadow")')
            if "expected_current" in self.model_fields_set or self.force:
                raise ValueError('"expected_current" and "force" go with "version" or "routes"')
        if self.routes is not None:
            versions = [r.version for r in self.routes]
            if len(versions) != len(set(versions)):
                raise ValueError("each version may appear once in routes")
        return self

    def target_routes(self) -> list[Route] | None:
        """The routes the alias should have; None when the body changes only its shadow."""
        if self.routes is not None:
            return [Route(r.version, r.weight) for r in self.routes]
        if self.version is None:
            return None
        return [Route(self.version, 100)]

    def new_shadow(self) -> dict[str, Shadow | None]:
        """`{"shadow": ...}` when the body sets or removes the shadow; empty when it leaves
        it as it is."""
        if "shadow" not in self.model_fields_set:
            return {}
        return {"shadow": None if self.shadow is None else self.shadow.to_shadow()}


class Promote(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: VersionNumber
    alias: str = Field("production", pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    force: Flag = Field(False, description=_FORCE)


class Rollback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alias: str = Field("production", pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    to_version: VersionNumber | None = None


class PatchBatching(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_batch_size: Int | None = Field(None, ge=1, le=4096)
    max_delay_ms: Number | None = Field(None, ge=0, le=10_000)
    max_queue: Int | None = Field(None, ge=1, le=1_000_000)


class PatchVersion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batching: PatchBatching | None = None
    description: str | None = Field(None, max_length=10_000)
    tags: dict[str, Any] | None = None


class CreateKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    scopes: list[Scope] = Field(min_length=1)
    models: list[Annotated[str, Field(pattern=MODEL_NAME_RE.pattern)]] | None = Field(
        None, min_length=1, max_length=256, description="the models it may act on; unset: all"
    )
    expires_at: IsoTime | None = Field(None, description="ISO 8601; unset: never")
    rate_limit_per_s: Number | None = Field(
        None,
        gt=0,
        le=1_000_000,
        description="requests per second it may make (on each host); unset: "
        "MAAS_KEY_RATE_LIMIT_PER_S, or no limit",
    )

    @field_validator("expires_at")
    @classmethod
    def _in_the_future(cls, value: datetime | None) -> datetime | None:
        if value is not None and value <= datetime.now(UTC):
            raise ValueError("must be in the future")
        return value


class HoldoutIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instances: list[Any] = Field(
        min_length=1,
        max_length=100_000,
        description="instances as a predict request sends them, to measure the int8 version on",
    )
    labels: list[Int | str] | None = Field(
        None,
        description="one per instance: a class index, or one of the version's postprocess "
        "labels; then the accuracy of both versions is measured too",
    )


class Optimize(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Literal["int8_dynamic"] = Field(
        description="int8_dynamic: ONNX Runtime's dynamic quantisation (int8 weights)"
    )
    min_agreement: Number = Field(
        0.99,
        ge=0,
        le=1,
        description="top-1 agreement with the parent below which the new version is not "
        'aliased unless the alias change says "force": true',
    )
    holdout: HoldoutIn | None = None
