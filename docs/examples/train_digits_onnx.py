"""Step 1 of the lifecycle example (docs/examples/lifecycle.sh): train a small digit classifier
on scikit-learn's bundled 8x8 digits, export it to ONNX, and write what `maas models
register` and `maas models optimize` take.

    python docs/examples/train_digits_onnx.py OUT_DIR

writes OUT_DIR/digits.onnx (weights inside, a free batch axis), OUT_DIR/digits.meta.json (the
signature, the image pre-processing and labels, its held-out accuracy) and
OUT_DIR/holdout.json (the last 360 rows, never trained on, with their labels). Nothing is
downloaded: the data ships inside scikit-learn.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits

HELD_OUT = 360


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32)
    y = torch.tensor(data.target)
    train_x, train_y, test_x, test_y = x[:-HELD_OUT], y[:-HELD_OUT], x[-HELD_OUT:], y[-HELD_OUT:]

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    images = torch.nn.functional.pad(train_x.reshape(-1, 8, 8), (1, 1, 1, 1))
    rows = torch.arange(len(train_x))[:, None, None]
    for _ in range(100):
        # Each image moved by up to a pixel each way, anew every epoch: the held-out rows come
        # from other writers, and small shifts are most of what separates them.
        offsets = torch.randint(0, 3, (len(train_x), 2))
        ys = (offsets[:, 0, None] + torch.arange(8))[:, :, None]
        xs = (offsets[:, 1, None] + torch.arange(8))[:, None, :]
        shifted = images[rows, ys, xs].reshape(-1, 64)
        order = torch.randperm(len(train_x))
        for start in range(0, len(order), 64):
            index = order[start : start + 64]
            optimiser.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(shifted[index] / 16.0), train_y[index])
            loss.backward()
            optimiser.step()

    # The model takes raw pixel values 0-16, as the image pre-processing below produces them.
    class Digits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x / 16.0)

    served = Digits().eval()
    with torch.inference_mode():
        accuracy = float((served(test_x).argmax(1) == test_y).float().mean())
    print(f"trained: held-out accuracy {accuracy:.4f} on {HELD_OUT} rows")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            served,
            (train_x[:2],),
            dynamo=True,
            external_data=False,
            input_names=["x"],
            output_names=["logits"],
            dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},),
            verbose=False,
        )
    assert program is not None
    program.save(str(out / "digits.onnx"), external_data=False)
    print(f"exported: {out / 'digits.onnx'} ({(out / 'digits.onnx').stat().st_size} bytes)")

    meta = {
        "format": "onnx",
        "inputs": [{"name": "x", "dtype": "float32", "shape": [64], "min": 0, "max": 16}],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": [10]}],
        "preprocess": {
            "x": {
                "image": {
                    "mode": "L",
                    "size": [8, 8],
                    "layout": "flat",
                    "scale": [0, 16],
                    "invert": True,
                }
            }
        },
        "postprocess": {
            "output": "logits",
            "softmax": True,
            "labels": [str(d) for d in range(10)],
            "top_k": 3,
        },
        "metrics": {"accuracy": round(accuracy, 4), "held_out_rows": HELD_OUT},
        "golden": [
            {
                "inputs": [test_x[0].tolist()],
                "outputs": [served(test_x[:1])[0].tolist()],
                "atol": 1e-3,
            }
        ],
        "description": "an MLP on sklearn's 8x8 digits, exported to ONNX (docs/examples)",
    }
    (out / "digits.meta.json").write_text(json.dumps(meta))
    holdout = {"instances": test_x.tolist(), "labels": np.asarray(test_y).tolist()}
    (out / "holdout.json").write_text(json.dumps(holdout))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "lifecycle-work"))
