"""`maas serve` as an operator starts it: mistakes stop it in one line before anything is
created, and a real start (`--demo`, what `make serve` runs) says what is on, answers
`/healthz` on the first connection the port accepts, and logs no death that did not happen."""

from __future__ import annotations

import os
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from support.processes import Child, free_port, start

pytestmark = pytest.mark.slow


def _serve(cwd: Path, *args: str, env: dict[str, str] | None = None) -> Child:
    """`maas serve` run from `cwd`, its stdout and stderr each in a file outside it."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MAAS_")}
    logs = Path(tempfile.mkdtemp(prefix="maas-startup-"))
    return start(
        [sys.executable, "-m", "maas", "serve", *args],
        cwd=cwd,
        env={**environ, "MAAS_TORCH_THREADS": "1", **(env or {})},
        log=logs / "stdout",
        stderr_log=logs / "stderr",
    )


def _ended(process: Child, sig: int | None = None) -> tuple[str, str]:
    """Its stdout and stderr once it has ended (after `sig`, if given); killed if it has not
    within 60 s."""
    if sig is not None:
        process.send_signal(sig)
    try:
        process.wait(60)
    finally:
        process.stop(grace_s=0)
    return process.log_text(), process.stderr_text()


def _one_line_error(process: Child) -> tuple[int, str]:
    out, err = _ended(process)
    assert out == ""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return process.returncode, lines[0]


def test_a_busy_port_is_one_line_and_creates_nothing(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, line = _one_line_error(_serve(tmp_path, "--port", str(port)))
    assert code == 1
    assert line == (
        f"error: port {port} on 127.0.0.1 is already in use by another process; stop it or "
        "choose another port with --port or MAAS_PORT"
    )
    assert list(tmp_path.iterdir()) == []  # no maas-data/, no database


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"MAAS_PORT": "eighty"}, "error: MAAS_PORT='eighty': must be a whole number"),
        ({"MAAS_PORT": "70000"}, "error: MAAS_PORT='70000': must be <= 65535"),
        (
            {"MAAS_REQUIRE_INFER_KEY": "sometimes"},
            "error: MAAS_REQUIRE_INFER_KEY='sometimes': must be true or false",
        ),
        (
            {"MAAS_DATABASE_URL": "mysql://db/maas"},
            "error: MAAS_DATABASE_URL='mysql://db/maas': must be a sqlite:// or postgresql:// URL",
        ),
    ],
    ids=["not_a_number", "out_of_range", "not_a_bool", "unknown_database"],
)
def test_an_invalid_setting_names_the_variable(
    tmp_path: Path, env: dict[str, str], says: str
) -> None:
    code, line = _one_line_error(_serve(tmp_path, env=env))
    assert (code, line) == (2, says)
    assert list(tmp_path.iterdir()) == []


def test_an_invalid_flag_names_the_flag(tmp_path: Path) -> None:
    code, line = _one_line_error(_serve(tmp_path, "--workers", "-1"))
    assert (code, line) == (2, "error: --workers=-1: must be >= 0")


def test_a_demo_start_is_honest(tmp_path: Path) -> None:
    port = free_port()
    process = _serve(
        tmp_path, "--demo", "--gateways", "2", "--port", str(port), env={"MAAS_WROKERS": "2"}
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:  # the first connection the port accepts gets an answer
            assert process.poll() is None, process.describe()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                assert time.monotonic() < deadline, "the port never accepted a connection"
                time.sleep(0.05)
                continue
            assert httpx.get(url + "/healthz", timeout=3).status_code == 200
            break
        while httpx.get(url + "/readyz", timeout=3).status_code != 200:
            assert time.monotonic() < deadline, httpx.get(url + "/readyz").text
            time.sleep(0.2)
        assert (
            httpx.post(
                url + "/v1/models/digits:predict", json={"instances": [[0.0] * 64]}
            ).status_code
            == 200
        )
    finally:
        _, err = _ended(process, signal.SIGINT)  # what Ctrl-C sends
    print(err)
    assert process.returncode == 0
    assert "warning: MAAS_WROKERS is not a maas setting" in err
    banner = [line for line in err.splitlines() if line.startswith("maas: ready on")]
    assert len(banner) == 1
    for what in ("2 gateway", "1 worker", "registry sqlite:///./maas-data/registry.db"):
        assert what in banner[0]
    assert "demo model digits@1 ready, held-out accuracy 0." in err
    for dishonest in ("lost", "died", "Traceback", "restarting"):
        assert dishonest not in err
