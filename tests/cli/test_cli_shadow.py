"""`maas models shadow` against a real server: set, replace and remove an alias's shadow, what
list and show print of it, and the exit codes (1 refused, 2 usage, 3 unreachable)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cli import Cli, admin, cli_server, ready_version, unreachable_url
from support.model_files import mlp_meta, tiny_mlp, torchscript_bytes


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    with cli_server(tmp_path_factory.mktemp("cli-shadow")) as running:
        yield running


@pytest.fixture
def nowhere(tmp_path: Path) -> Cli:
    return Cli(unreachable_url(), tmp_path)


def test_set_show_and_remove_a_shadow(cli: Cli) -> None:
    for seed in (1, 2, 3):
        ready_version(cli.url, "sh", seed)  # 1 becomes production

    said = cli("models", "shadow", "sh@2", "--percent", "10").ok().out.strip()
    assert said.startswith("production of sh mirrors 10% of its requests to 2 (was none); ")
    assert "confirmed by 1/1 gateways" in said
    again = cli("models", "shadow", "sh@2", "--percent", "10").ok().out
    assert again.startswith("production of sh already mirrors 2 (10%); nothing changed; ")
    answer = cli("models", "shadow", "sh@3", "--percent", "100", "--json").json()
    assert answer["shadow"] == {"version": 3, "percent": 100}
    assert answer["routes"] == [{"version": 1, "weight": 100}]
    assert isinstance(answer["generation"], int)
    assert answer["propagated"]["missing"] == []

    assert "production → 1, shadow 3 (100%)" in cli("models", "list").ok().out
    shown = cli("models", "show", "sh").ok().out
    assert "SHADOW" in shown
    assert "3 (100%)" in shown
    assert "3 (100%)" in cli("models", "show", "sh@production").ok().out

    # The shadowed version is protected, and the refusal says how to lift it.
    line = cli("models", "unload", "sh@3").failed(1)
    assert "shadow of alias(es) production" in line
    assert "maas models shadow sh --off --alias production" in line

    off = cli("models", "shadow", "sh", "--off").ok().out
    assert off.startswith("production of sh no longer mirrors its requests (was 3 (100%)); ")
    assert (
        cli("models", "shadow", "sh", "--off")
        .ok()
        .out.startswith("production of sh has no shadow; nothing changed; ")
    )
    assert admin(cli.url, "GET", "/admin/models/sh/aliases/production").json()["shadow"] is None
    cli("models", "unload", "sh@3").ok()


def test_refusals_exit_1(cli: Cli) -> None:
    ready_version(cli.url, "shr")
    line = cli("models", "shadow", "shr@1", "--percent", "5", "--alias", "canary").failed(1)
    assert "no alias 'canary'" in line
    error = cli("models", "shadow", "shr@9", "--percent", "5", "--json").failed_json(1)
    assert error["code"] == "version_not_found"
    uploaded = admin(
        cli.url,
        "POST",
        "/admin/models/shr/versions",
        files={"file": ("model.pt", torchscript_bytes(tiny_mlp(2)))},
        data={"meta": json.dumps(mlp_meta(load=False))},
    )
    assert uploaded.status_code == 201, uploaded.text
    line = cli("models", "shadow", "shr@2", "--percent", "5").failed(1)
    assert "may only shadow ready versions" in line


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("sh@2",), "--percent"),
        (("sh", "--percent", "10"), "NAME@VERSION"),
        (("sh@2", "--percent", "0"), "--percent"),
        (("sh@2", "--percent", "101"), "--percent"),
        (("sh@2", "--off"), "--off takes NAME alone"),
        (("sh", "--off", "--percent", "5"), "--off takes NAME alone"),
        (("sh@production", "--percent", "5"), "--alias"),
        (("Bad!", "--off"), "not a model name"),
        (("sh", "--off", "--alias", "Bad"), "not an alias name"),
    ],
)
def test_usage_errors_exit_2_before_any_request(
    nowhere: Cli, args: tuple[str, ...], says: str
) -> None:
    line = nowhere("models", "shadow", *args).failed(2)
    assert says in line


def test_an_unreachable_server_exits_3(nowhere: Cli) -> None:
    line = nowhere("models", "shadow", "sh@2", "--percent", "10").failed(3)
    assert nowhere.url in line
    assert nowhere("models", "shadow", "sh", "--off", "--json").failed_json(3)["code"]
