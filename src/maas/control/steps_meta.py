"""The declared pre- and post-processing of a new version's `meta` (CONTRACT: pre- and
post-processing): data that maas's own code executes, never uploaded code.

    "preprocess": {"x": {"image": {"mode": "L", "size": [8, 8], "layout": "flat",
                                   "scale": [0, 16], "invert": true}}}
    "postprocess": {"output": "logits", "softmax": true, "labels": ["0", ..., "9"], "top_k": 3}

Each step is checked against the signature it serves: an image input's declared shape is the
one its mode, size and layout make, and its dtype a float (or uint8 for raw pixels); labels
are one per element of a rank-1 output.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from maas.checks.fields import Flag, Int, Number
from maas.types import ImagePrep

MAX_LABELS = 100_000
_FLOATS = ("float32", "float64", "float16", "bfloat16")


class ImageIn(BaseModel):
    """An input that also takes an encoded image (PNG or JPEG)."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["L", "RGB"] = Field(description="L: one grey channel; RGB: three channels")
    size: list[Int] = Field(
        min_length=2, max_length=2, description="[height, width] the image is resized to"
    )
    layout: Literal["CHW", "HWC", "flat"] = Field(
        "CHW", description="how the pixels are laid out in the tensor (flat: HWC order, 1-D)"
    )
    scale: list[Number] | None = Field(
        None,
        min_length=2,
        max_length=2,
        description="[lo, hi] that pixel values 0..255 are mapped onto linearly (default [0, 1] "
        "for a float input; a uint8 input takes the raw pixels)",
    )
    mean: list[Number] | None = Field(
        None, description="per-channel mean subtracted after scaling (one value per channel)"
    )
    std: list[Number] | None = Field(
        None, description="per-channel standard deviation divided by after the mean"
    )
    invert: Flag = Field(False, description="true: 255 - pixel first (dark ink on white paper)")

    @model_validator(mode="after")
    def _consistent(self) -> ImageIn:
        if any(not 1 <= d <= 16384 for d in self.size):
            raise ValueError("size must be [height, width], each from 1 to 16384")
        channels = 1 if self.mode == "L" else 3
        for name, values in (("mean", self.mean), ("std", self.std)):
            if values is not None and len(values) != channels:
                raise ValueError(
                    f"{name} needs one value per channel ({channels} for mode {self.mode})"
                )
        if self.std is not None and any(s == 0 for s in self.std):
            raise ValueError("std must not be 0")
        return self


class PreprocessIn(BaseModel):
    """The pre-processing of one input (the only step is `image` for now)."""

    model_config = ConfigDict(extra="forbid")

    image: ImageIn


class PostprocessIn(BaseModel):
    """How one output answers `:classify` and v2's classification extension."""

    model_config = ConfigDict(extra="forbid")

    output: str = Field(description="the output holding one score per class")
    softmax: Flag = Field(False, description="true: the scores are logits, softmaxed first")
    labels: list[str] | None = Field(
        None,
        max_length=MAX_LABELS,
        description="one label per element of the output, in index order (or upload a "
        "'labels' file part with one label per line)",
    )
    top_k: Int = Field(5, ge=1, le=MAX_LABELS, description="how many label/score pairs answer")


def check_steps(
    preprocess: dict[str, PreprocessIn] | None,
    postprocess: PostprocessIn | None,
    inputs: list[tuple[str, str, list[int]]],
    outputs: list[tuple[str, str, list[int]]],
) -> None:
    """ValueError unless each step fits the signature it serves (`inputs`, `outputs`: name,
    dtype and shape of each tensor)."""
    by_input = {name: (dtype, shape) for name, dtype, shape in inputs}
    for name, step in (preprocess or {}).items():
        if name not in by_input:
            raise ValueError(
                f"preprocess names '{name}', which is not an input "
                f"(inputs: {', '.join(repr(n) for n in by_input)})"
            )
        dtype, shape = by_input[name]
        image = ImagePrep.from_json(step.model_dump())
        if tuple(shape) != image.shape():
            raise ValueError(
                f"input '{name}' has shape {shape}, but a {image.mode} image of size "
                f"{list(image.size)} in layout {image.layout} is {list(image.shape())}"
            )
        raw = step.image.scale is None and step.image.mean is None and step.image.std is None
        if dtype not in _FLOATS and not (dtype == "uint8" and raw):
            raise ValueError(
                f"input '{name}' is {dtype}: an image input is a float tensor (or uint8 for "
                "raw pixels, with no scale, mean or std)"
            )
    if postprocess is None:
        return
    by_output = {name: shape for name, _, shape in outputs}
    out_shape = by_output.get(postprocess.output)
    if out_shape is None:
        raise ValueError(
            f"postprocess names output '{postprocess.output}', which is not an output "
            f"(outputs: {', '.join(repr(n) for n in by_output)})"
        )
    if len(out_shape) != 1 or out_shape[0] < 1:
        raise ValueError(
            f"postprocess: output '{postprocess.output}' has shape {out_shape}; classes need a "
            "fixed rank-1 output (one score per class, e.g. [10])"
        )
    if postprocess.labels is None:
        raise ValueError(
            "postprocess needs labels: give them inline, or upload a 'labels' part (one per line)"
        )
    if len(postprocess.labels) != out_shape[0]:
        raise ValueError(
            f"postprocess has {len(postprocess.labels)} labels, but output "
            f"'{postprocess.output}' has {out_shape[0]} classes"
        )
