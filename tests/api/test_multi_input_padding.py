"""A BERT-shaped model (token ids and an attention mask, both of any length) padded with one
value per input: uploads that could not pad every variable input are refused by name, and
sentences of different lengths batched together answer what each answers alone."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest
import torch

from support.inprocess_gateway import ADMIN, Gateway

VOCAB, PAD_ID = 50, 1  # RoBERTa-style: the pad id is 1, not 0


class MaskedPooler(torch.nn.Module):
    """Embeds ids, averages them over the positions the mask keeps, and classifies: padding
    changes nothing as long as the mask is 0 there (and the pad id is a valid id)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(VOCAB, 8)
        self.out = torch.nn.Linear(8, 2)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        weights = attention_mask.to(torch.float32).unsqueeze(-1)
        summed = (self.embed(input_ids) * weights).sum(1)
        return self.out(summed / weights.sum(1).clamp(min=1.0))


def _artifact(module: torch.nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(module), buffer)
    return buffer.getvalue()


def _meta(pad_value: Any, *, mask_dtype: str = "int64") -> dict[str, Any]:
    return {
        "format": "torchscript",
        "inputs": [
            {"name": "input_ids", "dtype": "int64", "shape": [-1], "min": 0, "max": VOCAB - 1},
            {"name": "attention_mask", "dtype": mask_dtype, "shape": [-1], "min": 0, "max": 1},
        ],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": [2]}],
        "batching": {
            "max_batch_size": 16,
            "max_delay_ms": 20,
            "pad_value": pad_value,
            "buckets": [8, 16],
        },
    }


PER_INPUT = {"input_ids": PAD_ID, "attention_mask": 0}


@pytest.mark.parametrize(
    ("pad_value", "mask_dtype", "says"),
    [
        (
            {"input_ids": PAD_ID},
            "int64",
            "input 'attention_mask' has a -1 axis but pad_value gives it no value",
        ),
        (
            {**PER_INPUT, "token_type_ids": 0},
            "int64",
            "pad_value names 'token_type_ids', which is not an input",
        ),
        (
            {"input_ids": 1.5, "attention_mask": 0},
            "int64",
            "pad_value of input 'input_ids' (int64) must be an integer, got 1.5",
        ),
        (
            {"input_ids": PAD_ID, "attention_mask": 2**31},
            "int32",
            "pad_value of input 'attention_mask' (int32) must lie in [-2147483648, 2147483647]",
        ),
        (
            {"input_ids": PAD_ID, "attention_mask": 2},
            "bool",
            "pad_value of input 'attention_mask' (bool) must be 0 or 1",
        ),
        (
            {"input_ids": "1", "attention_mask": 0},
            "int64",
            "pad_value must be a number, or an object of numbers by input name",
        ),
        (
            {"input_ids": True, "attention_mask": 0},
            "int64",
            "pad_value must be a number, or an object of numbers by input name",
        ),
        (0.5, "int64", "pad_value of input 'input_ids' (int64) must be an integer, got 0.5"),
    ],
    ids=[
        "missing_input",
        "unknown_input",
        "float_for_int",
        "past_int32",
        "bool_not_0_or_1",
        "string",
        "boolean",
        "plain_float_for_int",
    ],
)
async def test_pad_values_that_cannot_pad_every_variable_input_are_refused_by_name(
    gateway: Gateway, pad_value: Any, mask_dtype: str, says: str
) -> None:
    await gateway.create_model("bert")
    meta = {**_meta(pad_value, mask_dtype=mask_dtype), "load": False}
    refused = await gateway.upload("bert", _artifact(MaskedPooler()), meta)
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["code"] == "invalid_artifact"
    assert says in error["message"], error["message"]


async def test_a_fixed_input_named_in_pad_value_is_refused(gateway: Gateway) -> None:
    await gateway.create_model("bert")
    meta = _meta(PER_INPUT)
    meta["inputs"][1]["shape"] = [16]
    meta["load"] = False
    refused = await gateway.upload("bert", _artifact(MaskedPooler()), meta)
    assert refused.status_code == 422, refused.text
    assert (
        "pad_value names input 'attention_mask', which has no -1 axis to pad"
        in (refused.json()["error"]["message"])
    )


async def test_sentences_of_different_lengths_batch_together_and_answer_as_alone(
    gateway: Gateway,
) -> None:
    module = MaskedPooler().eval()
    version = await gateway.deploy("bert", _artifact(module), _meta(PER_INPUT))
    shown = await gateway.client.get(f"/admin/models/bert/versions/{version}", headers=ADMIN)
    assert shown.json()["batching"]["pad_value"] == PER_INPUT  # as given

    lengths = [1, 2, 3, 5, 7, 8, 4, 6, 3, 2, 9, 12, 16, 11]
    sentences = [
        [(7 * i + 3 * n) % VOCAB for n in range(length)] for i, length in enumerate(lengths)
    ]

    def alone(ids: list[int]) -> list[float]:
        with torch.inference_mode():
            row = torch.tensor([ids])
            out: list[float] = module(row, torch.ones_like(row))[0].tolist()
        return out

    async def predict(ids: list[int]) -> list[float]:
        body = {"instances": [{"input_ids": ids, "attention_mask": [1] * len(ids)}]}
        answer = await gateway.predict("/v1/models/bert:predict", body)
        assert answer.status_code == 200, answer.text
        (prediction,) = answer.json()["predictions"]
        return list(prediction)

    # Twice over, concurrently: later rounds find the model busy and wait to fill a batch.
    for _ in range(2):
        answers = await asyncio.gather(*(predict(ids) for ids in sentences))
        for ids, answer in zip(sentences, answers, strict=True):
            assert answer == pytest.approx(alone(ids), abs=1e-5)

    # One request with every length: its instances are split by shape and padded back together.
    body = {"instances": [{"input_ids": s, "attention_mask": [1] * len(s)} for s in sentences]}
    answer = await gateway.predict("/v1/models/bert:predict", body)
    assert answer.status_code == 200, answer.text
    for ids, prediction in zip(sentences, answer.json()["predictions"], strict=True):
        assert prediction == pytest.approx(alone(ids), abs=1e-5)

    # v2, padded by the client: one [2, 5] tensor per input, the mask 0 past each sentence.
    short, long = sentences[2], sentences[3]
    ids = short + [PAD_ID] * (len(long) - len(short)) + long
    mask = [1] * len(short) + [0] * (len(long) - len(short)) + [1] * len(long)
    v2 = {
        "inputs": [
            {"name": "input_ids", "shape": [2, len(long)], "datatype": "INT64", "data": ids},
            {"name": "attention_mask", "shape": [2, len(long)], "datatype": "INT64", "data": mask},
        ]
    }
    answer = await gateway.predict("/v2/models/bert/infer", v2)
    assert answer.status_code == 200, answer.text
    (logits,) = answer.json()["outputs"]
    assert logits["data"] == pytest.approx(alone(short) + alone(long), abs=1e-5)

    stats: dict[str, Any] = {}
    for _ in range(100):
        detail = await gateway.client.get(f"/admin/models/bert/versions/{version}", headers=ADMIN)
        stats = detail.json()["stats"]
        if stats.get("instances") == 3 * len(sentences) + 2:
            break
        await asyncio.sleep(0.05)
    assert stats["instances"] == 3 * len(sentences) + 2, stats
    # Fewer forwards than requests of distinct lengths: padding put lengths of a bucket together.
    assert stats["batches"] < 3 * len(set(lengths)), stats
    assert 0 < stats["padding_waste"] < 1, stats
