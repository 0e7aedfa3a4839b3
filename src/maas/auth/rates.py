"""Per-key request rates, shared by the gateway processes of one host.

A key with a rate (`rate_limit_per_s`, else `MAAS_KEY_RATE_LIMIT_PER_S` when set) has a token
bucket that holds up to one second's worth of requests (at least one) and refills at that
rate; a request takes a token or is answered 429 with the seconds until the next token as
Retry-After. The gateways of one `maas serve` keep the buckets in one small file they all
map (`RATES_FILE` in the run directory), locked for the microseconds of each update, so a
client gets its rate from the host whichever process its connections land on. A gateway alone keeps
them in memory. Across hosts each host counts apart: N gateway hosts admit up to N times the
rate.

A bucket lives in one of `SLOTS` fixed places, found from the key's id by a few probes; when
all of them hold other keys the oldest is taken over (its key starts again with a full
bucket): with fewer than a few thousand rate-limited keys in use at once that never happens.
"""

from __future__ import annotations

import fcntl
import math
import mmap
import os
import struct
import threading
import time
from pathlib import Path

from maas.errors import RateLimited

RATES_FILE = "key-rates.bin"
SLOTS = 4096
_PROBES = 4
_SLOT = struct.Struct("<qdd")  # key id (0: free), tokens, last refill (monotonic seconds)
_SIZE = SLOTS * _SLOT.size


class KeyRates:
    """Token buckets by key id, in a file shared across processes or in this process's memory."""

    def __init__(self, folder: Path | None = None) -> None:
        self._fd: int | None = None
        self._local = threading.Lock()
        if folder is None:
            self._memory: mmap.mmap | bytearray = bytearray(_SIZE)
            return
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / RATES_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        if os.fstat(fd).st_size < _SIZE:
            os.ftruncate(fd, _SIZE)  # zeros: every slot free
        self._fd = fd
        self._memory = mmap.mmap(fd, _SIZE)

    def take(self, key_id: int, rate_per_s: float, key_name: str) -> None:
        """Take one request from the key's bucket; RateLimited (429) when it is empty."""
        now = time.monotonic()
        burst = max(1.0, rate_per_s)
        with self._locked(key_id) as slot:
            owner, tokens, stamp = _SLOT.unpack_from(self._memory, slot * _SLOT.size)
            if owner != key_id:
                tokens, stamp = burst, now
            tokens = min(burst, tokens + max(0.0, now - stamp) * rate_per_s)
            if tokens >= 1.0:
                _SLOT.pack_into(self._memory, slot * _SLOT.size, key_id, tokens - 1.0, now)
                return
            _SLOT.pack_into(self._memory, slot * _SLOT.size, key_id, tokens, now)
        wait = (1.0 - tokens) / rate_per_s
        raise RateLimited(
            f"key '{key_name}' is limited to {rate_per_s:g} requests per second; "
            f"retry in {wait:.2f} s",
            retry_after=max(1, math.ceil(wait)),
        )

    def _slot(self, key_id: int) -> int:
        """Where the key's bucket is: its own place, a free one, or the stalest of the probes."""
        candidates = [(key_id * 2654435761 + probe) % SLOTS for probe in range(_PROBES)]
        oldest, oldest_stamp = candidates[0], math.inf
        for slot in candidates:
            owner, _, stamp = _SLOT.unpack_from(self._memory, slot * _SLOT.size)
            if owner in (key_id, 0):
                return slot
            if stamp < oldest_stamp:
                oldest, oldest_stamp = slot, stamp
        return oldest

    def _locked(self, key_id: int) -> _SlotLock:
        return _SlotLock(self, key_id)

    def close(self) -> None:
        if isinstance(self._memory, mmap.mmap):
            self._memory.close()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class _SlotLock:
    """The probes of one key locked (all of them: the slot chosen depends on the others), in
    this process and, with a shared file, against the other gateway processes."""

    def __init__(self, rates: KeyRates, key_id: int) -> None:
        self._rates = rates
        self._key_id = key_id

    def __enter__(self) -> int:
        self._rates._local.acquire()
        if self._rates._fd is not None:
            fcntl.lockf(self._rates._fd, fcntl.LOCK_EX)
        return self._rates._slot(self._key_id)

    def __exit__(self, *exc: object) -> None:
        if self._rates._fd is not None:
            fcntl.lockf(self._rates._fd, fcntl.LOCK_UN)
        self._rates._local.release()
