"""Which workers each serving version belongs on. Pure: the leader's reconciler applies it.

Every healthy worker, unless a version's `replicas` asks for fewer; then the workers that hold it
already (so a placement stays where it is), topped up with the least-loaded others, counting
what this same plan has put on them. Devices: a version that asks for `cuda` goes only on CUDA
workers when there are any (else where it fails to load, with the reason); `auto` takes CUDA
workers first, `cpu` CPU workers first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from maas.types import WorkerState


def plan(
    versions: Sequence[tuple[str, int | None]],
    workers: Sequence[WorkerState],
    devices: Mapping[str, str] | None = None,
) -> dict[str, list[str]]:
    """`versions` as (key, replicas) pairs, `devices` the device each key asks for (default
    `auto`); the worker names each key should be loaded on."""
    healthy = sorted((w for w in workers if w.healthy), key=lambda w: w.name)
    load = Counter({w.name: len(w.versions) for w in healthy})
    out: dict[str, list[str]] = {}
    for key, replicas in versions:
        wants = (devices or {}).get(key, "auto")
        eligible = _eligible(healthy, wants)
        if replicas is None or replicas >= len(eligible):
            out[key] = [w.name for w in eligible]
            continue
        holders = [w.name for w in eligible if key in w.versions]
        others = sorted(
            (w for w in eligible if key not in w.versions),
            key=lambda w: (_preference(w, wants), load[w.name], w.name),
        )
        chosen = (holders + [w.name for w in others])[:replicas]
        for name in chosen:
            if name not in holders:
                load[name] += 1
        out[key] = chosen
    return out


def _is_cuda(worker: WorkerState) -> bool:
    return worker.device.startswith("cuda")


def _eligible(healthy: list[WorkerState], wants: str) -> list[WorkerState]:
    if wants.startswith("cuda"):
        cuda = [w for w in healthy if _is_cuda(w)]
        return cuda or healthy  # none at all: the load says CUDA is not available
    return healthy


def _preference(worker: WorkerState, wants: str) -> int:
    """0 for the workers this device choice takes first."""
    if wants == "cpu":
        return int(_is_cuda(worker))
    return int(not _is_cuda(worker))
