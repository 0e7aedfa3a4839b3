"""Instances against signatures: grouping by shape, dtype rules, and outputs back in order."""

from __future__ import annotations

import numpy as np
import pytest

from maas.checks.arrays import group_instances, scatter_outputs
from maas.errors import InvalidInput
from maas.types import TensorSpec

X = TensorSpec("x", "float32", (3,))
IDS = TensorSpec("ids", "int64", (-1,), min=0, max=999, max_shape=(256,))


def test_homogeneous_instances_make_one_float32_batch() -> None:
    (group,) = group_instances([[1, 2, 3], [4.5, 5, 6]], [X])
    assert group.positions == [0, 1]
    assert group.arrays[0].dtype == np.float32
    assert group.arrays[0].shape == (2, 3)


def test_variable_length_instances_group_by_shape_and_scatter_back_in_order() -> None:
    instances = [[1, 2, 3], [4, 5], [7, 8, 9], [1]]
    groups = group_instances(instances, [IDS])
    assert sorted(g.positions for g in groups) == [[0, 2], [1], [3]]
    # A fake model: the output is the sum of each row, so order errors would show.
    results = [[g.arrays[0].sum(axis=1, keepdims=True)] for g in groups]
    out = scatter_outputs(groups, results, [TensorSpec("s", "int64", (1,))], len(instances))
    assert out == [[6], [9], [24], [1]]


def test_multiple_inputs_and_outputs_use_named_objects() -> None:
    a, b = TensorSpec("a", "float32", (2,)), TensorSpec("b", "int64", ())
    groups = group_instances([{"a": [1, 2], "b": 3}, {"a": [0, 0], "b": 1}], [a, b])
    assert [arr.dtype for arr in groups[0].arrays] == [np.float32, np.int64]
    outs = [TensorSpec("p", "float32", ()), TensorSpec("q", "float32", ())]
    result = scatter_outputs(groups, [[np.array([1.0, 2.0]), np.array([3.0, 4.0])]], outs, 2)
    assert result == [{"p": 1.0, "q": 3.0}, {"p": 2.0, "q": 4.0}]
    with pytest.raises(InvalidInput, match="missing"):
        group_instances([{"a": [1, 2]}], [a, b])
    with pytest.raises(InvalidInput, match="takes 2 inputs"):
        group_instances([[1, 2]], [a, b])


@pytest.mark.parametrize(
    ("instance", "fragment"),
    [
        ([1.5, 2], "int64 integers"),
        ([True], "int64 integers"),
        ([], "must not be empty"),
        ([1000], "[0, 999]"),
        ([-1], "[0, 999]"),
        ([2**63], "outside int64"),
        ([2**80], "int64"),
        ([0] * 257, "at most 256"),
        ([[1]], "rank 1"),
        ("abc", "int64"),
    ],
)
def test_token_ids_are_checked(instance: object, fragment: str) -> None:
    with pytest.raises(InvalidInput) as err:
        group_instances([[5, 6], instance], [IDS])
    assert fragment in err.value.message
    assert "instance 1" in err.value.message


def test_errors_name_the_expected_signature() -> None:
    with pytest.raises(InvalidInput) as err:
        group_instances([[1, 2]], [X])
    assert "axis 0 must have length 3 (shape [3]), got 2" in err.value.message
