"""Images in v2 infer requests: an input that declares pre-processing (meta `preprocess`) also
takes a BYTES tensor of shape [N] (or [N, 1]) whose elements are encoded PNG or JPEG files,
one per instance, as Triton's clients send them:

    binary: parameters.binary_data_size, each element a 4-byte little-endian length and the
            file's bytes (tritonclient's `set_data_from_numpy(np.array([png], dtype=object))`)
    JSON:   "data": ["<base64 of the file>", ...]

Each becomes one instance of the input's declared tensor (`maas.serving.images`).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np

from maas.api.v2.binary import byte_elements
from maas.checks.arrays import numpy_dtype
from maas.errors import InvalidInput
from maas.serving.images import ImageLimits, decode_image
from maas.types import ImagePrep, TensorSpec

BYTES = "BYTES"


def image_batch(
    buffer: memoryview | None,
    data: Any,
    shape: list[int],
    spec: TensorSpec,
    prep: ImagePrep | None,
    limits: ImageLimits,
    where: str,
) -> np.ndarray[Any, Any]:
    """The instances a BYTES tensor's encoded images make, stacked: [N, *the input's shape].
    `buffer` is its binary data (None: `data`, its JSON, holds base64 strings)."""
    if prep is None:
        raise InvalidInput(
            f"{where} takes {spec.dtype} numbers; a BYTES tensor (encoded images) is taken "
            "only by an input whose version declares image pre-processing for it, "
            f'"preprocess": {{"{spec.name}": {{"image": {{...}}}}}} in meta (see docs/images.md)'
        )
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)) or shape[0] < 1:
        raise InvalidInput(
            f"{where} is a BYTES tensor of encoded images: its shape must be [N] or [N, 1], "
            f"one image per instance, got {shape}"
        )
    files: list[bytes | memoryview] = []
    files += byte_elements(buffer, where) if buffer is not None else _base64_files(data, where)
    if len(files) != shape[0]:
        raise InvalidInput(f"{where}: shape {shape} needs {shape[0]} images, got {len(files)}")
    dtype = numpy_dtype(spec.dtype)
    return np.stack(
        [
            decode_image(file, prep, dtype, limits, f"{where} element {i}: ")
            for i, file in enumerate(files)
        ]
    )


def _base64_files(data: Any, where: str) -> list[bytes]:
    if type(data) is not list:
        raise InvalidInput(f"{where}: data must be a list of base64 strings, one per image")
    flat = [row[0] if type(row) is list and len(row) == 1 else row for row in data]
    files: list[bytes] = []
    for i, text in enumerate(flat):
        if type(text) is not str:
            raise InvalidInput(
                f"{where} element {i}: a BYTES image in JSON is a string holding the file's base64"
            )
        try:
            files.append(base64.b64decode("".join(text.split()), validate=True))
        except (binascii.Error, ValueError):
            raise InvalidInput(
                f"{where} element {i} is not valid base64 (send each file base64-encoded, or "
                "the raw bytes with the binary tensor extension)"
            ) from None
    return files
