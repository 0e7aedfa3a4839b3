"""A request's phases from the instants the gateway and the worker stamped (`Timing`), and a
remote worker's clock as the heartbeats measure it (`WorkerClock`)."""

from __future__ import annotations

import pytest

from maas.dispatch.clock import WorkerClock
from maas.types import PHASES, Timing


def test_phases_add_up_to_the_request_duration() -> None:
    timing = Timing(sent=10.002, arrived=10.003, taken=10.010, done=10.040)
    phases = timing.phases(10.0, 10.041)
    assert phases is not None
    assert dict(zip(PHASES, phases, strict=True)) == pytest.approx(
        {"decode": 0.002, "transfer": 0.001, "queue": 0.007, "inference": 0.030, "reply": 0.001}
    )
    assert sum(phases) == pytest.approx(0.041)


def test_a_request_no_worker_answered_has_no_phases() -> None:
    assert Timing().phases(1.0, 2.0) is None


def test_a_phase_split_by_an_offset_clock_is_never_negative() -> None:
    # A remote worker's clock estimate off by 1 ms: "arrived" before "sent".
    timing = Timing(sent=5.0, arrived=4.999, taken=5.001, done=5.002)
    phases = timing.phases(4.99, 5.003)
    assert phases is not None
    assert min(phases) >= 0.0


def test_a_request_in_pieces_takes_the_phases_of_its_last_piece() -> None:
    request = Timing()
    request.keep_later(Timing(sent=1.0, arrived=1.1, taken=1.2, done=1.5))
    request.keep_later(Timing(sent=1.0, arrived=1.1, taken=1.2, done=1.3))  # ended sooner
    assert request.done == 1.5
    request.keep_later(Timing(sent=1.01, arrived=1.2, taken=1.5, done=1.9))
    assert (request.sent, request.arrived, request.taken, request.done) == (1.01, 1.2, 1.5, 1.9)


def test_a_worker_on_this_host_shares_the_clock() -> None:
    clock = WorkerClock(same_host=True)
    clock.sample(sent=1.0, worker_clock=500.0, received=1.001)
    assert clock.offset == 0.0
    assert clock.here(2.5) == 2.5


def test_a_remote_clock_is_estimated_from_the_quickest_heartbeat() -> None:
    clock = WorkerClock(same_host=False)
    # The worker's clock runs 100 s ahead. A slow answer (its reply waited 40 ms on the way
    # back) suggests a wrong offset; the quick one wins.
    clock.sample(sent=10.0, worker_clock=110.001, received=10.042)
    clock.sample(sent=10.2, worker_clock=110.2005, received=10.201)
    assert clock.offset == pytest.approx(100.0, abs=1e-6)
    assert clock.here(110.5) == pytest.approx(10.5)
    assert clock.here(0.0) == 0.0  # an older worker stamped nothing: still nothing


def test_heartbeats_without_stamps_leave_the_estimate_alone() -> None:
    clock = WorkerClock(same_host=False)
    clock.sample(sent=0.0, worker_clock=0.0, received=3.0)  # an older release
    assert clock.offset == 0.0
