"""An ONNX upload's graph held against meta: each mismatch is refused naming the tensor and
what differs; graphs that fit (symbolic axes, -1, initializers listed as inputs) pass."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from maas.errors import InvalidArtifact
from maas.store.onnx_graph import check_onnx_graph
from maas.types import TensorSpec
from support.model_files import IN, OUT, onnx_bytes, tiny_mlp

X = TensorSpec("x", "float32", (IN,))
Y = TensorSpec("y", "float32", (OUT,))


def _file(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "model.onnx"
    path.write_bytes(data)
    return path


def _refusal(
    tmp_path: Path,
    data: bytes,
    inputs: tuple[TensorSpec, ...] = (X,),
    outputs: tuple[TensorSpec, ...] = (Y,),
    max_batch_size: int = 8,
) -> str:
    with pytest.raises(InvalidArtifact) as refused:
        check_onnx_graph(_file(tmp_path, data), inputs, outputs, max_batch_size)
    assert refused.value.code == "invalid_artifact"  # 422
    return refused.value.message


def _two_inputs() -> bytes:
    """y = x + mask, both [batch, 4]."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "mask"], ["y"])],
        "add",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", IN]),
            helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["batch", IN]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", IN])],
    )
    return helper.make_model(graph).SerializeToString()


def test_the_tiny_mlp_fits_its_meta(tmp_path: Path) -> None:
    check_onnx_graph(_file(tmp_path, onnx_bytes(tiny_mlp())), (X,), (Y,), 8)
    # A declared -1 fits a fixed length; the graph's symbolic batch fits any batch size.
    free = (TensorSpec("x", "float32", (-1,)),)
    check_onnx_graph(_file(tmp_path, onnx_bytes(tiny_mlp())), free, (Y,), 4096)


def test_a_wrong_input_name_names_both(tmp_path: Path) -> None:
    message = _refusal(tmp_path, onnx_bytes(tiny_mlp(), input_name="input"))
    # The graph's only input is not declared, and the declared one is not in the graph.
    assert message == (
        "the ONNX graph has input 'input', which meta does not declare: declare every input "
        "of the graph ('input'), in the order the model takes them"
    )


def test_a_declared_input_the_graph_lacks(tmp_path: Path) -> None:
    mask = TensorSpec("mask", "float32", (IN,))
    message = _refusal(tmp_path, _two_inputs(), inputs=(X, mask, TensorSpec("z", "int64", (1,))))
    assert message == (
        "meta declares input 'z' but the ONNX graph has no input of that name; its inputs are "
        "'x', 'mask'"
    )
    undeclared = _refusal(tmp_path, _two_inputs(), outputs=(TensorSpec("y", "float32", (IN,)),))
    assert "the ONNX graph has input 'mask', which meta does not declare" in undeclared


def test_a_wrong_output_name(tmp_path: Path) -> None:
    message = _refusal(tmp_path, onnx_bytes(tiny_mlp(), output_name="logits"))
    assert message == (
        "meta declares output 'y' but the ONNX graph has no output of that name; its outputs "
        "are 'logits'"
    )


def test_a_wrong_dtype(tmp_path: Path) -> None:
    message = _refusal(tmp_path, onnx_bytes(tiny_mlp()), inputs=(TensorSpec("x", "int64", (IN,)),))
    assert message == "input 'x' is float32 in the ONNX graph, meta declares int64"
    out = _refusal(tmp_path, onnx_bytes(tiny_mlp()), outputs=(TensorSpec("y", "float64", (OUT,)),))
    assert out == "output 'y' is float32 in the ONNX graph, meta declares float64"


def test_a_wrong_rank(tmp_path: Path) -> None:
    message = _refusal(
        tmp_path, onnx_bytes(tiny_mlp()), inputs=(TensorSpec("x", "float32", (2, 2)),)
    )
    assert message == (
        "input 'x' has 2 axes in the ONNX graph ([batch, 4], the batch axis first), meta "
        "declares [2, 2] per instance, which makes 3 with the batch axis"
    )


