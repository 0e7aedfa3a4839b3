"""The native REST dialect (TF-Serving style, with `@` refs) as a codec of the pipeline.

    POST /v1/models/{name}:predict                     name: model, model@version, model@alias
    POST /v1/models/{name}/versions/{version}:predict
    POST /v1/models/{name}/labels/{alias}:predict
    body {"instances": [...]}  →  {"predictions": [...], "model", "version"}

`:classify` (`maas.api.native.classify`) takes the same paths and bodies.

Instances are JSON; the data plane takes arrays. Decoding groups the instances by shape (one
odd instance never breaks another's batch) and remembers where each came from; encoding puts
each instance's outputs back in request order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from maas.api.errors import native_error
from maas.api.native.images import body_image, refuse_image_body, with_images
from maas.checks.arrays import InstanceGroup, group_instances, scatter_outputs
from maas.errors import BadRequest, InvalidInput, MaasError, NotFound
from maas.observability.metrics import PROTOCOL_V1
from maas.registry.records import VersionRecord
from maas.serving.body import parse_json
from maas.serving.codec import Decoded, Group, Reply
from maas.serving.head import RequestHead
from maas.types import ModelRef, parse_version

_PREFIX = "/v1/models/"
PREDICT, CLASSIFY = ":predict", ":classify"
_VERBS = (PREDICT, CLASSIFY)
_TAKES = ':predict takes {"instances": [...]} as JSON'
# Output dtypes orjson writes straight from numpy (bfloat16 arrives as float32).
_ORJSON_KINDS = frozenset("biuf")


def match(path: str) -> ModelRef | MaasError | None:
    """The ref a predict path names, the client's mistake in it, or None: not ours (a path
    that only looks like a model verb route is a NotFound, so it is answered and counted)."""
    return match_verb(path, PREDICT)


def match_verb(path: str, verb: str) -> ModelRef | MaasError | None:
    """The ref `/v1/models/...{verb}` names (`verb` one of PREDICT, CLASSIFY), the client's
    mistake in it, or None: not this verb's (another served verb's path, or no verb)."""
    if not path.startswith(_PREFIX):
        return None
    if not path.endswith(verb):
        return _other_verb(path)
    parts = path[len(_PREFIX) : -len(verb)].split("/")
    if not all(parts):
        return _no_route(path, verb)
    if len(parts) == 1:
        return ref_in_name(parts[0])
    if len(parts) == 3 and parts[1] == "versions":
        try:
            return ModelRef(model=parts[0], version=parse_version(parts[2]))
        except ValueError as exc:
            return BadRequest(str(exc))
    if len(parts) == 3 and parts[1] == "labels":
        return ModelRef(model=parts[0], alias=parts[2])
    return _no_route(path, verb)


def ref_in_name(name: str) -> ModelRef | BadRequest:
    """The ref of a `{name}` path segment: `name`, `name@version` or `name@alias`."""
    try:
        ref = ModelRef.parse(name)
    except ValueError as exc:
        return BadRequest(str(exc))
    if ref.alias is not None and "@" in ref.alias:
        return BadRequest(f"malformed model ref '{name}'")
    return ref


def _other_verb(path: str) -> NotFound | None:
    """A POST such as `/v1/models/NAME:explain`: a verb this release does not serve (no
    model or alias name holds a ':'); None when the path names no verb, or a served one
    (its own matcher answers it)."""
    _, colon, verb = path.rpartition("/")[2].rpartition(":")
    if not colon or f":{verb}" in _VERBS:
        return None
    return unknown_verb(verb)


def unknown_verb(verb: str) -> NotFound:
    """The answer to `NAME:verb` for a verb that is not served."""
    shown = verb[:40] if verb.isprintable() else repr(verb[:40])
    return NotFound(
        f"no verb ':{shown}' on the model routes; the verbs served after ':' are :predict "
        "and :classify (POST /v1/models/NAME[@REF]:predict or :classify with "
        '{"instances": [...]})'
    )


def _no_route(path: str, verb: str) -> NotFound:
    name = verb[1:]
    return NotFound(
        f"no {name} route matches '{path}'; use /v1/models/NAME[@REF]{verb}, "
        f"/v1/models/NAME/versions/N{verb} or /v1/models/NAME/labels/ALIAS{verb}"
    )


class NativeCodec:
    protocol = PROTOCOL_V1

    def decode(
        self, body: bytes, head: RequestHead, version: VersionRecord
    ) -> Decoded[tuple[list[InstanceGroup], int]]:
        if version.preprocess:
            instances = _image_instances(body, head, version)
            groups = group_instances(instances, version.inputs)
        else:
            instances = _instances(_json(body, head, version))
            try:
                groups = group_instances(instances, version.inputs)
            except InvalidInput:
                with_images(instances, version, head.image_limits)  # says it takes none
                raise
        return Decoded([g.arrays for g in groups], (groups, len(instances)))

    def encode(
        self,
        request: Decoded[tuple[list[InstanceGroup], int]],
        outputs: list[Group],
        version: VersionRecord,
    ) -> Reply:
        groups, count = request.state
        predictions: Any
        if _in_order(groups, count) and len(outputs[0]) == 1 and _writable(outputs[0][0]):
            predictions = outputs[0][0]  # the common case: orjson writes the array as it is
        else:
            predictions = scatter_outputs(groups, outputs, version.outputs, count)
        body = orjson.dumps(
            {"predictions": predictions, "model": version.model, "version": version.version},
            option=orjson.OPT_SERIALIZE_NUMPY,
        )
        return Reply(200, body)

    def error(self, exc: MaasError) -> Reply:
        return native_error(exc)


def _image_instances(body: bytes, head: RequestHead, version: VersionRecord) -> list[Any]:
    """The instances of a request to a version that declares image pre-processing, each
    image (a raw or form body, or `{"b64": ...}`) decoded into its input's tensor."""
    raw = body_image(body, head, version)
    if raw is not None:
        return raw
    return with_images(_instances(parse_json(body, _TAKES)), version, head.image_limits)


def _json(body: bytes, head: RequestHead, version: VersionRecord) -> Any:
    try:
        return parse_json(body, _TAKES)
    except BadRequest:
        refuse_image_body(body, head, version)  # an image, to a version that takes none
        raise


def _instances(payload: Any) -> list[Any]:
    if not isinstance(payload, dict) or "instances" not in payload:
        raise BadRequest('body must be a JSON object with "instances": [...]')
    instances = payload["instances"]
    if not isinstance(instances, list) or not instances:
        raise BadRequest('"instances" must be a non-empty list')
    return instances


def _in_order(groups: list[InstanceGroup], count: int) -> bool:
    return len(groups) == 1 and len(groups[0].positions) == count


def _writable(array: np.ndarray[Any, Any]) -> bool:
    return array.dtype.kind in _ORJSON_KINDS and array.flags.c_contiguous
