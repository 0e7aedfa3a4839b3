"""Path and query parameters of the admin routes, with their bounds."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from maas.types import VERSION_MAX

Limit = Annotated[int, Query(ge=1, le=10_000)]
# Path numbers are int64, as the registry stores them: a bigger one is a 422, not a query.
VersionPath = Annotated[int, Path(ge=1, le=VERSION_MAX, description="a version number")]
KeyId = Annotated[int, Path(ge=1, le=VERSION_MAX, description="the key's id")]
