"""After a crash, make the artifact store and the registry agree again, and say what it took.

An upload is written to the store's `tmp/`, moved into place, then registered, in that
order; a process killed between two steps leaves an upload's temporary file, or a stored
file no version names. A store that lost files (a restored backup, a disk replaced) leaves
versions without theirs. `maas serve` sweeps before its gateways start:

- temporaries of uploads that never finished are deleted;
- stored artifacts that no version (of any status) names are deleted;
- versions that should load (registered, loading, ready) but whose file is gone are marked
  `failed`, with why: upload the artifact again.

Only files older than `min_age_s` are taken, so an upload another host is finishing on a
shared store keeps its file between its two last steps. The same holds for a directory and for
object storage (`maas.store.s3`): temporaries are each gateway's own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from maas.registry.service import Registry
from maas.store.base import ArtifactStore
from maas.types import VersionStatus

log = logging.getLogger(__name__)

MISSING = "its artifact is missing from the store (lost in a crash or a restore); upload it again"
_SHOULD_LOAD = (VersionStatus.REGISTERED, VersionStatus.LOADING, VersionStatus.READY)


@dataclass
class SweepReport:
    temporaries: int = 0
    orphans: list[str] = field(default_factory=list)  # sha256 of each artifact deleted
    missing: list[str] = field(default_factory=list)  # versions marked failed ("m@3")

    def __str__(self) -> str:
        return (
            f"swept {self.temporaries} unfinished upload(s) and {len(self.orphans)} artifact(s) "
            f"no version names; {len(self.missing)} version(s) without their artifact marked "
            f"failed{': ' + ', '.join(self.missing) if self.missing else ''}"
        )

    @property
    def cleaned(self) -> bool:
        return bool(self.temporaries or self.orphans or self.missing)


async def sweep(registry: Registry, store: ArtifactStore, *, min_age_s: float) -> SweepReport:
    report = SweepReport()
    await asyncio.to_thread(store.prepare)
    cutoff = time.time() - min_age_s
    versions = await registry.all_versions()
    named = {v.sha256 for v in versions}

    def clean_files() -> None:
        for path in store.temporaries():
            if _older(path, cutoff):
                path.unlink(missing_ok=True)
                report.temporaries += 1
        for digest in store.digests(older_than=cutoff):
            if digest not in named:
                store.delete(digest)
                report.orphans.append(digest)

    await asyncio.to_thread(clean_files)
    stored = set(await asyncio.to_thread(store.digests))
    for version in versions:
        if version.status in _SHOULD_LOAD and version.sha256 not in stored:
            await registry.set_status(version.key, VersionStatus.FAILED, load_error=MISSING)
            report.missing.append(str(version.key))
    if report.cleaned:
        log.warning("%s", report)
    return report


def _older(path: Path, cutoff: float) -> bool:
    try:
        return path.stat().st_mtime <= cutoff
    except FileNotFoundError:
        return False
