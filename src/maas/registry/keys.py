"""Registry operations on API keys: creating, listing, finding one by its secret's hash, and
revoking one (never the last key that can administer everything)."""

from __future__ import annotations

from datetime import UTC, datetime

from maas.errors import KeyNotFound, LastAdminKey
from maas.registry import repository as repo
from maas.registry.aliasing import audit
from maas.registry.base import RegistryBase
from maas.registry.records import KeyRecord
from maas.registry.tables import ApiKey
from maas.types import Scope


class Keys(RegistryBase):
    async def create_key(
        self,
        *,
        name: str,
        scopes: list[str],
        secret_hash: str,
        actor: str,
        models: list[str] | None = None,
        expires_at: datetime | None = None,
        rate_limit_per_s: float | None = None,
    ) -> KeyRecord:
        """A new key; `models` limits it to those models (None: every model), `expires_at`
        ends it (None: never)."""
        async with self._writes.begin() as session:
            row = ApiKey(
                name=name,
                scopes=sorted(set(scopes)),
                secret_hash=secret_hash,
                models=sorted(set(models)) if models is not None else None,
                expires_at=expires_at,
                rate_limit_per_s=rate_limit_per_s,
            )
            session.add(row)
            await session.flush()
            audit(
                session,
                actor,
                "key.create",
                f"key/{row.id}",
                None,
                {
                    "name": name,
                    "scopes": row.scopes,
                    "models": row.models,
                    "expires_at": expires_at.isoformat() if expires_at else None,
                    "rate_limit_per_s": rate_limit_per_s,
                },
            )
            record = KeyRecord.from_row(row)
        return record

    async def list_keys(self) -> list[KeyRecord]:
        async with self._sessions() as session:
            return [KeyRecord.from_row(r) for r in await repo.list_keys(session)]

    async def find_key(self, secret_hash: str) -> KeyRecord | None:
        async with self._sessions() as session:
            row = await repo.key_by_hash(session, secret_hash=secret_hash)
            return KeyRecord.from_row(row) if row else None

    async def revoke_key(self, key_id: int, *, actor: str) -> tuple[KeyRecord, int]:
        """Revoke a key; returns it and the generation it committed with. The last active
        admin key cannot be revoked: nobody could administer the registry after it."""
        async with self._writes.begin() as session:
            active = await repo.active_keys(session, lock=True)
            row = next((k for k in active if k.id == key_id), None)
            if row is None:
                raise KeyNotFound(f"no active key with id {key_id}")
            # Keys that can administer everything, now and later (no model list, no expiry):
            # the last of them stays, or nobody could administer the registry after it.
            admins = [
                k
                for k in active
                if Scope.ADMIN.value in k.scopes and k.models is None and k.expires_at is None
            ]
            if admins == [row]:
                raise LastAdminKey(
                    f"key {key_id} ('{row.name}') is the last admin key; create another admin "
                    "key first (maas keys create NAME --scope admin)"
                )
            row.revoked_at = datetime.now(UTC)
            audit(session, actor, "key.revoke", f"key/{key_id}", {"name": row.name}, None)
            await session.flush()
            record = KeyRecord.from_row(row)
            generation = await repo.bump_generation(session)
        self._changed(generation)
        return record, generation
