"""What a demo trainer hands back, plus the plumbing both trainers share.

A `DemoModel` is ready to register as-is: `artifact` is a TorchScript archive (the bytes of
`torch.jit.save`) and `meta` is the upload meta the gateway expects for it, metrics and golden
examples included. Nothing here downloads anything.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class DemoModel:
    """A trained demo: `name` ("digits" / "tokens"), a one-or-two-sentence `description`,
    the TorchScript `artifact` bytes and the upload `meta` (whose "description" equals ours)."""

    name: str
    description: str
    artifact: bytes
    meta: dict[str, Any]


@contextmanager
def training_scope(seed: int, threads: int = 1) -> Iterator[None]:
    """Seed torch's global RNG and cap intra-op threads for the duration of the block.

    The caller's RNG state and thread count are restored afterwards, so training a demo inside
    a running gateway leaves no global trace. A fixed thread count also keeps float reductions
    in the same order from run to run, which is what makes a seed reproducible.
    """
    previous_threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.set_num_threads(max(1, min(threads, previous_threads)))
        try:
            yield
        finally:
            torch.set_num_threads(previous_threads)


def script_to_bytes(model: torch.nn.Module) -> bytes:
    """Put `model` in eval mode, script it and return the `torch.jit.save` archive bytes."""
    scripted = torch.jit.script(model.eval())
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    return buffer.getvalue()


def load_artifact(artifact: bytes) -> torch.jit.ScriptModule:
    """Load artifact bytes back exactly as a worker would (on CPU), in eval mode."""
    module: torch.jit.ScriptModule = torch.jit.load(  # type: ignore[no-untyped-call]
        io.BytesIO(artifact), map_location="cpu"
    )
    module.eval()
    return module


def golden_example(module: torch.jit.ScriptModule, instance: torch.Tensor) -> dict[str, Any]:
    """One golden entry: `instance` (unbatched) and the logits the saved module gives for it.

    Computed from the reloaded artifact, so the figures are what a worker will reproduce.
    """
    with torch.inference_mode():
        logits = module(instance.unsqueeze(0))[0]
    return {"inputs": [instance.tolist()], "outputs": [logits.tolist()], "atol": 1e-4}
