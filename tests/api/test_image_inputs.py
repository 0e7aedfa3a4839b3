"""Images through a gateway to a real model: a version whose input declares pre-processing
answers PNG and JPEG files sent every way a client can (native `b64` instances, a raw
image/png body, a multipart `image` part, v2 BYTES in JSON and binary as tritonclient builds
them) exactly as it answers the tensor the client could have made itself; every way of getting
it wrong answers the right status with a message that says what to do."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
import tritonclient.http as triton
from PIL import Image

from support.images import animated_png, encode, huge_png, jpeg, noise, png, ramp
from support.inprocess_gateway import Gateway, make_settings, running_gateway
from support.model_files import mlp_meta, tiny_mlp, torchscript_bytes

SIDE, CLASSES = 8, 3
PREP = {"mode": "L", "size": [SIDE, SIDE], "layout": "flat", "scale": [0, 16], "invert": True}


class Pixels(torch.nn.Module):
    """Scores of a flat 8x8 image ([64] floats), plus `bias` when the model takes two inputs:
    fixed weights, so every pixel moves every score."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.weights = torch.nn.Parameter(torch.randn(SIDE * SIDE, CLASSES), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1) @ self.weights


class PixelsAndBias(Pixels):
    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return x.reshape(x.shape[0], -1) @ self.weights + bias


def _meta(*, preprocess: bool = True) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "format": "torchscript",
        "inputs": [{"name": "x", "dtype": "float32", "shape": [SIDE * SIDE]}],
        "outputs": [{"name": "y", "dtype": "float32", "shape": [CLASSES]}],
        "batching": {"max_batch_size": 8, "max_delay_ms": 2},
    }
    if preprocess:
        meta["preprocess"] = {"x": {"image": PREP}}
    return meta


def _two_input_meta() -> dict[str, Any]:
    meta = _meta()
    meta["inputs"] = [
        {"name": "x", "dtype": "float32", "shape": [1, SIDE, SIDE]},
        {"name": "bias", "dtype": "float32", "shape": [CLASSES]},
    ]
    meta["preprocess"] = {"x": {"image": {**PREP, "layout": "CHW"}}}
    return meta


def _tensor(pixels: np.ndarray[Any, Any]) -> list[float]:
    """What the declared pre-processing makes of grey pixels, computed here: inverted, 0..16."""
    values: list[float] = ((255.0 - pixels.astype(np.float64)) * 16 / 255).reshape(-1).tolist()
    return values


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def _deploy(gateway: Gateway, name: str, module: torch.nn.Module, meta: Any) -> None:
    await gateway.deploy(name, torchscript_bytes(module.eval()), meta)


async def _predictions(gateway: Gateway, path: str, **request: Any) -> Any:
    answer = await gateway.client.post(path, **request)
    assert answer.status_code == 200, answer.text
    return answer.json()["predictions"]


A, B = ramp(), noise(SIDE, SIDE, channels=1, seed=1)


async def test_images_sent_every_native_way_answer_as_the_tensor(gateway: Gateway) -> None:
    await _deploy(gateway, "img", Pixels(), _meta())
    path = "/v1/models/img:predict"
    tensors = await _predictions(gateway, path, json={"instances": [_tensor(A), _tensor(B)]})
    assert len(tensors) == 2

    as_b64 = {"instances": [{"b64": _b64(png(A))}, {"b64": _b64(png(B))}]}
    _close(await _predictions(gateway, path, json=as_b64), tensors)

    raw = await _predictions(gateway, path, content=png(A), headers={"Content-Type": "image/png"})
    _close(raw, tensors[:1])

    form = await _predictions(gateway, path, files={"image": ("digit.png", png(B), "image/png")})
    _close(form, tensors[1:])

    # Images and tensors in one request, named or not: each answers as it would alone.
    mixed = {"instances": [{"b64": _b64(png(A))}, _tensor(B), {"x": {"b64": _b64(png(B))}}]}
    answer = await _predictions(gateway, path, json=mixed)
    _close(answer, [tensors[0], tensors[1], tensors[1]])

    # A JPEG answers as the pixels it decodes to; a larger image as its resized pixels.
    photo = jpeg(noise(SIDE, SIDE, channels=1, seed=2))
    decoded = np.asarray(Image.open(io.BytesIO(photo)).convert("L"))
    expected = await _predictions(gateway, path, json={"instances": [_tensor(decoded)]})
    got = await _predictions(gateway, path, content=photo, headers={"Content-Type": "image/jpeg"})
    _close(got, expected)
    large = noise(4 * SIDE, 4 * SIDE, channels=1, seed=3)
    shrunk = np.asarray(
        Image.open(io.BytesIO(png(large))).resize((SIDE, SIDE), Image.Resampling.BILINEAR)
    )
    expected = await _predictions(gateway, path, json={"instances": [_tensor(shrunk)]})
    got = await _predictions(gateway, path, json={"instances": [{"b64": _b64(png(large))}]})
    _close(got, expected)


