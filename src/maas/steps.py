"""The steps a version may declare around its model (meta `preprocess` and `postprocess`):
data that maas's own code executes, never uploaded code. `maas.types` names them too."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ImagePrep:
    """How an encoded image becomes one instance of an input (meta `preprocess.<input>.image`):
    decoded (PNG or JPEG), converted to `mode` (`L` or `RGB`; alpha is composited over white),
    resized to `size` (height, width), `invert`ed, laid out (`CHW`, `HWC` or `flat`), pixel
    values 0-255 mapped linearly onto `scale` (default [0, 1] for a float input, the raw
    pixels for uint8), then normalised per channel by `mean` and `std` when given."""

    mode: str
    size: tuple[int, int]
    layout: str
    scale: tuple[float, float] | None = None
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    invert: bool = False

    @property
    def channels(self) -> int:
        return 1 if self.mode == "L" else 3

    def shape(self) -> tuple[int, ...]:
        """One instance's shape, as the input must declare it."""
        (h, w), c = self.size, self.channels
        if self.layout == "CHW":
            return (c, h, w)
        if self.layout == "HWC":
            return (h, w, c)
        return (c * h * w,)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ImagePrep:
        image = data["image"]
        scale = image.get("scale")
        return cls(
            mode=image["mode"],
            size=(int(image["size"][0]), int(image["size"][1])),
            layout=image.get("layout", "CHW"),
            scale=None if scale is None else (float(scale[0]), float(scale[1])),
            mean=tuple(float(m) for m in image.get("mean") or ()),
            std=tuple(float(s) for s in image.get("std") or ()),
            invert=bool(image.get("invert", False)),
        )

    def to_json(self) -> dict[str, Any]:
        """The step as meta declares it (`from_json` reads it back)."""
        image: dict[str, Any] = {"mode": self.mode, "size": list(self.size), "layout": self.layout}
        if self.scale is not None:
            image["scale"] = list(self.scale)
        if self.mean:
            image["mean"] = list(self.mean)
        if self.std:
            image["std"] = list(self.std)
        image["invert"] = self.invert
        return {"image": image}


@dataclass(frozen=True, slots=True)
class PostProcess:
    """How one output becomes labelled scores (meta `postprocess`): optionally softmaxed, the
    `top_k` best of `labels` (one per element of the output), best first."""

    output: str
    labels: tuple[str, ...]
    softmax: bool = False
    top_k: int = 5

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PostProcess:
        return cls(
            output=data["output"],
            labels=tuple(str(label) for label in data.get("labels") or ()),
            softmax=bool(data.get("softmax", False)),
            top_k=int(data.get("top_k", 5)),
        )

    def to_json(self) -> dict[str, Any]:
        """The step as meta declares it (`from_json` reads it back)."""
        return {
            "output": self.output,
            "softmax": self.softmax,
            "labels": list(self.labels),
            "top_k": self.top_k,
        }
