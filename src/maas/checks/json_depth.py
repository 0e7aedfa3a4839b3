"""How deep a JSON value nests, for the limit on what clients make the registry keep
(`MAAS_MAX_JSON_DEPTH`: meta, tags, metrics, golden examples).

The registry hands that JSON back in its answers, and the serializers have limits of their own
(pydantic gives up past about 250 levels): a value stored deeper would make every later answer
that shows it fail. Tensors in inference bodies need no such walk: their rank is checked
against the version's signature.
"""

from __future__ import annotations

from typing import Any


def deeper_than(value: Any, limit: int) -> bool:
    """Whether `value` nests more than `limit` levels of arrays and objects (`1` is 0 levels,
    `[1]` one, `{"a": [1]}` two). Stops at the first branch past the limit."""
    stack: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return False


def too_deep(what: str, limit: int) -> str:
    return f"{what} nests deeper than {limit} levels of arrays and objects (MAAS_MAX_JSON_DEPTH)"