async def test_v2_bytes_tensors_of_images_answer_as_the_tensor(gateway: Gateway) -> None:
    await _deploy(gateway, "img", Pixels(), _meta())
    path = "/v2/models/img/infer"
    plain = {"inputs": [_fp32("x", [2, SIDE * SIDE], _tensor(A) + _tensor(B))]}
    expected = await _outputs(gateway, path, json=plain)

    for shape, data in (
        ([2], [_b64(png(A)), _b64(png(B))]),
        ([2, 1], [[_b64(png(A))], [_b64(png(B))]]),
    ):
        body = {"inputs": [{"name": "x", "shape": shape, "datatype": "BYTES", "data": data}]}
        _close(await _outputs(gateway, path, json=body), expected)

    # The binary tensor extension, byte for byte as tritonclient builds it.
    tensor = triton.InferInput("x", [2], "BYTES")
    tensor.set_data_from_numpy(np.array([png(A), png(B)], dtype=object), binary_data=True)
    body, json_size = triton.InferenceServerClient.generate_request_body([tensor])
    answer = await gateway.client.post(
        path,
        content=body,
        headers={"Inference-Header-Content-Length": str(json_size)},
    )
    assert answer.status_code == 200, answer.text
    header = int(answer.headers["inference-header-content-length"])
    result = triton.InferResult.from_response_body(answer.content, header_length=header)
    _close(result.as_numpy("y").reshape(-1), expected)


async def test_a_two_input_version_takes_a_named_image_beside_numbers(gateway: Gateway) -> None:
    await _deploy(gateway, "two", PixelsAndBias(), _two_input_meta())
    path = "/v1/models/two:predict"
    bias = [1.0, -2.0, 0.5]
    tensors = await _predictions(
        gateway,
        path,
        json={"instances": [{"x": np.reshape(_tensor(A), (1, 8, 8)).tolist(), "bias": bias}]},
    )
    named = {"instances": [{"x": {"b64": _b64(png(A))}, "bias": bias}]}
    _close(await _predictions(gateway, path, json=named), tensors)

    v2 = {
        "inputs": [
            {"name": "x", "shape": [1], "datatype": "BYTES", "data": [_b64(png(A))]},
            _fp32("bias", [1, CLASSES], bias),
        ]
    }
    _close(await _outputs(gateway, "/v2/models/two/infer", json=v2), tensors[0])

    for request in (
        {"json": {"instances": [{"b64": _b64(png(A))}]}},
        {"content": png(A), "headers": {"Content-Type": "image/png"}},
    ):
        refused = await gateway.client.post(path, **request)
        assert refused.status_code == 422, refused.text
        message = refused.json()["error"]["message"]
        assert "single-input version; this version takes inputs ['x', 'bias']" in message
        assert '{"x": {"b64": "..."}' in message


