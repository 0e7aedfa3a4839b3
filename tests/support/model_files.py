"""Small real artifacts for tests: a TorchScript and a torch.export MLP, built in memory."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

import torch

IN, OUT = 4, 3


class TinyMLP(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(IN, 8)
        self.fc2 = torch.nn.Linear(8, OUT)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


class SlowMLP(torch.nn.Module):
    """An MLP that burns `rounds` square matmuls per forward: keeps a worker busy on purpose."""

    def __init__(self, rounds: int = 0) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(4, 3)
        self.burn = torch.nn.Parameter(torch.eye(384), requires_grad=False)
        self.rounds = rounds

    def burnt(self) -> torch.Tensor:
        """1.0, after `rounds` matmuls of the identity."""
        acc = self.burn
        for _ in range(self.rounds):
            acc = torch.matmul(acc, self.burn)
        return acc[0, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) + self.burnt() - 1.0


WIDE_IN = 256 * 1024  # 1 MiB of float32 per instance: several times a socket's buffer


class SlowMean(SlowMLP):
    """Large inputs (`WIDE_IN` numbers), a slow forward (`rounds` matmuls, as SlowMLP), one
    number out: the mean of the instance."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1, keepdim=True) + self.burnt() - 1.0


def tiny_mlp(seed: int = 0) -> TinyMLP:
    torch.manual_seed(seed)
    return TinyMLP().eval()


def torchscript_bytes(module: torch.nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(module), buffer)
    return buffer.getvalue()


def export_bytes(module: torch.nn.Module) -> bytes:
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(module, (torch.randn(2, IN),), dynamic_shapes={"x": {0: batch}})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.pt2"
        torch.export.save(program, str(path))
        return path.read_bytes()


def expected(module: torch.nn.Module, instances: list[list[float]]) -> list[list[float]]:
    with torch.inference_mode():
        out: list[list[float]] = module(torch.tensor(instances, dtype=torch.float32)).tolist()
    return out


def failing_meta() -> dict[str, Any]:
    """Meta under which tiny_mlp's archive is valid but its load fails (the model gives 3
    outputs per instance, this declares 7): a version that ends `failed`."""
    meta = mlp_meta()
    meta["outputs"][0]["shape"] = [7]
    return meta


def mlp_meta(fmt: str = "torchscript", **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "format": fmt,
        "inputs": [{"name": "x", "dtype": "float32", "shape": [IN]}],
        "outputs": [{"name": "y", "dtype": "float32", "shape": [OUT]}],
        "batching": {"max_batch_size": 8, "max_delay_ms": 2, "max_queue": 64},
    }
    meta.update(extra)
    return meta


def new_version() -> Any:
    """What the registry keeps of an upload of tiny_mlp (for registry-level tests)."""
    from maas.registry.service import NewVersion

    return NewVersion(
        format="torchscript",
        inputs=[{"name": "x", "dtype": "float32", "shape": [IN]}],
        outputs=[{"name": "y", "dtype": "float32", "shape": [OUT]}],
        batching={"max_batch_size": 8},
    )


def onnx_bytes(
    module: torch.nn.Module,
    *,
    input_name: str = "x",
    output_name: str = "y",
    batch: int | str = "batch",
    opset: int = 17,
) -> bytes:
    """An ONNX model of the same weights as `module`, an MLP of Linear layers with ReLU
    between them (TinyMLP), built node by node with onnx.helper: no exporter, so it is fast
    and exactly `module`. `batch` names the free leading axis, or fixes it (an int)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    layers = [m for m in module.modules() if isinstance(m, torch.nn.Linear)]
    nodes, initializers = [], []
    current = input_name
    for index, layer in enumerate(layers):
        weight = layer.weight.detach().numpy()
        bias = layer.bias.detach().numpy()
        initializers += [
            numpy_helper.from_array(weight, f"w{index}"),
            numpy_helper.from_array(bias, f"b{index}"),
        ]
        last = index == len(layers) - 1
        out = output_name if last else f"h{index}"
        nodes.append(helper.make_node("Gemm", [current, f"w{index}", f"b{index}"], [out], transB=1))
        if not last:
            nodes.append(helper.make_node("Relu", [out], [f"r{index}"]))
            out = f"r{index}"
        current = out
    first, last_layer = layers[0], layers[-1]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [batch, first.in_features])],
        [
            helper.make_tensor_value_info(
                output_name, TensorProto.FLOAT, [batch, last_layer.out_features]
            )
        ],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8  # what ONNX Runtime releases of the last years all read
    onnx.checker.check_model(model)
    return model.SerializeToString()
