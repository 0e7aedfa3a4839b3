"""API keys: generation, hashing, and turning an Authorization header into a principal.

Secrets are random 256-bit tokens, so a plain sha256 of each is a safe thing to store and to
look keys up by (no salt or slow hash is needed against guessing 256 bits).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from maas.auth.rates import KeyRates
from maas.errors import Forbidden, RegistryUnavailable, Unauthenticated
from maas.registry.records import KeyRecord
from maas.registry.service import Registry
from maas.types import Scope

SECRET_PREFIX = "maas_"
# A revocation raises the registry generation, and every gateway drops its cache when it adopts
# a new one; the TTL only bounds what a missed generation could keep.
_CACHE_TTL_S = 30.0


def generate_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: int
    name: str
    scopes: frozenset[str]
    models: frozenset[str] | None = None  # None: every model
    expires_at: float | None = None  # Unix time; None: never
    rate_limit_per_s: float | None = None  # None: the deployment's default, if any

    def require_scope(self, scope: Scope) -> None:
        """Forbidden unless the key has `scope`, whatever it acts on (the caller checks the
        model: one named in a body, say)."""
        if scope.value not in self.scopes and Scope.ADMIN.value not in self.scopes:
            raise Forbidden(f"key '{self.name}' lacks the '{scope.value}' scope")

    def require(self, scope: Scope, model: str | None = None) -> None:
        """Forbidden unless the key has `scope` (an admin key may do all an infer key may) and,
        for a key limited to models, the action is on one of them (`model` None: an action on
        no one model, which such a key may not take)."""
        self.require_scope(scope)
        if self.models is None:
            return
        if model is None:
            raise Forbidden(
                f"key '{self.name}' is limited to the models {sorted(self.models)}; "
                "this action is not on one model"
            )
        if model not in self.models:
            raise Forbidden(f"key '{self.name}' may not act on model '{model}'")


# Why an authentication failed, for `maas_auth_failures_total{reason}`; the client hears the
# same "invalid API key" for an unknown, a revoked and an expired key.
MISSING, MALFORMED, INVALID, EXPIRED, FORBIDDEN = (
    "missing",
    "malformed",
    "invalid",
    "expired",
    "forbidden",
)
FAILURE_REASONS = (MISSING, MALFORMED, INVALID, EXPIRED, FORBIDDEN)
FailureHook = Callable[[str], None]


class Authenticator:
    """Resolves bearer secrets to principals, with a cache so inference stays off the DB; while
    the registry cannot be reached, keys seen before keep their last answer."""

    def __init__(
        self,
        registry: Registry,
        on_failure: FailureHook | None = None,
        rates: KeyRates | None = None,
        default_rate_per_s: float | None = None,
    ) -> None:
        self._registry = registry
        self._on_failure = on_failure or (lambda reason: None)
        self._rates = rates or KeyRates()
        self._default_rate = default_rate_per_s
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        registry.on_change(lambda generation: self.forget())

    def forget(self) -> None:
        """Mark every cached answer stale (the registry's keys may have changed): each is asked
        again on its next use, and kept only while the registry cannot answer."""
        self._cache = {digest: (-_CACHE_TTL_S, p) for digest, (_, p) in self._cache.items()}

    async def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            self._on_failure(MISSING)
            raise Unauthenticated("missing API key: send 'Authorization: Bearer <key>'")
        scheme, _, secret = authorization.partition(" ")
        secret = secret.strip()
        if scheme.lower() != "bearer" or not secret:
            self._on_failure(MALFORMED)
            raise Unauthenticated("malformed Authorization header: expected 'Bearer <key>'")
        digest = hash_secret(secret)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and 0 <= now - cached[0] < _CACHE_TTL_S:
            principal = cached[1]
        else:
            try:
                record = await self._registry.find_key(digest)
            except RegistryUnavailable:
                if cached is None:
                    raise
                record = None
                principal = cached[1]
            else:
                principal = _principal(record) if record else None
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (now, principal)
        if principal is None:
            self._on_failure(INVALID)
            raise Unauthenticated("invalid API key")
        if principal.expires_at is not None and time.time() >= principal.expires_at:
            # Checked on every request, cached or not: refused the moment it expires.
            self._on_failure(EXPIRED)
            raise Unauthenticated("invalid API key")
        rate = principal.rate_limit_per_s or self._default_rate
        if rate:
            self._rates.take(principal.key_id, rate, principal.name)  # RateLimited: 429
        return principal

    async def require(
        self, authorization: str | None, scope: Scope, model: str | None = None
    ) -> Principal:
        principal = await self.authenticate(authorization)
        self.allow(principal, scope, model)
        return principal

    def allow(
        self,
        principal: Principal,
        scope: Scope,
        model: str | None = None,
        *,
        any_model: bool = False,
    ) -> None:
        """`principal.require` (`require_scope` with `any_model`), counted when it refuses."""
        try:
            if any_model:
                principal.require_scope(scope)
            else:
                principal.require(scope, model)
        except Forbidden:
            self._on_failure(FORBIDDEN)
            raise


def _principal(record: KeyRecord) -> Principal:
    return Principal(
        key_id=record.id,
        name=record.name,
        scopes=frozenset(record.scopes),
        models=frozenset(record.models) if record.models is not None else None,
        expires_at=record.expires_at.timestamp() if record.expires_at is not None else None,
        rate_limit_per_s=record.rate_limit_per_s,
    )


async def create_key(
    registry: Registry,
    *,
    name: str,
    scopes: list[str],
    actor: str,
    secret: str | None = None,
    models: list[str] | None = None,
    expires_at: datetime | None = None,
    rate_limit_per_s: float | None = None,
) -> tuple[KeyRecord, str]:
    """Create a key; returns its record and the secret, which is never stored."""
    secret = secret or generate_secret()
    record = await registry.create_key(
        name=name,
        scopes=scopes,
        secret_hash=hash_secret(secret),
        actor=actor,
        models=models,
        expires_at=expires_at,
        rate_limit_per_s=rate_limit_per_s,
    )
    return record, secret


async def ensure_bootstrap_key(registry: Registry, secret: str) -> KeyRecord:
    """The admin key of `MAAS_BOOTSTRAP_ADMIN_KEY`: created once for this secret, kept on later
    starts."""
    existing = await registry.find_key(hash_secret(secret))
    if existing is not None:
        return existing
    record, _ = await create_key(
        registry,
        name="bootstrap-admin",
        scopes=[Scope.ADMIN.value],
        actor="system",
        secret=secret,
    )
    return record
