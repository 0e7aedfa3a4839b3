"""An ONNX model's own signature, held against what `meta` declares.

An upload of `"format": "onnx"` is read with the `onnx` package (the graph only, no runtime,
nothing executed) and each declared input and output must be in the graph by name, with the
declared element type, the declared rank plus the batch axis, and the declared fixed lengths;
so a mismatch is refused at the door with which tensor and what differs, instead of failing
later in a worker. The worker holds ONNX Runtime's view of the same graph against meta with
`compare` when it loads. Blocking (it parses the whole file): call it off the event loop.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from maas.errors import InvalidArtifact

if TYPE_CHECKING:
    import onnx

# ONNX's element type names (TensorProto.DataType, lower case; ONNX Runtime writes the same
# in "tensor(float)"), where they differ from ours.
_OUR_NAMES = {"float": "float32", "double": "float64"}
_DYNAMIC_EXPORT = (
    "torch.onnx.export(model, args, 'model.onnx', dynamo=True, external_data=False, "
    "dynamic_shapes=...) with torch.export.Dim('batch') on axis 0"
)


@dataclass(frozen=True, slots=True)
class GraphTensor:
    """One input or output as the graph has it: `dtype` in maas's names where it is one of
    them (else the graph's own, e.g. "string" or "a sequence"), `dims` per axis (an int when
    fixed, a name when symbolic, None when unknown), None when the rank is unknown."""

    name: str
    dtype: str
    dims: tuple[int | str | None, ...] | None


class Declared(Protocol):
    """A tensor as meta declares it (`maas.types.TensorSpec`, or meta's own model)."""

    @property
    def name(self) -> str: ...
    @property
    def dtype(self) -> str: ...
    @property
    def shape(self) -> Sequence[int]: ...


def dtype_name(onnx_name: str) -> str:
    """maas's name for ONNX's element type `onnx_name` ("float", "INT64"), else that name."""
    lower = onnx_name.lower()
    return _OUR_NAMES.get(lower, lower)


def check_onnx_graph(
    path: Path,
    inputs: Sequence[Declared],
    outputs: Sequence[Declared],
    max_batch_size: int,
) -> None:
    """InvalidArtifact, naming the tensor and what differs, unless the ONNX model at `path` is
    one file whose graph has the signature meta declares."""
    model = _read(path)
    external = _external_files(model)
    if external:
        raise InvalidArtifact(
            "the ONNX model keeps its weights in external data files "
            f"({', '.join(repr(f) for f in external[:3])}), which an upload cannot carry: save "
            "it as one file with the weights inside (torch.onnx.export(..., external_data=False)"
            ", or onnx.save_model(model, 'model.onnx', save_as_external_data=False))"
        )
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    graph_inputs = [_tensor(v) for v in graph.input if v.name not in initializers]
    compare(graph_inputs, [_tensor(v) for v in graph.output], inputs, outputs, max_batch_size)


def compare(
    graph_inputs: Sequence[GraphTensor],
    graph_outputs: Sequence[GraphTensor],
    inputs: Sequence[Declared],
    outputs: Sequence[Declared],
    max_batch_size: int,
) -> None:
    """InvalidArtifact, naming the tensor and what differs, unless the graph's inputs are the
    declared ones (none missing, none more) and every declared output is among its outputs,
    each of the declared dtype, rank + 1 (the batch axis) and fixed lengths; a fixed batch
    axis is allowed only at 1 with `max_batch_size` 1."""
    declared_names = {t.name for t in inputs}
    for extra in graph_inputs:
        if extra.name not in declared_names:
            raise InvalidArtifact(
                f"the ONNX graph has input '{extra.name}', which meta does not declare: declare "
                f"every input of the graph ({_names(graph_inputs)}), in the order the model "
                "takes them"
            )
    for kind, declared, present in (
        ("input", inputs, graph_inputs),
        ("output", outputs, graph_outputs),
    ):
        by_name = {t.name: t for t in present}
        for want in declared:
            got = by_name.get(want.name)
            if got is None:
                raise InvalidArtifact(
                    f"meta declares {kind} '{want.name}' but the ONNX graph has no {kind} of "
                    f"that name; its {kind}s are {_names(present)}"
                )
            _same(kind, got, want, max_batch_size)


def _same(kind: str, got: GraphTensor, want: Declared, max_batch_size: int) -> None:
    name = f"{kind} '{want.name}'"
    if got.dtype != want.dtype:
        raise InvalidArtifact(
            f"{name} is {got.dtype} in the ONNX graph, meta declares {want.dtype}"
        )
    if got.dtype == "bfloat16":
        raise InvalidArtifact(
            f"{name} is bfloat16, which maas does not feed to or read from ONNX Runtime (numpy "
            "has no bfloat16): cast it to float32 inside the graph and declare float32"
        )
    if got.dims is None:
        return  # the graph does not say: ONNX Runtime checks at run time
    declared = list(want.shape)
    shown = _shape(got.dims)
    if len(got.dims) != len(declared) + 1:
        raise InvalidArtifact(
            f"{name} has {len(got.dims)} axes in the ONNX graph ({shown}, the batch axis "
            f"first), meta declares {declared} per instance, which makes {len(declared) + 1} "
            "with the batch axis"
        )
    for axis, (have, length) in enumerate(zip(got.dims[1:], declared, strict=True), start=1):
        if isinstance(have, int) and length not in (-1, have):
            raise InvalidArtifact(
                f"{name} has shape {shown} in the ONNX graph, meta declares {declared} per "
                f"instance: axis {axis} is {have} in the graph, {length} in meta"
            )
    batch = got.dims[0]
    if isinstance(batch, int) and not (batch == 1 and max_batch_size == 1):
        raise InvalidArtifact(
            f"{name} has a fixed batch axis of {batch} in the ONNX graph ({shown}), but maas "
            f"runs batches of 1 to batching.max_batch_size ({max_batch_size}) instances: "
            f"export with a dynamic batch axis ({_DYNAMIC_EXPORT})"
            + (', or set "batching": {"max_batch_size": 1}' if batch == 1 else "")
        )


def _names(tensors: Sequence[GraphTensor]) -> str:
    return ", ".join(f"'{t.name}'" for t in tensors) or "none"


def _shape(dims: tuple[int | str | None, ...]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def _read(path: Path) -> onnx.ModelProto:
    import onnx  # only where an ONNX upload is checked

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError, or onnx's own
        raise InvalidArtifact(
            f"the file does not parse as an ONNX model ({type(exc).__name__}: {exc})"
        ) from None
    if not model.HasField("graph"):
        raise InvalidArtifact("the file parses as ONNX but holds no graph")
    return model


def _tensor(value: onnx.ValueInfoProto) -> GraphTensor:
    from onnx import TensorProto

    kind = value.type.WhichOneof("value")
    if kind != "tensor_type":
        return GraphTensor(value.name, f"a {kind or 'value of no type'}", None)
    tensor = value.type.tensor_type
    dtype = dtype_name(TensorProto.DataType.Name(tensor.elem_type))
    if not tensor.HasField("shape"):
        return GraphTensor(value.name, dtype, None)
    dims: list[int | str | None] = []
    for dim in tensor.shape.dim:
        which = dim.WhichOneof("value")
        dims.append(dim.dim_value if which == "dim_value" else dim.dim_param if which else None)
    return GraphTensor(value.name, dtype, tuple(dims))


def _external_files(model: onnx.ModelProto) -> list[str]:
    """The external data files the model's tensors name (none for one self-contained file)."""
    from onnx import TensorProto

    files: list[str] = []
    for tensor in _all_tensors(model):
        if tensor.data_location == TensorProto.EXTERNAL:
            where = {e.key: e.value for e in tensor.external_data}.get("location", tensor.name)
            if where not in files:
                files.append(where)
    return files


def _all_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    graphs = [model.graph]
    nodes = [node for function in model.functions for node in function.node]
    while graphs or nodes:
        if graphs:
            graph = graphs.pop()
            yield from graph.initializer
            for sparse in graph.sparse_initializer:
                yield sparse.values
                yield sparse.indices
            nodes.extend(graph.node)
            continue
        for attribute in nodes.pop().attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                graphs.append(attribute.g)
            graphs.extend(attribute.graphs)
