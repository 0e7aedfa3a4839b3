"""The depth walk behind MAAS_MAX_JSON_DEPTH: arrays and objects count alike, scalars not,
and the deepest branch decides wherever it is."""

from __future__ import annotations

from typing import Any

import pytest

from maas.checks.json_depth import deeper_than


def _chain(levels: int, leaf: Any = 1) -> Any:
    value = leaf
    for level in range(levels):
        value = [value] if level % 2 else {"k": value}
    return value


@pytest.mark.parametrize(
    ("value", "depth"),
    [
        (1, 0),
        ("text [[[", 0),
        ([], 1),
        ({}, 1),
        ([1, 2, 3], 1),
        ({"a": [1]}, 2),
        ([[1], [[2]], 3], 3),
        ({"a": 1, "b": {"c": {"d": [1, [2]]}}}, 5),
        ([1] * 1000 + [[[[1]]]], 4),  # the deep branch is the last of many
        (_chain(127), 127),
    ],
)
def test_the_depth_is_the_deepest_branch(value: Any, depth: int) -> None:
    assert not deeper_than(value, depth)
    if depth > 0:
        assert deeper_than(value, depth - 1)


def test_a_chain_far_past_the_limit_is_found_without_recursion() -> None:
    assert deeper_than(_chain(100_000), 128)  # a recursive walk would overflow the stack
