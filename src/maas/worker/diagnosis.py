"""Turning what torch raises into the cause and a hint an operator can act on.

TorchScript wraps a model's own error in "The following operation failed in the TorchScript
interpreter" and a traceback of the scripted code; the cause is the last line. A client never
sees the worker's log, so everything useful goes into the message itself.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from maas.types import TensorSpec

_ERROR_LINE = re.compile(r"^\s*([A-Za-z_.]*(?:Error|Exception)):\s*(.+)$")
_MATMUL = re.compile(r"mat1 and mat2 shapes cannot be multiplied \((\d+)x(\d+) and (\d+)x(\d+)\)")
_MAX_CHARS = 500


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


def hint(message: str, inputs: Sequence[TensorSpec]) -> str:
    """A sentence on the likely mistake behind a failed warm-up, or ''."""
    match = _MATMUL.search(message)
    if match:
        got, expected = int(match.group(2)), int(match.group(3))
        declared = ", ".join(f"'{s.name}' {list(s.shape)}" for s in inputs)
        return (
            f"input width mismatch: the model expects {expected} values on the last axis of an "
            f"instance, meta's inputs ({declared}) gave it {got}"
        )
    batchy = [s for s in inputs if len(s.shape) >= 2 and s.shape[0] == -1]
    if batchy:
        spec = batchy[0]
        return (
            "shapes are per instance, without the batch axis: if the leading -1 of "
            f"'{spec.name}' {list(spec.shape)} is the batch, declare {list(spec.shape[1:])}"
        )
    return ""


def with_hint(message: str, inputs: Sequence[TensorSpec]) -> str:
    extra = hint(message, inputs)
    return f"{message} ({extra})" if extra else message
