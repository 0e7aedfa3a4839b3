"""`maas models ...` against a real server: register (waiting by default, the first ready
version becoming production), show, list, promote, canary, history, rollback,
load/unload/archive, alias-delete."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.cli import (
    Cli,
    admin,
    artifact_files,
    cli_server,
    failing_load_meta,
    ready_version,
    routes_of,
    set_alias,
    wait_status,
)
from support.model_files import mlp_meta

ROW = {"instances": [[1.0, 2.0, 3.0, 4.0]]}


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    with cli_server(tmp_path_factory.mktemp("cli-models")) as running:
        yield running


@pytest.fixture(scope="module")
def files(cli: Cli) -> tuple[Path, Path]:
    return artifact_files(cli.home / "files")


def test_register_with_no_wait_answers_at_once(cli: Cli, files: tuple[Path, Path]) -> None:
    artifact, meta = files
    run = cli("models", "register", "reg-nowait", str(artifact), "--meta", str(meta), "--no-wait")
    version = cli(
        "models",
        "register",
        "reg-nowait",
        str(artifact),
        "--meta",
        str(meta),
        "--no-wait",
        "--json",
    ).json()
    assert run.ok().out.startswith("reg-nowait@1 uploaded")
    assert "maas models show reg-nowait@1" in run.out
    assert (version["model"], version["version"]) == ("reg-nowait", 2)
    assert version["status"] in ("loading", "ready")  # answered without waiting for the load
    assert "aliases" not in version
    unloaded = json.dumps({**mlp_meta(), "load": False})
    said = cli("models", "register", "reg-nowait", str(artifact), "--meta", unloaded, "--no-wait")
    assert said.ok().out.startswith("reg-nowait@3 registered, not loaded")
    wait_status(cli.url, "reg-nowait", 1, "ready")
    wait_status(cli.url, "reg-nowait", 2, "ready")


def test_register_waits_by_default_and_says_the_first_version_became_production(
    cli: Cli, files: tuple[Path, Path]
) -> None:
    artifact, _ = files
    inline = json.dumps(mlp_meta())
    # stdout is not a terminal here: register waits all the same.
    version = cli("models", "register", "reg-wait", str(artifact), "--meta", inline, "--json")
    answer = version.json()
    assert answer["status"] == "ready"
    assert answer["load_error"] is None
    assert answer["aliases"] == ["production"]
    human = cli("models", "register", "reg-wait", str(artifact), "--meta", inline, "--wait")
    assert human.ok().out == (
        "reg-wait@2 is ready; production stays on 1 (send traffic to it with "
        "`maas models canary reg-wait@2 --weight 10` or `maas models promote reg-wait@2`)\n"
    )
    assert human.err == ""
    assert (
        cli("models", "register", "reg-wait", str(artifact), "--meta", inline, "--json").json()[
            "aliases"
        ]
        == []
    )
    history = cli("models", "history", "reg-wait", "--json").json()["history"]
    assert [(h["action"], h["key"], h["to"]) for h in history] == [
        ("set", "system", [{"version": 1, "weight": 100}])
    ]


def test_a_request_by_bare_name_works_right_after_register(
    cli: Cli, files: tuple[Path, Path]
) -> None:
    artifact, meta = files
    said = cli("models", "register", "bare", str(artifact), "--meta", str(meta)).ok().out
    assert said == (
        "bare@1 is ready and is production now (the model had no production alias): "
        "requests naming just 'bare' reach it\n"
    )
    answer = httpx.post(f"{cli.url}/v1/models/bare:predict", json=ROW, timeout=30)
    assert answer.status_code == 200, answer.text
    assert (answer.json()["model"], answer.json()["version"]) == ("bare", 1)


def test_a_broken_model_exits_1_with_its_error(cli: Cli, files: tuple[Path, Path]) -> None:
    artifact, _ = files
    ready_version(cli.url, "reg-fail")
    failing = json.dumps(failing_load_meta())
    # No --wait and stdout not a terminal (as in CI): it waits, and a load that fails is exit 1.
    run = cli("models", "register", "reg-fail", str(artifact), "--meta", failing)
    line = run.failed(1)
    # Either the version ended `failed` (its load error printed) or the check refused it (422).
    assert "reg-fail@2 failed to load: " in line or line.startswith("error: 422 "), line
    assert "declares [7]" in line  # the reason
    error = cli("models", "register", "reg-fail", str(artifact), "--meta", failing, "--json")
    assert error.failed_json(1)["code"] == "model_load_error"
    model = admin(cli.url, "GET", "/admin/models/reg-fail").json()
    assert [a["routes"] for a in model["aliases"]] == [[{"version": 1, "weight": 100}]]


def test_a_refused_upload_leaves_no_empty_model(cli: Cli, files: tuple[Path, Path]) -> None:
    artifact, _ = files
    bad_meta = json.dumps({"format": "no-such-format"})
    run = cli("models", "register", "ghost", str(artifact), "--meta", bad_meta)
    assert run.failed(1).startswith("error: 4")
    assert admin(cli.url, "GET", "/admin/models/ghost").status_code == 404


def test_list_and_show(cli: Cli) -> None:
    version = ready_version(cli.url, "shown")
    set_alias(cli.url, "shown", "production", [(version, 100)])

    listing = cli("models", "list", "--json").json()
    (model,) = [m for m in listing["models"] if m["name"] == "shown"]
    assert [v["status"] for v in model["versions"]] == ["ready"]
    assert model["aliases"][0]["alias"] == "production"
    table = cli("models", "list").ok().out
    header = [cell.strip() for cell in table.splitlines()[1].split("┃")[1:-1]]
    assert header == ["MODEL", "VERSIONS", "ALIASES"]
    assert "production → 1" in table

    shown = cli("models", "show", "shown", "--json").json()
    assert shown["name"] == "shown"
    assert shown["versions"][0]["version"] == 1
    table = cli("models", "show", "shown").ok().out
    for header in ("VERSION", "STATUS", "FORMAT", "CREATED", "SHA256", "LOAD ERROR", "ALIAS"):
        assert header in table
    assert shown["versions"][0]["sha256"][:12] in table

    one = cli("models", "show", "shown@1", "--json").json()
    assert one["status"] == "ready"
    assert "stats" in one
    table = cli("models", "show", "shown@1").ok().out
    assert "FIELD" in table
    assert "x float32 [4]" in table
    assert "load_error" in table
    assert "stats." in table

    alias = cli("models", "show", "shown@production", "--json").json()
    assert routes_of(alias) == {1: 100}


def test_promote_canary_history_rollback(cli: Cli) -> None:
    for seed in (1, 2, 3):
        ready_version(cli.url, "flow", seed)

    first = cli("models", "promote", "flow@1", "--json").json()
    assert first["alias"] == "production"
    assert routes_of(first) == {1: 100}
    assert isinstance(first["generation"], int)
    assert first["propagated"]["missing"] == []

    canary = cli("models", "canary", "flow@2", "--weight", "10", "--json").json()
    assert routes_of(canary) == {1: 90, 2: 10}
    said = cli("models", "canary", "flow@3", "--weight", "5").ok().out
    assert said.startswith("production of flow → ")
    assert "(was 1 (90%) + 2 (10%))" in said
    current = admin(cli.url, "GET", "/admin/models/flow/aliases/production").json()
    assert routes_of(current) == {1: 86, 2: 9, 3: 5}
    assert sum(routes_of(current).values()) == 100

    promoted = cli("models", "promote", "flow@2").ok().out.strip()
    assert promoted.startswith("production of flow → 2 (was 1 (86%) + 2 (9%) + 3 (5%)); ")
    assert "confirmed by 1/1 gateways" in promoted

    history = cli("models", "history", "flow", "--json").json()["history"]
    # promote flow@1 moved nothing: the first ready version was production already.
    assert [h["action"] for h in history] == ["promote", "set", "set", "set"]
    assert history[0]["to"] == [{"version": 2, "weight": 100}]
    assert history[-1]["from"] is None
    assert history[-1]["key"] == "system"
    table = cli("models", "history", "flow").ok().out
    for header in ("AT", "ACTION", "FROM", "TO", "KEY"):
        assert header in table
    assert len(cli("models", "history", "flow", "--limit", "1", "--json").json()["history"]) == 1

    # Rollback walks back through the changes like an undo stack, then has nothing left.
    back = cli("models", "rollback", "flow", "--json").json()
    assert routes_of(back) == {1: 86, 2: 9, 3: 5}
    back = cli("models", "rollback", "flow", "--json").json()
    assert routes_of(back) == {1: 90, 2: 10}
    back = cli("models", "rollback", "flow", "--json").json()
    assert routes_of(back) == {1: 100}
    line = cli("models", "rollback", "flow").failed(1)
    assert line.startswith("error: 409 ")

    to = cli("models", "rollback", "flow", "--to", "3", "--json").json()
    assert routes_of(to) == {3: 100}


def test_promote_from_an_alias(cli: Cli) -> None:
    for seed in (1, 2):
        ready_version(cli.url, "via", seed)
    set_alias(cli.url, "via", "production", [(1, 100)])
    set_alias(cli.url, "via", "staging", [(2, 100)])
    set_alias(cli.url, "via", "split", [(1, 50), (2, 50)])

    promoted = cli("models", "promote", "via@staging", "--json").json()
    assert routes_of(promoted) == {2: 100}
    assert promoted["alias"] == "production"
    onto = cli("models", "promote", "via@production", "--alias", "canary", "--json").json()
    assert onto["alias"] == "canary"
    assert routes_of(onto) == {2: 100}

    line = cli("models", "promote", "via@split").failed(1)
    assert "points at 2 versions" in line
    assert "via@V" in line
    assert routes_of(admin(cli.url, "GET", "/admin/models/via/aliases/production").json()) == {
        2: 100
    }


def test_canary_needs_an_existing_alias(cli: Cli) -> None:
    ready_version(cli.url, "lonely")
    line = cli("models", "canary", "lonely@1", "--weight", "10", "--alias", "nope").failed(1)
    assert "no alias nope" in line


def test_load_unload_archive(cli: Cli) -> None:
    ready_version(cli.url, "life", 1)
    ready_version(cli.url, "life", 2)
    set_alias(cli.url, "life", "production", [(1, 100)])

    unloaded = cli("models", "unload", "life@2", "--json").json()
    assert unloaded["version"] == 2
    assert unloaded["status"] == "unloaded"
    loaded = cli("models", "load", "life@2").ok().out
    assert loaded.startswith("life@2 is ")
    wait_status(cli.url, "life", 2, "ready")
    cli("models", "unload", "life@2").ok()

    line = cli("models", "archive", "life@1").failed(1)  # production points at it
    assert line.startswith("error: 409 ")
    archived = cli("models", "archive", "life@2").ok().out
    assert archived == "life@2 is archived\n"
    assert admin(cli.url, "GET", "/admin/models/life/versions/2").json()["status"] == "archived"


def test_alias_delete(cli: Cli) -> None:
    ready_version(cli.url, "gone")
    set_alias(cli.url, "gone", "temp", [(1, 100)])
    said = cli("models", "alias-delete", "gone@temp").ok().out
    assert said == "deleted alias temp of gone\n"
    assert admin(cli.url, "GET", "/admin/models/gone/aliases/temp").status_code == 404
    line = cli("models", "alias-delete", "gone@temp").failed(1)
    assert line.startswith("error: 404 ")
