"""`maas.supervision.rolling`: the steps of a rolling restart, on stand-in processes. Each
gateway gets a replacement that serves before its old process is sent SIGTERM, the next one's
turn comes once the old process has exited, and a replacement that keeps exiting stops the roll
with the old process back in its slot. (Real processes under load: tests/system/test_drain.py.)"""

from __future__ import annotations

import signal
import threading
from typing import Any, cast

import pytest

from maas.supervision.children import Child
from maas.supervision.rolling import RollingRestart


class _Process:
    """A gateway process as a Child sees one: alive until terminated or killed."""

    def __init__(self) -> None:
        self.running = True
        self.terminated = False
        self.killed = False

    def is_alive(self) -> bool:
        return self.running

    def terminate(self) -> None:
        self.terminated = True  # a real one drains first: it exits when the test says

    def kill(self) -> None:
        self.killed = True
        self.running = False


def _serving_gateway(child: Child) -> None:
    serving = threading.Event()
    serving.set()
    child.process, child.serving = cast(Any, _Process()), serving


def _process(child: Child | None) -> _Process:
    """The stand-in in `child`'s slot."""
    assert child is not None
    return cast(_Process, child.process)


def _gateways(n: int) -> list[Child]:
    gateways = [Child(f"g{i}") for i in range(n)]
    for child in gateways:
        _serving_gateway(child)
    return gateways


def test_nothing_happens_until_a_sighup() -> None:
    rolling, gateways = RollingRestart(), _gateways(2)
    started: list[int] = []
    rolling.step(gateways, lambda child, index: started.append(index))
    assert started == []
    assert rolling.retiring is None


def test_each_gateway_is_replaced_in_turn_the_old_one_stopped_once_the_new_one_serves(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rolling, gateways = RollingRestart(), _gateways(2)
    started: list[int] = []

    def start(child: Child, index: int) -> None:
        started.append(index)
        _serving_gateway(child)

    rolling.request(signal.SIGHUP, None)
    for index in (0, 1):
        old = _process(gateways[index])
        rolling.step(gateways, start)  # the replacement starts beside the old process
        assert started[-1] == index
        assert _process(rolling.retiring) is old
        assert not _process(rolling.retiring).terminated
        rolling.step(gateways, start)  # it serves: the old one is sent SIGTERM
        assert _process(rolling.retiring).terminated
        rolling.step(gateways, start)  # the old one still drains
        assert rolling.retiring is not None
        _process(rolling.retiring).running = False
        rolling.step(gateways, start)  # it has exited: this gateway's turn is over
        assert rolling.retiring is None
    assert started == [0, 1]
    said = capsys.readouterr().err.splitlines()
    assert said == [
        "maas: rolling restart of 2 gateway process(es)",
        "maas: g0 restarted (1/2)",
        "maas: g1 restarted (2/2)",
        "maas: rolling restart done",
    ]
    rolling.step(gateways, start)
    assert started == [0, 1]  # done: nothing more until the next SIGHUP


def test_a_replacement_that_keeps_exiting_stops_the_roll_and_the_old_one_serves_on(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rolling, gateways = RollingRestart(), _gateways(1)
    old = _process(gateways[0])
    rolling.request(signal.SIGHUP, None)
    rolling.step(gateways, lambda child, index: setattr(child, "process", _Process()))
    assert _process(rolling.retiring) is old
    gateways[0].restarts += 3  # `keep` restarted a replacement that died, three times
    rolling.step(gateways, lambda child, index: None)
    assert rolling.retiring is None
    assert _process(gateways[0]) is old
    assert not old.terminated
    assert "the replacement of g0 exited 3 times; the old process serves on" in (
        capsys.readouterr().err
    )
