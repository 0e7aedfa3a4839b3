"""The Open Inference Protocol's `infer` (KServe v2 / Triton REST) as a codec of the pipeline.

    POST /v2/models/{name}[/versions/{version}]/infer      version: a number or an alias

A request's tensors carry the batch axis: `shape` is [N, *the input's shape]. They arrive as
JSON `data` or as binary buffers (see `binary`), and go to the data plane as one group, so
they batch with every other request for the version, native ones included. The body is
parsed by the header-length rule whatever its Content-Type: Triton's sync client sends none
and its aio client calls JSON `application/octet-stream`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import orjson

from maas.api.errors import v2_error
from maas.api.v2 import classification
from maas.api.v2.binary import BufferReader, from_buffer, parse_header, split_body, to_buffer
from maas.api.v2.datatypes import check_datatype, datatype_of, from_json, to_json
from maas.api.v2.images import BYTES, image_batch
from maas.checks.arrays import check_batch
from maas.errors import BadRequest, InvalidInput, MaasError
from maas.observability.metrics import PROTOCOL_V2
from maas.registry.records import VersionRecord
from maas.serving.codec import OCTET_STREAM, Decoded, Group, Reply
from maas.serving.head import MAX_TIMEOUT_MS, RequestHead
from maas.types import ModelRef, TensorSpec

_PREFIX, _SUFFIX = "/v2/models/", "/infer"
_SHARED_MEMORY = ("shared_memory_region", "shared_memory_byte_size", "shared_memory_offset")


def ref_for(name: str, version: str | None = None) -> ModelRef:
    """`{name}` and `/versions/{version}` of a v2 path: a version number or an alias name
    (BadRequest for a number past the version range)."""
    try:
        return ModelRef.parse(name) if version is None else ModelRef.of(name, version)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def match(path: str) -> ModelRef | MaasError | None:
    """The ref an infer path names, the client's mistake in it, or None: not ours."""
    if not (path.startswith(_PREFIX) and path.endswith(_SUFFIX)):
        return None
    parts = path[len(_PREFIX) : -len(_SUFFIX)].split("/")
    if not all(parts):
        return None
    try:
        if len(parts) == 1:
            return ref_for(parts[0])
        if len(parts) == 3 and parts[1] == "versions":
            return ref_for(parts[0], parts[2])
    except BadRequest as exc:
        return exc
    return None


@dataclass(frozen=True, slots=True)
class _Wanted:
    """What the answer holds: the request's id, and which outputs, each binary or not."""

    request_id: str | None
    # (index in the version's outputs, binary, classes asked: 0 for the values themselves)
    outputs: tuple[tuple[int, bool, int], ...]


class V2Codec:
    protocol = PROTOCOL_V2

    def decode(self, body: bytes, head: RequestHead, version: VersionRecord) -> Decoded[_Wanted]:
        header_length = head.header_length()
        header, binary = split_body(body, header_length)
        request = parse_header(header, header_length)
        if not isinstance(request, dict):
            raise BadRequest("the inference request must be a JSON object")
        request_id = request.get("id")
        if request_id is not None and not isinstance(request_id, str):
            raise BadRequest('"id" must be a string')
        parameters = _parameters(request, "the request")
        arrays = _inputs(request.get("inputs"), version.inputs, BufferReader(binary), version, head)
        wanted = _Wanted(request_id, _outputs(request.get("outputs"), parameters, version))
        return Decoded([arrays], wanted, timeout_s=_timeout_s(parameters))

    def encode(
        self, request: Decoded[_Wanted], outputs: list[Group], version: VersionRecord
    ) -> Reply:
        arrays = outputs[0]
        entries: list[dict[str, Any]] = []
        buffers: list[bytes] = []
        for index, binary, classes in request.state.outputs:
            spec = version.outputs[index]
            array = arrays[index]
            if classes:
                entry, buffer = _classes(array, classes, spec.name, version, binary)
            else:
                entry, buffer = _values(array, spec.name, datatype_of(spec.dtype), binary)
            if buffer is not None:
                entry["parameters"] = {"binary_data_size": len(buffer)}
                buffers.append(buffer)
            entries.append(entry)
        answer: dict[str, Any] = {
            "model_name": version.model,
            "model_version": str(version.version),
            "outputs": entries,
        }
        if request.state.request_id is not None:
            answer["id"] = request.state.request_id
        header = orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)
        if not buffers:
            return Reply(200, header)
        length = (b"inference-header-content-length", str(len(header)).encode())
        return Reply(200, b"".join([header, *buffers]), OCTET_STREAM, [length])

    def error(self, exc: MaasError) -> Reply:
        return v2_error(exc)


