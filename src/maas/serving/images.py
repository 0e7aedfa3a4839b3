"""Encoded images (PNG and JPEG only) into the tensor an input declares, safely.

An image a client sends is decoded with Pillow (imported on the first image, so a gateway that
never sees one never loads it) under two caps: its encoded bytes (`MAAS_MAX_IMAGE_BYTES`) and
its pixels, read from the file's header before anything is decoded (`MAAS_MAX_IMAGE_PIXELS`),
so a small file that would inflate into gigabytes (a decompression bomb) answers 413 without
being decoded. Only Pillow's PNG and JPEG readers ever see the bytes; every other format is
refused by name, and whatever a corrupt file makes Pillow raise becomes a 422.

Then the pixels are made 8-bit in the declared mode: 16-bit grey scaled (not clipped), palettes
expanded, transparency composited over white, CMYK and YCbCr converted; resized to the declared
size (bilinear, which antialiases when it shrinks), and handed to `maas.serving.preprocess`.

Decoding takes milliseconds: the pipeline runs it on a thread (`maas.serving.call`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from maas.config import DEFAULT_MAX_IMAGE_BYTES, DEFAULT_MAX_IMAGE_PIXELS
from maas.errors import InvalidInput, PayloadTooLarge
from maas.serving.preprocess import prepare
from maas.serving.sniff import looks_like
from maas.types import ImagePrep

Array = np.ndarray[Any, Any]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
# What Pillow calls the formats taken; MPO is a JPEG holding several pictures (some cameras
# write one): its first picture is the image.
_FORMATS = ("PNG", "JPEG")
_TAKEN = frozenset({"PNG", "JPEG", "MPO"})
_ONLY = "only PNG and JPEG images are taken"
# Modes that carry transparency, composited over white.
_ALPHA = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
# 16-bit (and 32-bit integer) grey, as Pillow opens a 16-bit greyscale PNG.
_WIDE_GREY = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
_WHITE = (255, 255, 255, 255)


@dataclass(slots=True)
class ImageLimits:
    """The caps on one request's images: encoded bytes per image, and pixels (width times
    height, by the header) per image and for all the request's images together, so that a
    body of many small bombs decodes no more than one large image would. One per request:
    `pixels_left` counts down as its images are read."""

    max_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    pixels_left: int = field(default=-1)

    def __post_init__(self) -> None:
        if self.pixels_left < 0:
            self.pixels_left = self.max_pixels


def may_carry_image(body: bytes, content_type: bytes) -> bool:
    """Whether a request for a version that declares pre-processing may carry an image, by
    a look at its bytes: a raw image or form body, a `"b64"` instance, a v2 BYTES tensor (or
    JSON whose escaped keys could spell either). Then its decoding runs on a thread."""
    return (
        content_type.startswith((b"image/", b"multipart/"))
        or body.startswith((PNG_MAGIC, JPEG_MAGIC))
        or b'"b64"' in body
        or b'"BYTES"' in body
        or b"\\u" in body
    )


def decode_image(
    data: bytes | memoryview,
    prep: ImagePrep,
    dtype: np.dtype[Any],
    limits: ImageLimits | None = None,
    where: str = "",
) -> Array:
    """One instance of an input declaring `prep`, of `dtype`, from an encoded image. `where`
    prefixes every error (such as "instance 2: "). Raises InvalidInput (422) for a file that
    is not a PNG or JPEG, is animated or cannot be decoded, PayloadTooLarge (413) past a cap."""
    pixels = read_pixels(data, prep.mode, prep.size, limits or ImageLimits(), where)
    return prepare(pixels, prep, dtype)


def read_pixels(
    data: bytes | memoryview,
    mode: str,
    size: tuple[int, int],
    limits: ImageLimits | None = None,
    where: str = "",
) -> Array:
    """The image's pixels as uint8, in `mode` (`L`: (h, w); `RGB`: (h, w, 3)), resized to
    `size` (height, width)."""
    limits = limits or ImageLimits()
    if len(data) > limits.max_bytes:
        raise PayloadTooLarge(
            f"{where}the image is {len(data)} bytes; an image may be at most "
            f"{limits.max_bytes} bytes (MAAS_MAX_IMAGE_BYTES)"
        )
    if not len(data):
        raise InvalidInput(f"{where}the image is empty (0 bytes); send a PNG or JPEG file")
    pil = _pillow()
    image = _open(pil, bytes(data), where)
    width, height = image.size
    if width * height > limits.max_pixels:
        raise PayloadTooLarge(
            f"{where}the image is {width}x{height} pixels ({width * height}); an image may "
            f"have at most {limits.max_pixels} pixels (MAAS_MAX_IMAGE_PIXELS)"
        )
    if width * height > limits.pixels_left:
        raise PayloadTooLarge(
            f"{where}the request's images together have more than {limits.max_pixels} pixels "
            "(MAAS_MAX_IMAGE_PIXELS bounds a request's images together too); send fewer or "
            "smaller images per request"
        )
    limits.pixels_left -= width * height
    if image.format == "PNG" and getattr(image, "n_frames", 1) > 1:
        raise InvalidInput(
            f"{where}animated images are not taken (this PNG has {image.n_frames} frames); "
            "send a single still image"
        )
    try:
        image.load()
        image = _eight_bit(pil, image, mode)
        if image.size != (size[1], size[0]):
            image = image.resize((size[1], size[0]), pil.Resampling.BILINEAR)
        return np.asarray(image, dtype=np.uint8)
    except pil.DecompressionBombError as exc:  # our own cap is lower unless set higher
        raise PayloadTooLarge(f"{where}the image is too large to decode: {exc}") from None
    except Exception as exc:  # a corrupt file makes Pillow raise almost anything
        raise InvalidInput(
            f"{where}the image could not be decoded (a truncated or corrupt {image.format} "
            f"file: {_reason(exc)}); send a complete PNG or JPEG file"
        ) from None


def _pillow() -> ModuleType:
    """Pillow's Image module, imported on first use. Its own decompression-bomb check (a
    warning, then an error, at a fixed 89 M pixels) is replaced by ours, which is configurable
    and answers 413."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None
    return Image


