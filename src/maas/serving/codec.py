"""What a protocol contributes to the inference pipeline: a codec.

The pipeline (`maas.serving.call`) owns everything a request's life has in common; a codec
only translates: the body into arrays (`decode`), the version's output arrays into the
protocol's answer (`encode`), and a domain error into the protocol's error shape (`error`).
Codecs are pure functions of their inputs: no I/O, no awaiting, no registry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from maas.errors import MaasError
from maas.registry.records import VersionRecord
from maas.serving.head import RequestHead

Array = np.ndarray[Any, Any]
# One request's tensors for one forward: an array per declared input, in the version's input
# order, all stacked along the same leading (instance) axis.
Group = list[Array]

State = TypeVar("State")


@dataclass(slots=True)
class Decoded(Generic[State]):
    """A decoded request: its groups, what the codec needs to answer it, and any deadline the
    protocol's own body set (seconds; the pipeline keeps the shorter of it and the header's)."""

    groups: list[Group]
    state: State
    timeout_s: float | None = None


JSON = b"application/json"
OCTET_STREAM = b"application/octet-stream"


@dataclass(slots=True)
class Reply:
    """One HTTP answer; the pipeline adds Content-Length and the X-* headers of every reply."""

    status: int
    body: bytes
    content_type: bytes = JSON
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


class Codec(Protocol[State]):
    # The `protocol` label of maas_requests_total.
    protocol: str

    def decode(self, body: bytes, head: RequestHead, version: VersionRecord) -> Decoded[State]:
        """The request's arrays, checked against the version's inputs; raises MaasError."""
        ...

    def encode(
        self, request: Decoded[State], outputs: list[Group], version: VersionRecord
    ) -> Reply:
        """The answer: `outputs` holds, per group of `request`, an array per declared output."""
        ...

    def error(self, exc: MaasError) -> Reply:
        """The protocol's error answer (status, shape, headers such as Retry-After)."""
        ...
