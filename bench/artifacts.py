"""Build the benchmarked models as TorchScript archives plus their upload meta (imports torch).

`small` and `wide` are fixed-seed MLPs (untrained: only their cost matters); `tokens` is the
demo transformer from `maas.demo.tokens.train()` (about 20 s of training on one thread);
`resnet` a ResNet-18 with random weights (`bench.resnet`). The pipeline rows add `wide-onnx`
(the very weights of `wide`, exported with `torch.onnx.export`) and `digits` (the demo
classifier, `maas.demo.digits.train()`, with its image pre-processing and labels).
"""

from __future__ import annotations

import itertools
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from bench.specs import MLP_INPUTS, mlp_meta, resnet_meta

# Hidden widths per MLP; the input width is in bench.specs.MLP_INPUTS, the output is 10 logits.
_LAYERS: dict[str, list[int]] = {
    "small": [64, 256, 256, 10],
    "wide": [784, 2048, 2048, 2048, 10],
}


def mlp(name: str, seed: int = 0) -> torch.nn.Module:
    """The `small` (64→256→256→10) or `wide` (784→2048→2048→2048→10, ~10M params) MLP."""
    torch.manual_seed(seed)
    widths = _LAYERS[name]
    layers: list[torch.nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(widths)):
        layers.append(torch.nn.Linear(fan_in, fan_out))
        if i < len(widths) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers).eval()


def _script(module: torch.nn.Module) -> bytes:
    from maas.demo.artifact import script_to_bytes

    return script_to_bytes(module)


def onnx_export(module: torch.nn.Module, width: int) -> bytes:
    """`module` (one float32 input `x` of `width`, one output `y`) as an ONNX file with its
    weights inside and a free batch axis, as a user exports it."""
    import warnings

    batch = torch.export.Dim("batch", min=1, max=4096)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module,
            (torch.randn(2, width),),
            dynamo=True,
            external_data=False,
            input_names=["x"],
            output_names=["y"],
            dynamic_shapes=({0: batch},),
            verbose=False,
        )
    assert program is not None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        program.save(str(path), external_data=False)
        return path.read_bytes()


def build(name: str) -> tuple[bytes, dict[str, Any]]:
    """The artifact bytes and the upload meta (batching on) of model `name`."""
    if name.endswith("-onnx"):
        base = name.removesuffix("-onnx")
        return onnx_export(mlp(base), MLP_INPUTS[base]), {**mlp_meta(base), "format": "onnx"}
    if name == "digits":
        from maas.demo.digits import train as train_digits

        digits = train_digits()
        return digits.artifact, dict(digits.meta)
    if name == "tokens":
        from maas.demo.tokens import train

        demo = train()
        return demo.artifact, dict(demo.meta)
    if name == "resnet":
        from bench.resnet import resnet18

        return _script(resnet18()), resnet_meta()
    return _script(mlp(name)), mlp_meta(name)


def write(name: str, directory: Path) -> tuple[Path, Path, float]:
    """Build `name` into `directory` as `<name>.pt` + `<name>.meta.json`.

    Returns both paths and the seconds the build took."""
    started = time.perf_counter()
    artifact, meta = build(name)
    directory.mkdir(parents=True, exist_ok=True)
    artifact_path = directory / f"{name}.pt"
    meta_path = directory / f"{name}.meta.json"
    artifact_path.write_bytes(artifact)
    meta_path.write_text(json.dumps(meta))
    return artifact_path, meta_path, time.perf_counter() - started
