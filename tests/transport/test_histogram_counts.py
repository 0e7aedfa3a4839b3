"""The in-memory histogram both sides count with: many values at once count as one by one."""

from __future__ import annotations

import numpy as np
import pytest

from maas.transport.telemetry import SECONDS_BOUNDS, Histogram


@pytest.mark.parametrize(
    "values",
    [
        [],
        [0.0, 1e-5, 0.0001, 0.00010001, 0.5, 30.0, 31.0, 1e9],  # on, between and past the bounds
        list(np.random.default_rng(1).exponential(0.01, size=500)),
    ],
)
def test_observe_many_counts_as_observe_does(values: list[float]) -> None:
    one_by_one, at_once = Histogram.empty(SECONDS_BOUNDS), Histogram.empty(SECONDS_BOUNDS)
    for value in values:
        one_by_one.observe(value)
    at_once.observe_many(np.array(values, dtype=np.float64))
    assert at_once.counts == one_by_one.counts
    assert at_once.total == pytest.approx(one_by_one.total)
