"""Where and how a worker runs one batch's forward.

Inline on the worker's loop, a forward costs nothing more (a thread hop costs about 0.15 ms,
more than a small model's whole forward), but nothing is read meanwhile: requests that arrive
wait in the socket, which holds a few hundred KiB, and are read in one pass after it. That is
the cheapest way for small requests (wide at C=64: 13% faster than on the thread, bench
2026-12-06). On the forward thread the loop keeps reading, answering heartbeats and queueing,
so a batch takes everything that arrived meanwhile, whatever the input size. Forwards go there
when they are long (heartbeats must be answered), or longer than a hop's worth and fed large
inputs: a batch's inputs past what a socket holds, so what arrives during it would be read
only after it (a 224x224 image is 588 KiB: batches of 1.2 at 8 callers when run inline).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from maas.errors import InvalidInput, MaasError
from maas.worker.batcher import Batch

if TYPE_CHECKING:
    from maas.worker.checking import Model

log = logging.getLogger(__name__)

LONG_FORWARD_S = 0.1
HOP_WORTH_S = 0.002
READ_AHEAD_BYTES = 256 * 1024


def off_loop(mean_batch_s: float, batch: Batch) -> bool:
    """Whether `batch` runs on the forward thread, or inline (`mean_batch_s`: the version's
    recent forwards)."""
    if mean_batch_s > LONG_FORWARD_S:
        return True
    return mean_batch_s > HOP_WORTH_S and sum(a.nbytes for a in batch.inputs) > READ_AHEAD_BYTES


def forward(model: Model, batch: Batch) -> list[Any] | MaasError:
    """One forward; an error is returned for every caller of the batch, never raised."""
    try:
        return model.run(batch.inputs)
    except MaasError as exc:
        return exc
    except Exception as exc:  # the model misbehaved: its callers hear of it, the worker goes on
        log.exception("forward of %s failed", model.spec.key)
        return InvalidInput(f"the model failed on this batch: {type(exc).__name__}")
