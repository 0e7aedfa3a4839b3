"""Registry records built in memory, for tests of the codecs and routing on their own."""

from __future__ import annotations

from datetime import UTC, datetime

from maas.registry.records import VersionRecord
from maas.types import ArtifactFormat, TensorSpec, VersionStatus


def version_record(
    *inputs: TensorSpec, outputs: tuple[TensorSpec, ...] | None = None
) -> VersionRecord:
    """m@3, ready, with these inputs (and outputs: y float32 [3], z int64 [1] by default)."""
    now = datetime.now(UTC)
    return VersionRecord(
        model="m",
        version=3,
        status=VersionStatus.READY,
        format=ArtifactFormat.TORCHSCRIPT,
        sha256="0" * 64,
        size=1,
        inputs=inputs,
        outputs=outputs or (TensorSpec("y", "float32", (3,)), TensorSpec("z", "int64", (1,))),
        batching={},
        device="cpu",
        replicas=None,
        metrics={},
        tags={},
        golden=(),
        description="",
        load_error=None,
        created_at=now,
        updated_at=now,
        loaded_at=now,
    )
