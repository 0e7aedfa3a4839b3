"""The trained demo models: accuracy on data they never saw, valid meta, masking of padding."""

from __future__ import annotations

import torch

from maas.control.meta import parse_meta
from maas.demo import digits, tokens
from maas.demo.artifact import DemoModel, load_artifact


def test_digits_generalises_to_its_held_out_rows(digits_demo: DemoModel) -> None:
    _, _, test_x, test_y = digits.dataset()
    module = load_artifact(digits_demo.artifact)
    measured = digits.accuracy(module, test_x, test_y)
    assert measured >= 0.95
    assert digits_demo.meta["metrics"]["accuracy"] == round(measured, 4)
    assert digits_demo.meta["metrics"]["held_out_rows"] == 360 == len(test_x)


def test_digits_takes_raw_pixel_rows(digits_demo: DemoModel) -> None:
    meta = parse_meta(digits_demo.meta)
    assert meta.format.value == "torchscript"
    assert [(t.name, t.dtype, t.shape) for t in meta.inputs] == [("x", "float32", [64])]
    assert [(t.name, t.dtype, t.shape) for t in meta.outputs] == [("logits", "float32", [10])]
    module = load_artifact(digits_demo.artifact)
    row = torch.tensor(digits.load_digits().data[-1], dtype=torch.float32)
    assert float(row.max()) > 1.0  # raw 0-16 values, not pre-scaled
    with torch.inference_mode():
        assert module(row[None]).shape == (1, 10)


def test_digits_augmentation_moves_images_by_at_most_one_pixel() -> None:
    image = torch.zeros(1, 8, 8)
    image[0, 4, 4] = 16.0
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        moved = digits.shifted(image.reshape(1, 64), generator).reshape(8, 8)
        (row, col), *_ = (moved == 16.0).nonzero().tolist()
        assert abs(row - 4) <= 1
        assert abs(col - 4) <= 1
        assert float(moved.sum()) == 16.0


def test_tokens_learns_the_generated_task(tokens_demo: DemoModel) -> None:
    generator = torch.Generator().manual_seed(12345)  # sequences the trainer never drew
    sequences, labels = tokens.generate(400, generator)
    assert (
        0.3 < float(labels.float().mean()) < 0.7
    )  # both classes present: accuracy means something
    measured = tokens.accuracy(load_artifact(tokens_demo.artifact), sequences, labels)
    assert measured >= 0.9
    assert tokens_demo.meta["metrics"]["accuracy"] >= 0.9


def test_tokens_labels_follow_the_stated_rule() -> None:
    sequences, labels = tokens.generate(200, torch.Generator().manual_seed(1))
    for ids, label in zip(sequences, labels.tolist(), strict=True):
        assert 1 <= len(ids) <= tokens.MAX_LEN
        assert int(ids.min()) >= 0
        assert int(ids.max()) < tokens.VOCAB
        assert label == int(2 * int((ids < 500).sum()) > len(ids))


def test_tokens_padding_does_not_change_logits(tokens_demo: DemoModel) -> None:
    module = load_artifact(tokens_demo.artifact)
    short = torch.tensor([[3, 700, 12, 999, 5]])
    padded = torch.cat([short, torch.full((1, 27), tokens.PAD_ID)], dim=1)
    with torch.inference_mode():
        assert torch.allclose(module(short), module(padded), atol=1e-5)


def test_tokens_meta_declares_variable_length_ids(tokens_demo: DemoModel) -> None:
    meta = parse_meta(tokens_demo.meta)
    (ids,) = meta.inputs
    assert (ids.name, ids.dtype, ids.shape, ids.max_shape) == ("ids", "int64", [-1], [256])
    assert (ids.min, ids.max) == (0, 999)
    assert meta.batching.pad_value == tokens.PAD_ID
    assert meta.description == tokens_demo.description


def test_golden_examples_match_the_saved_artifact(
    digits_demo: DemoModel, tokens_demo: DemoModel
) -> None:
    for demo in (digits_demo, tokens_demo):
        module = load_artifact(demo.artifact)
        for golden in demo.meta["golden"]:
            dtype = torch.int64 if demo.name == "tokens" else torch.float32
            (instance,) = golden["inputs"]
            with torch.inference_mode():
                out = module(torch.tensor([instance], dtype=dtype))[0]
            assert torch.allclose(out, torch.tensor(golden["outputs"][0]), atol=golden["atol"])
