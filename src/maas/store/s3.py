"""Artifacts in S3-compatible object storage (`MAAS_ARTIFACT_URL=s3://bucket/prefix`), through
obstore (the Rust `object_store` crate behind a small Python API).

Objects are `<prefix>/sha256/<ab>/<digest>`, the same layout as on disk. The endpoint, region and
credentials come from the standard AWS variables (`AWS_ENDPOINT_URL`, `AWS_REGION`,
`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, web identity), so AWS S3,
MinIO, Ceph RGW, R2 and GCS's interoperability endpoint all work; an `http://` endpoint is
allowed (a server on the cluster's own network). The bucket must exist.

An upload is spooled to the gateway's own scratch directory while it is hashed and checked, then
PUT under its digest: in one request up to `PART_BYTES`, else as a multipart upload of
`PART_BYTES` parts, `PARTS_IN_FLIGHT` at a time, read from the file part by part. S3 makes either
visible only once complete, so a reader never sees half of it; a failed multipart upload is
aborted (a killed gateway leaves one only the bucket's lifecycle rule removes).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import obstore
from obstore.exceptions import BaseError, NotFoundError
from obstore.store import S3Store as _S3

if TYPE_CHECKING:
    from obstore.store import ClientConfig, RetryConfig, S3Config

from maas.errors import InvalidArtifact, StoreUnavailable
from maas.store.base import check_digest, is_digest, sealed_copy
from maas.store.sealing import ArtifactKey

# Memory an upload holds is about PART_BYTES x (PARTS_IN_FLIGHT + 1): parts of 8 MiB, two in
# flight, kept moto's and MinIO's speed on loopback (16 x 4 was no faster and held 64 MiB).
PART_BYTES = 8 * 1024 * 1024
PARTS_IN_FLIGHT = 2
_TIMEOUT = timedelta(seconds=30)
# A store that does not answer must fail a call in seconds, not retry it for minutes
# (object_store's default retry timeout is 3 min).
_RETRY: RetryConfig = {"max_retries": 3, "retry_timeout": timedelta(seconds=10)}


class S3Store:
    def __init__(self, url: str, scratch: Path, key: ArtifactKey | None = None) -> None:
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        self.url = url.rstrip("/")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.tmp_dir = scratch / "tmp"
        self.key = key
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL", "")
        client: dict[str, Any] = {"timeout": _TIMEOUT, "connect_timeout": timedelta(seconds=5)}
        if endpoint.startswith("http://"):
            client["allow_http"] = True
        config: dict[str, Any] = {}
        if endpoint and not (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")):
            config["region"] = "us-east-1"  # S3-compatible servers take any; obstore needs one
        if endpoint and "AWS_VIRTUAL_HOSTED_STYLE_REQUEST" not in os.environ:
            config["virtual_hosted_style_request"] = False  # MinIO, RGW, moto: path style
        self._s3 = _S3(
            bucket,
            prefix=self.prefix or None,
            config=cast("S3Config", config) if config else None,
            client_options=cast("ClientConfig", client),
            retry_config=_RETRY,
        )

    def _name(self, sha256: str) -> str:
        check_digest(sha256)
        return f"sha256/{sha256[:2]}/{sha256}"

    def describe(self) -> str:
        return self.url

    def location(self, sha256: str) -> str:
        return f"{self.url}/{self._name(sha256)}"

    def prepare(self) -> None:

        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        with unavailable("reach"):
            next(iter(obstore.list(self._s3, prefix="sha256/", chunk_size=1)), None)

    def exists(self, sha256: str) -> bool:

        try:
            with unavailable("look up an artifact in", missing_ok=True):
                obstore.head(self._s3, self._name(sha256))
        except (FileNotFoundError, NotFoundError):
            return False
        return True

    def place(self, tmp: Path, sha256: str) -> bool:

        if self.exists(sha256):
            return False
        placed = tmp if self.key is None else sealed_copy(self.key, tmp)
        try:
            with open(placed, "rb") as source, unavailable("store an artifact in"):
                obstore.put(
                    self._s3,
                    self._name(sha256),
                    source,
                    chunk_size=PART_BYTES,
                    max_concurrency=PARTS_IN_FLIGHT,
                )
        finally:
            if placed != tmp:
                placed.unlink(missing_ok=True)
        return True

    def read_range(self, sha256: str, offset: int, length: int) -> tuple[bytes, int]:

        try:
            with unavailable("read an artifact from", missing_ok=True):
                got = obstore.get(
                    self._s3, self._name(sha256), options={"range": (offset, offset + length)}
                )
                data = bytes(got.bytes())
        except (FileNotFoundError, NotFoundError):
            raise InvalidArtifact(f"artifact {sha256} is missing from the store") from None
        return data, int(got.meta["size"])

    def download(self, sha256: str, target: Path) -> int:
        """Write the stored file (sealed as stored) to `target`; its size. Streams: a large
        artifact never sits in memory whole."""

        written = 0
        try:
            with open(target, "wb") as out:
                with unavailable("read an artifact from", missing_ok=True):
                    stream = obstore.get(self._s3, self._name(sha256)).stream(4 * 1024 * 1024)
                while True:
                    with unavailable("read an artifact from"):
                        chunk = next(stream, None)
                    if chunk is None:
                        break
                    out.write(chunk)
                    written += len(chunk)
        except (FileNotFoundError, NotFoundError):
            raise InvalidArtifact(f"artifact {sha256} is missing from the store") from None
        return written

    def delete(self, sha256: str) -> None:

        with unavailable("delete an artifact from", missing_ok=True), _missing_is_done():
            obstore.delete(self._s3, self._name(sha256))

    def digests(self, older_than: float | None = None) -> list[str]:

        found = []
        with unavailable("list"):
            for batch in obstore.list(self._s3, prefix="sha256/"):
                for meta in batch:
                    name = meta["path"].rsplit("/", 1)[-1]
                    stamp = meta["last_modified"].timestamp()
                    if is_digest(name) and (older_than is None or stamp <= older_than):
                        found.append(name)
        return sorted(found)

    def temporaries(self) -> list[Path]:
        return sorted(self.tmp_dir.glob("upload-*"))


@contextlib.contextmanager
def unavailable(doing: str, *, missing_ok: bool = False) -> Iterator[None]:
    """obstore's errors, said as a 503 naming the store and what failed. With `missing_ok`, a
    missing object is the caller's to say (FileNotFoundError), unless the bucket is missing."""

    try:
        yield
    except (BaseError, OSError) as exc:  # obstore raises some as builtins (FileNotFoundError)
        text = str(exc).strip()
        if "NoSuchBucket" in text:
            raise StoreUnavailable(
                f"cannot {doing} the artifact store: its bucket does not exist "
                "(maas does not create buckets; make it, or fix MAAS_ARTIFACT_URL)"
            ) from None
        if missing_ok and isinstance(exc, FileNotFoundError | NotFoundError):
            raise
        if "169.254.169.254" in text or "credential" in text.lower():
            raise StoreUnavailable(
                f"cannot {doing} the artifact store: no usable credentials (set "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run where an instance role or "
                "web identity provides them)"
            ) from None
        first = text.splitlines()[0] if text else type(exc).__name__
        raise StoreUnavailable(
            f"cannot {doing} the artifact store ({type(exc).__name__}: {first[:300]})"
        ) from None


@contextlib.contextmanager
def _missing_is_done() -> Iterator[None]:

    with contextlib.suppress(FileNotFoundError, NotFoundError):
        yield