def _open(pil: ModuleType, data: bytes, where: str) -> Any:
    """The image, its header read (nothing decoded yet), by Pillow's PNG and JPEG readers
    only; InvalidInput naming what it is when it is neither."""
    if not data.startswith((PNG_MAGIC, JPEG_MAGIC)):
        raise InvalidInput(f"{where}{_ONLY}; got {_what(data)}")
    try:
        image = pil.open(io.BytesIO(data), formats=_FORMATS)
    except pil.DecompressionBombError as exc:
        raise PayloadTooLarge(f"{where}the image is too large to decode: {exc}") from None
    except Exception as exc:
        kind = "PNG" if data.startswith(PNG_MAGIC) else "JPEG"
        raise InvalidInput(
            f"{where}the image could not be decoded (a truncated or corrupt {kind} file: "
            f"{_reason(exc)}); send a complete PNG or JPEG file"
        ) from None
    if image.format not in _TAKEN:
        raise InvalidInput(f"{where}{_ONLY}; got a {image.format} image")
    return image


def _what(data: bytes) -> str:
    if data.startswith(b"BM"):
        return "a BMP image (image/bmp)"
    seen = looks_like(data)
    if seen is not None and "image" in seen:
        return seen
    return "data that is not an image file (it starts with " + data[:8].hex(" ") + ")"


def _eight_bit(pil: ModuleType, image: Any, mode: str) -> Any:
    """`image` in `mode` (`L` or `RGB`), 8 bits per channel, transparency over white."""
    if image.mode in _WIDE_GREY:
        wide = np.asarray(image).astype(np.int64).clip(0, 65535)
        image = pil.fromarray(((wide * 255 + 32767) // 65535).astype(np.uint8), "L")
    if image.mode == "P" or (image.mode in ("L", "RGB") and "transparency" in image.info):
        has_alpha = "transparency" in image.info or image.mode == "PA"
        image = image.convert("RGBA" if has_alpha else "RGB")
    if image.mode in _ALPHA:
        rgba = image.convert("RGBA")
        image = pil.alpha_composite(pil.new("RGBA", rgba.size, _WHITE), rgba).convert("RGB")
    if image.mode not in ("L", "RGB", "1"):  # CMYK, YCbCr...: through RGB, which all reach
        image = image.convert("RGB")
    if image.mode != mode:
        image = image.convert(mode)
    return image


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text[:200]
