"""`maas serve --demo`: an admin key on disk and the demo models trained, loaded and aliased.

Runs in the background after the gateway starts, so /healthz answers at once and /readyz says
what is still missing. A restart reuses what an earlier start already registered.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from maas.api.services import Services
from maas.auth.keys import create_key
from maas.control.meta import parse_meta
from maas.demo.artifact import DemoModel
from maas.errors import ModelLoadError, ModelNotFound
from maas.store.base import put_bytes
from maas.types import DEFAULT_ALIAS, Scope, VersionKey, VersionStatus

ADMIN_KEY_FILE = "admin.key"

Trainer = Callable[[], DemoModel]


DEMO_NAMES = ("digits", "tokens")


def demo_trainers() -> list[tuple[str, Trainer]]:
    """The demo models by name. Each trainer imports torch and scikit-learn itself, on the
    thread it runs on: an import of those takes seconds and must not stall the event loop."""
    return [(name, _trainer(name)) for name in DEMO_NAMES]


def _trainer(name: str) -> Trainer:
    def train() -> DemoModel:
        import importlib

        module = importlib.import_module(f"maas.demo.{name}")
        model: DemoModel = module.train()
        return model

    return train


async def install_demo(
    services: Services, trainers: Sequence[tuple[str, Trainer]] | None = None
) -> None:
    await ensure_admin_key_file(services)
    for name, train in trainers if trainers is not None else demo_trainers():
        await _ensure_model(services, name, train)


async def wait_for_demo(services: Services, poll_s: float = 0.5) -> None:
    """For gateways other than the first: ready once the first one has installed the demo."""
    names = DEMO_NAMES
    while True:
        models = {m.name: m for m in await services.registry.list_models()}
        if all(
            name in models and any(a.alias == DEFAULT_ALIAS for a in models[name].aliases)
            for name in names
        ):
            return
        await asyncio.sleep(poll_s)


async def ensure_admin_key_file(services: Services) -> Path:
    """On first start, create an admin key and keep its secret in a 0600 file."""
    path = services.settings.data_dir / ADMIN_KEY_FILE
    if not await asyncio.to_thread(path.exists):
        _, secret = await create_key(
            services.registry, name="demo-admin", scopes=[Scope.ADMIN.value], actor="system"
        )
        await asyncio.to_thread(_write_secret, path, secret)
        print(f"maas: created an admin key; its secret is in {path.resolve()}", file=sys.stderr)
    else:
        print(f"maas: the admin key's secret is in {path.resolve()}", file=sys.stderr)
    return path


def _write_secret(path: Path, secret: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret + "\n")


async def _ensure_model(services: Services, name: str, train: Trainer) -> None:
    registry = services.registry
    try:
        model = await registry.get_model(name)
    except ModelNotFound:
        model = None
    if model is not None and any(a.alias == DEFAULT_ALIAS for a in model.aliases):
        return
    print(f"maas: training the '{name}' demo model (first start only)...", file=sys.stderr)
    demo = await asyncio.to_thread(train)
    if model is None:
        await registry.create_model(name=name, description=demo.description, actor="system")
    meta = parse_meta(demo.meta)
    digest, _ = await asyncio.to_thread(put_bytes, services.store, demo.artifact)
    record = await registry.add_version(
        model=name,
        sha256=digest,
        size=len(demo.artifact),
        meta=meta.to_new_version(),
        status=VersionStatus.REGISTERED,
        actor="system",
    )
    await services.deployer.start_load(record.key)  # the gateway leading placement loads it
    loaded = await services.deployer.wait_settled(VersionKey(name, record.version))
    if loaded.status is not VersionStatus.READY:
        raise ModelLoadError(f"demo model {record.key} did not load: {loaded.load_error}")
    # The model had no production alias, so the registry pointed it at this version as it
    # turned ready (audited as `system`).
    accuracy = demo.meta.get("metrics", {}).get("accuracy")
    print(f"maas: demo model {record.key} ready, held-out accuracy {accuracy}", file=sys.stderr)
