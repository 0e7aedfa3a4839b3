"""`multipart/form-data` bodies, part by part: python_multipart's parser with each part's
name taken from its headers. An upload (`api/admin/upload.py`) streams its parts through it; a
native request with an image (`api/native/images.py`) parses its whole body at once.

    form = Form(boundary, on_part=..., on_data=...)   # on_part(name) as each part begins
    form.write(chunk) ...; form.finish()              # BadRequest for a malformed body
"""

from __future__ import annotations

from collections.abc import Callable

from python_multipart.multipart import MultipartParser, parse_options_header

from maas.errors import BadRequest, PayloadTooLarge


def boundary_of(content_type: bytes | str) -> bytes | None:
    """The boundary of a `multipart/form-data` Content-Type (None when it is another type or
    names none)."""
    kind, params = parse_options_header(content_type)
    if kind != b"multipart/form-data":
        return None
    return params.get(b"boundary") or None


def shown(name: str) -> str:
    """A part's name as an error message may quote it."""
    return name[:40] if name.isprintable() else repr(name[:40])


class Form:
    """A form's parts as they stream: `on_part` gets each part's name once its headers are
    read (it raises BadRequest for a part it does not take), `on_data` the part's bytes."""

    def __init__(
        self,
        boundary: bytes,
        *,
        on_part: Callable[[str], None],
        on_data: Callable[[bytes], None],
    ) -> None:
        self.ended = False  # the closing boundary was read
        self._field = b""
        self._value = b""
        self._headers: dict[bytes, bytes] = {}
        self._on_part = on_part
        self._on_data = on_data
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._headers.clear,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_end": self._end,
            },
        )

    def write(self, data: bytes) -> None:
        try:
            self._parser.write(data)
        except (BadRequest, PayloadTooLarge):
            raise
        except Exception as exc:  # the parser's own complaint about the body
            raise BadRequest(f"malformed multipart body: {exc}") from None

    def finish(self) -> None:
        try:
            self._parser.finalize()
        except Exception as exc:
            raise BadRequest(f"malformed multipart body: {exc}") from None

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def _headers_finished(self) -> None:
        _, disposition = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._on_part(disposition.get(b"name", b"").decode("latin-1"))

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        self._on_data(bytes(data[start:end]))

    def _end(self) -> None:
        self.ended = True
