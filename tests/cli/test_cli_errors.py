"""Exit codes and one-line errors (CONTRACT: 1 refused, 2 usage, 3 unreachable), never a
traceback, whatever the operator got wrong; under `--json` the error object on stdout too."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cli import Cli, admin, artifact_files, cli_server, unreachable_url
from support.inprocess_gateway import ADMIN_SECRET


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    with cli_server(tmp_path_factory.mktemp("cli-errors")) as running:
        yield running


@pytest.fixture
def nowhere(tmp_path: Path) -> Cli:
    """A Cli whose server does not exist."""
    return Cli(unreachable_url(), tmp_path)


@pytest.mark.parametrize(
    "args",
    [
        ("models", "list"),
        ("models", "show", "digits@1"),
        ("models", "promote", "digits@2"),
        ("models", "canary", "digits@2", "--weight", "10"),
        ("events", "--since", "10m"),
        ("gateways",),
        ("workers",),
        ("keys", "list"),
        ("keys", "create", "ci", "--scope", "infer"),
    ],
)
def test_an_unreachable_server_exits_3_naming_the_url(nowhere: Cli, args: tuple[str, ...]) -> None:
    line = nowhere(*args).failed(3)
    assert nowhere.url in line
    assert "MAAS_URL" in line
    assert "connection refused" in line


def test_register_against_no_server_exits_3_before_uploading(nowhere: Cli) -> None:
    artifact, meta = artifact_files(nowhere.home / "files")
    line = nowhere("models", "register", "m", str(artifact), "--meta", str(meta)).failed(3)
    assert nowhere.url in line


def test_keys_create_without_a_server_never_writes_a_local_database(nowhere: Cli) -> None:
    nowhere("keys", "create", "ci", "--scope", "admin").failed(3)
    assert list(nowhere.home.iterdir()) == []  # no ./maas-data, no registry.db


def test_the_default_url_is_the_local_gateway(tmp_path: Path) -> None:
    port = unreachable_url().rsplit(":", 1)[1]
    cli = Cli("", tmp_path)
    env = {"MAAS_URL": "", "MAAS_PORT": port, "MAAS_HOST": "0.0.0.0"}
    line = cli("models", "list", env=env).failed(3)
    assert f"http://127.0.0.1:{port}" in line


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("models", "canary", "m@2", "--weight", "0"), "--weight"),
        (("models", "canary", "m@2", "--weight", "100"), "--weight"),
        (("models", "canary", "m@2", "--weight", "ten"), "--weight"),
        (("models", "canary", "m", "--weight", "10"), "NAME@VERSION"),
        (("models", "load", "m"), "NAME@VERSION"),
        (("models", "unload", "m@staging"), "NAME@VERSION"),
        (("models", "archive", "M@1"), "model name"),
        (("models", "promote", "m"), "NAME@VERSION or NAME@ALIAS"),
        (("models", "promote", "m@1", "--alias", "Bad Alias"), "alias name"),
        (("models", "alias-delete", "m@3"), "NAME@ALIAS"),
        (("models", "rollback", "m", "--to", "0"), "--to"),
        (("models", "register", "m", "missing.pt", "--meta", "{}"), "missing.pt"),
        (("models", "frobnicate"), "frobnicate"),
        (("events", "--since", "yesterday"), "--since"),
        (("events", "--limit", "0"), "--limit"),
        (("keys", "create", "x", "--scope", "root"), "--scope"),
        (("keys", "create", "x"), "--scope"),
        (("keys", "create", "x", "--scope", "infer", "--expires", "soon"), "--expires"),
        (("keys", "revoke", "abc"), "ID"),
    ],
)
def test_usage_errors_exit_2_before_any_request(
    nowhere: Cli, args: tuple[str, ...], says: str
) -> None:
    # The server does not exist: a usage error must be found first (2, not 3).
    line = nowhere(*args).failed(2)
    assert says in line


def test_bad_meta_is_a_usage_error_before_any_request(nowhere: Cli) -> None:
    artifact, _ = artifact_files(nowhere.home / "files")
    (nowhere.home / "broken.json").write_text('{"format": ')
    for bad, says in [
        ("{not json", "not valid JSON"),
        (str(nowhere.home / "broken.json"), "not valid JSON"),
        (str(nowhere.home / "absent.json"), "no such file"),
        ("@" + str(nowhere.home / "absent.json"), "no such file"),
        ("[1, 2]", "no such file"),  # not `{`: taken as a path
    ]:
        line = nowhere("models", "register", "m", str(artifact), "--meta", bad).failed(2)
        assert "--meta" in line
        assert says in line


def test_bad_client_settings_are_usage_errors(nowhere: Cli) -> None:
    line = nowhere("models", "list", env={"MAAS_URL": "localhost:8000"}).failed(2)
    assert "MAAS_URL" in line
    line = nowhere("models", "list", env={"MAAS_URL": "", "MAAS_PORT": "http"}).failed(2)
    assert "MAAS_PORT" in line


def test_a_wrong_key_exits_1_with_a_hint(cli: Cli) -> None:
    line = cli.with_key("wrong-key-0123456789")("models", "list").failed(1)
    assert line.startswith("error: 401 ")
    assert "MAAS_API_KEY" in line


def test_no_key_at_all_exits_1_with_a_hint(cli: Cli) -> None:
    line = cli.with_key(None)("models", "list").failed(1)
    assert line.startswith("error: 401 ")
    assert "MAAS_API_KEY" in line
    assert "admin.key" in line


def test_the_key_file_in_the_data_dir_is_used(cli: Cli) -> None:
    data = cli.home / "data-with-key"
    data.mkdir(exist_ok=True)
    (data / "admin.key").write_text(ADMIN_SECRET + "\n")
    listed = cli.with_key(None)("models", "list", "--json", env={"MAAS_DATA_DIR": str(data)})
    assert "models" in listed.json()


def test_an_infer_key_is_refused_with_403(cli: Cli) -> None:
    secret = cli("keys", "create", "reader", "--scope", "infer", "--json").json()["secret"]
    line = cli.with_key(secret)("models", "list").failed(1)
    assert line.startswith("error: 403 ")
    assert "MAAS_API_KEY" in line


def test_refusals_print_the_servers_code_and_message(cli: Cli) -> None:
    line = cli("models", "show", "nosuchmodel").failed(1)
    assert line.startswith("error: 404 ")
    assert "nosuchmodel" in line
    line = cli("models", "promote", "nosuchmodel@1").failed(1)
    assert line.startswith("error: 404 ")


def test_under_json_a_refusal_is_the_apis_error_object_on_stdout(cli: Cli) -> None:
    run = cli("models", "show", "nosuchmodel@4", "--json")
    error = run.failed_json(1)
    direct = admin(cli.url, "GET", "/admin/models/nosuchmodel/versions/4")
    assert {"error": error} == direct.json()  # the API's own object, as it sent it
    assert error["code"] == "model_not_found"
    assert run.err_lines[0].startswith("error: 404 model_not_found: ")  # and the line as ever
    error = cli.with_key("wrong-key-0123456789")("keys", "list", "--json").failed_json(1)
    assert error["code"] == "unauthenticated"
    error = cli("models", "promote", "nosuchmodel@1", "--json").failed_json(1)
    assert error["code"] == "model_not_found"


@pytest.mark.parametrize(
    "args",
    [
        ("models", "list", "--json"),
        ("models", "show", "digits@1", "--json"),
        ("events", "--json", "--since", "10m"),
        ("workers", "--json"),
        ("keys", "create", "ci", "--scope", "infer", "--json"),
    ],
)
def test_under_json_an_unreachable_server_is_an_error_object_and_exit_3(
    nowhere: Cli, args: tuple[str, ...]
) -> None:
    error = nowhere(*args).failed_json(3)
    assert error["code"] == "unreachable"
    assert nowhere.url in error["message"]


def test_under_json_register_against_no_server_is_exit_3(nowhere: Cli) -> None:
    artifact, meta = artifact_files(nowhere.home / "files")
    run = nowhere("models", "register", "m", str(artifact), "--meta", str(meta), "--json")
    assert run.failed_json(3)["code"] == "unreachable"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("models", "canary", "m@2", "--weight", "0", "--json"), "--weight"),
        (("models", "load", "m", "--json"), "NAME@VERSION"),
        (("models", "frobnicate", "--json"), "frobnicate"),
        (("models", "list", "--json", "--bogus"), "--bogus"),
        (("models", "register", "m", "missing.pt", "--meta", "{}", "--json"), "missing.pt"),
        (("keys", "create", "x", "--json"), "--scope"),
    ],
)
def test_under_json_a_usage_error_is_an_error_object_and_exit_2(
    nowhere: Cli, args: tuple[str, ...], says: str
) -> None:
    error = nowhere(*args).failed_json(2)
    assert error["code"] == "usage"
    assert says in error["message"]


def test_without_json_nothing_goes_to_stdout_on_an_error(nowhere: Cli) -> None:
    nowhere("models", "list").failed(3)
    nowhere("models", "load", "m").failed(2)


def test_the_url_flag_overrides_maas_url(cli: Cli) -> None:
    wrong = Cli(unreachable_url(), cli.home)
    assert "models" in wrong("--url", cli.url, "models", "list", "--json").json()


class _Junk(http.server.BaseHTTPRequestHandler):
    """Answers every request with a body that is not the admin API's."""

    def do_GET(self) -> None:
        status, body = (502, b"<html>Bad Gateway</html>")
        if self.path.startswith("/admin/gateways"):
            status, body = (200, b"<html>surprise</html>")
        self.send_response(status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def _junk_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Junk)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_5xx_or_a_body_that_is_not_json_is_one_line(tmp_path: Path) -> None:
    with _junk_server() as url:
        cli = Cli(url, tmp_path)
        line = cli("models", "list").failed(1)
        assert line.startswith("error: 502 ")
        assert "Bad Gateway" in line
        line = cli("gateways", "--json").failed_json(1)["message"]
        assert "not JSON" in line
        error = cli("models", "list", "--json").failed_json(1)
        assert error == {"code": "bad_gateway", "message": "<html>Bad Gateway</html>"}
