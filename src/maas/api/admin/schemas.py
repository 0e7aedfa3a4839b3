"""Only for `maas keys create --database-url` (`maas.cli.keys`), which still imports
`key_json` from here: delete this module once it writes
`json_of(KeyCreated.with_secret(record, secret))` (`maas.api.admin.answers`) itself."""

from __future__ import annotations

from typing import Any

from maas.api.admin.answers import KeyCreated
from maas.api.answers import json_of
from maas.registry.records import KeyRecord


def key_json(record: KeyRecord, secret: str) -> dict[str, Any]:
    """The admin API's answer to creating the key `record`."""
    return json_of(KeyCreated.with_secret(record, secret))
