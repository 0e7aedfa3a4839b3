"""On a terminal (a pseudo-terminal, pexpect): register shows an upload bar and a loading
spinner while it waits; tables render with their header."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator

import pexpect
import pytest

from support.cli import Cli, admin, artifact_files, cli_server, ready_version

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    with cli_server(tmp_path_factory.mktemp("cli-tty")) as running:
        yield running


def _on_a_terminal(cli: Cli, *args: str) -> tuple[int, str]:
    """Exit status and everything the terminal showed (escape sequences removed)."""
    env = cli.env(TERM="xterm-256color")
    env.pop("COLUMNS", None)
    child = pexpect.spawn(
        sys.executable,
        ["-m", "maas", *args],
        env=env,
        cwd=str(cli.home),
        dimensions=(40, 160),
        timeout=120,
        encoding="utf-8",
    )
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus is not None, child.signalstatus
    return child.exitstatus, _ANSI.sub("", child.before or "")


def test_register_shows_progress_then_a_spinner_and_waits(cli: Cli) -> None:
    artifact, meta = artifact_files(cli.home / "files")
    code, screen = _on_a_terminal(
        cli, "models", "register", "tty", str(artifact), "--meta", str(meta)
    )
    assert code == 0, screen
    assert "uploading mlp.pt as tty@1" in screen
    assert "━" in screen  # the bar
    assert "loading tty@1 in a worker…" in screen
    assert screen.rstrip().endswith(
        "tty@1 is ready and is production now (the model had no production alias): "
        "requests naming just 'tty' reach it"
    )
    # It waited (the default): the version was ready when the command returned.
    assert admin(cli.url, "GET", "/admin/models/tty/versions/1").json()["status"] == "ready"


def test_tables_render_on_a_terminal(cli: Cli) -> None:
    ready_version(cli.url, "tabled")
    code, screen = _on_a_terminal(cli, "models", "list")
    assert code == 0, screen
    header = next(line for line in screen.splitlines() if "MODEL" in line)
    assert re.search(r"MODEL\s*┃\s*VERSIONS\s*┃\s*ALIASES", header), header
    assert "tabled" in screen
    assert "┏" in screen


def test_errors_on_a_terminal_are_one_line(cli: Cli) -> None:
    code, screen = _on_a_terminal(cli.with_key("wrong-key-0123456789"), "models", "list")
    assert code == 1
    lines = [line for line in screen.splitlines() if line.strip()]
    assert len(lines) == 1, screen
    assert lines[0].startswith("error: 401 ")
