"""Settings: one typed object, built explicitly from `MAAS_*` variables and CLI overrides."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MiB = 1024 * 1024


def _default_gateways() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


class Settings(BaseSettings):
    """Everything a maas process needs to know. Nothing reads the environment at import."""

    model_config = SettingsConfigDict(env_prefix="MAAS_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    database_url: str = "sqlite:///./maas-data/registry.db"
    data_dir: Path = Path("./maas-data")
    artifact_dir: Path = Path("./maas-data/artifacts")
    workers: int = Field(1, ge=1, le=64)
    gateways: int = Field(default_factory=_default_gateways, ge=1, le=64)
    torch_threads: int | None = Field(None, ge=1, le=256)
    max_body_bytes: int = Field(16 * MiB, ge=1024)
    max_artifact_bytes: int = Field(2048 * MiB, ge=1024)
    request_timeout_ms: int = Field(30_000, ge=1, le=3_600_000)
    require_infer_key: bool = False
    bootstrap_admin_key: str | None = None
    demo: bool = False
    # An alias change returns once every live gateway serves it, or after this long.
    propagation_timeout_ms: int = Field(2000, ge=0, le=600_000)
    # Set by `maas serve` for its gateway processes: where the workers listen (empty: run
    # models in the gateway process itself, as tests do) and which gateway this one is.
    worker_endpoints: tuple[str, ...] = ()
    gateway_index: int = Field(0, ge=0)
    # Set by `maas serve`: where its gateways tell each other of a new registry generation.
    peers_dir: Path | None = None
    migrate_on_start: bool = True  # off for gateways whose supervisor migrated already

    @field_validator("bootstrap_admin_key")
    @classmethod
    def _key_long_enough(cls, value: str | None) -> str | None:
        if value is not None and len(value) < 16:
            raise ValueError("MAAS_BOOTSTRAP_ADMIN_KEY must be at least 16 characters")
        return value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite", "postgresql", "postgres")):
            raise ValueError("MAAS_DATABASE_URL must be a sqlite:// or postgresql:// URL")
        return value

    @property
    def async_database_url(self) -> str:
        return async_database_url(self.database_url)

    @property
    def effective_torch_threads(self) -> int:
        if self.torch_threads is not None:
            return self.torch_threads
        return max(1, (os.cpu_count() or 1) // self.workers)

    @classmethod
    def load(cls, **overrides: Any) -> Settings:
        """Environment first, then the non-None overrides (CLI flags) on top."""
        return cls(**{k: v for k, v in overrides.items() if v is not None})


def async_database_url(url: str) -> str:
    """Give a plain `sqlite://` or `postgresql://` URL the async driver maas uses."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url.removeprefix("sqlite://")
    if url.startswith("postgresql://"):
        return "postgresql+asyncpg://" + url.removeprefix("postgresql://")
    return url
