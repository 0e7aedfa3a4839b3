"""What a load says: the exception that caused a failure (`Type: message`, with torch's own
complaints), and log lines that name the real version (an upload's trial load has none)."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest

from maas.errors import ModelLoadError
from maas.types import ArtifactFormat, LoadSpec, TensorSpec, VersionKey
from maas.worker.diagnosis import described
from maas.worker.runtime import load_model
from support.inprocess_gateway import ADMIN, Gateway
from support.model_files import export_bytes, mlp_meta, tiny_mlp, torchscript_bytes


def _spec(tmp_path: Path, artifact: bytes, fmt: ArtifactFormat) -> LoadSpec:
    path = tmp_path / "model.bin"
    path.write_bytes(artifact)
    return LoadSpec(
        key=VersionKey("mlp", 1),
        path=str(path),
        sha256=hashlib.sha256(artifact).hexdigest(),
        format=fmt,
        inputs=(TensorSpec("x", "float32", (4,)),),
        outputs=(TensorSpec("y", "float32", (3,)),),
        device="cpu",
    )


@pytest.mark.parametrize(
    ("artifact", "fmt", "says"),
    [
        (b"not a zip file at all", ArtifactFormat.TORCHSCRIPT, "failed reading zip archive"),
        (export_bytes(tiny_mlp()), ArtifactFormat.TORCHSCRIPT, "constants.pkl"),
        (torchscript_bytes(tiny_mlp()), ArtifactFormat.TORCH_EXPORT, "archive_format"),
    ],
    ids=["garbage", "export_as_script", "script_as_export"],
)
def test_a_load_error_names_the_exception_type_and_its_message(
    tmp_path: Path, artifact: bytes, fmt: ArtifactFormat, says: str
) -> None:
    with pytest.raises(ModelLoadError) as failed:
        load_model(_spec(tmp_path, artifact, fmt))
    message = failed.value.message
    assert message.startswith(f"cannot load the {fmt.value} artifact: RuntimeError: "), message
    assert says in message


def _rebuild() -> None:
    try:
        {}["graph"]
    except KeyError as inner:
        raise ValueError("could not rebuild the program") from inner


def test_the_root_of_a_chain_is_named_first() -> None:
    with pytest.raises(ValueError, match="could not rebuild") as outer:
        _rebuild()
    assert described(outer.value) == (
        "KeyError: 'graph' (raised as ValueError: could not rebuild the program)"
    )
    assert described(RuntimeError("plain")) == "RuntimeError: plain"


async def test_the_trial_load_of_an_upload_and_the_real_load_log_what_they_are(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="maas.worker.runtime")
    await gateway.create_model("resnet18")
    uploaded = await gateway.client.post(
        "/admin/models/resnet18/versions?wait=true",
        files={"file": ("m.pt", torchscript_bytes(tiny_mlp()), "application/octet-stream")},
        data={"meta": json.dumps(mlp_meta())},
        headers=ADMIN,
    )
    assert uploaded.status_code == 201, uploaded.text
    lines = [r.getMessage() for r in caplog.records if r.name == "maas.worker.runtime"]
    assert len(lines) == 2, lines
    trial, real = lines
    assert trial.startswith(
        "checked the upload of resnet18 (load, warm-up, golden checks) on cpu in "
    ), trial
    assert trial.endswith(" s")
    assert real.startswith("loaded resnet18@1 on cpu in "), real
    assert not [line for line in lines if "@0" in line]
