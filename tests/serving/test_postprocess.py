"""Declared post-processing as numbers: softmax, the k best classes in a fixed order, their
labels, and the strings Triton's classification extension answers."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
import pytest

from maas.serving.postprocess import classes, softmax, top_k, triton_strings
from maas.types import PostProcess

LABELS = ("zero", "one", "two", "three")


def test_softmax_is_a_probability_per_row_and_keeps_the_order() -> None:
    logits = np.array([[1.0, 2.0, 3.0, 0.5], [0.0, 0.0, 0.0, 0.0]], np.float32)
    probs = softmax(logits)
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), [1.0, 1.0], rtol=1e-6)
    want = np.exp([1.0, 2.0, 3.0, 0.5]) / np.exp([1.0, 2.0, 3.0, 0.5]).sum()
    np.testing.assert_allclose(probs[0], want, rtol=1e-6)
    np.testing.assert_allclose(probs[1], [0.25] * 4)


def test_softmax_of_huge_logits_does_not_overflow() -> None:
    probs = softmax(np.array([[1000.0, 1000.0, -1000.0], [3e38, 0.0, -3e38]], np.float32))
    assert np.isfinite(probs).all()
    np.testing.assert_allclose(probs[0], [0.5, 0.5, 0.0])
    np.testing.assert_allclose(probs[1], [1.0, 0.0, 0.0])


def test_softmax_keeps_float64_and_turns_integers_into_float32() -> None:
    assert softmax(np.zeros((1, 3), np.float64)).dtype == np.float64
    ints = softmax(np.array([[0, 1, 2]], np.int64))
    assert ints.dtype == np.float32
    assert ints.argmax() == 2


def test_top_k_is_best_first_and_ties_keep_index_order() -> None:
    scores = np.array([[0.1, 0.7, 0.1, 0.7, 0.0], [5.0, 4.0, 3.0, 2.0, 1.0]], np.float32)
    best = top_k(scores, 4)
    assert best.indices.tolist() == [[1, 3, 0, 2], [0, 1, 2, 3]]
    np.testing.assert_allclose(best.scores, [[0.7, 0.7, 0.1, 0.1], [5, 4, 3, 2]])


def test_every_score_equal_answers_the_indices_in_order() -> None:
    assert top_k(np.zeros((2, 6), np.float32), 6).indices.tolist() == [list(range(6))] * 2


def test_k_past_the_classes_answers_them_all() -> None:
    best = top_k(np.array([[0.2, 0.5, 0.3]], np.float32), 10)
    assert best.indices.tolist() == [[1, 2, 0]]


def test_unsigned_and_signed_integer_scores_sort_without_overflow() -> None:
    unsigned = np.array([[0, 2**64 - 1, 7]], np.uint64)
    assert top_k(unsigned, 3).indices.tolist() == [[1, 2, 0]]
    signed = np.array([[-(2**63), 2**63 - 1, 0]], np.int64)
    assert top_k(signed, 3).indices.tolist() == [[1, 2, 0]]


def test_nan_scores_come_last() -> None:
    scores = np.array([[math.nan, 0.5, -1.0, math.nan]], np.float32)
    assert top_k(scores, 4).indices.tolist() == [[1, 2, 0, 3]]


def test_classes_label_each_score_and_cut_to_top_k() -> None:
    post = PostProcess(output="y", labels=LABELS, softmax=False, top_k=2)
    scores = np.array([[0.1, 0.2, 0.6, 0.1], [0.9, 0.0, 0.05, 0.05]], np.float32)
    answer = classes(scores, post)
    assert [[label for label, _ in row] for row in answer] == [["two", "one"], ["zero", "two"]]
    assert orjson.loads(orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)) == [
        [["two", 0.6], ["one", 0.2]],
        [["zero", 0.9], ["two", 0.05]],
    ]
    assert len(classes(scores, post, k=10)[0]) == 4  # a k of the caller's, cut to the classes


def test_classes_softmax_when_declared() -> None:
    logits = np.array([[0.0, 0.0, math.log(2.0), 0.0]], np.float32)
    raw = classes(logits, PostProcess(output="y", labels=LABELS, top_k=1))
    assert raw[0][0] == ("two", pytest.approx(math.log(2.0)))
    soft = classes(logits, PostProcess(output="y", labels=LABELS, softmax=True, top_k=2))
    assert soft[0][0] == ("two", pytest.approx(0.4))
    assert soft[0][1] == ("zero", pytest.approx(0.2))


def test_triton_strings_are_score_index_label_with_six_decimals() -> None:
    scores = np.array([[0.1, 0.97, 0.01, -2.5]], np.float32)
    assert triton_strings(scores, 3, LABELS) == [
        ["0.970000:1:one", "0.100000:0:zero", "0.010000:2:two"]
    ]
    assert triton_strings(scores, 2) == [["0.970000:1", "0.100000:0"]]
    assert triton_strings(scores, 9)[0][-1] == "-2.500000:3"  # k past C: every class


def test_triton_strings_of_integers_are_plain_integers() -> None:
    assert triton_strings(np.array([[3, -7, 12]], np.int32), 2) == [["12:2", "3:0"]]


def test_triton_strings_softmax_first_and_flatten_each_instance() -> None:
    logits = np.zeros((2, 2, 2), np.float32)  # 4 elements per instance, all equal
    assert (
        triton_strings(logits, 2, LABELS, softmax_first=True)
        == [["0.250000:0:zero", "0.250000:1:one"]] * 2
    )


@pytest.mark.parametrize("softmaxed", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_small_outputs_ranked_in_python_answer_as_numpy_does(
    softmaxed: bool, dtype: type[np.floating[Any]]
) -> None:
    """Small outputs take a plain-Python path; it answers exactly what the numpy path does
    (the same pairs, order, scores and score dtype), ties and all."""
    rng = np.random.default_rng(7)
    scores = rng.standard_normal((6, 10)).astype(dtype)
    scores[2, 3] = scores[2, 7]  # a tie: the lower index first
    scores[4] = 0.5  # all tied
    post = PostProcess(output="y", labels=tuple("abcdefghij"), softmax=softmaxed, top_k=4)
    got = classes(scores, post)
    ranked = softmax(scores) if softmaxed else scores
    best = top_k(ranked, 4)
    want = [
        [(post.labels[i], s) for i, s in zip(row, values, strict=True)]
        for row, values in zip(best.indices.tolist(), best.scores, strict=True)
    ]
    assert got == want
    got_types = [type(score) for row in got for _, score in row]
    assert got_types == [type(score) for row in want for _, score in row]
