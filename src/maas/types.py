"""The vocabulary the rest of maas speaks: refs, statuses, tensor signatures, timings."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

# What a version declares beyond its signature, named here with the rest of the vocabulary.
from maas.steps import ImagePrep as ImagePrep
from maas.steps import PostProcess as PostProcess

MODEL_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
ALIAS_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
DEFAULT_ALIAS = "production"
VERSION_MAX = 2**63 - 1  # version numbers are int64, in the registry as in TF Serving


class VersionStatus(StrEnum):
    REGISTERED = "registered"
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    UNLOADED = "unloaded"
    ARCHIVED = "archived"


class ArtifactFormat(StrEnum):
    TORCHSCRIPT = "torchscript"
    TORCH_EXPORT = "torch_export"
    ONNX = "onnx"  # served by ONNX Runtime


class Scope(StrEnum):
    INFER = "infer"
    ADMIN = "admin"


class AliasAction(StrEnum):
    SET = "set"
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    DELETE = "delete"  # the alias was removed: the undo stack ends there
    ROLLOUT = "rollout"  # a rollout's step moved the candidate's weight


DTYPES = (
    "float32",
    "float64",
    "float16",
    "bfloat16",
    "int64",
    "int32",
    "int16",
    "int8",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "bool",
)


@dataclass(frozen=True, slots=True)
class ModelRef:
    """What a client named: a model and, optionally, a version number or an alias."""

    model: str
    version: int | None = None
    alias: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        """`digits`, `digits@3` or `digits@production` (no validation of the names here; a
        number past the version range raises ValueError)."""
        name, sep, selector = text.partition("@")
        if not sep:
            return cls(model=name)
        return cls.of(name, selector)

    @classmethod
    def of(cls, name: str, selector: str) -> ModelRef:
        """`name` at `selector`: a version when it is digits (ValueError out of range), else
        an alias."""
        if is_number(selector):
            return cls(model=name, version=parse_version(selector))
        return cls(model=name, alias=selector)

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.model}@{self.version}"
        return f"{self.model}@{self.alias or DEFAULT_ALIAS}"


def is_number(text: str) -> bool:
    """ASCII digits only (str.isdigit alone admits '²' and other digits int() refuses)."""
    return text.isascii() and text.isdigit()


def parse_version(text: str) -> int:
    """A version number as a client wrote it: ASCII digits, 1 to VERSION_MAX (ValueError
    saying so otherwise, before any number reaches the database)."""
    if not is_number(text):
        raise ValueError(f"version must be a positive integer, got '{text[:40]}'")
    if len(text) > len(str(VERSION_MAX)) or not 1 <= int(text) <= VERSION_MAX:
        raise ValueError(f"version must be from 1 to {VERSION_MAX}, got '{text[:40]}'")
    return int(text)


@dataclass(frozen=True, slots=True)
class VersionKey:
    """One concrete version: the unit a backend loads and runs."""

    model: str
    version: int

    def __str__(self) -> str:
        return f"{self.model}@{self.version}"


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One named input or output of a version; `shape` excludes the batch axis, -1 is free."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    min: float | None = None
    max: float | None = None
    max_shape: tuple[int, ...] | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TensorSpec:
        max_shape = data.get("max_shape")
        return cls(
            name=data["name"],
            dtype=data["dtype"],
            shape=tuple(data["shape"]),
            min=data.get("min"),
            max=data.get("max"),
            max_shape=tuple(max_shape) if max_shape is not None else None,
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}
        if self.min is not None:
            out["min"] = self.min
        if self.max is not None:
            out["max"] = self.max
        if self.max_shape is not None:
            out["max_shape"] = list(self.max_shape)
        return out


@dataclass(frozen=True, slots=True)
class GoldenExample:
    inputs: list[Any]
    outputs: list[Any]
    atol: float = 1e-4


@dataclass(frozen=True, slots=True)
class Batching:
    """How a version's instances are batched (its meta's `batching`): the defaults are
    written here and only here; the upload meta, the registry's records, the gateway's data
    plane and the workers read them from this."""

    max_batch_size: int = 32
    max_delay_ms: float = 5
    max_queue: int = 1024
    pad_value: int | float | dict[str, int | float] | None = None
    buckets: tuple[int, ...] = ()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Batching:
        """A version's stored `batching` (any key may be missing: its default applies)."""
        default = DEFAULT_BATCHING
        return cls(
            max_batch_size=int(data.get("max_batch_size", default.max_batch_size)),
            max_delay_ms=float(data.get("max_delay_ms", default.max_delay_ms)),
            max_queue=int(data.get("max_queue", default.max_queue)),
            pad_value=data.get("pad_value"),
            buckets=tuple(sorted(data.get("buckets") or ())),
        )


DEFAULT_BATCHING = Batching()


