"""Registry operations on the audit log: reading its events, newest first, and recording an
admin request refused to a known key. The other operations write their own events."""

from __future__ import annotations

from datetime import UTC, datetime

from maas.registry import repository as repo
from maas.registry.aliasing import audit
from maas.registry.base import RegistryBase
from maas.registry.records import EventRecord


class AuditLog(RegistryBase):
    async def events(
        self,
        *,
        limit: int,
        model: str | None = None,
        action: str | None = None,
        key: str | None = None,
        since: datetime | None = None,
    ) -> list[EventRecord]:
        if since is not None:
            since = (since if since.tzinfo else since.replace(tzinfo=UTC)).astimezone(UTC)
        async with self._sessions() as session:
            rows = await repo.audit_events(
                session, limit=limit, model=model, action=action, key=key, since=since
            )
            return [EventRecord.from_row(r) for r in rows]

    async def record_refusal(self, *, actor: str, request: str, target: str, reason: str) -> None:
        """An admin request refused to a known key, in the audit log (action `refused`)."""
        async with self._writes.begin() as session:
            audit(session, actor, "refused", target, None, {"request": request, "reason": reason})
