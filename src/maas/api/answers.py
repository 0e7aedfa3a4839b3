"""Answers more than one part of the API sends: the error bodies (native and admin, and the
Open Inference Protocol's), a tensor's description (admin versions, inference metadata), and
the liveness and readiness answers; and what answers are made of: `Number`, `Timestamp`, and
`json_of`, the JSON an answer is sent as.

An answer holds the keys it was built with: a field documented as "only when ..." is left
unset, not set to null, and the routes answer with `response_model_exclude_unset`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, WithJsonSchema

from maas.types import DTYPES

# A JSON number, answered as it is held: an integer stays one (pydantic's float would write
# 2 as 2.0). Documented as a number, as a float would be.
Number = Annotated[int | float, WithJsonSchema({"type": "number"})]


def _iso(value: object) -> object:
    """A time as ISO 8601 with the timezone (SQLite hands back naive UTC datetimes)."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    return value


# A time, given as a datetime (or as its text) and answered as ISO 8601 text: pydantic's own
# datetime would write UTC as "Z", the answers have always said "+00:00".
Timestamp = Annotated[
    str,
    BeforeValidator(_iso),
    Field(
        json_schema_extra={"format": "date-time"},
        description="ISO 8601, with the timezone",
        examples=["2025-01-31T12:00:00.123456+00:00"],
    ),
]


def json_of(answer: BaseModel) -> dict[str, Any]:
    """The JSON a route answers with `answer`: its set keys, by their names on the wire."""
    out: dict[str, Any] = answer.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return out


class ErrorDetail(BaseModel):
    code: str = Field(description="what went wrong, in snake_case (e.g. model_not_found)")
    message: str = Field(description="the same, for a human")


class ErrorBody(BaseModel):
    """Every error of the native and admin routes."""

    error: ErrorDetail


class V2ErrorBody(BaseModel):
    """Every error of the Open Inference Protocol (/v2) routes, in that protocol's shape."""

    error: str = Field(description="what went wrong, for a human")


class TensorSpecOut(BaseModel):
    """One named input or output of a version, as its meta declared it."""

    name: str
    dtype: Literal[DTYPES]  # type: ignore[valid-type]
    shape: list[int] = Field(
        description="one instance's shape, without the batch axis; -1 marks an axis of any length"
    )
    min: Number | None = Field(None, description="lowest allowed value (only when declared)")
    max: Number | None = Field(None, description="highest allowed value (only when declared)")
    max_shape: list[int] | None = Field(
        None, description="the longest each axis may be (only when declared)"
    )


class Alive(BaseModel):
    status: Literal["alive"]


class Healthy(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    ready: Literal[True]
    degraded: list[str] | None = Field(
        None,
        description="what is wrong but does not stop serving (e.g. the registry is down and "
        "the gateway serves its last routing table); absent when nothing is",
    )


class NotReady(BaseModel):
    ready: Literal[False]
    reasons: list[str] = Field(description="why not, e.g. 'migrations have not run'")
    degraded: list[str]
