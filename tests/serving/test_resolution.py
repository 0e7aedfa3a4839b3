"""Resolution of a ref to one ready version (`maas.control.routing.Router`, through
`DataPlane.resolve`), without HTTP or a database: what each kind of ref names, the domain
error of each kind of miss, the in-memory snapshot it reads (once; again after a change this
process made; kept while the registry is down), and a resolved ref that stays put while its
alias moves."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from maas.dispatch.fake import FakeCall
from maas.errors import AliasNotFound, ModelNotFound, VersionNotFound, VersionNotReady
from maas.types import ModelRef, VersionKey, VersionStatus
from support.serving_parts import stack, version


def echo(call: FakeCall) -> list[Any]:
    (x,) = call.inputs
    return [x[:, :3]]


async def test_each_kind_of_ref_names_its_version() -> None:
    registry, _, plane = await stack(
        echo,
        version(number=1),
        version(number=2),
        version(number=3),
        aliases=[("m", "production", 1), ("m", "canary", 3)],
    )
    assert (await plane.resolve(ModelRef("m"))).key == VersionKey("m", 1)
    assert (await plane.resolve(ModelRef("m", alias="production"))).key == VersionKey("m", 1)
    assert (await plane.resolve(ModelRef("m", alias="canary"))).key == VersionKey("m", 3)
    assert (await plane.resolve(ModelRef("m", version=2))).key == VersionKey("m", 2)
    assert registry.reads == 1  # one read of the registry served every resolution


@pytest.mark.parametrize(
    ("ref", "error", "says"),
    [
        (ModelRef("nope"), ModelNotFound, "model 'nope' does not exist"),
        (ModelRef("m", alias="staging"), AliasNotFound, "model 'm' has no alias 'staging'"),
        (ModelRef("m", version=9), VersionNotFound, "model 'm' has no version 9"),
        (ModelRef("bare"), AliasNotFound, "model 'bare' has no alias 'production'"),
    ],
    ids=["unknown_model", "unknown_alias", "unknown_version", "no_default_alias"],
)
async def test_a_ref_that_names_nothing_is_its_own_domain_error(
    ref: ModelRef, error: type[Exception], says: str
) -> None:
    registry, backend, plane = await stack(
        echo, version(number=1), version("bare", 1), aliases=[("m", "production", 1)]
    )
    await plane.resolve(ModelRef("m"))
    with pytest.raises(error, match=says):
        await plane.resolve(ref)
    assert registry.reads == 1  # answered from the snapshot: junk costs no query
    assert backend.calls == []


async def test_an_alias_on_a_version_that_cannot_serve_names_the_version() -> None:
    _, _, plane = await stack(
        echo, version(number=1, status=VersionStatus.LOADING), aliases=[("m", "production", 1)]
    )
    with pytest.raises(VersionNotReady, match="m@production points at m@1, which is still") as e:
        await plane.resolve(ModelRef("m"))
    assert (e.value.model, e.value.version) == ("m", 1)  # what the request is counted under


async def test_weighted_routes_send_one_routing_key_to_one_version() -> None:
    registry, _, plane = await stack(echo, version(number=1), version(number=2))
    registry.alias("m", "production", (1, 50), (2, 50))
    chosen = {
        key: {(await plane.resolve(ModelRef("m"), routing_key=key)).version for _ in range(10)}
        for key in (f"user-{i}" for i in range(40))
    }
    assert all(len(versions) == 1 for versions in chosen.values()), chosen
    assert {v for (v,) in chosen.values()} == {1, 2}  # and keys spread over both


async def test_a_change_this_process_made_is_read_before_the_next_resolution() -> None:
    registry, _, plane = await stack(
        echo, version(number=1), version(number=2), aliases=[("m", "production", 1)]
    )
    assert (await plane.resolve(ModelRef("m"))).version == 1
    registry.alias("m", "production", (2, 100))
    assert (await plane.resolve(ModelRef("m"))).version == 1  # nobody said: the snapshot holds
    registry.changed()
    assert (await plane.resolve(ModelRef("m"))).version == 2  # read your writes
    assert registry.reads == 2


async def test_the_last_snapshot_serves_while_the_registry_is_down() -> None:
    registry, _, plane = await stack(echo, version(number=1), aliases=[("m", "production", 1)])
    await plane.resolve(ModelRef("m"))
    registry.down = True
    registry.changed()
    assert (await plane.resolve(ModelRef("m"))).version == 1
    assert registry.reads == 2  # it tried, failed, and kept what it had
    registry.down = False
    assert (await plane.resolve(ModelRef("m"))).version == 1
    assert registry.reads == 3  # and tries again on the next request


async def test_a_resolved_ref_runs_on_its_version_after_the_alias_moves() -> None:
    registry, backend, plane = await stack(
        echo, version(number=1), version(number=2), aliases=[("m", "production", 1)]
    )
    admitted = await plane.resolve(ModelRef("m"))
    registry.alias("m", "production", (2, 100))
    registry.changed()
    assert (await plane.resolve(ModelRef("m"))).version == 2  # new requests go to 2
    await plane.infer(admitted, [[np.ones((1, 4), np.float32)]], timeout_s=5)
    assert [c.key for c in backend.calls] == [VersionKey("m", 1)]  # the admitted one: on 1
