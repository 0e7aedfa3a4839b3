"""SIGKILL of the whole `maas serve` tree while promotions run, then a restart on the same data:
every promotion that was answered 200 is still there, one in flight at the kill is there whole
or not at all, and the alias, its history and the audit log tell one story."""

from __future__ import annotations

import itertools
import random
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.control import upload, wait_for, wait_ready_version
from support.inprocess_gateway import ADMIN
from support.killable_serve import kill_tree, start_serve, stop_serve, wait_up
from support.model_files import tiny_mlp, torchscript_bytes
from support.processes import free_port

pytestmark = pytest.mark.slow

ALIASES = ("production", "staging")  # one promoting client each: every promotion moves it
ROUNDS = 3
ROW = {"instances": [[1.0, 2.0, 3.0, 4.0]]}


def _promote_until_killed(
    url: str, alias: str, versions: tuple[int, int], answered: list[int]
) -> None:
    """Promote `alias` back and forth between `versions` until the server is gone; each
    version answered 200 is appended."""
    with httpx.Client(base_url=url, headers=ADMIN, timeout=30) as client:
        current = _target(client, alias)
        while True:
            target = versions[1] if current == versions[0] else versions[0]
            try:
                response = client.post(
                    "/admin/models/m/promote", json={"version": target, "alias": alias}
                )
            except httpx.HTTPError:
                return
            assert response.status_code == 200, response.text
            answered.append(target)
            current = target


def _target(client: httpx.Client, alias: str) -> int | None:
    model = client.get("/admin/models/m").json()
    routes = {a["alias"]: a["routes"] for a in model["aliases"]}.get(alias)
    return routes[0]["version"] if routes else None


def _history(url: str, alias: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{url}/admin/models/m/aliases/{alias}/history", params={"limit": 10_000}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()["history"]
    return rows


def _audited(url: str, alias: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{url}/admin/events", params={"limit": 10_000, "model": "m"}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    return [e for e in response.json()["events"] if e["target"] == f"m/{alias}"]


def test_sigkill_during_promotions_keeps_every_answered_one_and_a_consistent_history(
    tmp_path: Path,
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve-0.log"
    server = start_serve(tmp_path, port, log)
    try:
        wait_up(url, server, log)
        versions = (
            upload(url, "m", torchscript_bytes(tiny_mlp())),
            upload(url, "m", torchscript_bytes(tiny_mlp(seed=1))),
        )
        for number in versions:
            wait_ready_version(url, "m", number)
        answered: dict[str, list[int]] = {alias: [] for alias in ALIASES}
        rng = random.Random(7)
        for round_ in range(ROUNDS):
            before = {alias: len(answered[alias]) for alias in ALIASES}
            threads = [
                threading.Thread(
                    target=_promote_until_killed, args=(url, alias, versions, answered[alias])
                )
                for alias in ALIASES
            ]
            for thread in threads:
                thread.start()
            goal = rng.randint(10, 30)  # answered promotions per alias before the kill
            wait_for(
                lambda before=before, goal=goal: all(
                    len(answered[a]) - before[a] >= goal for a in ALIASES
                ),
                "promotions to be under way",
            )
            kill_tree(server)
            for thread in threads:
                thread.join(30)
            log = tmp_path / f"serve-{round_ + 1}.log"
            server = start_serve(tmp_path, port, log)
            wait_up(url, server, log)
            for alias in ALIASES:
                _check(url, alias, answered[alias], kills=round_ + 1)
        with httpx.Client(base_url=url, timeout=30) as client:  # and the alias serves
            for alias in ALIASES:
                answer = client.post(
                    f"/v1/models/m@{alias}:predict", json={"instances": [[1.0] * 4]}
                )
                assert answer.status_code == 200, answer.text
                assert answer.json()["version"] == _history(url, alias)[0]["to"][0]["version"]
        print(
            f"\n{ROUNDS} kills; promotions answered, and kept without an answer: "
            + ", ".join(
                f"{a} {len(answered[a])}, {len(_history(url, a)) - len(answered[a])}"
                for a in ALIASES
            )
        )
    finally:
        stop_serve(server)


def _check(url: str, alias: str, answered: list[int], kills: int) -> None:
    history = list(reversed(_history(url, alias)))  # oldest first
    moves = [row["to"][0]["version"] for row in history]
    # Every answered promotion is kept; the one in flight at a kill may be kept too (whole).
    # (production's first row is the system's: the first ready version became its target.)
    promoted = [row for row in history if row["key"] != "system"]
    assert len(answered) <= len(promoted) <= len(answered) + kills, (answered, moves)
    assert history[0]["from"] is None
    for older, newer in itertools.pairwise(history):
        assert newer["from"] == older["to"]  # a chain: nothing lost or half-done between
    with httpx.Client(base_url=url, headers=ADMIN, timeout=30) as client:
        assert _target(client, alias) == moves[-1]  # the alias is where its history ends
    audited = list(reversed(_audited(url, alias)))
    assert [e["after"][0]["version"] for e in audited] == moves  # one audit row per change
