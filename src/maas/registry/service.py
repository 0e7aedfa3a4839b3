"""The `Registry`: the one object through which maas reads and changes the catalogue.

It is put together from one part per resource: `models.py`, `versions.py`, `aliases.py`,
`rollouts.py`, `keys.py`, `events.py` (the audit log) and `traffic.py` (samples of what
gateways answered, outside the catalogue), over the session factories and
change listeners of `base.py`. Each change is one transaction, with its audit event (and for
an alias its history row).

Every change that a gateway's routing table or key cache depends on raises the registry
**generation** in its own transaction, so a gateway that has read generation G and the tables
after it serves everything committed up to G. Listeners registered with `on_change` hear the new
generation once the change has committed (the control plane tells the other gateways).
"""

from __future__ import annotations

from maas.registry.aliases import Aliases
from maas.registry.events import AuditLog
from maas.registry.keys import Keys
from maas.registry.models import Models
from maas.registry.rollouts import Rollouts
from maas.registry.traffic import Traffic
from maas.registry.versions import NewVersion, Versions, draft_record

__all__ = ["NewVersion", "Registry", "draft_record"]


class Registry(Models, Versions, Aliases, Rollouts, Keys, AuditLog, Traffic):
    """Models, versions, aliases, API keys and the audit log of one registry database.

    `writes` may be a separate session factory whose transactions take the write lock first
    (SQLite); reads never wait for it."""
