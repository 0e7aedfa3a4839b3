"""What an uploaded file is, from its bytes alone: a TorchScript archive, a `torch.export`
archive, a `torch.save` pickle (a `state_dict` or a whole module), an ONNX model, or something
else.

An upload is checked with this before it is answered, so a file that can never load is refused
at the door with what it is and what to do, instead of failing later in a worker. It reads the
zip directory or the first bytes only (no torch, nothing executed): call it off the event loop.
An ONNX model's graph is then held against meta by `maas.store.onnx_graph`.
"""

from __future__ import annotations

import zipfile
from enum import StrEnum
from pathlib import Path

from maas.errors import InvalidArtifact
from maas.types import ArtifactFormat

_PICKLE_PROTOCOLS = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
_SAVE_HINT = (
    "save the model as a program instead: torch.jit.script(model).save('model.pt') "
    '("format": "torchscript"), torch.export.save(torch.export.export(model, example), '
    '\'model.pt2\') ("format": "torch_export") or torch.onnx.export(model, example, '
    '\'model.onnx\', dynamo=True, external_data=False) ("format": "onnx")'
)
_FORMATS = {
    ArtifactFormat.TORCHSCRIPT: "a TorchScript or torch.export archive",
    ArtifactFormat.TORCH_EXPORT: "a TorchScript or torch.export archive",
    ArtifactFormat.ONNX: "an ONNX model",
}
# ONNX's ModelProto: field 1 is ir_version (a varint), then fields 2-8 (producer_name,
# producer_version, domain, model_version, doc_string, graph, opset_import), 14
# (metadata_props), 20 (training_info) or 25 (functions), each with the wire type protobuf
# writes it with: 0 for the varint model_version, 2 (length-delimited) for the rest.
_ONNX_FIELDS = {2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2}
_MAX_IR_VERSION = 64


class ArchiveKind(StrEnum):
    TORCHSCRIPT = "torchscript"
    TORCH_EXPORT = "torch_export"
    PICKLE = "pickle"  # torch.save(...): weights or a pickled module, not a program
    ONNX = "onnx"
    OTHER = "other"


def inspect_archive(path: Path) -> tuple[ArchiveKind, str]:
    """The kind of file at `path`, and a few words on what it looks like."""
    with open(path, "rb") as fh:
        head = fh.read(64)
    if not zipfile.is_zipfile(path):
        if head.startswith(_PICKLE_PROTOCOLS):
            return ArchiveKind.PICKLE, "a legacy torch.save / pickle file"
        if looks_like_onnx(head):
            return ArchiveKind.ONNX, "an ONNX model (protobuf ModelProto)"
        return ArchiveKind.OTHER, _describe_bytes(head)
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        return ArchiveKind.OTHER, f"a damaged zip file ({exc})"
    leaves = {name.split("/", 1)[1] if "/" in name else name for name in names}
    if "archive_format" in leaves or any(n.startswith("models/") for n in leaves):
        return ArchiveKind.TORCH_EXPORT, "a torch.export archive"
    if "constants.pkl" in leaves and any(n.startswith("code/") for n in leaves):
        return ArchiveKind.TORCHSCRIPT, "a TorchScript archive"
    if "data.pkl" in leaves:
        return ArchiveKind.PICKLE, "a torch.save() file (a state_dict or a pickled module)"
    return ArchiveKind.OTHER, f"a zip file of {len(names)} entries that torch did not write"


def check_archive(path: Path, declared: ArtifactFormat) -> None:
    """InvalidArtifact, with what the file is and what to do, unless it is an archive of the
    declared format."""
    kind, what = inspect_archive(path)
    if kind.value == declared.value:
        return
    if kind is ArchiveKind.PICKLE:
        raise InvalidArtifact(
            f"the file is {what}, which holds weights or pickled Python objects but no program "
            f"maas can run safely; {_SAVE_HINT}"
        )
    if kind in (ArchiveKind.TORCHSCRIPT, ArchiveKind.TORCH_EXPORT, ArchiveKind.ONNX):
        raise InvalidArtifact(
            f'meta says "format": "{declared.value}" but the file is {what}; '
            f'set "format": "{kind.value}"'
        )
    raise InvalidArtifact(f"the file is not {_FORMATS[declared]}: {what}")


def looks_like_onnx(head: bytes) -> bool:
    """Whether `head`, a file's first bytes, starts as an ONNX ModelProto does: ir_version, then
    a field of ModelProto with its wire type. Cheap and strict enough: a text file cannot start
    with byte 0x08, and few binary formats follow it with these tags."""
    if not head.startswith(b"\x08"):
        return False
    ir_version, at = _varint(head, 1)
    if ir_version is None or not 1 <= ir_version <= _MAX_IR_VERSION:
        return False
    tag, _ = _varint(head, at)
    if tag is None:
        return False
    return _ONNX_FIELDS.get(tag >> 3) == tag & 7


def _varint(data: bytes, at: int) -> tuple[int | None, int]:
    """The protobuf varint at `data[at:]` and where it ends; None when it does not end."""
    value = 0
    for shift, index in enumerate(range(at, min(len(data), at + 10))):
        value |= (data[index] & 0x7F) << (7 * shift)
        if data[index] < 0x80:
            return value, index + 1
    return None, at


def _describe_bytes(head: bytes) -> str:
    if not head:
        return "it is empty"
    if head.startswith(b"PK"):
        return "a zip archive that is damaged or cut short (a torch archive is a whole zip file)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"binary data starting with {head[:8].hex(' ')}"
    first = text.strip().splitlines()[0][:40] if text.strip() else ""
    return f"a text file starting with {first!r}"