NATIVE_ERRORS: list[tuple[str, dict[str, Any], int, str]] = [
    (
        "bad base64",
        {"json": {"instances": [{"b64": "not base64!"}]}},
        422,
        'instance 0: "b64" is not valid base64',
    ),
    (
        "b64 not a string",
        {"json": {"instances": [{"b64": 12}]}},
        422,
        '"b64" must be a string',
    ),
    (
        "gif",
        {"json": {"instances": [_tensor(A), {"b64": "R0lGODlhAQABAAAAACw="}]}},
        422,
        "instance 1: only PNG and JPEG images are taken; got a GIF image",
    ),
    (
        "raw gif body",
        {"content": b"GIF89a", "headers": {"Content-Type": "image/gif"}},
        422,
        "only PNG and JPEG images are taken; the body is image/gif",
    ),
    (
        "truncated",
        {"content": png(noise(32, 32))[:300], "headers": {"Content-Type": "image/png"}},
        422,
        "the image could not be decoded",
    ),
    (
        "animated",
        {"json": {"instances": [{"b64": _b64(animated_png())}]}},
        422,
        "animated images are not taken",
    ),
    (
        "decompression bomb",
        {"content": huge_png(), "headers": {"Content-Type": "image/png"}},
        413,
        "10000x10000 pixels (100000000); an image may have at most 40000000 pixels",
    ),
    (
        "form without an image part",
        {"files": {"file": ("digit.png", png(A), "image/png")}},
        400,
        "unexpected form part 'file': send the image file as the one part named 'image'",
    ),
    (
        "form with two images",
        {"files": [("image", ("a.png", png(A))), ("image", ("b.png", png(B)))]},
        400,
        "two 'image' parts",
    ),
    (
        "form cut short",
        {
            "content": b"--XX\r\nContent-Disposition: form-data; name=image\r\n\r\n" + png(A),
            "headers": {"Content-Type": "multipart/form-data; boundary=XX"},
        },
        400,
        "ends before its closing boundary",
    ),
    (
        "form without a boundary",
        {"content": b"--XX\r\n", "headers": {"Content-Type": "multipart/form-data"}},
        400,
        "needs a boundary",
    ),
    (
        "an image file sent as octet-stream",
        {"content": png(A), "headers": {"Content-Type": "application/octet-stream"}},
        400,
        "a PNG image (image/png)",
    ),
]


@pytest.mark.parametrize(
    ("request_", "status", "says"),
    [case[1:] for case in NATIVE_ERRORS],
    ids=[case[0] for case in NATIVE_ERRORS],
)
async def test_bad_images_are_refused_saying_why(
    gateway: Gateway, request_: dict[str, Any], status: int, says: str
) -> None:
    await _deploy(gateway, "img", Pixels(), _meta())
    refused = await gateway.client.post("/v1/models/img:predict", **request_)
    assert refused.status_code == status, refused.text
    assert says in refused.json()["error"]["message"]


async def test_a_version_without_preprocess_says_it_takes_no_images(gateway: Gateway) -> None:
    await gateway.deploy("mlp", torchscript_bytes(tiny_mlp()), mlp_meta())
    path = "/v1/models/mlp:predict"
    for request in (
        {"json": {"instances": [{"b64": _b64(png(A))}]}},
        {"content": png(A), "headers": {"Content-Type": "image/png"}},
        {"files": {"image": ("digit.png", png(A), "image/png")}},
    ):
        refused = await gateway.client.post(path, **request)
        assert refused.status_code == 422, refused.text
        message = refused.json()["error"]["message"]
        assert "this version declares no image pre-processing for input 'x'" in message
        assert '"preprocess": {"x": {"image": {"mode": "L"' in message
    still = await gateway.client.post(path, json={"instances": [[0.1, 0.2, 0.3, 0.4]]})
    assert still.status_code == 200, still.text

    v2 = {"inputs": [{"name": "x", "shape": [1], "datatype": "BYTES", "data": [_b64(png(A))]}]}
    refused = await gateway.client.post("/v2/models/mlp/infer", json=v2)
    assert refused.status_code == 400, refused.text
    message = refused.json()["error"]
    assert "input 'x' takes float32 numbers; a BYTES tensor (encoded images)" in message
    assert "docs/images.md" in message


