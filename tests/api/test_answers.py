"""The admin answer models built from registry records."""

from __future__ import annotations

import dataclasses

from maas.api.admin.answers import VersionOut
from maas.types import DEFAULT_BATCHING, TensorSpec
from support.sample_records import version_record

X = TensorSpec("x", "float32", (4,))


def test_a_version_shows_its_batching_as_stored() -> None:
    stored = {"max_batch_size": 4, "max_delay_ms": 2, "max_queue": 64, "buckets": [8, 16]}
    record = dataclasses.replace(version_record(X), batching=stored)
    assert VersionOut.from_record(record).model_dump(exclude_unset=True)["batching"] == stored


def test_a_version_stored_without_batching_sizes_shows_the_defaults() -> None:
    """A row written outside the API may lack them; the answer shows what serving uses."""
    shown = VersionOut.from_record(version_record(X)).model_dump(exclude_unset=True)["batching"]
    assert shown == {
        "max_batch_size": DEFAULT_BATCHING.max_batch_size,
        "max_delay_ms": DEFAULT_BATCHING.max_delay_ms,
        "max_queue": DEFAULT_BATCHING.max_queue,
    }
