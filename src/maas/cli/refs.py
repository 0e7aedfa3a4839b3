"""Parsing what an operator types: `NAME`, `NAME@V`, `NAME@ALIAS`, `--since 10m`. Mistakes
are usage errors (exit 2), reported before any request is sent."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from maas.cli.output import usage_error
from maas.types import ALIAS_NAME_RE, MODEL_NAME_RE, VERSION_MAX, is_number

_RELATIVE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@dataclass(frozen=True)
class Ref:
    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        tail = self.version if self.version is not None else self.alias
        return self.name if tail is None else f"{self.name}@{tail}"


def model_name(text: str) -> str:
    if not MODEL_NAME_RE.fullmatch(text):
        raise usage_error(
            f"{text!r} is not a model name (lowercase letters, digits, '.', '_', '-'; "
            "up to 64 characters)"
        )
    return text


def alias_name(text: str) -> str:
    if not ALIAS_NAME_RE.fullmatch(text):
        raise usage_error(
            f"{text!r} is not an alias name (a lowercase letter, then letters, digits, '_', '-')"
        )
    return text


def parse_ref(text: str) -> Ref:
    """`NAME`, `NAME@3` or `NAME@production`."""
    name, at, tail = text.partition("@")
    model_name(name)
    if not at:
        return Ref(name)
    if is_number(tail) and len(tail) <= 19 and 1 <= int(tail) <= VERSION_MAX:
        return Ref(name, version=int(tail))
    return Ref(name, alias=alias_name(tail))


def version_ref(text: str) -> Ref:
    """`NAME@V`, V a version number."""
    ref = parse_ref(text)
    if ref.version is None:
        raise usage_error(f"expected NAME@VERSION such as digits@3, got {text!r}")
    return ref


def alias_ref(text: str) -> Ref:
    """`NAME@ALIAS`."""
    ref = parse_ref(text)
    if ref.alias is None:
        raise usage_error(f"expected NAME@ALIAS such as digits@canary, got {text!r}")
    return ref


def since(text: str, now: datetime | None = None) -> str:
    """An ISO 8601 UTC timestamp from `10m`, `2h`, `1d`, `1w` (ago) or an ISO 8601 time (UTC
    unless it carries an offset)."""
    moment = now or datetime.now(UTC)
    relative = _RELATIVE.match(text)
    if relative:
        amount, unit = int(relative.group(1)), relative.group(2)
        return (moment - timedelta(**{_UNITS[unit]: amount})).isoformat()
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise usage_error(
            f"--since {text!r}: expected a duration such as 10m, 2h, 1d, or an ISO 8601 time "
            "such as 2025-01-31T12:00:00Z"
        ) from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).isoformat()
