"""Encoded images into declared tensors: real PNG and JPEG files made with Pillow here, the
formats and files that are refused (and with which status), each mode's conversion, and the
layout / scale / mean / std / invert arithmetic against numpy."""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
import pytest
from PIL import Image

from maas.api.errors import native_error
from maas.errors import InvalidInput, MaasError, PayloadTooLarge
from maas.serving.images import ImageLimits, decode_image, may_carry_image, read_pixels
from maas.serving.preprocess import prepare
from maas.types import ImagePrep
from support.images import animated_png, encode, huge_png, jpeg, noise, png, ramp

F32 = np.dtype(np.float32)
U8 = np.dtype(np.uint8)


def _prep(mode: str = "L", size: tuple[int, int] = (8, 8), layout: str = "flat", **extra: Any):
    return ImagePrep(mode=mode, size=size, layout=layout, **extra)


def _refused(data: bytes, status: int, says: str, **options: Any) -> MaasError:
    with pytest.raises(MaasError) as refused:
        decode_image(data, _prep(), F32, **options)
    assert native_error(refused.value).status == status, refused.value
    assert says in refused.value.message, refused.value.message
    return refused.value


def test_a_grey_png_becomes_its_pixels_scaled_to_0_1() -> None:
    pixels = ramp()
    out = decode_image(png(pixels), _prep(), F32)
    assert out.dtype == np.float32
    assert out.shape == (64,)
    np.testing.assert_allclose(out, pixels.reshape(-1) / 255.0, rtol=1e-6)


def test_an_rgb_png_in_each_layout() -> None:
    pixels = noise(4, 6)  # h=4, w=6: a transposed axis would show
    expected = pixels / 255.0
    chw = decode_image(png(pixels), _prep("RGB", (4, 6), "CHW"), F32)
    hwc = decode_image(png(pixels), _prep("RGB", (4, 6), "HWC"), F32)
    flat = decode_image(png(pixels), _prep("RGB", (4, 6), "flat"), F32)
    assert (chw.shape, hwc.shape, flat.shape) == ((3, 4, 6), (4, 6, 3), (72,))
    np.testing.assert_allclose(chw, expected.transpose(2, 0, 1), rtol=1e-6)
    np.testing.assert_allclose(hwc, expected, rtol=1e-6)
    np.testing.assert_allclose(flat, expected.reshape(-1), rtol=1e-6)  # HWC order
    grey = decode_image(png(ramp(4, 6)), _prep("L", (4, 6), "CHW"), F32)
    assert grey.shape == (1, 4, 6)


def test_jpeg_grey_and_rgb_decode_close_to_their_pixels() -> None:
    colour = np.full((8, 8, 3), (200, 40, 90), np.uint8)
    out = decode_image(jpeg(colour), _prep("RGB", layout="HWC"), U8)
    assert out.dtype == np.uint8
    assert np.abs(out.astype(int) - colour).max() <= 4  # JPEG is lossy
    grey = np.full((8, 8), 130, np.uint8)
    out = decode_image(jpeg(grey), _prep(), U8)
    assert np.abs(out.astype(int) - 130).max() <= 2


def test_scale_mean_std_and_invert_as_numpy_computes_them() -> None:
    pixels = noise(5, 7)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    prep = _prep("RGB", (5, 7), "CHW", scale=(-1.0, 3.0), mean=mean, std=std, invert=True)
    out = decode_image(png(pixels), prep, F32)
    x = 255.0 - pixels.astype(np.float64)
    x = -1.0 + x / 255.0 * 4.0
    x = (x - np.array(mean)) / np.array(std)
    np.testing.assert_allclose(out, x.transpose(2, 0, 1), rtol=1e-5, atol=1e-5)

    digits = _prep(scale=(0.0, 16.0), invert=True)  # the digits demo's 0..16, ink dark
    out = decode_image(png(ramp()), digits, np.dtype(np.float64))
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, (255.0 - ramp().reshape(-1)) * 16 / 255)


def test_uint8_takes_the_raw_pixels_and_invert_stays_in_uint8() -> None:
    pixels = ramp()
    assert (decode_image(png(pixels), _prep(), U8) == pixels.reshape(-1)).all()
    inverted = decode_image(png(pixels), _prep(invert=True), U8)
    assert inverted.dtype == np.uint8
    assert (inverted == 255 - pixels.reshape(-1)).all()


def test_the_ends_of_the_scale_are_exact() -> None:
    """0 and 255 land exactly on `scale`'s ends, so an input declaring them as its min and
    max takes every image."""
    pixels = np.array([[0, 255]], np.uint8)
    for low, high in ((0.0, 16.0), (-1.0, 1.0), (0.0, 0.1), (2.5, 7.3)):
        prep = _prep(size=(1, 2), scale=(low, high))
        assert prepare(pixels, prep, np.dtype(np.float64)).tolist() == [low, high]