def _values(
    array: Any, name: str, datatype: str, binary: bool
) -> tuple[dict[str, Any], bytes | None]:
    """An output's entry (and its buffer, when binary) holding its values."""
    entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
    if binary:
        return entry, to_buffer(array, datatype)
    entry["data"] = to_json(array, datatype)
    return entry, None


def _classes(
    array: Any, k: int, name: str, version: VersionRecord, binary: bool
) -> tuple[dict[str, Any], bytes | None]:
    """An output's entry (and its buffer, when binary) answering the classification
    extension: BYTES [N, min(k, C)] of "score:index[:label]"."""
    strings = classification.classified(array, k, name, version)
    shape = classification.shape_of(strings)
    entry: dict[str, Any] = {"name": name, "datatype": classification.BYTES, "shape": shape}
    if binary:
        return entry, classification.to_buffer(strings)
    entry["data"] = classification.to_json(strings)
    return entry, None


def _parameters(holder: dict[str, Any], where: str) -> dict[str, Any]:
    parameters = holder.get("parameters")
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise BadRequest(f"{where}: parameters must be a JSON object")
    return parameters


def _inputs(
    tensors: Any,
    specs: tuple[TensorSpec, ...],
    reader: BufferReader,
    version: VersionRecord,
    head: RequestHead,
) -> Group:
    """The request's input tensors in the version's input order, checked against it (a
    BYTES tensor of encoded images decoded, for an input that declares pre-processing)."""
    if type(tensors) is not list or not tensors:
        raise BadRequest('"inputs" must be a non-empty list of tensors')
    by_name = {spec.name: spec for spec in specs}
    arrays: dict[str, Any] = {}
    for position, tensor in enumerate(tensors):
        name = tensor.get("name") if type(tensor) is dict else None
        if type(name) is not str:
            raise BadRequest(f'input {position} must be an object with a string "name"')
        if name in arrays:
            raise BadRequest(f"input '{name}' is given twice")
        spec = by_name.get(name)
        if spec is None:
            raise BadRequest(f"unknown input '{name}'; the model's inputs are {sorted(by_name)}")
        arrays[name] = _tensor(tensor, spec, reader, version, head)
    reader.finish()
    if len(arrays) != len(specs):
        missing = [spec.name for spec in specs if spec.name not in arrays]
        raise BadRequest(f"missing inputs {missing}; the model's inputs are {sorted(by_name)}")
    group = [arrays[spec.name] for spec in specs]
    if len(group) > 1 and len({len(array) for array in group}) > 1:
        batch = {name: len(array) for name, array in arrays.items()}
        raise InvalidInput(f"inputs disagree on the batch size (the first axis): {batch}")
    return group


