"""Which requests an alias's shadow mirrors (`Router.shadow_of`, through `DataPlane`): those
whose ref named the alias, or no version at all (the default alias), drawn in its percent,
and only to a ready version that is not the one the request runs on."""

from __future__ import annotations

from typing import Any

from maas.dispatch.fake import FakeCall
from maas.registry.records import Route, VersionRecord
from maas.serving.dataplane import DataPlane
from maas.types import ModelRef, Shadow, VersionStatus
from support.serving_parts import StaticRegistry, router, stack, version


def echo(call: FakeCall) -> list[Any]:
    (x,) = call.inputs
    return [x[:, :3]]


async def mirrored(plane: DataPlane, ref: ModelRef, times: int = 1) -> list[int | None]:
    """The version each of `times` requests naming `ref` is mirrored to (None: not mirrored)."""
    seen = []
    for _ in range(times):
        resolved = await plane.resolve(ref)
        candidate = plane.shadow_of(ref, resolved)
        seen.append(None if candidate is None else candidate.version)
    return seen


async def shadowed(*records: VersionRecord) -> tuple[StaticRegistry, DataPlane]:
    """m@1 (production, staging) and `records`; production's shadow is m@2 at 100%."""
    registry, _, plane = await stack(
        echo,
        version(number=1),
        *records,
        aliases=[("m", "production", 1), ("m", "staging", 1)],
    )
    registry.shadow("m", "production", Shadow(version=2, percent=100))
    return registry, plane


async def test_the_alias_and_the_default_ref_are_mirrored_a_version_ref_never() -> None:
    _, plane = await shadowed(version(number=2))
    assert await mirrored(plane, ModelRef("m"), 5) == [2] * 5
    assert await mirrored(plane, ModelRef("m", alias="production"), 5) == [2] * 5
    assert await mirrored(plane, ModelRef("m", version=1), 5) == [None] * 5
    assert await mirrored(plane, ModelRef("m", alias="staging"), 5) == [None] * 5  # no shadow


async def test_a_shadow_mirrors_its_percent_of_the_requests() -> None:
    registry, plane = await shadowed(version(number=2))
    registry.shadow("m", "production", Shadow(version=2, percent=30))
    registry.changed()
    seen = await mirrored(plane, ModelRef("m"), 2000)
    assert set(seen) == {2, None}
    assert 0.25 < seen.count(2) / len(seen) < 0.35


async def test_a_candidate_that_is_not_ready_or_unknown_is_not_mirrored_to() -> None:
    registry, plane = await shadowed(version(number=2, status=VersionStatus.LOADING))
    assert await mirrored(plane, ModelRef("m"), 3) == [None] * 3
    registry.put(version(number=2))  # ready now: mirrored from the next routing table on
    registry.changed()
    assert await mirrored(plane, ModelRef("m"), 3) == [2] * 3
    registry.shadow("m", "production", Shadow(version=9, percent=100))
    registry.changed()
    assert await mirrored(plane, ModelRef("m"), 3) == [None] * 3
    registry.shadow("m", "production", None)  # removed
    registry.changed()
    assert await mirrored(plane, ModelRef("m"), 3) == [None] * 3


async def test_a_request_already_on_the_candidate_is_not_mirrored_to_it() -> None:
    registry, plane = await shadowed(version(number=2))
    registry.alias("m", "production", (1, 50), (2, 50))  # a canary split over both
    registry.shadow("m", "production", Shadow(version=2, percent=100))
    registry.changed()
    for _ in range(50):
        resolved = await plane.resolve(ModelRef("m"))
        candidate = plane.shadow_of(ModelRef("m"), resolved)
        expected = None if resolved.version == 2 else 2
        assert (None if candidate is None else candidate.version) == expected


async def test_the_snapshot_carries_each_alias_shadow() -> None:
    registry, _ = await shadowed(version(number=2))
    snapshot = await router(registry).refresh()
    entry = snapshot.models["m"]
    assert entry.shadows == {"production": Shadow(version=2, percent=100)}
    assert entry.aliases["production"] == (Route(1, 100),)
    assert snapshot.shadows == {("m", "production"): Shadow(version=2, percent=100)}
