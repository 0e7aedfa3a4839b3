"""Publishing an upload: the check before its body is read, the artifact discarded when meta is
refused, and with `wait` a ready version served by every gateway before the answer."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest

from maas.control.publishing import check_target, publish_version
from maas.errors import BadRequest, InvalidArtifact, ModelNotFound
from maas.registry import db
from maas.registry.records import VersionRecord
from maas.registry.service import Registry
from maas.store.base import ArtifactWriter
from maas.store.local import LocalStore
from maas.types import VersionKey, VersionStatus
from support.model_files import mlp_meta, tiny_mlp, torchscript_bytes


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    opened = db.open_database(f"sqlite:///{tmp_path}/registry.db")
    await db.upgrade(opened.engine)
    try:
        yield Registry(opened.reads, writes=opened.writes)
    finally:
        await opened.dispose()


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    store = LocalStore(tmp_path / "artifacts")
    store.prepare()
    return store


class _Deployer:
    """Loads by deciding: the version ends `settles_as`."""

    def __init__(self, registry: Registry, settles_as: VersionStatus) -> None:
        self._registry = registry
        self._settles_as = settles_as

    async def start_load(self, key: VersionKey) -> VersionRecord:
        record = await self._registry.set_status(key, VersionStatus.LOADING)
        assert record is not None
        return record

    async def wait_settled(self, key: VersionKey) -> VersionRecord:
        record = await self._registry.set_status(key, self._settles_as)
        assert record is not None
        return record


class _Backend:
    async def check(self, spec: object) -> None:
        pass


class _Plane:
    def __init__(self) -> None:
        self.propagated: list[int] = []

    async def propagate(self, generation: int) -> None:
        self.propagated.append(generation)


class _Untouched:
    """Whatever publishing must not reach once meta is refused."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"{name} was used")


def _writer(store: LocalStore, data: bytes) -> ArtifactWriter:
    writer = ArtifactWriter(store, max_bytes=len(data) + 1)
    writer.write(data)
    return writer


async def test_an_upload_names_an_existing_model_unless_it_may_create_it(
    registry: Registry,
) -> None:
    with pytest.raises(ModelNotFound):
        await check_target(registry, "digits")
    await check_target(registry, "digits", create_model=True)  # created with its version
    with pytest.raises(BadRequest) as refused:
        await check_target(registry, "Bad!", create_model=True)
    assert str(refused.value) == "'Bad!' is not a valid model name (^[a-z0-9][a-z0-9._-]{0,63}$)"
    with pytest.raises(BadRequest):  # `$` alone would let a trailing newline through
        await check_target(registry, "digits\n", create_model=True)
    await registry.create_model(name="digits", description="", actor="t")
    await check_target(registry, "digits")
    await check_target(registry, "digits", create_model=True)
    assert [m.name for m in await registry.list_models()] == ["digits"]  # nothing created


@pytest.mark.parametrize(
    ("meta", "error", "message"),
    [
        (b"{not json", BadRequest, "meta is not valid JSON"),
        (
            json.dumps({**mlp_meta(), "tags": {"a": [[[[1]]]]}}).encode(),
            BadRequest,
            "meta nests deeper than 4 levels of arrays and objects (MAAS_MAX_JSON_DEPTH)",
        ),
        (json.dumps({**mlp_meta(), "format": "nope"}).encode(), InvalidArtifact, "invalid meta"),
    ],
)
async def test_refused_meta_discards_the_artifact(
    registry: Registry,
    store: LocalStore,
    meta: bytes,
    error: type[Exception],
    message: str,
) -> None:
    await registry.create_model(name="mlp", description="", actor="t")
    writer = _writer(store, torchscript_bytes(tiny_mlp()))
    untouched = cast(Any, _Untouched())
    with pytest.raises(error) as refused:
        await publish_version(
            registry=registry,
            store=store,
            deployer=untouched,
            backend=untouched,
            plane=untouched,
            model="mlp",
            writer=writer,
            meta=meta,
            actor="t",
            max_depth=4,
            wait=True,
        )
    assert str(refused.value).startswith(message)
    assert not writer.tmp_path.exists()
    assert list(store.tmp_dir.iterdir()) == []
    assert list((store.root / "sha256").iterdir()) == []
    assert await registry.all_versions() == []


@pytest.mark.parametrize(
    ("wait", "settles_as", "propagated"),
    [(True, VersionStatus.READY, True), (True, VersionStatus.FAILED, False), (False, None, False)],
)
async def test_a_waited_for_ready_version_is_served_by_every_gateway_before_the_answer(
    registry: Registry,
    store: LocalStore,
    wait: bool,
    settles_as: VersionStatus | None,
    propagated: bool,
) -> None:
    plane = _Plane()
    record = await publish_version(
        registry=registry,
        store=store,
        deployer=cast(Any, _Deployer(registry, settles_as or VersionStatus.READY)),
        backend=cast(Any, _Backend()),
        plane=cast(Any, plane),
        model="mlp",
        writer=_writer(store, torchscript_bytes(tiny_mlp())),
        meta=json.dumps(mlp_meta()).encode(),
        actor="t",
        max_depth=32,
        wait=wait,
        create_model=True,
    )
    assert record.status is (settles_as or VersionStatus.LOADING)
    # The generation it waits for includes production, set when the first version turned ready.
    assert plane.propagated == ([await registry.generation()] if propagated else [])
    if propagated:
        production = await registry.get_alias(model="mlp", alias="production")
        assert [r.version for r in production.routes] == [record.version]
