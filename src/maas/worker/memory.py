"""How much memory a worker's device has and how much of it is free: what placement weighs
before it puts a version on the worker, and what `GET /admin/workers` shows.

A CUDA worker reports its GPU (torch's `mem_get_info`, once torch is imported: before the first
load it reports nothing); a CPU worker the host's memory (`MemAvailable` in /proc/meminfo), which
the CPU workers of one host share. Read at most once a second: heartbeats ask often.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

_EVERY_S = 1.0
_MEMINFO = Path("/proc/meminfo")


class DeviceMemory:
    """(total, free) bytes of one device; (0, 0) where it cannot be known."""

    def __init__(self, device: str) -> None:
        self._device = device
        self._read_at = -_EVERY_S
        self._last = (0, 0)

    def read(self) -> tuple[int, int]:
        now = time.monotonic()
        if now - self._read_at >= _EVERY_S:
            self._read_at = now
            try:
                self._last = self._measure()
            except (OSError, ValueError, RuntimeError):
                self._last = (0, 0)
        return self._last

    def _measure(self) -> tuple[int, int]:
        if self._device.startswith("cuda"):
            torch = sys.modules.get("torch")
            if torch is None or not torch.cuda.is_available():
                return 0, 0
            free, total = torch.cuda.mem_get_info(torch.device(self._device))
            return int(total), int(free)
        return host_memory()


def host_memory() -> tuple[int, int]:
    """(MemTotal, MemAvailable) in bytes; where there is no /proc/meminfo, the total from
    sysconf and no free figure."""
    try:
        fields = dict(line.split(":", 1) for line in _MEMINFO.read_text().splitlines())
    except OSError:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return total, 0
    total_kb = int(fields["MemTotal"].split()[0])
    free_kb = int(fields.get("MemAvailable", fields.get("MemFree", "0 kB")).split()[0])
    return total_kb * 1024, free_kb * 1024