def test_prepare_is_a_pure_function_of_the_pixels() -> None:
    pixels = np.array([[0, 255], [51, 102]], np.uint8)
    out = prepare(pixels, _prep(size=(2, 2), layout="CHW", mean=(0.5,), std=(0.25,)), F32)
    np.testing.assert_allclose(out, [[[-2.0, 2.0], [-1.2, -0.4]]], rtol=1e-6)


def test_resize_is_bilinear_and_antialiased_when_shrinking() -> None:
    big = noise(16, 16, channels=1)
    out = read_pixels(png(big), "L", (8, 8))
    expected = np.asarray(Image.fromarray(big).resize((8, 8), Image.Resampling.BILINEAR))
    assert (out == expected).all()
    # A 1-pixel checkerboard halved: antialiasing averages it to grey instead of picking
    # every other pixel (all black or all white).
    board = ((np.indices((64, 64)).sum(0) % 2) * 255).astype(np.uint8)
    shrunk = read_pixels(png(board), "L", (32, 32))
    assert shrunk.min() >= 100
    assert shrunk.max() <= 155
    # Height and width are not swapped: a 4x6 image asked as (h=6, w=4) is 6 rows of 4.
    assert read_pixels(png(ramp(4, 6)), "L", (6, 4)).shape == (6, 4)


def test_rgb_converts_to_grey_and_grey_to_rgb() -> None:
    red = np.zeros((4, 4, 3), np.uint8)
    red[..., 0] = 255
    grey = read_pixels(png(red), "L", (4, 4))
    assert (grey == 76).all()  # ITU-R 601-2 luma: 255 * 299 / 1000
    rgb = read_pixels(png(ramp(4, 4)), "RGB", (4, 4))
    assert rgb.shape == (4, 4, 3)
    assert (rgb == ramp(4, 4)[..., None]).all()


def test_16_bit_grey_is_scaled_to_8_bits_not_clipped() -> None:
    levels = np.array([[0, 257, 257 * 100, 65535], [128, 32768, 65280, 1000]], np.uint16)
    data = png(levels)
    assert Image.open(io.BytesIO(data)).mode.startswith("I")  # truly 16-bit
    out = read_pixels(data, "L", (2, 4))
    expected = np.round(levels.astype(np.float64) * 255 / 65535).astype(np.uint8)
    assert (out == expected).all(), out
    assert out[0].tolist() == [0, 1, 100, 255]


def test_a_palette_png_is_expanded() -> None:
    image = Image.new("P", (4, 2))
    image.putpalette([255, 0, 0, 0, 0, 255, 10, 200, 30])
    image.putdata([0, 1, 2, 0, 1, 2, 0, 1])
    out = read_pixels(encode(image, "PNG"), "RGB", (2, 4))
    assert out[0].tolist() == [[255, 0, 0], [0, 0, 255], [10, 200, 30], [255, 0, 0]]


def test_alpha_is_composited_over_white() -> None:
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (0, 0, 0, 0)  # transparent black: white
    rgba[0, 1] = (0, 0, 0, 255)  # opaque black: black
    rgba[1, 0] = (100, 0, 200, 128)  # half: a mix
    rgba[1, 1] = (10, 20, 30, 255)
    out = read_pixels(png(rgba), "RGB", (2, 2)).astype(int)
    alpha = 128 / 255
    mix = [round(c * alpha + 255 * (1 - alpha)) for c in (100, 0, 200)]
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[0, 1].tolist() == [0, 0, 0]
    assert np.abs(out[1, 0] - mix).max() <= 1
    assert out[1, 1].tolist() == [10, 20, 30]

    la = Image.new("LA", (2, 1))
    la.putdata([(0, 0), (0, 255)])
    assert read_pixels(encode(la, "PNG"), "L", (1, 2)).tolist() == [[255, 0]]


def test_transparency_keys_of_palette_grey_and_rgb_pngs_are_white() -> None:
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 0, 50, 60, 70])
    palette.putdata([0, 1])
    out = read_pixels(encode(palette, "PNG", transparency=0), "RGB", (1, 2))
    assert out.tolist() == [[[255, 255, 255], [50, 60, 70]]]
    grey = Image.fromarray(np.array([[7, 9]], np.uint8))
    assert read_pixels(encode(grey, "PNG", transparency=7), "L", (1, 2)).tolist() == [[255, 9]]
    rgb = Image.fromarray(np.array([[[1, 2, 3], [4, 5, 6]]], np.uint8))
    out = read_pixels(encode(rgb, "PNG", transparency=(1, 2, 3)), "RGB", (1, 2))
    assert out.tolist() == [[[255, 255, 255], [4, 5, 6]]]


def test_a_cmyk_jpeg_converts_to_rgb() -> None:
    cyan = Image.new("CMYK", (8, 8), (255, 0, 0, 0))
    data = encode(cyan, "JPEG", quality=95)
    out = read_pixels(data, "RGB", (8, 8)).astype(int)
    assert np.abs(out - [0, 255, 255]).max() <= 3
    assert read_pixels(data, "L", (8, 8)).shape == (8, 8)


def test_a_bilevel_png_is_black_and_white() -> None:
    image = Image.new("1", (2, 1))
    image.putdata([0, 1])
    assert read_pixels(encode(image, "PNG"), "L", (1, 2)).tolist() == [[0, 255]]


