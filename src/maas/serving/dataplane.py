"""The transport-free inference path: ref → ready version → arrays → backend → arrays.

It speaks arrays only: a request arrives as groups (an array per declared input, stacked
along the instance axis; the codecs of `maas.api` build them) and leaves as an array per
declared output for each group. Nothing here knows about HTTP, JSON or a protocol.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np

from maas.control.routing import Router
from maas.dispatch.backend import InferenceBackend
from maas.errors import DeadlineExceeded, InvalidInput, PayloadTooLarge
from maas.registry.records import VersionRecord
from maas.serving.codec import Group
from maas.types import ModelRef, Timing, VersionKey


class DataPlane:
    def __init__(
        self,
        router: Router,
        backend: InferenceBackend,
        *,
        max_instances: int = 10_000,
        max_instance_elements: int = 4 * 1024 * 1024,
    ) -> None:
        self._router = router
        self._backend = backend
        self._max_instances = max_instances  # MAAS_MAX_INSTANCES
        self._max_elements = max_instance_elements  # MAAS_MAX_INSTANCE_ELEMENTS

    async def resolve(self, ref: ModelRef, *, routing_key: str | None = None) -> VersionRecord:
        """The ready version a request runs on. A ref resolves once, at admission: the request
        finishes on that version even if its alias moves meanwhile."""
        return await self._router.resolve(ref, routing_key=routing_key)

    def shadow_of(self, ref: ModelRef, resolved: VersionRecord) -> VersionRecord | None:
        """The version a request resolved to `resolved` is also mirrored to, if any
        (`Router.shadow_of`: drawn per request, never waits)."""
        return self._router.shadow_of(ref, resolved)

    async def infer(
        self,
        version: VersionRecord,
        groups: Sequence[Group],
        *,
        timeout_s: float,
        timing: Timing | None = None,
    ) -> list[Group]:
        """Run every group on `version`; a group larger than the version's max batch size is
        cut into pieces that run (and may be batched with other requests) on their own.
        `timing` gets the instants of the piece that finished last."""
        max_batch = version.batch.max_batch_size
        max_queue = version.batch.max_queue
        count = 0
        for group in groups:  # one pass: the instances, and the numbers in one of each group
            rows = len(group[0]) if group else 0
            count += rows
            elements = sum(a.size for a in group) // rows if rows else 0
            if elements > self._max_elements:
                raise PayloadTooLarge(
                    f"an instance of the request holds {elements} numbers; at most "
                    f"{self._max_elements} per instance (MAAS_MAX_INSTANCE_ELEMENTS)"
                )
        if count > self._max_instances:
            raise PayloadTooLarge(
                f"the request holds {count} instances; at most {self._max_instances} per "
                "request (MAAS_MAX_INSTANCES): send them in several requests"
            )
        if count > max_queue:  # its pieces would never all be queued: waiting would not help
            raise InvalidInput(
                f"the request holds {count} instances; {version.key} queues at most "
                f"{max_queue} (its batching.max_queue): send them in smaller requests"
            )
        pieces = [_cut(group, max_batch) for group in groups]
        try:
            if self._backend.enforces_deadlines:
                results = await _run(self._backend, version.key, pieces, timeout_s, timing)
            else:
                async with asyncio.timeout(timeout_s):
                    results = await _run(self._backend, version.key, pieces, timeout_s, timing)
        except TimeoutError:
            raise DeadlineExceeded(
                f"deadline of {timeout_s * 1000:.0f} ms passed before inference finished"
            ) from None
        return results


def _cut(group: Group, max_batch: int) -> list[Group]:
    count = len(group[0])
    if count <= max_batch:
        return [group]
    return [[a[start : start + max_batch] for a in group] for start in range(0, count, max_batch)]


async def _run(
    backend: InferenceBackend,
    key: VersionKey,
    pieces: list[list[Group]],
    timeout_s: float,
    timing: Timing | None,
) -> list[Group]:
    if len(pieces) == 1 and len(pieces[0]) == 1:  # the common case: no task, no concatenation
        return [await backend.infer(key, pieces[0][0], timeout_s=timeout_s, timing=timing)]
    flat = [piece for group in pieces for piece in group]
    timings = [Timing() for _ in flat] if timing is not None else [None] * len(flat)
    answers = await asyncio.gather(
        *(
            backend.infer(key, piece, timeout_s=timeout_s, timing=own)
            for piece, own in zip(flat, timings, strict=True)
        )
    )
    if timing is not None:
        for own in timings:
            if own is not None:
                timing.keep_later(own)
    results: list[Group] = []
    start = 0
    for group in pieces:
        parts = answers[start : start + len(group)]
        start += len(group)
        if len(parts) == 1:
            results.append(parts[0])
        else:
            results.append([np.concatenate(columns) for columns in zip(*parts, strict=True)])
    return results
