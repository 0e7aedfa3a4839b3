"""`maas traffic MODEL` against a real server whose gateway writes its traffic samples every
0.1 s: the table after real requests (the span's totals exact, the last step's figures while
traffic flows), `--json` (the server's answer as is), `--watch` until Ctrl-C (exit 0), a model
without traffic, and the exit codes of refusals (1: unknown model, bounds the server holds),
usage errors (2) and no server (3)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from maas.cli.traffic import COLUMNS, sparkline, version_row
from support.cli import Cli, admin, cli_server, ready_version, unreachable_url
from support.model_files import IN

FAST = {"MAAS_TRAFFIC_REPORT_S": "0.1", "MAAS_TRAFFIC_KEEP_S": "3600"}
GOOD = {"instances": [[0.5] * IN]}
BAD = {"instances": [[0.5] * (IN + 1)]}  # reaches the version, refused as the wrong shape
MINUTE = ("--minutes", "1", "--step", "1")


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    with cli_server(tmp_path_factory.mktemp("cli-traffic"), env=FAST) as running:
        yield running


@pytest.fixture
def nowhere(tmp_path: Path) -> Cli:
    return Cli(unreachable_url(), tmp_path)


def answer_of(cli: Cli, name: str) -> dict[str, Any]:
    """The traffic answer over the plain admin API (independent of the CLI)."""
    response = admin(cli.url, "GET", f"/admin/models/{name}/traffic?minutes=1&step_s=1")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def requests_of(body: dict[str, Any], version: int) -> float:
    entry = [v for v in body["versions"] if v["version"] == version]
    return sum(p["requests_per_s"] * body["step_s"] for p in entry[0]["points"]) if entry else 0


def settled(cli: Cli, name: str, requests: int) -> dict[str, Any]:
    """The answer once the bins holding `requests` of version 1 are over."""
    for _ in range(100):
        body = answer_of(cli, name)
        if requests_of(body, 1) >= requests:
            return body
        time.sleep(0.1)
    raise AssertionError(f"traffic never showed {requests} requests: {body}")


def send(cli: Cli, name: str, good: int, bad: int) -> None:
    with httpx.Client(timeout=30) as client:
        for body, count, status in ((GOOD, good, 200), (BAD, bad, 422)):
            for _ in range(count):
                answer = client.post(f"{cli.url}/v1/models/{name}:predict", json=body)
                assert answer.status_code == status, answer.text


def rows(out: str) -> dict[str, dict[str, str]]:
    """The table's rows by version, each cell under its column's name."""
    lines = out.splitlines()
    head = next(line for line in lines if "VERSION" in line)
    assert [c.strip() for c in head.strip("┃ ").split("┃")] == list(COLUMNS)
    found = {}
    for line in lines[lines.index(head) + 1 :]:
        if line.startswith("│"):
            cells = [c.strip() for c in line.strip("│ ").split("│")]
            found[cells[0]] = dict(zip(COLUMNS, cells, strict=True))
    return found


def test_a_table_after_real_requests(cli: Cli) -> None:
    assert ready_version(cli.url, "tt", 1) == 1
    send(cli, "tt", good=30, bad=5)
    settled(cli, "tt", 35)
    out = cli("traffic", "tt", *MINUTE).ok().out
    first = out.splitlines()[0]
    assert first.startswith("tt over 1m, "), out
    assert " UTC, in steps of 1s (the last from " in first
    assert first.endswith("; 1 gateway reported")
    (row,) = rows(out).values()
    assert row["VERSION"] == "1"
    assert (row["REQUESTS"], row["5XX"]) == ("35", "0")  # the 4xx are requests, not 5xx
    spark = row["REQ/S OVER THE SPAN"]
    assert len(spark) == 60  # a minute in steps of a second, one block each
    assert set(spark) <= set("▁▂▃▄▅▆▇█")
    assert "█" in spark  # the busiest second


def test_the_last_steps_figures_while_traffic_flows(cli: Cli) -> None:
    assert ready_version(cli.url, "tl", 1) == 1
    stop = threading.Event()

    def steady() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                client.post(f"{cli.url}/v1/models/tl:predict", json=GOOD)
                client.post(f"{cli.url}/v1/models/tl:predict", json=BAD)
                time.sleep(0.01)

    sender = threading.Thread(target=steady)
    sender.start()
    try:
        settled(cli, "tl", 20)
        shown = rows(cli("traffic", "tl", *MINUTE).ok().out)["1"]
        body = answer_of(cli, "tl")
    finally:
        stop.set()
        sender.join()
    # The last complete second had traffic: every figure of it is there.
    assert float(shown["REQ/S"]) > 0
    assert 0 < float(shown["P50 MS"]) <= float(shown["P99 MS"])
    assert shown["ERRORS"] == "0.00%"
    assert 10 < float(shown["REFUSED"].rstrip("%")) < 90  # about every other request
    assert float(shown["BATCH"]) >= 1
    assert int(shown["QUEUE"]) >= 0
    # A row is the answer's last point and its sums, whatever its order of versions.
    (entry,) = body["versions"]
    last = entry["points"][-1]
    row = version_row(entry, body["step_s"])
    assert row[:8] == [
        1,
        f"{last['requests_per_s']:.2f}",
        f"{last['error_rate']:.2%}",
        f"{last['refused_rate']:.2%}",
        f"{last['p50_ms']:.2f}",
        f"{last['p99_ms']:.2f}",
        f"{last['mean_batch_size']:.2f}",
        last["queue_depth"],
    ]
    assert row[8] == round(requests_of(body, 1))


def test_json_prints_the_servers_answer(cli: Cli) -> None:
    assert ready_version(cli.url, "tj", 1) == 1
    send(cli, "tj", good=12, bad=0)
    settled(cli, "tj", 12)
    answer = cli("traffic", "tj", *MINUTE, "--json").json()
    assert set(answer) == {"model", "since", "until", "step_s", "report_s", "gateways", "versions"}
    assert (answer["model"], answer["step_s"], answer["report_s"]) == ("tj", 1, 0.1)
    assert answer["gateways"] == 1
    (entry,) = answer["versions"]
    assert len(entry["points"]) == 60
    assert round(requests_of(answer, 1)) == 12
    # The server's defaults when no option is given: 5 minutes in steps of 5 s.
    default = cli("traffic", "tj", "--json").json()
    assert default["step_s"] == 5
    span = datetime.fromisoformat(default["until"]) - datetime.fromisoformat(default["since"])
    assert span.total_seconds() == 300


def test_a_model_without_traffic(cli: Cli) -> None:
    created = admin(cli.url, "POST", "/admin/models", json={"name": "empty"})
    assert created.status_code == 201, created.text
    out = cli("traffic", "empty", *MINUTE).ok().out
    assert out.splitlines()[0].startswith("empty over 1m, ")
    assert out.splitlines()[1] == "no traffic to empty in this span"
    assert "VERSION" not in out
    assert cli("traffic", "empty", "--json").json()["versions"] == []
    # A ready version nobody has asked: its row once its worker reported it, counting nothing.
    assert ready_version(cli.url, "idle", 1) == 1
    for _ in range(100):
        if answer_of(cli, "idle")["versions"]:
            break
        time.sleep(0.1)
    (row,) = rows(cli("traffic", "idle", *MINUTE).ok().out).values()
    assert row["VERSION"] == "1"
    assert (row["REQ/S"], row["ERRORS"], row["REFUSED"], row["P50 MS"], row["P99 MS"]) == (
        "0.00",
        "—",
        "—",
        "—",
        "—",
    )
    assert (row["BATCH"], row["QUEUE"], row["REQUESTS"], row["5XX"]) == ("—", "0", "0", "0")
    assert row["REQ/S OVER THE SPAN"] == "▁" * 60


def test_watch_redraws_every_step_until_ctrl_c(cli: Cli, tmp_path: Path) -> None:
    assert ready_version(cli.url, "tw", 1) == 1
    out_file = tmp_path / "out.txt"
    with out_file.open("w") as out:
        child = subprocess.Popen(
            [sys.executable, "-m", "maas", "traffic", "tw", *MINUTE, "--watch"],
            env=cli.env(),
            cwd=cli.home,
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 30
            while out_file.read_text().count("tw over 1m") < 3:
                assert child.poll() is None, out_file.read_text()
                assert time.monotonic() < deadline, out_file.read_text()
                time.sleep(0.1)
            child.send_signal(signal.SIGINT)
            _, err = child.communicate(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert child.returncode == 0, err
    assert err == ""
    drawn = out_file.read_text()
    headers = [line for line in drawn.splitlines() if line.startswith("tw over 1m")]
    assert len(headers) >= 3
    assert len(set(headers)) >= 2  # each draw a later span


def test_refusals_exit_1(cli: Cli) -> None:
    line = cli("traffic", "nosuch").failed(1)
    assert line.startswith("error: 404 model_not_found: ")
    assert "nosuch" in line
    assert cli("traffic", "nosuch", "--json").failed_json(1)["code"] == "model_not_found"
    assert ready_version(cli.url, "tb", 1) == 1
    # The bounds are the server's: its message, exit 1.
    line = cli("traffic", "tb", "--minutes", "0").failed(1)
    assert line.startswith("error: 422 invalid_request: ")
    assert "minutes" in line
    line = cli("traffic", "tb", "--minutes", "60", "--step", "1").failed(1)
    assert line == (
        "error: 400 bad_request: 60 minutes in steps of 1 s is 3600 points; at most 900: "
        "ask for fewer minutes or a longer step"
    )
    error = cli("traffic", "tb", "--minutes", "60", "--step", "1", "--json").failed_json(1)
    assert error["code"] == "bad_request"
    assert "step_s" in cli("traffic", "tb", "--step", "0.5").failed(1)
    # A key limited to other models.
    assert admin(cli.url, "POST", "/admin/models", json={"name": "other"}).status_code == 201
    made = admin(
        cli.url, "POST", "/admin/keys", json={"name": "o", "scopes": ["admin"], "models": ["other"]}
    )
    limited = cli.with_key(made.json()["secret"])
    line = limited("traffic", "tb").failed(1)
    assert line.startswith("error: 403 forbidden: key 'o' may not act on model 'tb'")
    assert "lacks the admin scope" not in line  # it has it: only the model is not its own
    assert limited("traffic", "other", "--json").json()["versions"] == []
    # A key without the admin scope is told so.
    reader = admin(cli.url, "POST", "/admin/keys", json={"name": "r", "scopes": ["infer"]})
    line = cli.with_key(reader.json()["secret"])("traffic", "tb").failed(1)
    assert line.startswith("error: 403 forbidden: ")
    assert line.endswith("; the key from MAAS_API_KEY lacks the admin scope (MAAS_API_KEY)")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("Bad",), "not a model name"),
        (("tb", "--minutes", "soon"), "--minutes"),
        (("tb", "--step", "5s"), "--step"),
        ((), "NAME"),
    ],
)
def test_usage_errors_exit_2_before_any_request(
    nowhere: Cli, args: tuple[str, ...], says: str
) -> None:
    assert says in nowhere("traffic", *args).failed(2)


def test_an_unreachable_server_exits_3(nowhere: Cli) -> None:
    assert nowhere.url in nowhere("traffic", "tb").failed(3)
    assert nowhere("traffic", "tb", "--json").failed_json(3)["code"] == "unreachable"
    assert nowhere("traffic", "tb", "--watch").failed(3)  # no endless retry


def test_the_sparkline_scales_to_the_busiest_bin() -> None:
    assert sparkline([0, 1, 2, 4]) == "▁▃▅█"
    assert sparkline([0, 0]) == "▁▁"
    assert sparkline([0.001, 100]) == "▂█"  # any traffic shows
    assert sparkline([1.0] * 120 + [0.0] * 60) == "█" * 40 + "▁" * 20  # 3 bins a block