@pytest.mark.parametrize(
    ("fmt", "named"),
    [("GIF", "GIF"), ("BMP", "BMP"), ("WEBP", "WebP"), ("TIFF", "TIFF")],
)
def test_formats_other_than_png_and_jpeg_are_422_by_name(fmt: str, named: str) -> None:
    data = encode(Image.new("RGB", (8, 8), (1, 2, 3)), fmt)
    _refused(data, 422, f"only PNG and JPEG images are taken; got a {named} image")


def test_bytes_that_are_no_image_are_422() -> None:
    error = _refused(b'{"instances": []}', 422, "only PNG and JPEG images are taken")
    assert isinstance(error, InvalidInput)
    _refused(b"", 422, "the image is empty")


def test_an_animated_png_is_422() -> None:
    _refused(animated_png(3), 422, "animated images are not taken (this PNG has 3 frames)")


@pytest.mark.parametrize("make", [png, jpeg], ids=["png", "jpeg"])
def test_truncated_or_corrupt_files_are_422(make: Any) -> None:
    data = make(noise(64, 64))
    for cut in (data[: len(data) // 2], data[:40]):
        _refused(cut, 422, "the image could not be decoded")
    corrupt = bytearray(data)
    corrupt[len(data) // 2 : len(data) // 2 + 64] = b"\x00" * 64
    if make is png:  # a PNG's CRCs catch it; a JPEG decodes to something, as decoders do
        _refused(bytes(corrupt), 422, "the image could not be decoded")


def test_a_decompression_bomb_is_413_by_its_header_before_any_decoding() -> None:
    bomb = huge_png()  # 100 M pixels in about 100 KB
    assert len(bomb) < 200_000
    _refused(bomb, 413, "the image is 10000x10000 pixels (100000000); an image may have at most")
    # Only the header is read: the same file cut short is still 413, not "could not be
    # decoded" (which decoding it would have found).
    _refused(bomb[:4096], 413, "MAAS_MAX_IMAGE_PIXELS")
    limits = ImageLimits(max_pixels=63)
    _refused(png(ramp()), 413, "at most 63 pixels", limits=limits)


def test_pillows_own_bomb_check_never_escapes() -> None:
    """With a cap above Pillow's own (89 M pixels; twice that is its error), Pillow's
    warning or error does not fire: the file is judged by its bytes (this one is cut short)."""
    limits = ImageLimits(max_pixels=1_000_000_000)
    for side in (10_000, 20_000):  # 100 M: Pillow warns; 400 M: Pillow raises
        cut = huge_png(side)[:4096]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            _refused(cut, 422, "the image could not be decoded", limits=limits)


def test_more_bytes_than_the_cap_is_413() -> None:
    data = png(noise(64, 64))
    assert len(data) > 4096
    error = _refused(
        data,
        413,
        "an image may be at most 4096 bytes (MAAS_MAX_IMAGE_BYTES)",
        limits=ImageLimits(max_bytes=4096),
    )
    assert isinstance(error, PayloadTooLarge)


def test_errors_say_where_the_image_was() -> None:
    with pytest.raises(InvalidInput, match=r"^instance 3: only PNG"):
        decode_image(b"GIF89a....", _prep(), F32, where="instance 3: ")


@pytest.mark.parametrize(
    ("body", "content_type", "carries"),
    [
        (b'{"instances": [[0.5, 1.0]]}', b"application/json", False),
        (b'{"inputs": [{"name": "x", "datatype": "FP32"}]}', b"", False),
        (b'{"instances": [{"b64": "iVBOR"}]}', b"application/json", True),
        (b'{"inputs": [{"name": "x", "datatype": "BYTES"}]}', b"", True),
        (b'{"instances": [{"\\u0062\\u0036\\u0034": "iVBOR"}]}', b"application/json", True),
        (b"\x89PNG\r\n\x1a\n....", b"application/octet-stream", True),
        (b"anything", b"image/png", True),
        (b"--x\r\n", b"multipart/form-data", True),
    ],
)
def test_which_bodies_may_carry_an_image(body: bytes, content_type: bytes, carries: bool) -> None:
    assert may_carry_image(body, content_type) is carries


def test_a_requests_images_together_stay_within_the_pixel_cap() -> None:
    """Each image is under the cap, but one request's images together are not: a body of
    many small bombs decodes no more than one large image would."""
    prep = ImagePrep(mode="L", size=(8, 8), layout="flat")
    image = png(np.zeros((100, 100), dtype=np.uint8))
    limits = ImageLimits(max_pixels=25_000)
    decode_image(image, prep, np.dtype("float32"), limits)
    decode_image(image, prep, np.dtype("float32"), limits)
    with pytest.raises(PayloadTooLarge, match="together have more than 25000 pixels"):
        decode_image(image, prep, np.dtype("float32"), limits)
    # A new request starts with the whole budget.
    decode_image(image, prep, np.dtype("float32"), ImageLimits(max_pixels=25_000))
