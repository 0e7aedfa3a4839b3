"""Which workers each serving version belongs on. Pure: the leader's reconciler applies it.

Every healthy worker, unless a version's `replicas` asks for fewer; then the workers that hold it
already (so a placement stays where it is), topped up with the least-loaded others, counting
what this same plan has put on them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from maas.types import WorkerState


def plan(
    versions: Sequence[tuple[str, int | None]], workers: Sequence[WorkerState]
) -> dict[str, list[str]]:
    """`versions` as (key, replicas) pairs; the worker names each key should be loaded on."""
    healthy = sorted((w for w in workers if w.healthy), key=lambda w: w.name)
    load = Counter({w.name: len(w.versions) for w in healthy})
    out: dict[str, list[str]] = {}
    for key, replicas in versions:
        if replicas is None or replicas >= len(healthy):
            out[key] = [w.name for w in healthy]
            continue
        holders = [w.name for w in healthy if key in w.versions]
        others = sorted(
            (w.name for w in healthy if key not in w.versions), key=lambda n: (load[n], n)
        )
        chosen = (holders + others)[:replicas]
        for name in chosen:
            if name not in holders:
                load[name] += 1
        out[key] = chosen
    return out
