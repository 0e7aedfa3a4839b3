"""What a request body that is not JSON looks like, for the error that refuses it.

A client that sends a PNG, a form or a gzip file where JSON belongs should hear what it sent and
what the route takes, not the parser's complaint about UTF-8. Only called once parsing has
failed, so the request path pays nothing: it looks at the first bytes (the magic numbers of the
files clients send by mistake), never at the whole body.
"""

from __future__ import annotations

import re

from maas.errors import BadRequest

_LOOK = 2048  # bytes enough to see a file's magic number or a form's first part

# A body that starts like JSON is JSON with a mistake in it: the parser's own words say where.
_JSON_START = re.compile(rb'^\s*(?:[{["0-9]|-[0-9]|true|false|null)')

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image (image/png)"),
    (b"\xff\xd8\xff", "a JPEG image (image/jpeg)"),
    (b"GIF87a", "a GIF image (image/gif)"),
    (b"GIF89a", "a GIF image (image/gif)"),
    (b"II*\x00", "a TIFF image (image/tiff)"),
    (b"MM\x00*", "a TIFF image (image/tiff)"),
    (b"%PDF-", "a PDF document (application/pdf)"),
    (b"\x1f\x8b", "gzip-compressed data (send it with Content-Encoding: gzip to have it inflated)"),
    (b"PK\x03\x04", "a zip archive (model files are uploaded to POST /admin/models/NAME/versions)"),
    (b"\x93NUMPY", "a NumPy .npy file"),
    (b"\x80\x02", "a Python pickle"),
    (b"\x80\x03", "a Python pickle"),
    (b"\x80\x04", "a Python pickle"),
    (b"\x80\x05", "a Python pickle"),
    (b"\xef\xbb\xbf", "JSON text behind a UTF-8 byte order mark (send it without the BOM)"),
)
_FORM_FIELD = re.compile(rb"^[A-Za-z0-9_.%+\-\[\]]+=")
_MULTIPART = re.compile(rb"^--[^\r\n]{1,200}\r?\n", re.IGNORECASE)


def looks_like(body: bytes | memoryview) -> str | None:
    """A few words on what `body` is, when its first bytes say so; None when they do not."""
    head = bytes(body[:_LOOK])
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "a WebP image (image/webp)"
    if _MULTIPART.match(head) and b"content-disposition" in head.lower():
        return "a multipart/form-data upload, which this route does not take"
    if _FORM_FIELD.match(head):
        return "form fields (application/x-www-form-urlencoded), which this route does not take"
    return None


def describe(body: bytes | memoryview) -> str:
    """What `body` is, in a few words, whatever it is."""
    what = looks_like(body)
    if what is not None:
        return what
    head = bytes(body[:40])
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:  # a character cut at the end is still text
        text = head[: exc.start].decode("utf-8") if exc.start > len(head) - 4 else ""
    if not text or any(ch < " " and ch not in "\t\r\n" for ch in text):
        return f"binary data starting with {head[:8].hex(' ')}"
    return f"text starting with {text.strip()[:30]!r}"


def starts_like_json(body: bytes | memoryview) -> bool:
    return _JSON_START.match(bytes(body[:_LOOK])) is not None


def not_json(body: bytes | memoryview, reason: str, expected: str) -> BadRequest:
    """The error for a body the JSON parser refused with `reason`: the parser's words when the
    body starts like JSON, else what the body looks like and what the route takes (`expected`,
    a sentence such as ':predict takes {"instances": [...]} as JSON')."""
    if not bytes(body[:_LOOK]).strip() and len(body) <= _LOOK:
        return BadRequest(f"the body is empty; {expected}")
    what = looks_like(body)
    if what is None and starts_like_json(body):
        return BadRequest(f"malformed JSON: {reason}")
    return BadRequest(f"the body is not JSON: it looks like {what or describe(body)}; {expected}")
