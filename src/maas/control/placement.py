"""Which workers each serving version belongs on. Pure: the leader's reconciler applies it.

Every healthy worker, unless a version's `replicas` asks for fewer; then the workers that hold it
already (so a placement stays where it is), topped up with the least-loaded others, counting
what this same plan has put on them. Devices: a version that asks for `cuda` goes only on CUDA
workers when there are any (else where it fails to load, with the reason); `auto` takes CUDA
workers first, `cpu` CPU workers first. Memory: a worker that reports its free memory takes a
version only if twice the artifact's size fits in what is left (counting what this plan has
already put there; loading briefly holds the file and the weights); where no worker has the
room, the version goes where it would have gone, and its load says why it failed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from maas.types import WorkerState

LOAD_HEADROOM = 2  # memory a load needs, in artifact sizes


def plan(
    versions: Sequence[tuple[str, int | None]],
    workers: Sequence[WorkerState],
    devices: Mapping[str, str] | None = None,
    sizes: Mapping[str, int] | None = None,
) -> dict[str, list[str]]:
    """`versions` as (key, replicas) pairs, `devices` the device each key asks for (default
    `auto`), `sizes` each key's artifact bytes; the worker names each key should be loaded on."""
    healthy = sorted((w for w in workers if w.healthy), key=lambda w: w.name)
    load = Counter({w.name: len(w.versions) for w in healthy})
    # Free bytes left on each worker as this plan fills it; None where the worker did not say.
    room: dict[str, int | None] = {w.name: w.memory_free or None for w in healthy}
    out: dict[str, list[str]] = {}
    for key, replicas in versions:
        wants = (devices or {}).get(key, "auto")
        need = LOAD_HEADROOM * (sizes or {}).get(key, 0)
        eligible = _eligible(healthy, wants)
        eligible = [w for w in eligible if key in w.versions or _fits(room[w.name], need)] or (
            eligible
        )
        holders = [w.name for w in eligible if key in w.versions]
        if replicas is None or replicas >= len(eligible):
            chosen = [w.name for w in eligible]
        else:
            others = sorted(
                (w for w in eligible if key not in w.versions),
                key=lambda w: (_preference(w, wants), load[w.name], w.name),
            )
            chosen = (holders + [w.name for w in others])[:replicas]
        for name in chosen:
            if name not in holders:
                load[name] += 1
                left = room[name]
                room[name] = None if left is None else left - need
        out[key] = chosen
    return out


def _fits(room: int | None, need: int) -> bool:
    return room is None or room >= need


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
