"""Writes docs/examples/digit-N.png: the first held-out row of each digit of the `digits` demo
(scikit-learn's bundled 8x8 digits; the demo never trains on the last 360 rows), as an 8x8
grey PNG of dark ink on white paper, the way the demo's `preprocess` reads it back (inverted,
then 0-255 scaled onto 0-16).

    .venv/bin/python docs/examples/digit_pngs.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

HELD_OUT = 360  # maas.demo.digits.HELD_OUT


def main() -> None:
    bunch = load_digits()
    rows, labels = bunch.data[-HELD_OUT:], bunch.target[-HELD_OUT:]
    here = Path(__file__).parent
    for digit in range(10):
        index = int(np.flatnonzero(labels == digit)[0])
        ink = np.rint(rows[index].reshape(8, 8) * 255 / 16).astype(np.uint8)
        Image.fromarray(255 - ink, mode="L").save(here / f"digit-{digit}.png", optimize=True)
        print(
            f"digit-{digit}.png: held-out row {index} (dataset row {len(bunch.data) - HELD_OUT + index})"
        )


if __name__ == "__main__":
    main()