V2_ERRORS: list[tuple[str, dict[str, Any], int, str]] = [
    (
        "shape",
        {"shape": [1, 2], "datatype": "BYTES", "data": [_b64(png(A))] * 2},
        400,
        "its shape must be [N] or [N, 1], one image per instance, got [1, 2]",
    ),
    (
        "count",
        {"shape": [2], "datatype": "BYTES", "data": [_b64(png(A))]},
        400,
        "shape [2] needs 2 images, got 1",
    ),
    (
        "base64",
        {"shape": [1], "datatype": "BYTES", "data": ["%%%"]},
        400,
        "element 0 is not valid base64",
    ),
    (
        "not a string",
        {"shape": [1], "datatype": "BYTES", "data": [7]},
        400,
        "a string holding the file's base64",
    ),
    (
        "webp",
        {
            "shape": [1],
            "datatype": "BYTES",
            "data": [_b64(encode(Image.new("RGB", (8, 8)), "WEBP"))],
        },
        400,
        "input 'x' element 0: only PNG and JPEG images are taken; got a WebP image",
    ),
    (
        "bomb",
        {"shape": [1], "datatype": "BYTES", "data": [_b64(huge_png())]},
        413,
        "an image may have at most 40000000 pixels",
    ),
]


@pytest.mark.parametrize(
    ("tensor", "status", "says"),
    [case[1:] for case in V2_ERRORS],
    ids=[case[0] for case in V2_ERRORS],
)
async def test_bad_v2_image_tensors_are_refused_saying_why(
    gateway: Gateway, tensor: dict[str, Any], status: int, says: str
) -> None:
    await _deploy(gateway, "img", Pixels(), _meta())
    body = {"inputs": [{"name": "x", **tensor}]}
    refused = await gateway.client.post("/v2/models/img/infer", json=body)
    assert refused.status_code == status, refused.text
    assert says in refused.json()["error"]


async def test_a_binary_bytes_element_cut_short_is_400(gateway: Gateway) -> None:
    await _deploy(gateway, "img", Pixels(), _meta())
    header = (
        b'{"inputs":[{"name":"x","shape":[1],"datatype":"BYTES",'
        b'"parameters":{"binary_data_size":9}}]}'
    )
    body = header + (100).to_bytes(4, "little") + b"\x89PNG\r"
    refused = await gateway.client.post(
        "/v2/models/img/infer",
        content=body,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert refused.status_code == 400, refused.text
    assert "BYTES element 0 says 100 bytes, but only 5 are left" in refused.json()["error"]


async def test_the_image_caps_come_from_the_settings(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, max_image_bytes=4096, max_image_pixels=32 * 32)
    async with running_gateway(settings) as gateway:
        await _deploy(gateway, "img", Pixels(), _meta())
        heavy = png(noise(40, 40, channels=3))  # 4.8 KB of noise
        wide = png(np.zeros((40, 40), np.uint8))  # 1600 pixels in a few bytes
        assert len(heavy) > 4096 > len(wide)
        for data, says in (
            (heavy, "an image may be at most 4096 bytes (MAAS_MAX_IMAGE_BYTES)"),
            (wide, "an image may have at most 1024 pixels (MAAS_MAX_IMAGE_PIXELS)"),
        ):
            refused = await gateway.client.post(
                "/v1/models/img:predict", content=data, headers={"Content-Type": "image/png"}
            )
            assert refused.status_code == 413, refused.text
            assert says in refused.json()["error"]["message"]
            v2 = {
                "inputs": [{"name": "x", "shape": [1], "datatype": "BYTES", "data": [_b64(data)]}]
            }
            refused = await gateway.client.post("/v2/models/img/infer", json=v2)
            assert refused.status_code == 413, refused.text
            assert says in refused.json()["error"]
        fits = png(np.zeros((32, 32), np.uint8))
        answer = await gateway.client.post(
            "/v1/models/img:predict", content=fits, headers={"Content-Type": "image/png"}
        )
        assert answer.status_code == 200, answer.text


def _close(got: Any, expected: Any) -> None:
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-5, atol=1e-4)


def _fp32(name: str, shape: list[int], data: list[float]) -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": "FP32", "data": data}


async def _outputs(gateway: Gateway, path: str, **request: Any) -> list[float]:
    answer: httpx.Response = await gateway.client.post(path, **request)
    assert answer.status_code == 200, answer.text
    (output,) = answer.json()["outputs"]
    values: list[float] = output["data"]
    return values
