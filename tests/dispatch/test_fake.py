"""The fake backend (`maas.dispatch.fake`) keeps the promises the layers above rely on."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from maas.dispatch.fake import WORKER, FakeBackend, FakeCall, fake_archive
from maas.errors import InvalidArtifact, ModelLoadError, Unavailable
from maas.store.archive import check_archive
from maas.types import ArtifactFormat, LoadSpec, TensorSpec, VersionKey

KEY = VersionKey("m", 1)
SPEC = LoadSpec(
    key=KEY,
    path="/nowhere",
    sha256="0" * 64,
    format=ArtifactFormat.TORCHSCRIPT,
    inputs=(TensorSpec("x", "float32", (2,)),),
    outputs=(TensorSpec("y", "float32", (2,)),),
)


def _double(call: FakeCall) -> list[Any]:
    return [call.inputs[0] * 2]


# The torch formats: an ONNX upload is held to its graph (maas.store.onnx_graph), which a fake
# cannot have without the onnx package.
@pytest.mark.parametrize("fmt", [ArtifactFormat.TORCHSCRIPT, ArtifactFormat.TORCH_EXPORT])
def test_the_archive_passes_the_upload_check_for_its_format_only(
    tmp_path: Path, fmt: ArtifactFormat
) -> None:
    path = tmp_path / "a.zip"
    path.write_bytes(fake_archive(fmt.value))
    check_archive(path, fmt)
    other = next(f for f in ArtifactFormat if f is not fmt)
    with pytest.raises(InvalidArtifact):
        check_archive(path, other)


def test_the_archive_bytes_depend_on_the_tag_alone() -> None:
    assert fake_archive(tag="a") == fake_archive(tag="a") != fake_archive(tag="b")


async def test_a_loaded_version_answers_with_the_handler_and_the_call_is_kept() -> None:
    backend = FakeBackend(_double)
    with pytest.raises(Unavailable):
        await backend.infer(KEY, [np.ones((1, 2), np.float32)])
    await backend.load_on(WORKER, SPEC)
    assert backend.is_loaded(KEY)
    assert backend.workers()[0].versions == {"m@1"}
    (out,) = await backend.infer(KEY, [np.ones((3, 2), np.float32)], timeout_s=1.5)
    assert out.tolist() == [[2.0, 2.0]] * 3
    (call,) = backend.calls
    assert (call.key, call.spec, call.timeout_s) == (KEY, SPEC, 1.5)
    await backend.unload_on(WORKER, KEY)
    assert not backend.is_loaded(KEY)
    assert backend.describe()[0]["versions"] == []


async def test_an_async_handler_is_awaited() -> None:
    async def later(call: FakeCall) -> list[Any]:
        await asyncio.sleep(0)
        return _double(call)

    backend = FakeBackend(later)
    await backend.load_on(WORKER, SPEC)
    (out,) = await backend.infer(KEY, [np.ones((1, 2), np.float32)])
    assert out.tolist() == [[2.0, 2.0]]


async def test_on_load_fails_loads_and_trials_and_other_workers_do_not_exist() -> None:
    def refuse(spec: LoadSpec) -> None:
        raise ModelLoadError(f"{spec.key} does not load")

    backend = FakeBackend(_double, on_load=refuse)
    with pytest.raises(ModelLoadError, match="m@1 does not load"):
        await backend.check(SPEC)
    with pytest.raises(ModelLoadError):
        await backend.load_on(WORKER, SPEC)
    assert not backend.is_loaded(KEY)
    with pytest.raises(Unavailable, match="no worker named w9"):
        await FakeBackend(_double).load_on("w9", SPEC)
