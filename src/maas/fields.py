"""Field types for the numbers and flags clients write in JSON bodies (admin requests, upload
meta): taken as written, never coerced.

Pydantic's lax mode would read `false` as 0, `"5"` as 5 and `NaN` as a float; a client who
sent those made a mistake and hears of it (422). Integers are int64 at most, as the registry
stores them, so a bigger one never reaches the database.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, Strict

from maas.types import VERSION_MAX

Int = Annotated[int, Strict(), Field(le=VERSION_MAX, ge=-VERSION_MAX - 1)]
Number = Annotated[float, Strict(), Field(allow_inf_nan=False)]  # an int is a number too
Flag = Annotated[bool, Strict()]
VersionNumber = Annotated[int, Strict(), Field(ge=1, le=VERSION_MAX)]
