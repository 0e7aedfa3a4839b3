"""Per-input pad values in the batcher: token ids and their attention mask padded with
different values, and specs of gateways that know only the one `pad_value`."""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np
import pytest

from maas.transport.messages import Load, decode_request, encode
from maas.types import ArtifactFormat, LoadSpec, TensorSpec, VersionKey, pad_values_of
from maas.worker.batcher import Batch, Batcher, Pending

BERT_INPUTS = (
    TensorSpec("input_ids", "int64", (-1,)),
    TensorSpec("attention_mask", "int64", (-1,)),
)


def bert_spec(**extra: Any) -> LoadSpec:
    """A two-input classifier's spec; `extra` replaces or adds LoadSpec fields."""
    fields: dict[str, Any] = {
        "key": VersionKey("bert", 1),
        "path": "/nowhere",
        "sha256": "0" * 64,
        "format": ArtifactFormat.TORCHSCRIPT,
        "inputs": BERT_INPUTS,
        "outputs": (TensorSpec("logits", "float32", (2,)),),
        "max_batch_size": 8,
        "max_delay_ms": 5,
        "buckets": (4, 8),
    }
    return LoadSpec(**{**fields, **extra})


def sentence(request_id: int, length: int) -> Pending:
    ids = np.full((1, length), 100 + request_id, dtype=np.int64)
    mask = np.ones((1, length), dtype=np.int64)
    return Pending(request_id, b"gw", [ids, mask], arrived=0.0, deadline=1e9)


def take(batcher: Batcher) -> Batch:
    batch = batcher.take(0.0).batch
    assert batch is not None
    return batch


def test_each_input_is_padded_with_its_own_value() -> None:
    pads = pad_values_of({"input_ids": 1, "attention_mask": 0}, BERT_INPUTS)
    assert pads == (1, 0)
    batcher = Batcher(bert_spec(pad_values=pads))
    batcher.submit(sentence(1, 2))
    batcher.submit(sentence(2, 4))
    batcher.submit(sentence(3, 3))
    batch = take(batcher)
    assert [i.request_id for i in batch.items] == [1, 2, 3]
    ids, mask = batch.inputs
    np.testing.assert_array_equal(ids, [[101, 101, 1, 1], [102] * 4, [103, 103, 103, 1]])
    np.testing.assert_array_equal(mask, [[1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 0]])
    assert ids.dtype == mask.dtype == np.int64
    assert batcher.stats.padding_waste == pytest.approx(6 / 24)


def test_a_spec_with_one_pad_value_pads_every_input_with_it() -> None:
    # What a gateway of an earlier release sends: only `pad_value`.
    batcher = Batcher(bert_spec(pad_value=7))
    batcher.submit(sentence(1, 1))
    batcher.submit(sentence(2, 3))
    ids, mask = take(batcher).inputs
    np.testing.assert_array_equal(ids, [[101, 7, 7, 7], [102, 102, 102, 7]])
    np.testing.assert_array_equal(mask, [[1, 7, 7, 7], [1, 1, 1, 7]])


def test_without_a_value_for_every_variable_input_lengths_run_apart() -> None:
    batcher = Batcher(bert_spec(pad_values=(1, None)))
    batcher.submit(sentence(1, 2))
    batcher.submit(sentence(2, 3))
    first, second = take(batcher), take(batcher)
    assert [i.request_id for i in first.items] == [1]
    assert [i.request_id for i in second.items] == [2]
    assert batcher.stats.padded_elements == 0


def test_a_fixed_input_beside_a_padded_one_is_stacked_as_it_is() -> None:
    inputs = (TensorSpec("ids", "int64", (-1,)), TensorSpec("style", "float32", (2,)))
    spec = bert_spec(inputs=inputs, buckets=(8,), pad_values=pad_values_of({"ids": 0}, inputs))
    batcher = Batcher(spec)
    for request_id, length in ((1, 3), (2, 5)):
        ids = np.full((1, length), request_id, dtype=np.int64)
        style = np.full((1, 2), request_id / 10, dtype=np.float32)
        batcher.submit(Pending(request_id, b"gw", [ids, style], arrived=0.0, deadline=1e9))
    ids, style = take(batcher).inputs
    assert ids.shape == (2, 8)
    np.testing.assert_array_equal(ids[:, 3:5], [[0, 0], [2, 2]])
    np.testing.assert_allclose(style, [[0.1, 0.1], [0.2, 0.2]])


def test_pad_values_travel_to_the_worker_exactly() -> None:
    big_id = 2**62 + 1  # beyond float precision: must arrive as this integer
    spec = bert_spec(pad_values=(big_id, 0))
    decoded = decode_request(encode(Load(id=1, spec=spec)))
    assert isinstance(decoded, Load)
    assert decoded.spec.pad_values == (big_id, 0)
    assert decoded.spec.input_pad_values() == (big_id, 0)


def test_a_worker_of_an_earlier_release_reads_a_per_input_spec_as_unpadded() -> None:
    """An older worker decodes LoadSpec without `pad_values`: it sees pad_value None (when the
    values differ per input) and runs lengths apart, which is slower but never wrong."""

    class EarlierLoadSpec(msgspec.Struct):
        pad_value: float | None = None
        buckets: tuple[int, ...] = ()

    wire = msgspec.msgpack.encode(bert_spec(pad_values=(1, 0)))
    earlier = msgspec.msgpack.decode(wire, type=EarlierLoadSpec)
    assert earlier.pad_value is None
    assert earlier.buckets == (4, 8)
