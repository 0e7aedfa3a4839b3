"""`optimize_version` in a real gateway's services: a parent sealed at rest (MAAS_ARTIFACT_KEY)
read back and its int8 twin stored sealed; labels named by the postprocess; and a child that
runs past its time, stopped with nothing registered and no scratch left behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from maas.control.optimizing import Holdout, optimize_version
from maas.errors import DeadlineExceeded
from maas.store.sealing import ArtifactKey, is_sealed
from maas.types import VersionKey, VersionStatus
from support.inprocess_gateway import Gateway, make_settings, running_gateway
from support.model_files import expected, mlp_meta, onnx_bytes, tiny_mlp

ROWS = [[1.0, 2.0, 3.0, 4.0], [-1.0, 0.5, 2.0, -3.0], [0.1, -0.2, 0.3, 0.4], [2.0, 0.0, 0.0, 1.0]]
LABELS = ["cat", "dog", "owl"]


async def _optimize(gateway: Gateway, key: VersionKey, **extra: Any) -> Any:
    services = gateway.services
    return await optimize_version(
        registry=services.registry,
        store=services.store,
        deployer=services.deployer,
        plane=services.plane,
        key=key,
        actor="test",
        threads=1,
        max_bytes=services.settings.max_artifact_bytes,
        **extra,
    )


async def test_a_sealed_parent_gives_a_sealed_twin_measured_with_named_labels(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path, artifact_key=ArtifactKey.generate())
    module = tiny_mlp()
    post = {"output": "y", "labels": LABELS}
    async with running_gateway(settings) as gateway:
        await gateway.deploy("mlp", onnx_bytes(module), mlp_meta("onnx", postprocess=post))
        named = [LABELS[row.index(max(row))] for row in expected(module, ROWS)]
        record = await _optimize(
            gateway,
            VersionKey("mlp", 1),
            holdout=Holdout(instances=ROWS, labels=named),
            wait=True,
        )
        assert record.status is VersionStatus.READY, record.load_error
        assert record.postprocess is not None
        assert record.postprocess.labels == tuple(LABELS)
        assert record.metrics["parent_accuracy"] == 1.0
        assert 0 <= record.metrics["accuracy"] <= 1
        stored = Path(gateway.services.store.location(record.sha256))
        assert is_sealed(stored)
        assert record.size == record.metrics["size_bytes"]


async def test_a_child_past_its_time_is_stopped_and_leaves_nothing(tmp_path: Path) -> None:
    async with running_gateway(make_settings(tmp_path)) as gateway:
        await gateway.deploy("mlp", onnx_bytes(tiny_mlp()), mlp_meta("onnx"))
        with pytest.raises(DeadlineExceeded, match="did not finish within"):
            await _optimize(
                gateway, VersionKey("mlp", 1), holdout=Holdout(instances=ROWS), timeout_s=0.01
            )
        model = await gateway.services.registry.get_model("mlp")
        assert [v.version for v in model.versions] == [1]
        scratch = gateway.services.store.tmp_dir
        assert list(scratch.iterdir()) == []
