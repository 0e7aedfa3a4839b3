"""The micro-batcher of one version, inside the worker where every gateway's requests meet.

It is plain bookkeeping with an explicit clock, driven by the worker's loop: `submit` queues a
request (one shape group of it), `take(now)` hands back the next batch when one is due, and
`next_wakeup` says when to ask again. The rules:

- a batch holds requests of one shape group, oldest first, up to `max_batch_size` instances;
- it is due when it is full, when `max_delay_ms` passed since its oldest request arrived (or,
  for one that arrived while a forward ran, since that forward ended: waiting for the model is
  not waiting for a batch), or at once when the model is idle: a request that finds no recent
  batch runs alone, without waiting;
- under load (a forward ended less than `max_delay_ms` ago) it lingers until as many instances
  wait as the last batch held plus those that arrived during its forward — the callers just
  answered are about to send again — or the delay ends. So callers split into two groups by a
  slow forward (one batch running while the others arrive) join again into one batch;
- the queue is bounded (`max_queue` instances); a full queue refuses at once with a retry delay
  estimated from its depth and the measured batch time;
- requests past their deadline, or cancelled by their caller, are dropped before a forward;
- with pad values (one per input), a version's variable axes are padded up to the next bucket
  (or the exact length past the last one), so sequences of different lengths share one forward.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from maas.errors import InvalidInput, Overloaded
from maas.transport.telemetry import VersionTelemetry
from maas.types import LoadSpec

_DEFAULT_BATCH_S = 0.001


@dataclass(slots=True, eq=False)
class Pending:
    """One shape group of one request, waiting for a forward."""

    request_id: int
    reply_to: bytes
    arrays: list[np.ndarray[Any, Any]]
    arrived: float
    deadline: float
    count: int = 0
    group: tuple[tuple[int, ...], ...] = ()
    cancelled: bool = False


@dataclass(slots=True)
class Batch:
    items: list[Pending]
    inputs: list[np.ndarray[Any, Any]]
    count: int
    taken: float = 0.0  # when `take` formed it (the batcher's clock)

    def slices(self) -> list[slice]:
        """Where each item's rows sit in the batch, in item order."""
        out, start = [], 0
        for item in self.items:
            out.append(slice(start, start + item.count))
            start += item.count
        return out


@dataclass(slots=True)
class BatchStats:
    batches: int = 0
    padded_elements: int = 0
    input_elements: int = 0
    mean_batch_s: float = _DEFAULT_BATCH_S
    telemetry: VersionTelemetry = field(default_factory=VersionTelemetry)

    @property
    def padding_waste(self) -> float:
        """Share of the elements fed to the model that were padding."""
        return self.padded_elements / self.input_elements if self.input_elements else 0.0


@dataclass(slots=True)
class _Taken:
    batch: Batch | None = None
    expired: list[Pending] = field(default_factory=list)