def _tensor(
    tensor: dict[str, Any],
    spec: TensorSpec,
    reader: BufferReader,
    version: VersionRecord,
    head: RequestHead,
) -> Any:
    """One input tensor, from its binary buffer or its JSON data, checked against `spec`."""
    where = f"input '{spec.name}'"
    datatype = tensor.get("datatype")
    images = datatype == BYTES  # encoded images, for an input that declares pre-processing
    if not images:
        datatype = check_datatype(datatype, where)
    shape = tensor.get("shape")
    if type(shape) is not list or not all(type(d) is int and 0 <= d < 2**62 for d in shape):
        raise BadRequest(f"{where}: shape must be a list of non-negative integers")
    size = None
    parameters = tensor.get("parameters")
    if parameters:  # the common JSON tensor has none
        if type(parameters) is not dict:
            raise BadRequest(f"{where}: parameters must be a JSON object")
        if not parameters.keys().isdisjoint(_SHARED_MEMORY):
            raise BadRequest(f"{where}: shared-memory tensors are not supported; send the data")
        size = parameters.get("binary_data_size")
    if size is not None:
        if type(size) is not int or size < 0:
            raise BadRequest(f"{where}: binary_data_size must be a non-negative integer")
        if "data" in tensor:
            raise BadRequest(f"{where}: give either data or binary_data_size, not both")
        buffer = reader.take(size, where)
    elif "data" not in tensor:
        raise BadRequest(f"{where}: no data and no parameters.binary_data_size")
    if images:
        prep = version.preprocess.get(spec.name)
        found = buffer if size is not None else None
        array = image_batch(found, tensor.get("data"), shape, spec, prep, head.image_limits, where)
    else:
        expected = datatype_of(spec.dtype)
        if datatype != expected:
            raise InvalidInput(f"{where} has datatype {datatype}, but the model expects {expected}")
        _check_shape(shape, spec, where)
        if size is not None:
            array = from_buffer(buffer, datatype, shape, where)
        else:
            array = from_json(tensor["data"], datatype, shape, where)
    if spec.min is not None or spec.max is not None or spec.max_shape is not None:
        array = check_batch(array, spec)  # the declared domain; dtype and shape fit already
    return array


def _check_shape(shape: list[int], spec: TensorSpec, where: str) -> None:
    """[N, *the input's shape]: N ≥ 1, fixed axes as declared, free (-1) axes not empty."""
    dims = spec.shape
    fits = len(shape) == len(dims) + 1
    if fits:
        for got, want in zip(shape[1:], dims, strict=True):
            if got != want and (want != -1 or got < 1):
                fits = False
                break
    if not fits:
        raise InvalidInput(f"{where} has shape {shape}, but the model takes {[-1, *dims]}")
    if shape[0] < 1:
        raise InvalidInput(f"{where}: the batch axis (the first) must hold at least one instance")


@functools.cache
def _every_output(count: int, binary: bool) -> tuple[tuple[int, bool, int], ...]:
    return tuple((i, binary, 0) for i in range(count))


def _outputs(
    requested: Any, parameters: dict[str, Any], version: VersionRecord
) -> tuple[tuple[int, bool, int], ...]:
    default_binary = parameters.get("binary_data_output", False)
    if type(default_binary) is not bool:
        raise BadRequest("parameters.binary_data_output must be true or false")
    if requested is None or requested == []:
        return _every_output(len(version.outputs), default_binary)
    if type(requested) is not list:
        raise BadRequest('"outputs" must be a list of {"name": ...} objects')
    index = {spec.name: i for i, spec in enumerate(version.outputs)}
    chosen: list[tuple[int, bool, int]] = []
    for position, output in enumerate(requested):
        name = output.get("name") if type(output) is dict else None
        if type(name) is not str:
            raise BadRequest(f'requested output {position} must be an object with a "name"')
        if name not in index:
            raise BadRequest(f"unknown output '{name}'; the model's outputs are {sorted(index)}")
        if any(i == index[name] for i, _, _ in chosen):
            raise BadRequest(f"output '{name}' is requested twice")
        options = _parameters(output, f"output '{name}'")
        classes = classification.class_count(
            options.get("classification"), version.outputs[index[name]]
        )
        binary = options.get("binary_data", default_binary)
        if type(binary) is not bool:
            raise BadRequest(f"output '{name}': binary_data must be true or false")
        chosen.append((index[name], binary, classes))
    return tuple(chosen)


def _timeout_s(parameters: dict[str, Any]) -> float | None:
    """Triton's `timeout` parameter: microseconds, 0 for none."""
    timeout = parameters.get("timeout")
    if timeout is None:
        return None
    if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 0:
        raise BadRequest("parameters.timeout must be a non-negative number of microseconds")
    if timeout == 0:
        return None
    return min(timeout, MAX_TIMEOUT_MS * 1000) / 1e6
