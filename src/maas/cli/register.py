"""`maas models register`: upload a file as a new version and, unless `--no-wait`, answer once
its load has ended, ready (exit 0) or failed (exit 1, with the reason), so a script or CI job
never takes a broken model for an uploaded one.

A ready version is reported with the aliases that point at it: a model's first ready version
becomes its `production` target when the model has none (the registry's rule, CONTRACT), and
the answer says so; a later version says where production stays.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from maas.cli.client import Client, path
from maas.cli.output import (
    CliError,
    emit_json,
    human_size,
    json_option,
    routes_text,
    say,
    stderr_console,
    usage_error,
)
from maas.cli.refs import model_name
from maas.cli.upload import MultipartBody

PRODUCTION = "production"


def read_meta(text: str) -> str:
    """`--meta`: inline JSON (starts with `{`), or a path to a JSON file (`@path` too). The
    JSON text, checked to be one object."""
    stripped = text.strip()
    if stripped.startswith("{"):
        source, content = "--meta", stripped
    else:
        file = Path(stripped[1:] if stripped.startswith("@") else stripped)
        source = f"--meta {str(file)!r}"
        try:
            content = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise usage_error(f"{source}: no such file (give a JSON file or inline JSON)") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise usage_error(f"{source}: cannot read it ({exc})") from None
    try:
        parsed = json.loads(content)
    except json.JSONDecodeError as exc:
        raise usage_error(
            f"{source}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    if not isinstance(parsed, dict):
        raise usage_error(f'{source}: must be a JSON object such as {{"format": ...}}')
    return content


LABELS_LIMIT = 1024 * 1024  # the server's cap on a labels part


def read_labels(file: Path) -> bytes:
    """`--labels`: the file's bytes, checked to be UTF-8 text of at most 1 MiB (the server
    checks again)."""
    source = f"--labels {str(file)!r}"
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise usage_error(f"{source}: cannot read it ({exc.strerror or exc})") from None
    if len(data) > LABELS_LIMIT:
        raise usage_error(f"{source}: {human_size(len(data))}; a labels file holds at most 1 MiB")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise usage_error(
            f"{source}: not UTF-8 text (byte {exc.start}); one label per line"
        ) from None
    return data


@click.command("register")
@click.argument("name")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--meta", "meta", required=True, help="A JSON file, or inline JSON text.")
@click.option(
    "--labels",
    "labels",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A text file, one label per line, that fills meta's postprocess.labels.",
)
@click.option(
    "--wait/--no-wait",
    default=True,
    help="Answer once the version is loaded (exit 0) or failed (exit 1); the default. "
    "--no-wait answers as soon as the upload is stored.",
)
@json_option
def models_register(
    name: str, file: Path, meta: str, labels: Path | None, wait: bool, as_json: bool
) -> None:
    """Upload FILE as a new version of NAME (the model is created if missing) and wait for its
    load. A model's first ready version becomes its production target. --labels sends a labels
    file (one label per line) for a classifier whose meta has a postprocess."""
    model_name(name)
    meta_text = read_meta(meta)
    label_bytes = read_labels(labels) if labels is not None else None
    try:
        body = MultipartBody.build(file, meta_text, label_bytes)
    except OSError as exc:
        raise usage_error(f"{file}: cannot read it ({exc.strerror or exc})") from None
    params = {"create_model": "true", **({"wait": "true"} if wait else {})}
    with Client() as client:
        # Fails fast (a bad key, no server) before sending the artifact; its versions name the
        # one the upload will most likely get, for the progress line.
        existing = client.find(path("models", name))
        numbers = [v.get("version", 0) for v in (existing or {}).get("versions", [])]
        label = f"{name}@{max(numbers, default=0) + 1}"
        with _progress(body, label, wait) as chunks:
            answer = client.call(
                "POST",
                path("models", name, "versions"),
                params=params,
                content=chunks,
                headers={"Content-Type": body.content_type, "Content-Length": str(body.length)},
                timeout=None,
            )
        ref = f"{answer.get('model', name)}@{answer.get('version')}"
        status = answer.get("status")
        if status == "failed":
            raise CliError(
                f"{ref} failed to load: {answer.get('load_error') or 'no error recorded'}",
                code="model_load_error",
            )
        aliases = _aliases_now(client, name) if status == "ready" else None
    if as_json:
        if aliases is not None:
            answer["aliases"] = sorted(a for a, r in aliases.items() if _routes_to(r, answer))
        emit_json(answer)
    elif status == "ready":
        say(_ready_sentence(ref, name, answer, _aliases_of(existing), aliases or {}))
    elif status == "registered":
        say(f"{ref} registered, not loaded; load it with `maas models load {ref}`")
    else:
        say(
            f"{ref} uploaded ({human_size(answer.get('size'))}, sha256 "
            f"{(answer.get('sha256') or '')[:12]}); {status} — follow it with "
            f"`maas models show {ref}`"
        )


def _aliases_now(client: Client, name: str) -> dict[str, Any] | None:
    """The model's aliases by name (their routes), read after the load; None if that read
    fails: the version is registered and ready whatever this read says."""
    try:
        return _aliases_of(client.find(path("models", name)))
    except CliError:
        return None


def _aliases_of(model: dict[str, Any] | None) -> dict[str, Any]:
    return {a.get("alias"): a.get("routes") for a in (model or {}).get("aliases") or []}


def _routes_to(routes: Any, version: dict[str, Any]) -> bool:
    return any(r.get("version") == version.get("version") for r in routes or [])


def _ready_sentence(
    ref: str, name: str, version: dict[str, Any], before: dict[str, Any], now: dict[str, Any]
) -> str:
    """`digits@1 is ready and is production now (...)`, or where production stays."""
    mine = sorted(a for a, routes in now.items() if _routes_to(routes, version))
    if PRODUCTION in mine and PRODUCTION not in before:
        others = [a for a in mine if a != PRODUCTION]
        also = f"; also {', '.join(others)}" if others else ""
        return (
            f"{ref} is ready and is production now (the model had no production alias): "
            f"requests naming just '{name}' reach it{also}"
        )
    if mine:
        return f"{ref} is ready; {', '.join(mine)} point(s) at it"
    if PRODUCTION in now:
        return (
            f"{ref} is ready; production stays on {routes_text(now[PRODUCTION])} (send traffic "
            f"to it with `maas models canary {ref} --weight 10` or `maas models promote {ref}`)"
        )
    return f"{ref} is ready"


@contextlib.contextmanager
def _progress(body: MultipartBody, label: str, wait: bool) -> Iterator[Iterator[bytes]]:
    """The body's chunks; on a terminal (stderr) a progress bar follows the upload, then a
    spinner while the server loads the version."""
    console = stderr_console()
    if not console.is_terminal:
        yield body.chunks()
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    upload = Progress(
        TextColumn("uploading {task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    task = upload.add_task(f"{body.file.name} as {label}", total=body.size)
    spinner = Progress(
        SpinnerColumn(), TextColumn("{task.description}"), console=console, transient=True
    )
    spinner.add_task(f"loading {label} in a worker…" if wait else f"registering {label}…")

    def advance(n: int) -> None:
        upload.advance(task, n)

    def sent() -> None:
        upload.refresh()  # the bar at 100%, even for a file sent in one chunk
        upload.stop()
        spinner.start()
        spinner.refresh()

    upload.start()
    upload.refresh()
    try:
        yield body.chunks(advance, sent)
    finally:
        upload.stop()
        spinner.stop()
