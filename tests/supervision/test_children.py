"""`maas.supervision.children`: a child that exits is started again after a pause that grows
while it keeps dying young, none is started once `maas serve` stops, and a gateway that cannot
start while no other serves ends `maas serve`. The gateway's entry is still reachable by the
dotted name a supervisor from before the split of `maas.supervisor` pickles."""

from __future__ import annotations

import pickle
import threading
from typing import Any, cast

import pytest

from maas.supervision.children import Child, keep


class _Exited:
    """A process that has exited with `exitcode`."""

    def __init__(self, exitcode: int) -> None:
        self.exitcode = exitcode

    def is_alive(self) -> bool:
        return False


def _starter(started: list[str]) -> Any:
    def start(child: Child) -> None:
        started.append(child.name)
        child.process = cast(Any, _Exited(1))  # it dies at once

    return start


def _dies_again(child: Child, started: list[str], *, others_serve: bool = False) -> None:
    """The supervisor's turns from the death of `child`'s process to its next start: one
    notices the exit, one starts it once its pause is over."""
    stopping = threading.Event()
    keep(child, child.started, _starter(started), stopping=stopping, others_serve=others_serve)
    keep(child, child.next_start, _starter(started), stopping=stopping, others_serve=others_serve)


def test_a_child_that_dies_young_waits_longer_each_time(
    capsys: pytest.CaptureFixture[str],
) -> None:
    child, started = Child("w0"), list[str]()
    keep(child, 0.0, _starter(started), stopping=threading.Event())
    assert started == ["w0"]
    pauses = []
    for _ in range(6):
        _dies_again(child, started)
        pauses.append(child.backoff_s)
    assert pauses == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0]
    assert child.restarts == 6
    assert len(started) == 7
    assert "maas: w0 exited (1); restarting" in capsys.readouterr().err


def test_a_child_that_lived_long_is_started_again_at_once() -> None:
    child = Child("w0", started=0.0, backoff_s=3.2, process=cast(Any, _Exited(-9)))
    started: list[str] = []
    keep(child, 60.0, _starter(started), stopping=threading.Event())
    assert (child.backoff_s, child.restarts, started) == (0.0, 1, ["w0"])


def test_nothing_is_started_once_maas_serve_stops() -> None:
    child, started, stopping = Child("w0"), list[str](), threading.Event()
    stopping.set()
    keep(child, 0.0, _starter(started), stopping=stopping)
    assert started == []


@pytest.mark.parametrize("others_serve", [False, True])
def test_a_gateway_that_keeps_exiting_ends_maas_serve_unless_another_serves(
    others_serve: bool,
) -> None:
    child, started = Child("g0"), list[str]()
    keep(child, 0.0, _starter(started), stopping=threading.Event())
    for _ in range(5):
        _dies_again(child, started, others_serve=others_serve)
    if others_serve:
        _dies_again(child, started, others_serve=True)
        assert child.restarts == 6
    else:
        with pytest.raises(SystemExit, match=r"gateway g0 keeps exiting \(1\); giving up"):
            _dies_again(child, started)


def test_the_gateway_entry_keeps_its_old_dotted_name_too() -> None:
    from maas import supervisor
    from maas.supervision.gateway import run_gateway

    assert supervisor.run_gateway is run_gateway
    old = pickle.dumps(run_gateway, protocol=0).replace(
        b"maas.supervision.gateway", b"maas.supervisor"
    )
    assert pickle.loads(old) is run_gateway
