"""What `maas serve` does to the registry once, before any gateway starts, in the supervisor
process: the migrations, the sweep of what a crash left, and the bootstrap admin key.

Done here so the G gateways do not race on them: each gateway is told the migration is done
(`migrate_on_start`) and is given no bootstrap key (`maas.supervision.wiring`).
"""

from __future__ import annotations

import sys

from maas.config import Settings


async def prepare_registry(settings: Settings) -> None:
    """Migrations, the bootstrap key and the sweep of what a crash left (`maas.control.sweeper`),
    once, before any gateway starts."""
    from maas.auth.keys import ensure_bootstrap_key
    from maas.control.sweeper import sweep
    from maas.registry import db
    from maas.registry.service import Registry
    from maas.store import deployment_store

    database = db.open_database(settings.database_url)
    try:
        await db.upgrade(database.engine)
        registry = Registry(database.reads, writes=database.writes)
        store = deployment_store(settings)
        report = await sweep(registry, store, min_age_s=settings.sweep_min_age_s)
        if report.cleaned:
            print(f"maas: {report}", file=sys.stderr)
        if settings.bootstrap_admin_key:
            await ensure_bootstrap_key(registry, settings.bootstrap_admin_key)
    finally:
        await database.dispose()