def test_a_wrong_fixed_axis(tmp_path: Path) -> None:
    message = _refusal(
        tmp_path, onnx_bytes(tiny_mlp()), outputs=(TensorSpec("y", "float32", (7,)),)
    )
    assert message == (
        "output 'y' has shape [batch, 3] in the ONNX graph, meta declares [7] per instance: "
        "axis 1 is 3 in the graph, 7 in meta"
    )


def test_a_fixed_batch_axis_needs_max_batch_size_1(tmp_path: Path) -> None:
    fixed = onnx_bytes(tiny_mlp(), batch=1)
    message = _refusal(tmp_path, fixed, max_batch_size=8)
    assert message.startswith(
        "input 'x' has a fixed batch axis of 1 in the ONNX graph ([1, 4]), but maas runs "
        "batches of 1 to batching.max_batch_size (8) instances: export with a dynamic batch "
        "axis (torch.onnx.export(model, args, 'model.onnx', dynamo=True, external_data=False, "
        "dynamic_shapes=...) with torch.export.Dim('batch') on axis 0)"
    )
    assert message.endswith(', or set "batching": {"max_batch_size": 1}')
    check_onnx_graph(_file(tmp_path, fixed), (X,), (Y,), 1)
    # A batch axis fixed at another size fits no batching at all.
    four = _refusal(tmp_path, onnx_bytes(tiny_mlp(), batch=4), max_batch_size=1)
    assert four.startswith("input 'x' has a fixed batch axis of 4 in the ONNX graph")
    assert 'max_batch_size": 1' not in four


def test_unknown_axes_and_initializers_listed_as_inputs_fit(tmp_path: Path) -> None:
    model = onnx.load_model_from_string(onnx_bytes(tiny_mlp()))
    # Exporters of IR < 4 list every initializer among the graph's inputs too.
    for tensor in model.graph.initializer:
        model.graph.input.append(
            helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims))
        )
    # An axis of no value and no name: the graph does not say, so any length fits.
    model.graph.input[0].type.tensor_type.shape.dim[1].Clear()
    check_onnx_graph(_file(tmp_path, model.SerializeToString()), (X,), (Y,), 8)


def test_weights_in_external_data_files_are_refused(tmp_path: Path) -> None:
    model = onnx.load_model_from_string(onnx_bytes(tiny_mlp()))
    path = tmp_path / "model.onnx"
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="model.onnx.data",
        size_threshold=0,
    )
    with pytest.raises(InvalidArtifact) as refused:
        check_onnx_graph(path, (X,), (Y,), 8)
    assert refused.value.message == (
        "the ONNX model keeps its weights in external data files ('model.onnx.data'), which an "
        "upload cannot carry: save it as one file with the weights inside "
        "(torch.onnx.export(..., external_data=False), or onnx.save_model(model, 'model.onnx', "
        "save_as_external_data=False))"
    )


@pytest.mark.parametrize(
    "data",
    [b"garbage bytes, not a protobuf", onnx_bytes(tiny_mlp())[:40]],
    ids=["garbage", "cut"],
)
def test_bytes_that_do_not_parse_are_refused(tmp_path: Path, data: bytes) -> None:
    message = _refusal(tmp_path, data)
    assert message.startswith("the file does not parse as an ONNX model (DecodeError: "), message


def test_a_bfloat16_tensor_is_refused_with_what_to_do(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "id",
        [helper.make_tensor_value_info("x", TensorProto.BFLOAT16, ["batch", IN])],
        [helper.make_tensor_value_info("y", TensorProto.BFLOAT16, ["batch", IN])],
    )
    data = helper.make_model(graph).SerializeToString()
    bf16 = TensorSpec("x", "bfloat16", (IN,))
    message = _refusal(
        tmp_path, data, inputs=(bf16,), outputs=(TensorSpec("y", "bfloat16", (IN,)),)
    )
    assert message.startswith("input 'x' is bfloat16, which maas does not feed to or read from")
    assert "cast it to float32 inside the graph" in message
