"""Wire shapes of the admin API: request bodies (pydantic) and response renderers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from maas.registry.records import (
    AliasRecord,
    EventRecord,
    HistoryRecord,
    KeyRecord,
    ModelRecord,
    Route,
    VersionRecord,
    routes_json,
)
from maas.types import MODEL_NAME_RE, Scope


class CreateModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=MODEL_NAME_RE.pattern)
    description: str = Field("", max_length=10_000)


class RouteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1)
    weight: int = Field(ge=1, le=1_000_000)


class SetAlias(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(None, ge=1)
    routes: list[RouteIn] | None = Field(None, min_length=1, max_length=32)
    expected_current: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one_target(self) -> SetAlias:
        if (self.version is None) == (self.routes is None):
            raise ValueError('give either "version" or "routes"')
        if self.routes is not None:
            versions = [r.version for r in self.routes]
            if len(versions) != len(set(versions)):
                raise ValueError("each version may appear once in routes")
        return self

    def target_routes(self) -> list[Route]:
        if self.routes is not None:
            return [Route(r.version, r.weight) for r in self.routes]
        assert self.version is not None
        return [Route(self.version, 100)]


class Promote(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1)
    alias: str = Field("production", pattern=r"^[a-z][a-z0-9_-]{0,31}$")


class Rollback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alias: str = Field("production", pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    to_version: int | None = Field(None, ge=1)


class PatchBatching(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_batch_size: int | None = Field(None, ge=1, le=4096)
    max_delay_ms: float | None = Field(None, ge=0, le=10_000)
    max_queue: int | None = Field(None, ge=1, le=1_000_000)


class PatchVersion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batching: PatchBatching | None = None
    description: str | None = Field(None, max_length=10_000)
    tags: dict[str, Any] | None = None


class CreateKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    scopes: list[Scope] = Field(min_length=1)


def _ts(value: datetime | None) -> str | None:
    """ISO 8601 with the timezone (SQLite hands back naive UTC datetimes)."""
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def version_json(v: VersionRecord) -> dict[str, Any]:
    return {
        "model": v.model,
        "version": v.version,
        "status": v.status.value,
        "sha256": v.sha256,
        "size": v.size,
        "format": v.format.value,
        "inputs": [s.to_json() for s in v.inputs],
        "outputs": [s.to_json() for s in v.outputs],
        "batching": v.batching,
        "device": v.device,
        "replicas": v.replicas,
        "metrics": v.metrics,
        "tags": v.tags,
        "description": v.description,
        "load_error": v.load_error,
        "created_at": _ts(v.created_at),
        "updated_at": _ts(v.updated_at),
        "loaded_at": _ts(v.loaded_at),
    }


def alias_json(a: AliasRecord) -> dict[str, Any]:
    return {
        "model": a.model,
        "alias": a.alias,
        "routes": routes_json(a.routes),
        "updated_at": _ts(a.updated_at),
    }


def model_json(m: ModelRecord) -> dict[str, Any]:
    return {
        "name": m.name,
        "description": m.description,
        "created_at": _ts(m.created_at),
        "versions": [version_json(v) for v in m.versions],
        "aliases": [alias_json(a) for a in m.aliases],
    }


def history_json(h: HistoryRecord) -> dict[str, Any]:
    return {
        "alias": h.alias,
        "from": routes_json(h.from_routes),
        "to": routes_json(h.to_routes),
        "action": h.action,
        "key": h.key,
        "at": _ts(h.at),
        "id": h.id,
        "undoes": h.undoes,
    }


def event_json(e: EventRecord) -> dict[str, Any]:
    return {
        "id": e.id,
        "at": _ts(e.at),
        "key": e.key,
        "action": e.action,
        "target": e.target,
        "before": e.before,
        "after": e.after,
    }


def key_json(k: KeyRecord, secret: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": k.id,
        "name": k.name,
        "scopes": list(k.scopes),
        # Keys limited to models and keys that expire are not offered yet: every key acts on
        # every model and never expires.
        "models": None,
        "expires_at": None,
        "created_at": _ts(k.created_at),
        "revoked_at": _ts(k.revoked_at),
    }
    if secret is not None:
        out["secret"] = secret
    return out
