"""`maas rollout` against a real server whose leader ticks fast: start with options, status
(table, json), the verbs, `status --wait` as a CI gate (0 succeeded, 1 failed or aborted, 3 on
--timeout), and the exit codes of refusals (1), usage errors (2) and no server (3)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.cli import Cli, admin, cli_server, ready_version, unreachable_url

ROW = {"instances": [[1.0, 2.0, 3.0, 4.0]]}
FAST = {"MAAS_ROLLOUT_TICK_S": "0.05", "MAAS_ROLLOUT_REPORT_S": "0.05"}


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    with cli_server(tmp_path_factory.mktemp("cli-rollout"), env=FAST) as running:
        yield running


@pytest.fixture
def nowhere(tmp_path: Path) -> Cli:
    return Cli(unreachable_url(), tmp_path)


def two_versions(cli: Cli, name: str) -> None:
    """`name`@1 (production) and `name`@2, both ready."""
    assert ready_version(cli.url, name, 1) == 1
    assert ready_version(cli.url, name, 2) == 2


def test_start_status_and_the_verbs(cli: Cli) -> None:
    two_versions(cli, "ro")
    said = cli(
        "rollout",
        "start",
        "ro@2",
        "--steps",
        "5,20,100",
        "--interval",
        "1h",
        "--min-requests",
        "7",
        "--max-error-rate",
        "0.05",
        "--max-p99-ms",
        "250",
        "--failure-limit",
        "2",
        "--on-failure",
        "pause",
    ).ok()
    rollout_id = admin(cli.url, "GET", "/admin/models/ro/rollouts").json()["rollouts"][0]["id"]
    assert said.out.startswith(
        f"rollout {rollout_id} of ro@production is running at step 1 of 3: 2 takes 5% (1 95%); "
    )
    assert "plan: steps 5%, 20%, 100%, 1h each, at least 7 requests; pause after 2 failed" in (
        said.out
    )
    stored = admin(cli.url, "GET", f"/admin/models/ro/rollouts/{rollout_id}").json()
    assert stored["plan"]["interval_s"] == 3600
    assert stored["plan"]["guards"]["max_error_rate"] == 0.05
    assert stored["plan"]["guards"]["max_p99_ms"] == 250
    assert stored["plan"]["on_failure"] == "pause"

    shown = cli("rollout", "status", "ro").ok().out
    assert f"rollout {rollout_id} of ro@production: 1 → 2" in shown
    for text in ("running", "step 1 of 3: 2 takes 5% (1 95%)", "1 (95%) + 2 (5%)", "0 of 2"):
        assert text in shown, shown
    assert "error rate ≤ 5.00%, p99 ≤ 250 ms" in shown
    header = next(line for line in shown.splitlines() if "VERDICT" in line)
    columns = [c.strip() for c in header.strip("┃ ").split("┃")]
    assert columns == [
        "AT",
        "PHASE",
        "STEP",
        "WEIGHT",
        "VERDICT",
        "REQUESTS",
        "ERROR RATE",
        "P99 MS",
        "STABLE P99 MS",
        "FORWARD MS",
        "DISAGREEMENT",
        "BREACHES",
    ]
    assert "so far" in shown  # the current window, while it runs
    answer = cli("rollout", "status", "ro", "--alias", "production", "--json").json()
    assert (answer["id"], answer["state"], answer["weight"]) == (rollout_id, "running", 5)
    assert answer["window"]["weight"] == 5
    assert cli("rollout", "status", "ro", "--id", str(rollout_id), "--json").json()["id"] == (
        rollout_id
    )

    paused = cli("rollout", "pause", "ro").ok().out
    assert paused.startswith(f"rollout {rollout_id} of ro@production is paused at step 1 of 3")
    assert "(paused by " in paused
    assert cli("rollout", "pause", "ro").ok().out.rstrip().endswith("; nothing changed")
    assert "paused" in cli("rollout", "status", "ro").ok().out
    resumed = cli("rollout", "resume", "ro", "--json").json()
    assert resumed["state"] == "running"
    stepped = cli("rollout", "promote", "ro").ok().out
    assert "is running at step 2 of 3: 2 takes 20% (1 80%)" in stepped
    assert admin(cli.url, "GET", "/admin/models/ro/aliases/production").json()["routes"] == [
        {"version": 1, "weight": 80},
        {"version": 2, "weight": 20},
    ]

    # One rollout per alias: a second start is refused by the server.
    again = cli("rollout", "start", "ro@2")
    assert "409 rollout_in_progress" in again.failed(1)
    assert f"rollout {rollout_id}" in again.err
    error = cli("rollout", "start", "ro@2", "--json").failed_json(1)
    assert error["code"] == "rollout_in_progress"

    done = cli("rollout", "promote", "ro", "--full").ok().out
    assert done.startswith(f"rollout {rollout_id} of ro@production succeeded: production → 2")
    waited = cli("rollout", "status", "ro", "--wait", "--timeout", "30s").ok().out
    assert "succeeded" in waited
    assert cli("rollout", "status", "ro", "--wait", "--json").json()["state"] == "succeeded"
    assert admin(cli.url, "GET", "/admin/models/ro/aliases/production").json()["routes"] == [
        {"version": 2, "weight": 100}
    ]

    # The alias's rollout has ended: no verb has anything to act on.
    for verb in ("pause", "resume", "promote", "abort"):
        line = cli("rollout", verb, "ro").failed(1)
        assert f"its newest, {rollout_id}, has succeeded" in line
        assert "maas rollout start ro@V --alias production" in line
    assert cli("rollout", "abort", "ro", "--json").failed_json(1)["code"] == "rollout_ended"


def test_status_wait_exits_1_after_an_abort(cli: Cli) -> None:
    two_versions(cli, "rb")
    cli("rollout", "start", "rb@2", "--interval", "1h").ok()
    aborted = cli("rollout", "abort", "rb").ok().out
    assert " aborted (aborted by " in aborted
    assert "production is back on 1" in aborted
    line = cli("rollout", "status", "rb", "--wait").failed(1)
    assert "aborted" in line
    assert "maas rollout status rb --id " in line
    error = cli("rollout", "status", "rb", "--wait", "--json").failed_json(1)
    assert error["code"] == "rollout_aborted"
    # Without --wait, reading an ended rollout is no failure.
    assert cli("rollout", "status", "rb", "--json").json()["state"] == "aborted"


def test_the_leader_walks_it_and_wait_exits_0(cli: Cli) -> None:
    two_versions(cli, "rw")
    cli(
        "rollout",
        "start",
        "rw@2",
        "--steps",
        "50,100",
        "--interval",
        "200ms",
        "--min-requests",
        "0",
    ).ok()
    shown = cli("rollout", "status", "rw", "--wait", "--timeout", "60s").ok().out
    assert "succeeded" in shown
    assert shown.count(" pass ") == 2, shown  # one passed interval per step
    assert admin(cli.url, "GET", "/admin/models/rw/aliases/production").json()["routes"] == [
        {"version": 2, "weight": 100}
    ]


def test_a_rollout_the_leader_fails_makes_wait_exit_1(cli: Cli) -> None:
    two_versions(cli, "rf")
    cli(
        "rollout",
        "start",
        "rf@2",
        "--steps",
        "50",
        "--interval",
        "1h",
        "--min-requests",
        "1",
        "--max-p99-ms",
        "0.001",  # no answer is that fast: the first judged window fails
    ).ok()
    with httpx.Client(timeout=30) as client:  # a p99 is judged on 200 of the candidate's
        answered = [
            client.post(f"{cli.url}/v1/models/rf:predict", json=ROW).json()["version"]
            for _ in range(600)
        ]
    assert 2 in answered  # the candidate had its share
    line = cli("rollout", "status", "rf", "--wait", "--timeout", "60s").failed(1)
    assert " failed (1 failed interval(s): p99 " in line
    assert "production is back on 1" in line
    shown = cli("rollout", "status", "rf").ok().out
    assert " fail " in shown
    assert "> 0.001 ms" in shown  # the breach, in the interval's row


def test_status_wait_times_out_with_exit_3(cli: Cli) -> None:
    two_versions(cli, "rt")
    cli("rollout", "start", "rt@2", "--interval", "1h", "--alias", "production").ok()
    line = cli("rollout", "status", "rt", "--wait", "--timeout", "300ms").failed(3)
    assert "is still running after 300ms" in line
    error = cli("rollout", "status", "rt", "--wait", "--timeout", "0.2", "--json").failed_json(3)
    assert error["code"] == "timeout"
    cli("rollout", "abort", "rt").ok()


def test_refusals_exit_1(cli: Cli) -> None:
    line = cli("rollout", "status", "nosuch").failed(1)
    assert "404 model_not_found" in line
    assert cli("rollout", "pause", "nosuch", "--json").failed_json(1)["code"] == "model_not_found"
    assert "404 model_not_found" in cli("rollout", "start", "nosuch@2").failed(1)

    two_versions(cli, "rn")
    line = cli("rollout", "status", "rn").failed(1)
    assert "rn has no rollout yet; start one with `maas rollout start rn@V`" in line
    line = cli("rollout", "status", "rn", "--alias", "canary").failed(1)
    assert "rn has no rollout on canary" in line
    line = cli("rollout", "resume", "rn").failed(1)
    assert (
        "rn has no rollout on production; start one with `maas rollout start rn@V --alias" in line
    )
    assert cli("rollout", "promote", "rn", "--json").failed_json(1)["code"] == "rollout_not_found"
    assert "404 rollout_not_found" in cli("rollout", "status", "rn", "--id", "999").failed(1)
    assert "404 alias_not_found" in cli("rollout", "start", "rn@2", "--alias", "canary").failed(1)
    assert "404 version_not_found" in cli("rollout", "start", "rn@9").failed(1)
    assert "already points at 1" in cli("rollout", "start", "rn@1").failed(1)
    # A bound the server holds (interval at most a day) is its refusal, 422.
    line = cli("rollout", "start", "rn@2", "--interval", "25h").failed(1)
    assert line.startswith("error: 422 ")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("start", "rx"), "NAME@VERSION"),
        (("start", "rx@production"), "NAME@VERSION"),
        (("start", "Bad@2"), "not a model name"),
        (("start", "rx@2", "--steps", "a,b"), "--steps 'a,b': expected percents 1-100"),
        (("start", "rx@2", "--steps", "50,10"), "the steps must rise"),
        (("start", "rx@2", "--steps", "0,10"), "expected percents 1-100"),
        (("start", "rx@2", "--steps", "10,,20"), "expected percents 1-100"),
        (("start", "rx@2", "--steps", "10,101"), "expected percents 1-100"),
        (("start", "rx@2", "--interval", "5y"), "--interval '5y': expected a duration"),
        (("start", "rx@2", "--interval", "0s"), "more than 0"),
        (("start", "rx@2", "--interval", "-1s"), "expected a duration"),
        (("start", "rx@2", "--shadow", "soon"), "--shadow 'soon': expected a duration"),
        (("start", "rx@2", "--alias", "Bad"), "not an alias name"),
        (("start", "rx@2", "--on-failure", "explode"), "--on-failure"),
        (("start", "rx@2", "--max-error-rate", "2"), "--max-error-rate"),
        (("start", "rx@2", "--failure-limit", "0"), "--failure-limit"),
        (("status", "rx", "--timeout", "5s"), "--timeout goes with --wait"),
        (("status", "rx", "--wait", "--timeout", "1x"), "--timeout '1x'"),
        (("status", "rx", "--id", "1", "--alias", "production"), "not both"),
        (("status", "rx@2"), "not a model name"),
        (("pause", "Bad"), "not a model name"),
        (("promote", "rx", "--alias", "Bad"), "not an alias name"),
    ],
)
def test_usage_errors_exit_2_before_any_request(
    nowhere: Cli, args: tuple[str, ...], says: str
) -> None:
    line = nowhere("rollout", *args).failed(2)
    assert says in line


def test_an_unreachable_server_exits_3(nowhere: Cli) -> None:
    line = nowhere("rollout", "status", "rx").failed(3)
    assert nowhere.url in line
    assert nowhere("rollout", "start", "rx@2", "--json").failed_json(3)["code"] == "unreachable"
    nowhere("rollout", "abort", "rx").failed(3)
