"""The CLI's HTTP client for the admin API: where the server is, which key to send, and how
each failure becomes one line and an exit code (1 refused, 2 usage, 3 unreachable).

The URL is `--url`, else `MAAS_URL`, else the local gateway (`MAAS_HOST`/`MAAS_PORT`, default
`http://127.0.0.1:8000`). The key is `MAAS_API_KEY`, else `<MAAS_DATA_DIR>/admin.key`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click
import httpx

from maas.cli.output import CliError, Unreachable, error_object, one_line, usage_error
from maas.types import is_number

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000
TIMEOUT_S = 60.0
_ANY_HOST = {"", "0.0.0.0", "::", "[::]"}


@dataclass(frozen=True)
class Target:
    url: str
    key: str | None
    key_source: str  # where the key came from, for hints


def resolve_url(explicit: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    url = explicit or env.get("MAAS_URL", "").strip()
    if url:
        if not url.startswith(("http://", "https://")):
            where = "--url" if explicit else "MAAS_URL"
            raise usage_error(f"{where}={url!r} is not an http:// or https:// URL")
        return url.rstrip("/")
    host = env.get("MAAS_HOST", "").strip()
    host = DEFAULT_HOST if host in _ANY_HOST else host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    port_text = env.get("MAAS_PORT", "").strip()
    if port_text and not (is_number(port_text) and 0 < int(port_text) < 65536):
        raise usage_error(f"MAAS_PORT={port_text!r}: must be a port number (1-65535)")
    return f"http://{host}:{port_text or DEFAULT_PORT}"


def resolve_key(environ: Mapping[str, str] | None = None) -> tuple[str | None, str]:
    env = os.environ if environ is None else environ
    key = env.get("MAAS_API_KEY", "").strip()
    if key:
        return key, "MAAS_API_KEY"
    path = Path(env.get("MAAS_DATA_DIR") or "./maas-data") / "admin.key"
    try:
        text = path.read_text().strip()
    except OSError:
        return None, f"no MAAS_API_KEY and no {path}"
    return (text or None), str(path)


def target() -> Target:
    """The server and key for the running command (`--url` of the root group wins)."""
    ctx = click.get_current_context(silent=True)
    explicit = ctx.find_root().params.get("url") if ctx is not None else None
    key, source = resolve_key()
    return Target(resolve_url(explicit), key, source)


def path(*parts: str | int) -> str:
    """`/admin/...` with every segment percent-encoded."""
    return "/admin/" + "/".join(quote(str(p), safe="") for p in parts)


class Client:
    """One command's connection to the admin API. `call` returns the parsed JSON answer or
    raises CliError."""

    def __init__(self, where: Target | None = None) -> None:
        self.target = where or target()
        headers = {"User-Agent": "maas-cli"}
        if self.target.key:
            headers["Authorization"] = f"Bearer {self.target.key}"
        self._http = httpx.Client(base_url=self.target.url, headers=headers, timeout=TIMEOUT_S)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def call(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        content: Iterable[bytes] | Iterator[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = TIMEOUT_S,
    ) -> Any:
        """The answer's JSON (None for an empty body); CliError for an error answer."""
        response = self.send(
            method,
            url,
            json=json,
            params=params,
            content=content,
            headers=headers,
            timeout=timeout,
        )
        if response.is_error:
            raise refused(response, self.target)
        return _answer(response, self.target)

    def find(self, url: str) -> Any:
        """GET `url`: its JSON, or None when it answers 404 (it does not exist)."""
        response = self.send("GET", url)
        if response.status_code == 404:
            return None
        if response.is_error:
            raise refused(response, self.target)
        return _answer(response, self.target)

    def send(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        content: Iterable[bytes] | Iterator[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = TIMEOUT_S,
    ) -> httpx.Response:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            return self._http.request(
                method,
                url,
                json=json,
                params=query,
                content=content,
                headers=headers,
                timeout=timeout,
            )
        except httpx.TimeoutException as exc:
            raise Unreachable(
                f"the maas server at {self.target.url} did not answer in time ({_reason(exc)}); "
                "is it overloaded? Set MAAS_URL to point elsewhere."
            ) from None
        except (httpx.ConnectError, httpx.UnsupportedProtocol) as exc:
            raise unreachable(self.target.url, exc) from None
        except httpx.TransportError as exc:
            if content is not None:
                # The server was reached (the preflight), then hung up mid-body: most likely it
                # refused the upload early (413 over MAAS_MAX_ARTIFACT_BYTES) and closed.
                raise CliError(
                    f"the maas server at {self.target.url} closed the connection during the "
                    f"upload ({_reason(exc)}); it refuses artifacts over its "
                    "MAAS_MAX_ARTIFACT_BYTES this way, see its log",
                    code="upload_closed",
                ) from None
            raise Unreachable(
                f"lost the connection to the maas server at {self.target.url} ({_reason(exc)})"
            ) from None
        except httpx.InvalidURL as exc:
            raise usage_error(f"{self.target.url}: not a usable URL ({exc})") from None


def unreachable(url: str, exc: BaseException) -> CliError:
    return Unreachable(
        f"cannot reach the maas server at {url} ({_reason(exc)}); is `maas serve` running? "
        "Set MAAS_URL to point elsewhere."
    )


def refused(response: httpx.Response, where: Target) -> CliError:
    """`<status> <code>: <message>` from the admin API's error body (or its text); under
    `--json` that body itself (one of its shape when the answer was not the API's)."""
    code, message = error_of(response)
    answer = _api_error(response) or error_object(code, message)
    text = f"{response.status_code} {code}: {message}"
    if response.status_code == 401:
        text += (
            f"; the key from {where.key_source} was refused, set MAAS_API_KEY to an admin key"
            if where.key
            else f"; {where.key_source}: set MAAS_API_KEY to an admin key"
        )
    elif response.status_code == 403 and "lacks the" in message:  # not: limited to models
        text += f"; the key from {where.key_source} lacks the admin scope (MAAS_API_KEY)"
    return CliError(text, code=code, answer=answer)


def _api_error(response: httpx.Response) -> dict[str, Any] | None:
    """The answer's body when it is the admin API's error object, as sent."""
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("code"), str):
        return {"error": error}
    return None


def error_of(response: httpx.Response) -> tuple[str, str]:
    try:
        error = response.json()["error"]
        if isinstance(error, dict):
            return str(error.get("code", "error")), one_line(str(error.get("message", "")))
        return "error", one_line(str(error))
    except (ValueError, KeyError, TypeError):
        text = one_line(response.text, 300) or "(empty body)"
        return (response.reason_phrase or "error").lower().replace(" ", "_"), text


def _answer(response: httpx.Response, where: Target) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        raise CliError(
            f"the server at {where.url} answered {response.status_code} with a body that is not "
            f"JSON: {one_line(response.text, 200)!r}; is MAAS_URL a maas gateway?",
            code="bad_answer",
        ) from None


def _reason(exc: BaseException) -> str:
    """The innermost OS error's text ("connection refused"), else the exception's own."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror.lower()
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    if text.startswith("[Errno") and "] " in text:
        text = text.split("] ", 1)[1]
    return one_line(text.lower() or type(exc).__name__, 200)
