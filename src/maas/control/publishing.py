"""A new version from an upload: artifact into the store, checks, row into the registry, load.

`check_target` runs before a byte of the body is read: the model must exist, or with
`create_model` the name must be one a model may have. `publish_version` takes the received
upload from there. Checks run before the version exists, so a file that cannot load costs no
version number: meta must parse and validate, the archive must be a TorchScript or
`torch.export` file of the declared format (its zip layout), and with `wait` a worker
trial-loads it (load, warm-up, golden examples) and keeps nothing. If anything fails before
the row is written, the artifact is removed again unless another version already uses the same
bytes, so a rejected upload leaves no file, no row and no empty model. With `wait`, a version
that ends up ready is served by every live gateway before the answer.
"""

from __future__ import annotations

import asyncio

from maas.control.deployment import Deployer
from maas.control.meta import parse_meta
from maas.control.plane import ControlPlane
from maas.dispatch.backend import InferenceBackend
from maas.errors import BadRequest
from maas.registry.records import VersionRecord
from maas.registry.service import Registry, draft_record
from maas.store.archive import check_archive
from maas.store.base import ArtifactStore, ArtifactWriter
from maas.store.onnx_graph import check_onnx_graph
from maas.types import MODEL_NAME_RE, ArtifactFormat, VersionStatus


async def check_target(registry: Registry, model: str, *, create_model: bool = False) -> None:
    """Whether an upload to `model` may go on, before its body is read: ModelNotFound unless
    the model exists, or with `create_model` BadRequest for a name a model may not have (the
    model itself is created with the version)."""
    if not create_model:
        await registry.get_model(model)
    elif not MODEL_NAME_RE.fullmatch(model):
        raise BadRequest(f"'{model}' is not a valid model name ({MODEL_NAME_RE.pattern})")


async def publish_version(
    *,
    registry: Registry,
    store: ArtifactStore,
    deployer: Deployer,
    backend: InferenceBackend,
    plane: ControlPlane | None,
    model: str,
    writer: ArtifactWriter,
    meta: bytes,
    actor: str,
    max_depth: int,
    wait: bool = False,
    create_model: bool = False,
    labels: list[str] | None = None,
) -> VersionRecord:
    """The new version of the received upload (`writer`, and `meta` as sent, parsed here with
    MAAS_MAX_JSON_DEPTH `max_depth`); with `wait`, once its load has finished (`ready` or
    `failed`), and when it is ready, once every live gateway of `plane` serves it (and
    production, when it was the model's first ready version). `labels` (an upload's `labels`
    part) fill meta's `postprocess.labels`. The artifact is discarded when meta or the file is
    refused."""
    try:
        parsed = parse_meta(meta, max_depth=max_depth, labels=labels)
        await asyncio.to_thread(writer.finish)
        # The plain upload is inspected before it is stored (sealed, with MAAS_ARTIFACT_KEY).
        await asyncio.to_thread(check_archive, writer.tmp_path, parsed.format)
        if parsed.format is ArtifactFormat.ONNX:  # its graph's signature against meta's
            await asyncio.to_thread(
                check_onnx_graph,
                writer.tmp_path,
                parsed.inputs,
                parsed.outputs,
                parsed.batching.max_batch_size,
            )
    except BaseException:
        await asyncio.to_thread(writer.discard)
        raise
    digest, is_new = await asyncio.to_thread(writer.commit)
    location = store.location(digest)
    new_version = parsed.to_new_version()
    try:
        if wait and parsed.load:
            draft = draft_record(model, sha256=digest, size=writer.size, meta=new_version)
            await backend.check(draft.load_spec(location))
        record = await registry.add_version(
            model=model,
            sha256=digest,
            size=writer.size,
            meta=new_version,
            status=VersionStatus.REGISTERED,
            actor=actor,
            create_model=create_model,
        )
    except BaseException:
        if is_new and await _unused(registry, digest):
            await asyncio.to_thread(store.delete, digest)
        raise
    if parsed.load:
        record = await deployer.start_load(record.key)
        if wait:
            record = await deployer.wait_settled(record.key)
    if wait and plane is not None and record.status is VersionStatus.READY:
        await plane.propagate(await registry.generation())
    return record


async def _unused(registry: Registry, digest: str) -> bool:
    try:
        return await registry.artifact_users(digest) == 0
    except Exception:
        return False  # cannot tell: keeping an orphan file is safer than deleting a used one
