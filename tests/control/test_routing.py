"""Weighted alias routes: proportions and sticky routing keys; a version that cannot serve."""

from __future__ import annotations

import dataclasses
from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest

from maas.control.routing import Router, pick_route
from maas.errors import VersionNotReady
from maas.registry.records import Route
from maas.registry.service import NewVersion, draft_record
from maas.types import ModelRef, VersionStatus


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


class _OneModel:
    """The registry's view of one model with version 1 in `status`, aliased `production` (a
    ready version can become failed or loading again under its alias: a worker restart)."""

    def __init__(self, status: VersionStatus, load_error: str | None = None) -> None:
        meta = NewVersion(format="torchscript", inputs=[], outputs=[], batching={})
        draft = draft_record("mlp", sha256="0" * 64, size=1, meta=meta)
        self.version = dataclasses.replace(draft, version=1, status=status, load_error=load_error)

    def on_change(self, callback: Any) -> None:
        pass

    async def list_models(self) -> list[Any]:
        alias = SimpleNamespace(alias="production", routes=(Route(1, 100),), shadow=None)
        return [SimpleNamespace(name="mlp", versions=[self.version], aliases=[alias])]

    async def newest_rollouts(self) -> list[Any]:
        return []


@pytest.mark.parametrize(
    ("status", "load_error", "says"),
    [
        (
            VersionStatus.FAILED,
            "RuntimeError: out of memory",
            "failed to load: RuntimeError: out of memory; upload a fixed version",
        ),
        (VersionStatus.LOADING, None, "is still loading; try again shortly"),
        (VersionStatus.UNLOADED, None, "is unloaded: load it with `maas models load mlp@1`"),
    ],
)
async def test_a_version_that_cannot_serve_says_why_and_what_to_do(
    status: VersionStatus, load_error: str | None, says: str
) -> None:
    router = Router(_OneModel(status, load_error))  # type: ignore[arg-type]
    with pytest.raises(VersionNotReady) as by_alias:
        await router.resolve(ModelRef("mlp"))
    assert by_alias.value.message == f"mlp@production points at mlp@1, which {says}"
    assert (by_alias.value.model, by_alias.value.version) == ("mlp", 1)
    with pytest.raises(VersionNotReady) as by_number:
        await router.resolve(ModelRef("mlp", version=1))
    assert by_number.value.message == f"mlp@1 {says}"
