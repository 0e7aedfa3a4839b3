"""The transport-free inference path: ref → ready version → validated batches → backend.

REST routes (native today, Open Inference Protocol later) parse HTTP, `resolve` the ref, then
`predict` on the version it resolved to; nothing here knows about HTTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from maas.errors import DeadlineExceeded
from maas.registry.records import VersionRecord
from maas.routing import Router
from maas.signature import InstanceGroup, group_instances, scatter_outputs
from maas.types import InferenceBackend, ModelRef, VersionKey


@dataclass(frozen=True, slots=True)
class Prediction:
    model: str
    version: int
    predictions: list[Any]


class DataPlane:
    def __init__(self, router: Router, backend: InferenceBackend) -> None:
        self._router = router
        self._backend = backend

    async def resolve(self, ref: ModelRef, *, routing_key: str | None = None) -> VersionRecord:
        """The ready version a request runs on. A ref resolves once, at admission: the request
        finishes on that version even if its alias moves meanwhile."""
        return await self._router.resolve(ref, routing_key=routing_key)

    async def predict(
        self, version: VersionRecord, instances: Sequence[Any], *, timeout_s: float
    ) -> Prediction:
        groups = _split(
            group_instances(instances, version.inputs),
            int(version.batching.get("max_batch_size", 32)),
        )
        try:
            if self._backend.enforces_deadlines:
                results = await _gather_groups(self._backend, version.key, groups, timeout_s)
            else:
                async with asyncio.timeout(timeout_s):
                    results = await _gather_groups(self._backend, version.key, groups, timeout_s)
        except TimeoutError:
            raise DeadlineExceeded(
                f"deadline of {timeout_s * 1000:.0f} ms passed before inference finished"
            ) from None
        predictions = scatter_outputs(groups, results, version.outputs, len(instances))
        return Prediction(model=version.model, version=version.version, predictions=predictions)


async def _gather_groups(
    backend: InferenceBackend, key: VersionKey, groups: list[InstanceGroup], timeout_s: float
) -> list[list[Any]]:
    if len(groups) == 1:  # the common case: no task per group
        return [await backend.infer(key, groups[0].arrays, timeout_s=timeout_s)]
    return list(
        await asyncio.gather(
            *(backend.infer(key, group.arrays, timeout_s=timeout_s) for group in groups)
        )
    )


def _split(groups: list[InstanceGroup], max_batch: int) -> list[InstanceGroup]:
    """Cut groups larger than the version's max batch size; results are reassembled in order."""
    out: list[InstanceGroup] = []
    for group in groups:
        for start in range(0, len(group.positions), max_batch):
            out.append(
                InstanceGroup(
                    positions=group.positions[start : start + max_batch],
                    arrays=[a[start : start + max_batch] for a in group.arrays],
                )
            )
    return out
