"""A derived int8 version of an ONNX version: checks, the child process, the new version.

`optimize_version` checks the request against the parent (it exists and is ONNX, the method is
known, the bound lies in [0, 1], the holdout fits the parent's signature and its labels the
compared output), copies the parent's artifact out of the store (local or object storage,
opened when sealed) into this gateway's scratch, and runs `python -m maas.worker.optimize` on
it in a child process with a timeout: the quantisation and the measurements never run on the
event loop nor in this process (`maas.worker.optimize` says what it measures). The int8 file
is then stored as an upload is, and registered with the parent's meta, `derived_from` and the
measured figures in `metrics`; its load starts as an upload's does. The derived version's
golden examples are the parent's inputs with the int8 model's own outputs.

What the bound means for aliases is the registry's (`maas.registry.aliasing`).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maas.checks.arrays import group_instances
from maas.control.deployment import Deployer
from maas.control.plane import ControlPlane
from maas.errors import DeadlineExceeded, InvalidArtifact, InvalidInput
from maas.registry.records import VersionRecord
from maas.registry.service import NewVersion, Registry
from maas.store.base import CHUNK, ArtifactStore, ArtifactWriter
from maas.store.sealing import read_plain
from maas.types import ArtifactFormat, Derivation, TensorSpec, VersionKey, VersionStatus, is_number

METHODS = ("int8_dynamic",)
DEFAULT_MIN_AGREEMENT = 0.99
TIMEOUT_S = 900.0
_PIECE = 8 * 1024 * 1024
_STDERR_TAIL = 1500


@dataclass(frozen=True)
class Holdout:
    """The operator's instances (as a predict request sends them) and, optionally, one label
    per instance: a class index, or one of the parent's postprocess labels."""

    instances: list[Any]
    labels: list[Any] | None = None


async def optimize_version(
    *,
    registry: Registry,
    store: ArtifactStore,
    deployer: Deployer,
    plane: ControlPlane | None,
    key: VersionKey,
    actor: str,
    threads: int,
    max_bytes: int,
    method: str = "int8_dynamic",
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    holdout: Holdout | None = None,
    wait: bool = False,
    timeout_s: float = TIMEOUT_S,
) -> VersionRecord:
    """The new derived version of `key` (`loading`; with `wait`, once ready or failed, and
    when ready, served by every live gateway of `plane`)."""
    parent = await registry.get_version(key)
    check_request(parent, method, min_agreement)
    labels = await asyncio.to_thread(check_holdout, parent, holdout)
    if not parent.golden and not (holdout and holdout.instances):
        raise InvalidInput(
            f"{key} has no golden examples and the request gives no holdout: nothing to measure "
            'the int8 version against; give "holdout": {"instances": [...]} (maas models '
            "optimize --holdout FILE)"
        )
    scratch = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="optimize-", dir=store.tmp_dir))
    try:
        await asyncio.to_thread(copy_plain, store, parent.sha256, scratch / "parent.onnx")
        job = _job(parent, scratch, holdout, labels, threads)
        result = await run_child(job, scratch / "job.json", key, timeout_s)
        writer = await asyncio.to_thread(_stored_writer, store, Path(job["output"]), max_bytes)
    finally:
        await asyncio.to_thread(shutil.rmtree, scratch, True)
    digest, is_new = await asyncio.to_thread(writer.commit)
    derived = NewVersion(
        format=parent.format.value,
        inputs=[s.to_json() for s in parent.inputs],
        outputs=[s.to_json() for s in parent.outputs],
        batching=dict(parent.batching),
        device=parent.device,
        replicas=parent.replicas,
        metrics=result["metrics"],
        tags=dict(parent.tags),
        golden=result["golden"],
        description=parent.description,
        preprocess={name: p.to_json() for name, p in parent.preprocess.items()} or None,
        postprocess=None if parent.postprocess is None else parent.postprocess.to_json(),
        derived_from=Derivation(key.version, method, min_agreement).to_json(),
    )
    try:
        record = await registry.add_version(
            model=key.model,
            sha256=digest,
            size=writer.size,
            meta=derived,
            status=VersionStatus.REGISTERED,
            actor=actor,
        )
    except BaseException:
        if is_new and await registry.artifact_users(digest) == 0:
            await asyncio.to_thread(store.delete, digest)
        raise
    record = await deployer.start_load(record.key)
    if wait:
        record = await deployer.wait_settled(record.key)
        if plane is not None and record.status is VersionStatus.READY:
            await plane.propagate(await registry.generation())
    return record


