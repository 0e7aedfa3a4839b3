"""Candidate versions for rollout tests: one that fails on a known share of inputs, one that
disagrees with its stable twin on a known share, and a slow one; with the inputs that make
those shares exact."""

from __future__ import annotations

import numpy as np
import torch

from support.model_files import IN, TinyMLP

# Inputs whose first number is above this make Picky fail, and Contrary disagree.
FLAG = 10.0


class Picky(TinyMLP):
    """tiny_mlp(seed) that refuses any batch holding an instance flagged by its first number."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((x[:, 0] > 10.0).any()):  # FLAG (a literal: TorchScript)
            raise RuntimeError("picky: a flagged instance")
        return self.fc2(torch.relu(self.fc1(x)))


class Contrary(TinyMLP):
    """tiny_mlp(seed), but the answer of a flagged instance is negated: its top-1 becomes its
    bottom-1, so it disagrees with the plain model on exactly the flagged instances."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc2(torch.relu(self.fc1(x)))
        flagged = (x[:, 0] > 10.0).unsqueeze(1)  # FLAG
        return torch.where(flagged, -y, y)


def picky(seed: int = 1) -> Picky:
    torch.manual_seed(seed)
    return Picky().eval()


def contrary(seed: int = 1) -> Contrary:
    torch.manual_seed(seed)
    return Contrary().eval()


def instances(count: int, *, flagged_every: int = 0, seed: int = 3) -> list[list[float]]:
    """`count` instances, every `flagged_every`-th flagged (0: none), distinct answers."""
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(count, IN)).round(3)
    if flagged_every:
        rows[flagged_every - 1 :: flagged_every, 0] = FLAG + 1.0
    return rows.tolist()  # type: ignore[no-any-return]
