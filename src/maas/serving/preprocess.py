"""Decoded pixels into the tensor an input declares (meta `preprocess.<input>.image`).

A pure function of arrays, apart from the decoding (`maas.serving.images`): the pixels of one
image, already converted to the declared mode and resized, become one instance of the input,

    invert (255 - p) → layout (CHW, HWC or flat: HWC order raveled)
                     → 0..255 mapped linearly onto `scale` → (x - mean) / std per channel

in the input's dtype. A uint8 input takes the raw pixels (meta refuses scale, mean and std for
it); a float input's `scale` defaults to [0, 1].
"""

from __future__ import annotations

from typing import Any

import numpy as np

from maas.types import ImagePrep

Array = np.ndarray[Any, Any]

DEFAULT_SCALE = (0.0, 1.0)


def prepare(pixels: Array, prep: ImagePrep, dtype: np.dtype[Any]) -> Array:
    """One instance of the input from `pixels`: uint8 of shape (h, w, c) (or (h, w) for one
    channel), h, w and c as `prep` declares them."""
    if pixels.ndim == 2:
        pixels = pixels[:, :, np.newaxis]
    if dtype.kind == "u" and dtype.itemsize == 1:
        values: Array = 255 - pixels if prep.invert else pixels
    else:
        values = _scaled(pixels, prep)
    if prep.layout == "CHW":
        values = values.transpose(2, 0, 1)
    elif prep.layout == "flat":
        values = values.reshape(-1)
    return np.ascontiguousarray(values, dtype=dtype)


def _scaled(pixels: Array, prep: ImagePrep) -> Array:
    """Pixels (h, w, c) as floats: inverted, scaled, then normalised per channel (the last
    axis), in float64 so the input's own dtype rounds only once."""
    values = pixels.astype(np.float64)
    if prep.invert:
        values = 255.0 - values
    low, high = prep.scale if prep.scale is not None else DEFAULT_SCALE
    if (low, high) != (0.0, 255.0):
        # Multiplied, then divided: 255 maps onto `high` exactly (a declared max holds).
        values = low + values * (high - low) / 255.0
    if prep.mean:
        values = values - np.asarray(prep.mean, dtype=np.float64)
    if prep.std:
        values = values / np.asarray(prep.std, dtype=np.float64)
    return values
