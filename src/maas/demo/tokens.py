"""The `tokens` demo: a small transformer encoder over variable-length token ids.

The task is generated, so it needs no download and its accuracy means something: a sequence of
1-256 ids in 0-999 is class 1 when more than half of its ids are below 500, else class 0. The
mix of low and high ids is drawn per sequence, so many sequences sit near the boundary and the
model must count, not guess. `PAD_ID` (1000) is masked out of attention and pooling, so padding
a batch does not change any sequence's logits.
"""

from __future__ import annotations

import math

import torch

from maas.demo.artifact import (
    DemoModel,
    golden_example,
    load_artifact,
    script_to_bytes,
    training_scope,
)

VOCAB = 1000
PAD_ID = VOCAB
MAX_LEN = 256
DESCRIPTION = (
    "Transformer-encoder classifier trained at first start on a generated task. Input ids: "
    "1-256 token ids in 0-999; output: 2 logits, class 1 when more than half the ids are "
    "below 500."
)


class EncoderLayer(torch.nn.Module):
    """Pre-norm self-attention + feed-forward block; `mask` is True on real tokens."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.norm1 = torch.nn.LayerNorm(dim)
        self.qkv = torch.nn.Linear(dim, 3 * dim)
        self.proj = torch.nn.Linear(dim, dim)
        self.norm2 = torch.nn.LayerNorm(dim)
        self.ff1 = torch.nn.Linear(dim, 2 * dim)
        self.ff2 = torch.nn.Linear(2 * dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        q = q.reshape(batch, length, self.heads, self.head_dim).transpose(1, 2)
        k = k.reshape(batch, length, self.heads, self.head_dim).transpose(1, 2)
        v = v.reshape(batch, length, self.heads, self.head_dim).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(self.head_dim)
        scores = scores.masked_fill(~mask[:, None, None, :], -1e4)
        attended = torch.matmul(torch.softmax(scores, dim=-1), v)
        x = x + self.proj(attended.transpose(1, 2).reshape(batch, length, dim))
        out: torch.Tensor = x + self.ff2(torch.relu(self.ff1(self.norm2(x))))
        return out


class TokenClassifier(torch.nn.Module):
    def __init__(self, dim: int = 32, heads: int = 2) -> None:
        super().__init__()
        self.pad_id = PAD_ID
        self.embed = torch.nn.Embedding(VOCAB + 1, dim, padding_idx=PAD_ID)
        self.position = torch.nn.Embedding(MAX_LEN, dim)
        self.layer = EncoderLayer(dim, heads)
        self.norm = torch.nn.LayerNorm(dim)
        self.head = torch.nn.Linear(dim, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = ids != self.pad_id
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.embed(ids) + self.position(positions)[None, :, :]
        x = self.norm(self.layer(x, mask))
        weights = mask.to(x.dtype)[:, :, None]
        pooled = (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        logits: torch.Tensor = self.head(pooled)
        return logits


def generate(
    count: int, generator: torch.Generator, max_len: int = MAX_LEN
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """`count` sequences of random length 1..max_len and their labels."""
    sequences: list[torch.Tensor] = []
    labels = torch.empty(count, dtype=torch.int64)
    for i in range(count):
        length = int(torch.randint(1, max_len + 1, (1,), generator=generator))
        share_low = float(torch.rand(1, generator=generator))
        low = torch.rand(length, generator=generator) < share_low
        ids = torch.where(
            low,
            torch.randint(0, VOCAB // 2, (length,), generator=generator),
            torch.randint(VOCAB // 2, VOCAB, (length,), generator=generator),
        )
        sequences.append(ids)
        labels[i] = int(2 * int(low.sum()) > length)
    return sequences, labels


def pad(sequences: list[torch.Tensor]) -> torch.Tensor:
    return torch.nn.utils.rnn.pad_sequence(sequences, batch_first=True, padding_value=PAD_ID)


def accuracy(module: torch.nn.Module, sequences: list[torch.Tensor], labels: torch.Tensor) -> float:
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(sequences), 128):
            logits = module(pad(sequences[start : start + 128]))
            correct += int((logits.argmax(dim=1) == labels[start : start + 128]).sum())
    return correct / len(sequences)


def train(
    *, seed: int = 0, train_size: int = 6000, test_size: int = 1000, epochs: int = 3
) -> DemoModel:
    generator = torch.Generator().manual_seed(seed)
    train_seqs, train_labels = generate(train_size, generator)
    test_seqs, test_labels = generate(test_size, generator)
    # Sorting by length keeps each training batch's padding small, which keeps training quick.
    order = sorted(range(train_size), key=lambda i: len(train_seqs[i]))
    batches = [order[s : s + 64] for s in range(0, train_size, 64)]
    with training_scope(seed):
        model = TokenClassifier()
        optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
        loss_fn = torch.nn.CrossEntropyLoss()
        model.train()
        for _ in range(epochs):
            for b in torch.randperm(len(batches)).tolist():
                index = batches[b]
                optimiser.zero_grad()
                logits = model(pad([train_seqs[i] for i in index]))
                loss_fn(logits, train_labels[index]).backward()
                optimiser.step()
        artifact = script_to_bytes(model)
    module = load_artifact(artifact)
    held_out_accuracy = round(accuracy(module, test_seqs, test_labels), 4)
    meta = {
        "format": "torchscript",
        "inputs": [
            {
                "name": "ids",
                "dtype": "int64",
                "shape": [-1],
                "min": 0,
                "max": VOCAB - 1,
                "max_shape": [MAX_LEN],
            }
        ],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": [2]}],
        "batching": {"pad_value": PAD_ID, "buckets": [16, 32, 64, 128, 256]},
        "device": "auto",
        "metrics": {
            "accuracy": held_out_accuracy,
            "held_out_sequences": test_size,
            "train_sequences": train_size,
        },
        "tags": {"demo": "true", "task": "majority-below-500", "seed": str(seed)},
        "golden": [golden_example(module, test_seqs[i]) for i in range(2)],
        "description": DESCRIPTION,
    }
    return DemoModel("tokens", DESCRIPTION, artifact, meta)
