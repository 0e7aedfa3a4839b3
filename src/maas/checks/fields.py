"""Field types for the numbers and flags clients write in JSON bodies (admin requests, upload
meta): taken as written, never coerced.

Pydantic's lax mode would read `false` as 0, `"5"` as 5 and `NaN` as a float; a client who
sent those made a mistake and hears of it (422). Integers are int64 at most, as the registry
stores them, so a bigger one never reaches the database.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field, Strict

from maas.types import VERSION_MAX

Int = Annotated[int, Strict(), Field(le=VERSION_MAX, ge=-VERSION_MAX - 1)]
Number = Annotated[float, Strict(), Field(allow_inf_nan=False)]  # an int is a number too
Flag = Annotated[bool, Strict()]
VersionNumber = Annotated[int, Strict(), Field(ge=1, le=VERSION_MAX)]


def _iso_8601(value: object) -> object:
    """A time as ISO 8601 text only (pydantic alone would read 0.5 or '0.5' as a Unix time)."""
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("must be an ISO 8601 time, such as 2026-12-03T10:00:00Z") from None
    if isinstance(value, datetime):
        return value
    raise ValueError("must be an ISO 8601 time, such as 2026-12-03T10:00:00Z")


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# A time a client wrote: ISO 8601 text only, naive meaning UTC, kept as UTC.
IsoTime = Annotated[datetime, BeforeValidator(_iso_8601), AfterValidator(_utc)]
