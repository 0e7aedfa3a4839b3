"""What the CLI prints: the admin API's JSON (`--json`), Rich tables and short sentences on
stdout, progress and one-line errors on stderr.

Every failure a command reports is a `CliError`: click prints it as `error: <message>` and
exits with its code (CONTRACT: 1 refused, 2 usage, 3 server unreachable). Under `--json` the
same failure is also an error object on stdout, the admin API's own for a refusal by the server
(`{"error": {"code", "message"}}`), one of that shape otherwise (`usage`, `unreachable`, ...).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import IO, Any, TypeVar

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from maas.types import is_number

REFUSED, USAGE, UNREACHABLE = 1, 2, 3

F = TypeVar("F", bound=Callable[..., Any])


class CliError(click.ClickException):
    """A failure reported in one line, `error: <message>`: refused (exit 1). `code` names it
    in the `--json` error object; `answer` is the server's own error object, when it sent one."""

    exit_code = REFUSED
    code = "refused"

    def __init__(
        self, message: str, *, code: str | None = None, answer: dict[str, Any] | None = None
    ) -> None:
        super().__init__(one_line(message))
        if code is not None:
            self.code = code
        self.answer = answer

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", file=file, err=True)

    def as_json(self) -> dict[str, Any]:
        return self.answer or error_object(self.code, self.format_message())


class UsageFailure(CliError):
    """The command line itself is wrong (exit 2), found before any request."""

    exit_code = USAGE
    code = "usage"


class Unreachable(CliError):
    """The server (or database) cannot be reached (exit 3)."""

    exit_code = UNREACHABLE
    code = "unreachable"


def error_object(code: str, message: str) -> dict[str, Any]:
    """The admin API's error shape."""
    return {"error": {"code": code, "message": message}}


def usage_error(message: str) -> CliError:
    return UsageFailure(message)


def one_line(text: str, limit: int = 2000) -> str:
    """Whitespace (newlines included) collapsed to single spaces, cut at `limit` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def json_option(func: F) -> F:
    """`--json` on a command: print the admin API's own answer instead of a table."""
    return click.option(
        "--json", "as_json", is_flag=True, help="Print the admin API's JSON answer."
    )(func)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def say(text: str) -> None:
    """A human sentence on stdout (no markup, no highlighting)."""
    click.echo(text)


def warn(text: str) -> None:
    click.echo(text, err=True)


def stdout_console() -> Console:
    """A console for results. Off a terminal it is wide, plain and never truncates cells, so
    the output can be piped into grep."""
    if sys.stdout.isatty():
        return Console(highlight=False)
    columns = os.environ.get("COLUMNS", "")
    width = int(columns) if is_number(columns) and len(columns) < 6 else 200
    return Console(highlight=False, width=width, no_color=True, soft_wrap=False)


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False)


def cell(value: Any) -> Text:
    """A table cell: text taken literally (a server message may contain `[...]`)."""
    if isinstance(value, Text):
        return value
    return Text(plain(value))


def plain(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return ", ".join(str(v) for v in value) if value else "—"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def table(
    columns: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str | None = None
) -> None:
    """A Rich table with a header row on stdout."""
    out = Table(*columns, title=title, header_style="bold", title_justify="left")
    for row in rows:
        out.add_row(*(cell(v) for v in row))
    stdout_console().print(out)


STATUS_STYLE = {
    "ready": "green",
    "loading": "yellow",
    "registered": "yellow",
    "failed": "red",
    "unloaded": "dim",
    "archived": "dim",
}


def status_text(status: Any) -> Text:
    return Text(str(status), style=STATUS_STYLE.get(str(status), ""))


def routes_text(routes: Any) -> str:
    """`3`, or `1 (90%) + 2 (10%)` for a split; `—` for none (a new alias)."""
    if not routes:
        return "—"
    try:
        pairs = [(int(r["version"]), int(r["weight"])) for r in routes]
    except (KeyError, TypeError, ValueError):
        return plain(routes)
    if len(pairs) == 1:
        return str(pairs[0][0])
    total = sum(w for _, w in pairs)
    if total == 100:
        return " + ".join(f"{v} ({w}%)" for v, w in pairs)
    return " + ".join(f"{v} (weight {w})" for v, w in pairs)


def short_time(value: Any) -> str:
    """An ISO 8601 timestamp shortened to `YYYY-MM-DD HH:MM:SS` (kept as is if not one)."""
    if not isinstance(value, str) or len(value) < 19 or value[10] != "T":
        return plain(value)
    return value[:10] + " " + value[11:19]


def human_size(size: Any) -> str:
    if not isinstance(size, int):
        return plain(size)
    amount = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{size} B" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{size} B"