def check_request(parent: VersionRecord, method: str, min_agreement: float) -> None:
    """InvalidArtifact (422) for a parent that cannot be optimised, InvalidInput (422) for a
    method or bound that is not one."""
    if parent.format is not ArtifactFormat.ONNX:
        raise InvalidArtifact(
            f"{parent.key} is a {parent.format.value} version; only ONNX versions can be "
            'optimised (export the model to ONNX and upload it with "format": "onnx")'
        )
    if method not in METHODS:
        raise InvalidInput(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    if not 0 <= min_agreement <= 1:
        raise InvalidInput(f"min_agreement must lie in [0, 1], got {min_agreement}")
    spec = compared_output(parent)
    if not spec.shape:
        raise InvalidArtifact(
            f"output '{spec.name}' of {parent.key} has no class axis (one number per instance): "
            "top-1 agreement with the int8 version cannot be measured on it"
        )


def compared_output(parent: VersionRecord) -> TensorSpec:
    """The output agreement is measured on: the one the postprocess reads, else the first."""
    name = parent.postprocess.output if parent.postprocess is not None else None
    return next((s for s in parent.outputs if s.name == name), parent.outputs[0])


def check_holdout(parent: VersionRecord, holdout: Holdout | None) -> list[int] | None:
    """InvalidInput unless the holdout's instances fit the parent's inputs and its labels are
    one per instance, each a class of the compared output; the labels as class indexes."""
    if holdout is None:
        return None
    try:
        group_instances(holdout.instances, parent.inputs)
    except InvalidInput as exc:
        raise InvalidInput(f"holdout: {exc.message}") from None
    if holdout.labels is None:
        return None
    if len(holdout.labels) != len(holdout.instances):
        raise InvalidInput(
            f"holdout: {len(holdout.labels)} label(s) for {len(holdout.instances)} "
            "instance(s); give one label per instance"
        )
    spec = compared_output(parent)
    if len(spec.shape) != 1:
        raise InvalidInput(
            f"holdout: labels need one class per instance, and output '{spec.name}' has shape "
            f"{list(spec.shape)} per instance"
        )
    names = parent.postprocess.labels if parent.postprocess is not None else ()
    return [_class_index(label, i, spec.shape[0], names) for i, label in enumerate(holdout.labels)]


def _class_index(label: Any, position: int, classes: int, names: Sequence[str]) -> int:
    where = f"holdout label {position}"
    if isinstance(label, str) and label in names:
        return names.index(label)
    if isinstance(label, str) and is_number(label):
        label = int(label)
    if isinstance(label, bool) or not isinstance(label, int):
        known = f" or one of the version's labels ({', '.join(names[:5])}...)" if names else ""
        raise InvalidInput(f"{where}: {label!r} is not a class index{known}")
    if label < 0 or (classes != -1 and label >= classes):
        raise InvalidInput(f"{where}: class {label} is outside 0..{classes - 1}")
    return label


def copy_plain(store: ArtifactStore, sha256: str, target: Path) -> None:
    """The stored artifact `sha256`, opened (when sealed) and checked, as a plain file at
    `target`. Blocks."""
    stored = target.with_name(target.name + ".stored")
    offset, total = 0, 1
    with open(stored, "wb") as out:
        while offset < total:
            data, total = store.read_range(sha256, offset, _PIECE)
            if not data:
                break
            out.write(data)
            offset += len(data)
    handle, digest = read_plain(stored, store.key)
    with handle:
        if digest != sha256:
            raise InvalidArtifact(f"artifact {sha256} does not match its checksum in the store")
        with open(target, "wb") as out:
            shutil.copyfileobj(handle, out, CHUNK)
    stored.unlink()


def _job(
    parent: VersionRecord,
    scratch: Path,
    holdout: Holdout | None,
    labels: list[int] | None,
    threads: int,
) -> dict[str, Any]:
    return {
        "method": "int8_dynamic",
        "parent": str(scratch / "parent.onnx"),
        "output": str(scratch / "int8.onnx"),
        "result": str(scratch / "result.json"),
        "inputs": [s.to_json() for s in parent.inputs],
        "outputs": [s.to_json() for s in parent.outputs],
        "compare": compared_output(parent).name,
        "golden": [
            {"inputs": g.inputs, "outputs": g.outputs, "atol": g.atol} for g in parent.golden
        ],
        "holdout": holdout.instances if holdout is not None else [],
        "labels": labels,
        "max_batch_size": parent.batch.max_batch_size,
        "threads": threads,
    }


async def run_child(
    job: dict[str, Any], job_path: Path, key: VersionKey, timeout_s: float
) -> dict[str, Any]:
    """Run `maas.worker.optimize` on `job`; its result, or the error it reports as a 422."""
    await asyncio.to_thread(job_path.write_text, json.dumps(job))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "maas.worker.optimize",
        str(job_path),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        raise DeadlineExceeded(
            f"the int8 quantisation of {key} did not finish within {timeout_s:g} s"
        ) from None
    finally:
        if process.returncode is None:  # timed out, or the request was cancelled
            process.kill()
            await process.wait()
    result = await asyncio.to_thread(_read_result, Path(job["result"]))
    if result is None:
        tail = stderr.decode("utf-8", "replace").strip()[-_STDERR_TAIL:]
        raise InvalidArtifact(
            f"the int8 quantisation of {key} ended without a result (exit status "
            f"{process.returncode}){': ' + tail if tail else ''}"
        )
    if not result.get("ok"):
        error = result.get("error") or {}
        message = str(error.get("message") or "no reason given")
        if error.get("code") == "unsupported":
            raise InvalidArtifact(f"{key} cannot be made int8: {message}")
        raise InvalidInput(f"{key}: {message}")
    return result


def _read_result(path: Path) -> dict[str, Any] | None:
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return result if isinstance(result, dict) else None


def _stored_writer(store: ArtifactStore, path: Path, max_bytes: int) -> ArtifactWriter:
    """The int8 file received into the store as an upload is (commit it to store it)."""
    writer = ArtifactWriter(store, max_bytes)
    try:
        with open(path, "rb") as source:
            while chunk := source.read(CHUNK):
                writer.write(chunk)
        writer.finish()
    except BaseException:
        writer.discard()
        raise
    return writer
