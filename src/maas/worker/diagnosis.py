"""Turning what torch raises into the cause and a hint an operator can act on.

TorchScript wraps a model's own error in "The following operation failed in the TorchScript
interpreter" and a traceback of the scripted code; the cause is the last line. `torch.export.load`
logs the real error and raises one that says "check the warnings above": `complaints` keeps what
torch logs and warns on this thread meanwhile. A client never sees the worker's log, so
everything useful goes into the message itself.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from maas.types import TensorSpec

_ERROR_LINE = re.compile(r"^\s*([A-Za-z_.]*(?:Error|Exception)):\s*(.+)$")
_MATMUL = re.compile(r"mat1 and mat2 shapes cannot be multiplied \((\d+)x(\d+) and (\d+)x(\d+)\)")
# How torch names a Python type it cannot rebuild a program's inputs or outputs as.
_PYTREE_TYPE = re.compile(
    r"Deserializing (\S+) in pytree is not registered|serialization name for <class '([^']+)'>"
    r"|(\S+) is not (?:a )?registered"
)
_MAX_CHARS = 500
_NOT_TENSORS = (
    "not a tensor or a tuple/list/dict of tensors: return a tensor (return_dict=False for "
    "Hugging Face models)"
)


def cause(exc: BaseException) -> str:
    """The error's own message, without TorchScript's wrapper and traceback."""
    text = str(exc).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    if len(lines) > 1:
        for line in reversed(lines):
            match = _ERROR_LINE.match(line)
            if match:
                return match.group(2).strip()[:_MAX_CHARS]
    return lines[0].strip()[:_MAX_CHARS]


def described(exc: BaseException) -> str:
    """`Type: message` of the exception at the root of `exc`'s chain (what raised first), and
    of `exc` itself when that says something else."""
    root = exc
    seen = {id(exc)}
    while (inner := root.__cause__ or root.__context__) is not None and id(inner) not in seen:
        seen.add(id(inner))
        root = inner
    text = f"{type(root).__name__}: {cause(root)}"
    if root is not exc:
        text += f" (raised as {type(exc).__name__}: {cause(exc)})"
    return text


@dataclass
class Complaints:
    """What torch logged (warnings and errors, with their exceptions) and warned on one thread."""

    exceptions: list[BaseException] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def explain(self, exc: BaseException) -> str:
        """`exc` described by its root cause, or by the exception torch logged before raising
        it (torch.export.load's "check the warnings above"), with what torch warned."""
        text = described(self.exceptions[-1]) if self.exceptions else described(exc)
        if self.lines:
            text += "; torch said: " + " | ".join(self.lines[:3])
        extra = load_hint(text)
        return f"{text} ({extra})" if extra else text


class _ThisThread(logging.Handler):
    def __init__(self, found: Complaints) -> None:
        super().__init__(logging.WARNING)
        self._thread = threading.get_ident()
        self._found = found

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self._thread:
            return
        if record.exc_info and record.exc_info[1] is not None:
            self._found.exceptions.append(record.exc_info[1])
        else:
            self._found.lines.append(cause(Exception(record.getMessage())))


_NOISE = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)
# warnings.catch_warnings swaps process-wide state: one capture at a time, never nested.
_WARNINGS = threading.Lock()


@contextlib.contextmanager
def complaints() -> Iterator[Complaints]:
    """Keep what torch logs (its loggers, most of which do not propagate) and warns on this
    thread meanwhile. Only for loads: rare, and worth the few loggers touched."""
    found = Complaints()
    handler = _ThisThread(found)
    loggers = [
        logger
        for name, logger in list(logging.root.manager.loggerDict.items())
        if (name == "torch" or name.startswith("torch."))
        and isinstance(logger, logging.Logger)
        and (name == "torch" or not logger.propagate)
    ]
    for logger in loggers:
        logger.addHandler(handler)
    capture = _WARNINGS.acquire(blocking=False)
    try:
        if not capture:
            yield found
            return
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield found
            finally:
                found.lines += [
                    cause(Exception(str(w.message)))
                    for w in caught
                    if not issubclass(w.category, _NOISE)  # "torch.jit.load is deprecated"
                ]
    finally:
        if capture:
            _WARNINGS.release()
        for logger in loggers:
            logger.removeHandler(handler)


def load_hint(message: str) -> str:
    """A sentence on the likely mistake behind an artifact torch could not load, or ''."""
    if "pytree" not in message.lower():
        return ""
    match = _PYTREE_TYPE.search(message)
    kind = next((g for g in match.groups() if g), None) if match else None
    named = f"{kind}, a Python type torch cannot rebuild here, " if kind else "a Python type, "
    return f"the model's output is {named}{_NOT_TENSORS}"


def not_tensors(kind: str) -> str:
    """What to say of a model whose forward returned a `kind` object."""
    return f"the model's output is {kind}, {_NOT_TENSORS}"


def hint(message: str, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec] = ()) -> str:
    """A sentence on the likely mistake behind a failed warm-up, or ''."""
    match = _MATMUL.search(message)
    if match:
        got, expected = int(match.group(2)), int(match.group(3))
        declared = ", ".join(f"'{s.name}' {list(s.shape)}" for s in inputs)
        return (
            f"input width mismatch: the model expects {expected} values on the last axis of an "
            f"instance, meta's inputs ({declared}) gave it {got}"
        )
    specs = [*inputs, *outputs]
    batchy = [s for s in specs if len(s.shape) >= 2 and s.shape[0] == -1]
    if batchy:
        spec = batchy[0]
        return (
            "shapes are per instance, without the batch axis: if the leading -1 of "
            f"'{spec.name}' {list(spec.shape)} is the batch, declare {list(spec.shape[1:])}"
        )
    # A leading 1 may be a real axis (one channel), so this stays a question.
    ones = [s for s in specs if len(s.shape) >= 2 and s.shape[0] == 1]
    if ones:
        spec = ones[0]
        return (
            f"if the leading 1 of '{spec.name}' {list(spec.shape)} is the batch axis: shape is "
            f"one instance's shape without the batch axis; did you mean {list(spec.shape[1:])}?"
        )
    return ""


def with_hint(
    message: str, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec] = ()
) -> str:
    extra = hint(message, inputs, outputs)
    return f"{message} ({extra})" if extra else message
