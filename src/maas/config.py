"""Settings: one typed object, built explicitly from `MAAS_*` variables and CLI overrides.

These are the user's settings. What `maas serve` decides for the processes it starts (their
run directory, each gateway's index, the local workers' command lines) is
`maas.supervision.wiring`; the few of those a gateway reads from its settings are fields here,
grouped last and listed in INTERNAL_SETTINGS."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from maas.store.sealing import ArtifactKey

MiB = 1024 * 1024
ENV_PREFIX = "MAAS_"
# Variables maas reads that are not settings of a serving process (the CLI's own).
_CLIENT_VARIABLES = frozenset({"MAAS_URL", "MAAS_API_KEY"})
# The settings `maas serve` sets for its gateways (`maas.supervision.wiring`), not the user.
INTERNAL_SETTINGS = frozenset({"gateway_index", "peers_dir", "rates_dir", "migrate_on_start"})


DEFAULT_MAX_JSON_DEPTH = 32
# The caps on one image an input with declared pre-processing takes (maas.serving.images).
DEFAULT_MAX_IMAGE_BYTES = 8 * MiB
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000


class SettingsError(ValueError):
    """A setting with a value maas cannot use; the message names the variable (or flag) and
    what it accepts, in one line."""


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
    # Artifacts in S3-compatible object storage instead of artifact_dir: `s3://bucket/prefix`.
    # Endpoint, region and credentials come from the standard AWS_* variables (maas.store.s3).
    artifact_url: str | None = None
    # Local worker processes of `maas serve`; 0: only the remote ones in worker_endpoints.
    workers: int = Field(1, ge=0, le=64)
    gateways: int = Field(default_factory=_default_gateways, ge=1, le=64)
    torch_threads: int | None = Field(None, ge=1, le=256)
    max_body_bytes: int = Field(16 * MiB, ge=1024)
    max_artifact_bytes: int = Field(2048 * MiB, ge=1024)
    # With it, artifacts are sealed at rest (AES-256-GCM; maas.store.sealing): gateways seal what
    # they store, workers open it in memory. 64 hex digits or base64 (`maas keys artifact`).
    artifact_key: str | None = Field(None, repr=False)  # never in a log line
    # `maas serve` sweeps what a crash left in the artifact store at its start
    # (maas.control.sweeper):
    # files at least this old, so an upload another host is finishing keeps its own.
    sweep_min_age_s: float = Field(60.0, ge=0, le=86_400)
    # Instances (rows of the batch axis) one inference request may hold, whatever its size.
    max_instances: int = Field(10_000, ge=1, le=10_000_000)
    # Numbers one instance may hold (all its inputs together), whatever its signature allows.
    max_instance_elements: int = Field(4 * 1024 * 1024, ge=1, le=1 << 31)
    # Levels of arrays and objects in JSON the registry keeps (meta, tags); at most 128, so
    # every answer showing it can be written (maas.checks.json_depth).
    max_json_depth: int = Field(DEFAULT_MAX_JSON_DEPTH, ge=2, le=128)
    # One encoded image (PNG or JPEG) an input with `preprocess` takes: its bytes, and its
    # pixels by its header, checked before it is decoded; past either, 413.
    max_image_bytes: int = Field(DEFAULT_MAX_IMAGE_BYTES, ge=1024)
    max_image_pixels: int = Field(DEFAULT_MAX_IMAGE_PIXELS, ge=1, le=1 << 32)
    request_timeout_ms: int = Field(30_000, ge=1, le=3_600_000)
    # Requests mirrored to aliases' shadows at once per gateway process; more are dropped.
    shadow_max_in_flight: int = Field(64, ge=1, le=100_000)
    # How often the rollout leader judges running rollouts, and how often every gateway
    # reports what it counted for them to the registry (seconds).
    rollout_tick_s: float = Field(1.0, ge=0.01, le=60)
    rollout_report_s: float = Field(1.0, ge=0.01, le=60)
    # How often every gateway writes what it answered per version for the console's charts
    # (seconds; 0 writes nothing, else at least 0.05), and how long those samples are kept.
    traffic_report_s: float = Field(1.0, ge=0, le=60)
    traffic_keep_s: float = Field(900.0, ge=60, le=86_400)
    require_infer_key: bool = False
    # One log line per request (admin changes are always logged).
    access_log: bool = False
    bootstrap_admin_key: str | None = None
    demo: bool = False
    # An alias change returns once every live gateway serves it, or after this long.
    propagation_timeout_ms: int = Field(2000, ge=0, le=600_000)
    # Remote workers (`maas worker --listen`), comma-separated in MAAS_WORKER_ENDPOINTS; `maas
    # serve` adds its local ones for its gateways. Empty in a gateway: the worker loop runs in
    # its own process (as tests do).
    worker_endpoints: Annotated[tuple[str, ...], NoDecode] = ()
    # CurveZMQ keys of the deployment for tcp:// worker links (`maas keys worker --out DIR`).
    worker_keys_dir: Path | None = None
    # `maas worker`: where it keeps the artifacts it fetched from gateways (by sha256).
    worker_cache_dir: Path = Path("./maas-data/worker-cache")
    # How long gateways keep a worker that announced itself in the registry and then went
    # quiet before they let it go (it shows as not answering meanwhile).
    worker_ttl_s: float = Field(30.0, ge=3.0, le=3600.0)
    # Requests per second a key may make unless its own `rate_limit_per_s` says otherwise;
    # unset: no limit.
    key_rate_limit_per_s: float | None = Field(None, gt=0, le=1_000_000)
    # How long a stopping gateway keeps answering its open connections (each answer with
    # Connection: close) before it closes them; in-flight requests finish either way.
    drain_s: float = Field(5.0, ge=0, le=600)

    # Internal: what `maas serve` decides for each gateway process it starts
    # (`maas.supervision.wiring`), listed in INTERNAL_SETTINGS; not for users (docs/settings.md
    # says so). They are settings because a gateway reads them as it reads the rest, from the
    # settings its supervisor hands it; a process started otherwise (a test's app) keeps these
    # defaults.
    # Which gateway of its `maas serve` this is: 0 installs the demo, the others wait for it.
    gateway_index: int = Field(0, ge=0)
    # Where its gateways tell each other of a new registry generation (one socket each).
    peers_dir: Path | None = None
    # Where its gateways keep the keys' request rates (one file, shared).
    rates_dir: Path | None = None
    # False when the supervisor migrated the registry already (once, not raced by G gateways).
    migrate_on_start: bool = True

    @field_validator("artifact_key")
    @classmethod
    def _artifact_key_parses(cls, value: str | None) -> str | None:
        if value is not None:
            ArtifactKey.parse(value)  # ValueError says what it must be
        return value

    @property
    def sealing_key(self) -> ArtifactKey | None:
        """The artifact key, parsed; None without MAAS_ARTIFACT_KEY."""
        if self.artifact_key is None:
            return None
        return ArtifactKey.parse(self.artifact_key)

    @field_validator("artifact_url")
    @classmethod
    def _s3_url(cls, value: str | None) -> str | None:
        if value is not None:
            bucket = value.removeprefix("s3://").split("/", 1)[0]
            if not value.startswith("s3://") or not bucket:
                raise ValueError("must be an s3://BUCKET or s3://BUCKET/PREFIX URL")
        return value

    @field_validator("traffic_report_s")
    @classmethod
    def _report_or_not(cls, value: float) -> float:
        if 0 < value < 0.05:
            raise ValueError("must be 0 (no traffic samples) or at least 0.05 seconds")
        return value

    @field_validator("bootstrap_admin_key")
    @classmethod
    def _key_long_enough(cls, value: str | None) -> str | None:
        if value is not None and len(value) < 16:
            raise ValueError("must be at least 16 characters")
        return value

    @field_validator("worker_endpoints", mode="before")
    @classmethod
    def _endpoint_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        for endpoint in value:
            if not str(endpoint).startswith(("tcp://", "ipc://")):
                raise ValueError(f"{endpoint!r} is not a tcp://HOST:PORT or ipc://PATH address")
        return value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite", "postgresql", "postgres")):
            raise ValueError("must be a sqlite:// or postgresql:// URL")
        return value

    @property
    def async_database_url(self) -> str:
        return async_database_url(self.database_url)

    @property
    def effective_torch_threads(self) -> int:
        if self.torch_threads is not None:
            return self.torch_threads
        return max(1, (os.cpu_count() or 1) // max(1, self.workers))

    @classmethod
    def load(cls, **overrides: Any) -> Settings:
        """Environment first, then the non-None overrides (CLI flags) on top. A bad value raises
        SettingsError naming the variable, e.g. `MAAS_PORT=abc: must be an integer ...`."""
        given = {k: v for k, v in overrides.items() if v is not None}
        try:
            return cls(**given)
        except ValidationError as exc:
            raise SettingsError(_describe(exc, given)) from None

    @classmethod
    def unknown_variables(cls, environ: dict[str, str] | None = None) -> list[str]:
        """`MAAS_*` variables in the environment that no setting reads (likely typos)."""
        environ = dict(os.environ) if environ is None else environ
        known = {ENV_PREFIX + name.upper() for name in cls.model_fields} | _CLIENT_VARIABLES
        return sorted(name for name in environ if name.startswith(ENV_PREFIX) and name not in known)


def _describe(exc: ValidationError, flags: dict[str, Any]) -> str:
    parts = []
    for err in exc.errors()[:3]:
        field = str(err["loc"][0]) if err["loc"] else ""
        where = (
            f"--{field.replace('_', '-')}={flags[field]!r}"
            if field in flags
            else f"{ENV_PREFIX}{field.upper()}={os.environ.get(ENV_PREFIX + field.upper(), '')!r}"
        )
        parts.append(f"{where}: {_allowed(err)}")
    return "; ".join(parts)


def _allowed(err: Any) -> str:
    """pydantic's message, said as what the setting accepts."""
    ctx = err.get("ctx") or {}
    kind = err["type"]
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return "must be a whole number"
    if kind == "bool_parsing":
        return "must be true or false"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        bound = {
            "greater_than_equal": ">=",
            "less_than_equal": "<=",
            "greater_than": ">",
            "less_than": "<",
        }[kind]
        return f"must be {bound} {next(iter(ctx.values()))}"
    message: str = err["msg"]
    return message.removeprefix("Value error, ")


def async_database_url(url: str) -> str:
    """Give a plain `sqlite://` or `postgresql://` URL the async driver maas uses."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url.removeprefix("sqlite://")
    if url.startswith("postgresql://"):
        return "postgresql+asyncpg://" + url.removeprefix("postgresql://")
    return url