@dataclass(frozen=True, slots=True)
class Shadow:
    """An alias's mirror (CONTRACT: shadow): `percent` of the alias's requests are also run on
    version `version`, whose answers never reach the client, and compared with the primary's."""

    version: int
    percent: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Shadow:
        return cls(version=int(data["version"]), percent=int(data["percent"]))

    def to_json(self) -> dict[str, int]:
        return {"version": self.version, "percent": self.percent}


@dataclass(frozen=True, slots=True)
class Derivation:
    """Where a derived version comes from (meta-free: the registry writes it): its parent
    version, the method (`int8_dynamic`), and the top-1 agreement with the parent below which
    it may not be aliased unless forced."""

    version: int
    method: str
    min_agreement: float = 0.99

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Derivation:
        return cls(
            version=int(data["version"]),
            method=str(data["method"]),
            min_agreement=float(data.get("min_agreement", 0.99)),
        )

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "method": self.method, "min_agreement": self.min_agreement}


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """Everything a backend needs to load one version, and nothing from the registry."""

    key: VersionKey
    path: str
    sha256: str
    format: ArtifactFormat
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    device: str = "auto"
    max_batch_size: int = DEFAULT_BATCHING.max_batch_size
    golden: tuple[GoldenExample, ...] = field(default_factory=tuple)
    max_delay_ms: float = DEFAULT_BATCHING.max_delay_ms
    max_queue: int = DEFAULT_BATCHING.max_queue
    # With pad values, instances whose variable axes differ are padded up to the next bucket
    # so they share one forward; only for models that mask the padding. `pad_values` holds one
    # value per input, aligned with `inputs` (None: that input has no value); `pad_value` is the
    # one value for every input, kept for workers of releases before per-input values, which
    # read only it (None there when the values differ per input: such a worker does not pad).
    pad_value: float | None = None
    buckets: tuple[int, ...] = ()
    replicas: int | None = None
    pad_values: tuple[int | float | None, ...] = ()

    def input_pad_values(self) -> tuple[int | float | None, ...]:
        """The value that pads each input, aligned with `inputs`; () when nothing is padded.
        A spec from a gateway of an earlier release carries only `pad_value`."""
        if self.pad_values:
            return self.pad_values
        return () if self.pad_value is None else (self.pad_value,) * len(self.inputs)


def pad_values_of(
    pad_value: int | float | dict[str, int | float] | None, inputs: tuple[TensorSpec, ...]
) -> tuple[int | float | None, ...]:
    """`batching.pad_value` as meta gives it (one number for every input, or one per input
    name) as one value per input, aligned with `inputs`; () when it is unset."""
    if pad_value is None:
        return ()
    if isinstance(pad_value, dict):
        return tuple(pad_value.get(t.name) for t in inputs)
    return (pad_value,) * len(inputs)


@dataclass(frozen=True, slots=True)
class WorkerState:
    """What placement needs to know of one worker: whether it answers, what it holds."""

    name: str
    healthy: bool
    versions: frozenset[str]  # "model@version" keys loaded
    # Changes whenever the worker process is a new one (a restart): what it held is gone.
    boot: str = ""
    device: str = ""  # "cpu", "cuda:0"...; "" until it has reported
    memory_free: int = 0  # bytes free on its device; 0 when unknown


# The phases of a request (`maas_request_phase_seconds`): the gateway's admission, body and
# decode; the hop to the worker; the wait for a batch; the forward; back, encode and answer.
PHASES = ("decode", "transfer", "queue", "inference", "reply")


@dataclass(slots=True)
class Timing:
    """Where one call to a worker spent its time, as instants of the gateway's
    `time.monotonic` (a remote worker's clock is translated by the offset its heartbeats
    measure): handed to the worker's connection, read by the worker, taken into a batch, and
    the end of that batch's forward. All 0.0 until a worker answered."""

    sent: float = 0.0
    arrived: float = 0.0
    taken: float = 0.0
    done: float = 0.0

    def phases(self, started: float, ended: float) -> tuple[float, ...] | None:
        """Seconds in each of `PHASES` for a request that arrived at `started` and was answered
        at `ended` (None when no worker answered it). They add up to `ended - started`; a
        remote worker's clock may be a little off, so a phase it splits is at least 0."""
        if not self.done:
            return None
        transfer = max(0.0, self.arrived - self.sent)
        return (
            self.sent - started,
            transfer,
            max(0.0, self.taken - self.arrived),
            max(0.0, self.done - self.taken),
            max(0.0, ended - self.done),
        )

    def keep_later(self, other: Timing) -> None:
        """Take `other`'s instants when its forward ended later: a request cut into pieces
        waits for its last piece, so that piece's phases are the request's."""
        if other.done >= self.done:
            self.sent, self.arrived, self.taken, self.done = (
                other.sent,
                other.arrived,
                other.taken,
                other.done,
            )
