"""Images in native requests (`:predict`, and every verb that decodes as it does), for a
version whose inputs declare pre-processing (meta `preprocess`, see docs/images.md):

    {"instances": [{"b64": "<base64 PNG or JPEG>"}, ...]}       a single-input version
    {"instances": [{"x": {"b64": "..."}, "other": [...]}]}      named inputs
    Content-Type: image/png | image/jpeg, the file as the body  one instance
    multipart/form-data with the file in a part named `image`   one instance

Each image becomes its input's tensor here (`maas.serving.images`), so the instances that
reach `group_instances` hold arrays where the images were, and batch with plain ones. A
version that declares no pre-processing takes no image: the errors say how to declare it.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from maas.api.forms import Form, boundary_of, shown
from maas.checks.arrays import numpy_dtype
from maas.errors import BadRequest, InvalidInput
from maas.registry.records import VersionRecord
from maas.serving.head import RequestHead
from maas.serving.images import ImageLimits, decode_image
from maas.types import TensorSpec

RAW_TYPES = frozenset({b"image/png", b"image/jpeg", b"image/jpg", b"image/pjpeg"})
FORM = b"multipart/form-data"
PART = "image"
_DECLARE = (
    'declare it in the version\'s meta, e.g. "preprocess": {"%s": {"image": {"mode": "L", '
    '"size": [8, 8], "layout": "flat"}}} (see docs/images.md)'
)


def body_image(body: bytes, head: RequestHead, version: VersionRecord) -> list[Any] | None:
    """The one instance a raw image body or a form's `image` part holds, decoded; None when
    the body is neither (JSON, or whatever else: the JSON parser says what is wrong)."""
    content_type = head.content_type()
    if content_type == FORM:
        data = _form_image(body, head.content_type_header())
    elif content_type in RAW_TYPES:
        data = body
    elif content_type.startswith(b"image/"):
        shown = content_type.decode("latin-1")[:60]
        raise InvalidInput(f"only PNG and JPEG images are taken; the body is {shown}")
    else:
        return None
    spec = _only_input(version, "a raw image body or a multipart 'image' part")
    prep = version.preprocess.get(spec.name)
    if prep is None:
        raise InvalidInput(_undeclared(spec.name))
    return [decode_image(data, prep, numpy_dtype(spec.dtype), head.image_limits)]


def with_images(instances: list[Any], version: VersionRecord, limits: ImageLimits) -> list[Any]:
    """`instances` with every `{"b64": ...}` image decoded into its input's tensor (the same
    list when none holds one)."""
    inputs = version.inputs
    decoded: list[Any] | None = None
    for position, instance in enumerate(instances):
        if type(instance) is not dict:
            continue
        if _is_image(instance):
            spec = _only_input(version, f'instance {position}: an image {{"b64": ...}}')
            value: Any = _decoded(instance, spec, version, limits, f"instance {position}: ")
        else:
            value = None
            for spec in inputs:
                image = instance.get(spec.name)
                if type(image) is dict and _is_image(image):
                    where = f"instance {position}: input '{spec.name}': "
                    value = value or dict(instance)
                    value[spec.name] = _decoded(image, spec, version, limits, where)
            if value is None:
                continue
        if decoded is None:
            decoded = list(instances)
        decoded[position] = value
    return instances if decoded is None else decoded


def refuse_image_body(body: bytes, head: RequestHead, version: VersionRecord) -> None:
    """For a body the JSON parser refused, sent to a version that declares no pre-processing:
    when it is an image (or a form with an `image` part), the error that says the version
    takes no image. Other forms keep the parser's error, which says what the body is."""
    content_type = head.content_type()
    if content_type == FORM:
        try:
            _form_image(body, head.content_type_header())
        except BadRequest:
            return
    elif not content_type.startswith(b"image/"):
        return
    raise InvalidInput(_undeclared(version.inputs[0].name))


def _is_image(value: dict[str, Any]) -> bool:
    return len(value) == 1 and "b64" in value


def _only_input(version: VersionRecord, what: str) -> TensorSpec:
    if len(version.inputs) != 1:
        names = [spec.name for spec in version.inputs]
        first = names[0] if names else "x"
        raise InvalidInput(
            f"{what} is one instance of a single-input version; this version takes inputs "
            f'{names}: send {{"instances": [{{"{first}": {{"b64": "..."}}, ...}}]}} as JSON'
        )
    return version.inputs[0]


def _decoded(
    image: dict[str, Any],
    spec: TensorSpec,
    version: VersionRecord,
    limits: ImageLimits,
    where: str,
) -> Any:
    prep = version.preprocess.get(spec.name)
    if prep is None:
        raise InvalidInput(f"{where}{_undeclared(spec.name)}")
    data = _base64(image["b64"], where)
    return decode_image(data, prep, numpy_dtype(spec.dtype), limits, where)


def _undeclared(name: str) -> str:
    return (
        f"this version declares no image pre-processing for input '{name}', so it takes "
        f"numbers, not images; {_DECLARE % name}"
    )


def _base64(text: Any, where: str) -> bytes:
    """The bytes of a base64 string (standard or URL-safe alphabet; line breaks ignored)."""
    if type(text) is not str:
        raise InvalidInput(f'{where}"b64" must be a string holding the base64 of a PNG or JPEG')
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        pass
    compact = "".join(text.split())
    try:
        if "-" in compact or "_" in compact:
            return base64.urlsafe_b64decode(compact.encode("ascii"))
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise InvalidInput(
            f'{where}"b64" is not valid base64 (send the file\'s bytes base64-encoded, '
            "e.g. with `base64 -w0 digit.png`)"
        ) from None


def _form_image(body: bytes, content_type: bytes) -> bytes:
    """The bytes of the form's one part named `image`."""
    boundary = boundary_of(content_type)
    if boundary is None:
        raise BadRequest("a multipart/form-data body needs a boundary in its Content-Type")
    chunks: list[bytes] = []
    seen: list[str] = []

    def on_part(name: str) -> None:
        if name != PART:
            raise BadRequest(
                f"unexpected form part '{shown(name)}': send the image file as the one part "
                "named 'image' (curl -F image=@digit.png)"
            )
        if seen:
            raise BadRequest("the form has two 'image' parts; send one image per request")
        seen.append(name)

    form = Form(boundary, on_part=on_part, on_data=chunks.append)
    form.write(body)
    form.finish()
    if not seen:
        raise BadRequest("the form has no part named 'image' (curl -F image=@digit.png)")
    if not form.ended:
        raise BadRequest("the multipart body ends before its closing boundary (truncated?)")
    return b"".join(chunks)