class Batcher:
    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        self.max_batch = spec.max_batch_size
        self.max_delay_s = spec.max_delay_ms / 1000.0
        self.max_queue = spec.max_queue
        self.stats = BatchStats()
        self._queue: deque[Pending] = deque()
        self._queued = 0
        self._last_count = 0
        self._free_since = float("-inf")  # when the last forward ended
        self._expected = 1  # instances to linger for once it has
        self._last_group: tuple[tuple[int, ...], ...] = ()
        self._variable_axes = [
            tuple(axis for axis, d in enumerate(t.shape) if d == -1) for t in spec.inputs
        ]
        # One value per input (attention masks pad with 0, token ids with the pad id). Padding
        # is only safe when every variable input has its value and no output's shape follows a
        # padded axis.
        self._pad_values = spec.input_pad_values()
        self._pad = (
            len(self._pad_values) == len(spec.inputs)
            and all(
                value is not None
                for value, axes in zip(self._pad_values, self._variable_axes, strict=True)
                if axes
            )
            and all(-1 not in o.shape for o in spec.outputs)
        )

    @property
    def depth(self) -> int:
        """Instances waiting."""
        return self._queued

    def submit(self, item: Pending) -> None:
        item.count = len(item.arrays[0]) if item.arrays else 0
        if item.count > self.max_queue:  # it would never fit: waiting would not help
            raise InvalidInput(
                f"the request holds {item.count} instances; {self.spec.key} queues at most "
                f"{self.max_queue} (its batching.max_queue): send them in smaller requests"
            )
        if self._queued + item.count > self.max_queue:
            batches_ahead = self._queued / self.max_batch + 1
            retry_after = batches_ahead * self.stats.mean_batch_s
            raise Overloaded(
                f"queue of {self.spec.key} is full ({self._queued} instances waiting, "
                f"max_queue {self.max_queue}); retry in about {retry_after * 1000:.0f} ms",
                retry_after=retry_after,
            )
        item.group = self._group_of(item.arrays)
        self._queue.append(item)
        self._queued += item.count

    def cancel(self, reply_to: bytes, request_id: int) -> bool:
        """Drop the queued request `request_id` of the gateway `reply_to`. Ids are chosen by
        each gateway on its own, so only the pair names one request."""
        for item in self._queue:
            if item.request_id == request_id and item.reply_to == reply_to:
                item.cancelled = True
                return True
        return False

    def drain(self) -> list[Pending]:
        """Everything still waiting (the version is going away)."""
        items = [i for i in self._queue if not i.cancelled]
        self._queue.clear()
        self._queued = 0
        return items

    def take(self, now: float) -> _Taken:
        """The next due batch, if any, and the requests dropped because their deadline passed."""
        taken = _Taken()
        self._drop_dead(now, taken.expired)
        if not self._queue:
            return taken
        oldest = self._queue[0]
        chosen: list[Pending] = []
        total = 0
        full = False
        for item in self._queue:
            if item.group != oldest.group or item.cancelled:
                continue
            if chosen and total + item.count > self.max_batch:
                full = True
                break
            chosen.append(item)
            total += item.count
        full = full or total >= self.max_batch
        due = full or now >= max(oldest.arrived, self._free_since) + self.max_delay_s
        if not (due or total >= self._target(now, oldest.group)):
            return taken
        chosen_ids = {id(i) for i in chosen}
        self._queue = deque(i for i in self._queue if id(i) not in chosen_ids)
        self._queued -= total
        self._last_count = total
        self._last_group = oldest.group
        for item in chosen:
            self.stats.telemetry.queue_wait.observe(now - item.arrived)
        taken.batch = Batch(chosen, self._stack(chosen, oldest.group), total, now)
        return taken

    def finished(self, now: float) -> None:
        """The forward of the batch last taken ended at `now`: from then on its callers are
        about to send again, and those who came meanwhile wait for a batch, not for the model."""
        self._free_since = now
        self._expected = max(1, min(self.max_batch, self._last_count + self._queued))

    def next_wakeup(self) -> float | None:
        """When `take` may next have something to do without new requests arriving."""
        live = [i for i in self._queue if not i.cancelled]
        if not live:
            return None
        batch_due = max(live[0].arrived, self._free_since) + self.max_delay_s
        return min(min(i.deadline for i in live), batch_due)

    def record(self, batch: Batch, seconds: float) -> None:
        stats = self.stats
        stats.batches += 1
        stats.telemetry.inference.observe(seconds)
        stats.telemetry.batch_size.observe(batch.count)
        # An exponential average follows a changing load without keeping a history.
        stats.mean_batch_s = (
            seconds if stats.batches == 1 else 0.8 * stats.mean_batch_s + 0.2 * seconds
        )

    def _target(self, now: float, group: tuple[tuple[int, ...], ...]) -> int:
        """How many instances to wait for: as many as the last batch of this group held, and
        those that arrived while it ran."""
        if now - self._free_since > self.max_delay_s or group != self._last_group:
            return 1  # the model sat idle, or these callers were not just answered: run now
        return self._expected

    def _drop_dead(self, now: float, expired: list[Pending]) -> None:
        if not any(i.cancelled or i.deadline <= now for i in self._queue):
            return
        keep: deque[Pending] = deque()
        for item in self._queue:
            if item.cancelled:
                self._queued -= item.count
            elif item.deadline <= now:
                self._queued -= item.count
                expired.append(item)
            else:
                keep.append(item)
        self._queue = keep

    def _group_of(self, arrays: list[np.ndarray[Any, Any]]) -> tuple[tuple[int, ...], ...]:
        shapes = [tuple(a.shape[1:]) for a in arrays]
        if not self._pad:
            return tuple(shapes)
        return tuple(
            tuple(self._bucket(d) if axis in variable else d for axis, d in enumerate(shape))
            for shape, variable in zip(shapes, self._variable_axes, strict=True)
        )

    def _bucket(self, length: int) -> int:
        buckets = self.spec.buckets
        index = bisect.bisect_left(buckets, length)
        return buckets[index] if index < len(buckets) else length

    def _stack(
        self, items: list[Pending], group: tuple[tuple[int, ...], ...]
    ) -> list[np.ndarray[Any, Any]]:
        inputs = []
        for position, shape in enumerate(group):
            parts = [item.arrays[position] for item in items]
            if all(p.shape[1:] == shape for p in parts):
                stacked = np.concatenate(parts) if len(parts) > 1 else parts[0].copy()
            else:
                stacked = self._pad_into(parts, shape, self._pad_values[position])
            self.stats.input_elements += stacked.size
            inputs.append(stacked)
        return inputs

    def _pad_into(
        self, parts: list[np.ndarray[Any, Any]], shape: tuple[int, ...], value: float | None
    ) -> np.ndarray[Any, Any]:
        count = sum(len(p) for p in parts)
        out = np.full((count, *shape), value, dtype=parts[0].dtype)
        row = 0
        for part in parts:
            region = (slice(row, row + len(part)), *(slice(0, d) for d in part.shape[1:]))
            out[region] = part
            row += len(part)
        self.stats.padded_elements += out.size - sum(p.size for p in parts)
        return out
