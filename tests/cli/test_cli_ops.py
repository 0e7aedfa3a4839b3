"""`maas events`, `maas gateways`, `maas workers` against a real server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from support.cli import Cli, cli_server, ready_version


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    with cli_server(tmp_path_factory.mktemp("cli-ops")) as running:
        for name in ("alpha", "beta"):
            ready_version(running.url, name)
            running("models", "promote", f"{name}@1").ok()
        running("keys", "create", "someone", "--scope", "infer").ok()
        yield running


def _about(event: dict[str, object], model: str) -> bool:
    target = str(event["target"])
    return target == model or target.startswith((f"{model}@", f"{model}/"))


def test_events_json_and_table(cli: Cli) -> None:
    events = cli("events", "--json").json()["events"]
    assert events, "creating models, versions, aliases and keys leaves events"
    assert {"id", "at", "key", "action", "target", "before", "after"} <= set(events[0])
    ats = [e["at"] for e in events]
    assert ats == sorted(ats, reverse=True)  # newest first
    table = cli("events").ok().out
    for header in ("AT", "KEY", "ACTION", "TARGET", "BEFORE", "AFTER"):
        assert header in table


def test_events_filters_are_passed_to_the_server(cli: Cli) -> None:
    everything = cli("events", "--json").json()["events"]
    assert any(_about(e, "alpha") for e in everything)
    assert any(_about(e, "beta") for e in everything)

    alpha = cli("events", "--model", "alpha", "--json").json()["events"]
    assert alpha
    assert all(_about(e, "alpha") for e in alpha), alpha

    action = next(e["action"] for e in everything if _about(e, "beta"))
    only = cli("events", "--action", action, "--json").json()["events"]
    assert only
    assert {e["action"] for e in only} == {action}

    by_key = cli("events", "--key", "bootstrap-admin", "--json").json()["events"]
    assert by_key
    assert {e["key"] for e in by_key} == {"bootstrap-admin"}

    assert len(cli("events", "--limit", "2", "--json").json()["events"]) == 2
    assert cli("events", "--since", "1d", "--json").json()["events"]
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert cli("events", "--since", later, "--json").json()["events"] == []


def test_gateways(cli: Cli) -> None:
    answer = cli("gateways", "--json").json()
    assert isinstance(answer["generation"], int)
    (gateway,) = answer["gateways"]  # one gateway process
    assert {"id", "host", "pid", "generation", "last_seen", "leader", "rollouts"} <= set(gateway)
    assert gateway["rollouts"] is False  # no rollout runs: nobody holds the rollout lease
    table = cli("gateways").ok().out
    for header in ("ID", "HOST", "PID", "GENERATION", "LAST SEEN", "LEADER", "ROLLOUTS"):
        assert header in table
    assert str(gateway["pid"]) in table


def test_workers(cli: Cli) -> None:
    (worker,) = cli("workers", "--json").json()["workers"]  # one local worker
    assert {"id", "pid", "host", "device", "healthy", "queue_depth", "versions"} <= set(worker)
    assert worker["healthy"] is True
    table = cli("workers").ok().out
    for header in ("ID", "DEVICE", "HEALTHY", "VERSIONS"):
        assert header in table
    assert str(worker["id"]) in table
