"""CPU time and RSS of a process tree, from /proc (Linux only).

`snapshot(root)` reads utime+stime and VmRSS of `root` and all its descendants (found through
the ppid field of every /proc/<pid>/stat); `usage(before, after, seconds)` turns two snapshots
into cores used and RSS per process, each labelled with its role.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_TICKS = os.sysconf("SC_CLK_TCK")
_PROC = Path("/proc")


@dataclass(frozen=True)
class Sample:
    pid: int
    ppid: int
    cpu_s: float
    rss_mb: float
    cmdline: str


def _read_stat(pid: int) -> tuple[int, float] | None:
    """(ppid, utime+stime in seconds), or None if the process is gone."""
    try:
        raw = (_PROC / str(pid) / "stat").read_bytes()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = raw[raw.rfind(b")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICKS


def _rss_mb(pid: int) -> float:
    try:
        for line in (_PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _cmdline(pid: int) -> str:
    try:
        raw = (_PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy (all cores, not idle or iowait) since boot."""
    fields = (_PROC / "stat").read_text().split("\n", 1)[0].split()[1:]
    ticks = [int(f) for f in fields[:8]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / _TICKS


def descendants(root: int) -> list[int]:
    """`root` and every process below it, root first."""
    children: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        stat = _read_stat(int(entry.name))
        if stat is not None:
            children.setdefault(stat[0], []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop(0)
        tree.append(pid)
        todo.extend(sorted(children.get(pid, [])))
    return tree


def snapshot(root: int, *, tree: bool = True) -> dict[int, Sample]:
    """One sample per live process of the tree under `root` (only `root` if `tree` is false)."""
    samples: dict[int, Sample] = {}
    for pid in descendants(root) if tree else [root]:
        stat = _read_stat(pid)
        if stat is not None:
            samples[pid] = Sample(pid, stat[0], stat[1], _rss_mb(pid), _cmdline(pid))
    return samples


def role(sample: Sample, root: int) -> str:
    """worker (its cmdline says so), main (the process we started), helper or gateway."""
    cmd = sample.cmdline
    if "maas worker" in cmd or "maas.worker" in cmd:
        return "worker"
    if sample.pid == root:
        return "main"
    if "resource_tracker" in cmd or "semaphore_tracker" in cmd:
        return "helper"
    return "gateway"


def usage(
    before: dict[int, Sample], after: dict[int, Sample], seconds: float, root: int
) -> list[dict[str, Any]]:
    """Cores used over `seconds` and RSS at the end, per process alive at the end.

    A process born during the period counts all of its CPU time (it had none before).
    """
    rows = []
    for pid, end in after.items():
        start = before.get(pid)
        cpu = end.cpu_s - (start.cpu_s if start is not None else 0.0)
        rows.append(
            {
                "pid": pid,
                "role": role(end, root),
                "cores": round(cpu / seconds, 3) if seconds > 0 else 0.0,
                "rss_mb": round(end.rss_mb, 1),
                "cmdline": end.cmdline[:120],
            }
        )
    return rows
