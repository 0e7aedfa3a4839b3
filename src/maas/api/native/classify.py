"""TF Serving's `:classify` verb, on a version's declared post-processing, as a codec.

    POST /v1/models/{name}:classify                    name: model, model@version, model@alias
    POST /v1/models/{name}/versions/{version}:classify
    POST /v1/models/{name}/labels/{alias}:classify
    body {"instances": [...]}  →  {"result": [[["8", 0.97], ["3", 0.01], ...], ...],
                                   "model", "version"}

The body is :predict's and is decoded by the native codec itself; the answer is the output
meta `postprocess` names, softmaxed when declared, as the `top_k` best (label, score) pairs of
each instance, best first (`maas.serving.postprocess`). A version that declares no
postprocess is refused at decode, before anything is queued.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from maas.api.errors import native_error
from maas.api.native.codec import CLASSIFY, NativeCodec, match_verb
from maas.checks.arrays import InstanceGroup
from maas.errors import MaasError, NoPostprocess
from maas.observability.metrics import PROTOCOL_V1
from maas.registry.records import VersionRecord
from maas.serving.codec import Decoded, Group, Reply
from maas.serving.head import RequestHead
from maas.serving.postprocess import as_rows, classes
from maas.types import ModelRef

Array = np.ndarray[Any, Any]


def match(path: str) -> ModelRef | MaasError | None:
    """The ref a classify path names (every form :predict takes), the client's mistake in
    it, or None: not ours."""
    return match_verb(path, CLASSIFY)


class ClassifyCodec:
    # Counted with :predict under the native protocol's label: same paths, same bodies.
    protocol = PROTOCOL_V1

    def __init__(self) -> None:
        self._native = NativeCodec()

    def decode(self, body: bytes, head: RequestHead, version: VersionRecord) -> Decoded[Any]:
        if version.postprocess is None:
            raise NoPostprocess(
                f"{version.key} declares no postprocess, so it cannot answer :classify; "
                "call :predict for its raw outputs, or upload a version whose meta has "
                '"postprocess": {"output": "...", "labels": [...]}'
            )
        return self._native.decode(body, head, version)

    def encode(self, request: Decoded[Any], outputs: list[Group], version: VersionRecord) -> Reply:
        post = version.postprocess
        assert post is not None  # decode refused the version otherwise
        index = next(i for i, spec in enumerate(version.outputs) if spec.name == post.output)
        groups, count = request.state
        scores = _in_request_order(groups, [group[index] for group in outputs], count)
        body = orjson.dumps(
            {"result": classes(scores, post), "model": version.model, "version": version.version},
            option=orjson.OPT_SERIALIZE_NUMPY,
        )
        return Reply(200, body)

    def error(self, exc: MaasError) -> Reply:
        return native_error(exc)


def _in_request_order(groups: list[InstanceGroup], arrays: list[Array], count: int) -> Array:
    """One output's rows ([count, C]) in the order the instances came, from its arrays per
    group of instances (`groups` say which instance each row answers)."""
    if len(groups) == 1 and len(groups[0].positions) == count:
        return as_rows(arrays[0])
    rows = [as_rows(array) for array in arrays]
    ordered = np.empty((count, rows[0].shape[1]), dtype=rows[0].dtype)
    for group, block in zip(groups, rows, strict=True):
        ordered[group.positions] = block
    return ordered
