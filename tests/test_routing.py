"""Weighted alias routes: proportions and sticky routing keys."""

from __future__ import annotations

from collections import Counter

from maas.registry.records import Route
from maas.serving.routing import pick_route


def test_single_route_always_wins() -> None:
    assert {pick_route((Route(4, 100),), None) for _ in range(20)} == {4}


def test_weights_are_respected() -> None:
    routes = (Route(1, 90), Route(2, 10))
    counts = Counter(pick_route(routes, None) for _ in range(5000))
    assert 0.85 < counts[1] / 5000 < 0.95


def test_routing_key_is_sticky_and_spreads() -> None:
    routes = (Route(1, 50), Route(2, 50))
    for key in ("a", "user-1", "zzz"):
        assert len({pick_route(routes, key) for _ in range(10)}) == 1
    spread = Counter(pick_route(routes, f"user-{i}") for i in range(1000))
    assert 400 < spread[1] < 600
