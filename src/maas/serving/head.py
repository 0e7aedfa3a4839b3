"""What an inference request's headers say, read in one pass over them.

Every protocol reads the same few headers; a malformed value becomes a BadRequest only when
it is used, so the pipeline decides the order in which mistakes are reported.
"""

from __future__ import annotations

import itertools
import uuid

from maas.errors import BadRequest
from maas.serving.images import ImageLimits

MAX_TIMEOUT_MS = 3_600_000


class RequestHead:
    __slots__ = (
        "_header_length",
        "_headers",
        "_image_limits",
        "_timeout",
        "authorization",
        "content_encoding",
        "length",
        "request_id",
        "routing_key",
    )
    _image_limits: ImageLimits  # set on first use (see `image_limits`)

    def __init__(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.authorization: str | None = None
        self.length: int | None = None
        self.request_id = ""
        self.routing_key: str | None = None
        self.content_encoding: bytes | None = None
        self._timeout: bytes | None = None
        self._header_length: bytes | None = None
        self._headers = headers  # the rarely read ones are looked up when asked for
        for name, value in headers:
            if name == b"content-length":
                self.length = int(value) if value.isdigit() else None
            elif name == b"x-request-id":
                self.request_id = value.decode("latin-1")
            elif name == b"authorization":
                self.authorization = value.decode("latin-1")
            elif name == b"x-request-timeout-ms":
                self._timeout = value
            elif name == b"x-routing-key":
                self.routing_key = value.decode("latin-1")
            elif name == b"inference-header-content-length":
                self._header_length = value
            elif name == b"content-encoding":
                self.content_encoding = value.strip().lower()
        if not self.request_id:
            self.request_id = new_request_id()

    def timeout_s(self, default_ms: int) -> float:
        """The request's deadline in seconds: X-Request-Timeout-Ms, else the server's default."""
        if self._timeout is None:
            return default_ms / 1000
        try:
            value = float(self._timeout)
        except ValueError:
            raise BadRequest("X-Request-Timeout-Ms must be a number of milliseconds") from None
        if not 0 < value <= MAX_TIMEOUT_MS:
            raise BadRequest(f"X-Request-Timeout-Ms must be between 0 and {MAX_TIMEOUT_MS}")
        return value / 1000

    def content_type(self) -> bytes:
        """The Content-Type's media type, lower case, without parameters (b"" when none)."""
        return self.content_type_header().partition(b";")[0].strip().lower()

    def content_type_header(self) -> bytes:
        """The whole Content-Type header (b"" when none)."""
        for name, value in self._headers:
            if name == b"content-type":
                return value
        return b""

    @property
    def image_limits(self) -> ImageLimits:
        """The caps on an image this request carries: the settings' (the pipeline sets them for
        a version that declares pre-processing; no other request pays for them), else the
        defaults."""
        try:
            return self._image_limits
        except AttributeError:
            self._image_limits = ImageLimits()  # the request's own: it counts pixels down
            return self._image_limits

    @image_limits.setter
    def image_limits(self, limits: ImageLimits) -> None:
        self._image_limits = limits

    def header_length(self) -> int | None:
        """Inference-Header-Content-Length (the binary tensor extension), if sent."""
        if self._header_length is None:
            return None
        text = self._header_length.strip()
        if not text.isdigit() or len(text) > 18:
            raise BadRequest("Inference-Header-Content-Length must be a non-negative integer")
        return int(text)

    def json_bytes(self, body_length: int) -> int:
        """How much of a body of `body_length` bytes is JSON to parse: the header the binary
        tensor extension declares (the tensor bytes after it are only viewed), else all of it
        (a bad declared length too: the codec says what is wrong with it)."""
        try:
            declared = self.header_length()
        except BadRequest:
            return body_length
        return body_length if declared is None else min(declared, body_length)


# Request ids unique across processes and restarts without a uuid4 (an urandom call) each.
_ID_PREFIX = uuid.uuid4().hex[:12]
_id_counter = itertools.count(1)


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_id_counter):012x}"
