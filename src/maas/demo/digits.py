"""The `digits` demo: a small CNN trained on scikit-learn's bundled 8x8 digits (no download).

Input `x` is one raw row of `load_digits().data` (64 pixel values 0-16); the model scales it
itself, so clients send the data as it ships. The last `HELD_OUT` rows are never trained on;
the accuracy on them is the version's `metrics.accuracy` (CONTRACT: demo models).

Its meta declares the rest of the story as data: `x` also takes an 8x8 grey image (PNG or
JPEG, dark ink on white paper: inverted, then scaled onto 0-16), and the logits answer
`:classify` with the labels "0"-"9" (`IMAGE`, `LABELS`; docs/examples has PNGs of held-out
rows).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits

from maas.demo.artifact import (
    DemoModel,
    golden_example,
    load_artifact,
    script_to_bytes,
    training_scope,
)

HELD_OUT = 360
# How an image becomes `x`, and how `logits` become labels (meta preprocess / postprocess).
IMAGE = {"mode": "L", "size": [8, 8], "layout": "flat", "scale": [0, 16], "invert": True}
LABELS = [str(digit) for digit in range(10)]
DESCRIPTION = (
    "Handwritten digit classifier trained at first start on scikit-learn's bundled 8x8 digits. "
    "Input x: one row of load_digits().data (64 pixel values 0-16), or an 8x8 grey PNG/JPEG "
    "of a dark digit on white; output: 10 logits; :classify answers the labels 0-9."
)


class DigitsNet(torch.nn.Module):
    """Two 3x3 convolutions over the 8x8 image, then a small classifier head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(16, 32, 3, padding=1)
        self.fc = torch.nn.Linear(32 * 4 * 4, 64)
        self.out = torch.nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image = (x / 16.0).reshape(-1, 1, 8, 8)
        image = torch.relu(self.conv1(image))
        image = torch.nn.functional.max_pool2d(torch.relu(self.conv2(image)), 2)
        logits: torch.Tensor = self.out(torch.relu(self.fc(image.flatten(1))))
        return logits


def shifted(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image moved by up to one pixel in each direction (edges filled with 0).

    The held-out rows come from other writers; small translations are the variation that most
    separates them from the training rows, and training on them lifts held-out accuracy.
    """
    padded = torch.nn.functional.pad(x.reshape(-1, 8, 8), (1, 1, 1, 1))
    offsets = torch.randint(0, 3, (len(x), 2), generator=generator)
    rows = offsets[:, 0, None] + torch.arange(8)
    cols = offsets[:, 1, None] + torch.arange(8)
    batch = torch.arange(len(x))[:, None, None]
    return padded[batch, rows[:, :, None], cols[:, None, :]].reshape(-1, 64)


def dataset() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train_x, train_y, held_out_x, held_out_y), split by position: the last rows are held out."""
    bunch = load_digits()
    x = torch.from_numpy(np.asarray(bunch.data, dtype=np.float32))
    y = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
    return x[:-HELD_OUT], y[:-HELD_OUT], x[-HELD_OUT:], y[-HELD_OUT:]


def accuracy(module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.inference_mode():
        predicted = module(x).argmax(dim=1)
    return float((predicted == y).float().mean())


def train(*, seed: int = 0, epochs: int = 40) -> DemoModel:
    train_x, train_y, test_x, test_y = dataset()
    generator = torch.Generator().manual_seed(seed)
    with training_scope(seed):
        model = DigitsNet()
        optimiser = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
        steps_per_epoch = -(-len(train_x) // 64)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimiser, max_lr=5e-3, total_steps=epochs * steps_per_epoch
        )
        loss_fn = torch.nn.CrossEntropyLoss()
        for _ in range(epochs):
            model.train()
            order = torch.randperm(len(train_x), generator=generator)
            for start in range(0, len(order), 64):
                index = order[start : start + 64]
                optimiser.zero_grad()
                batch = shifted(train_x[index], generator)
                loss_fn(model(batch), train_y[index]).backward()
                optimiser.step()
                schedule.step()
        artifact = script_to_bytes(model)
    module = load_artifact(artifact)
    held_out_accuracy = round(accuracy(module, test_x, test_y), 4)
    meta = {
        "format": "torchscript",
        "inputs": [{"name": "x", "dtype": "float32", "shape": [64], "min": 0, "max": 16}],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": [10]}],
        "batching": {},  # the defaults: small models, so a short delay is plenty
        "device": "auto",
        "metrics": {
            "accuracy": held_out_accuracy,
            "held_out_rows": HELD_OUT,
            "train_rows": len(train_x),
        },
        "tags": {"demo": "true", "dataset": "sklearn.load_digits", "seed": str(seed)},
        "golden": [golden_example(module, test_x[i]) for i in range(2)],
        "description": DESCRIPTION,
        "preprocess": {"x": {"image": IMAGE}},
        "postprocess": {"output": "logits", "softmax": True, "labels": LABELS, "top_k": 3},
    }
    return DemoModel("digits", DESCRIPTION, artifact, meta)
