"""Real image files for tests, made with Pillow in memory."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png(pixels: np.ndarray[Any, Any], **options: Any) -> bytes:
    """A PNG of `pixels`: uint8 (h, w) grey, (h, w, 3) RGB or (h, w, 4) RGBA; uint16 (h, w)
    is a 16-bit grey PNG."""
    return encode(Image.fromarray(pixels), "PNG", **options)


def jpeg(pixels: np.ndarray[Any, Any], quality: int = 95) -> bytes:
    return encode(Image.fromarray(pixels), "JPEG", quality=quality)


def ramp(height: int = 8, width: int = 8) -> np.ndarray[Any, Any]:
    """Grey pixels, each different (0, 4, 8, ...), so layouts and resizes show."""
    return (np.arange(height * width).reshape(height, width) * 4 % 256).astype(np.uint8)


def noise(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray[Any, Any]:
    """Random RGB pixels: they compress badly, so the file is about as large as its pixels."""
    shape = (height, width, channels) if channels > 1 else (height, width)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def huge_png(side: int = 10_000) -> bytes:
    """A `side` by `side` grey PNG of zeros: about 100 KB for 100 M pixels (a decompression
    bomb)."""
    return encode(Image.new("L", (side, side)), "PNG")


def animated_png(frames: int = 3) -> bytes:
    images = [Image.new("L", (8, 8), 60 * i) for i in range(frames)]
    return encode(images[0], "PNG", save_all=True, append_images=images[1:])
