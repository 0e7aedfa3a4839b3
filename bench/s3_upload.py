"""Artifact uploads to S3-compatible storage: which library, and what an upload costs.

    python -m bench.s3_upload [--mib 1024] [--libraries]

Starts moto's S3 server on a free port (as the tests do) and a file of random bytes, then times:
- `cp` of the file on this disk: the ceiling an upload is compared with;
- with `--libraries`: the same file PUT by obstore (what maas uses) and by aiobotocore, each as
  a multipart upload of 8 MiB parts, 2 in flight, into the same server;
- `maas serve` with `MAAS_ARTIFACT_URL` on that server, the file uploaded through its admin
  API as a TorchScript archive (`load: false`): the wall time, and the growth of the gateway
  processes' peak RSS (VmHWM) over their RSS before the upload.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx

PART = 8 * 1024 * 1024  # as maas.store.s3: 8 MiB parts, 2 in flight
MiB = 1024 * 1024


def say(text: str) -> None:
    print(f"[s3 {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_moto(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=open(log, "wb"),  # noqa: SIM115 - the server's for its life
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            httpx.get(f"{endpoint}/moto-api/", timeout=1)
            return process, endpoint
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit(f"moto did not start: {log.read_text()[-2000:]}")


def archive(path: Path, mib: int) -> None:
    """A file `check_archive` takes as TorchScript (its zip layout), `mib` MiB of random data
    stored uncompressed."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("model/version", "3\n")
        zf.writestr("model/data.pkl", b"\x80\x02}q\x00.")
        zf.writestr("model/code/__torch__.py", "")
        zf.writestr("model/constants.pkl", b"\x80\x02).")
        with zf.open("model/data/0", "w", force_zip64=True) as out:
            block = os.urandom(MiB)
            for _ in range(mib):
                out.write(block)


def timed(label: str, seconds: float, size: int) -> float:
    rate = size / MiB / seconds
    say(f"{label:<34} {seconds:7.2f} s  {rate:8.1f} MiB/s")
    return rate


def bench_cp(path: Path) -> float:
    target = path.with_suffix(".copy")
    began = time.perf_counter()
    subprocess.run(["cp", str(path), str(target)], check=True)
    subprocess.run(["sync", str(target)], check=False)
    took = time.perf_counter() - began
    target.unlink()
    return timed("cp (plus sync)", took, path.stat().st_size)


def bench_curl(path: Path, bucket: str, endpoint: str) -> float:
    """One plain PUT by curl: how fast this S3 server takes bytes at all."""
    began = time.perf_counter()
    subprocess.run(
        ["curl", "-sf", "-o", "/dev/null", "-T", str(path), f"{endpoint}/{bucket}/curl/blob"],
        check=True,
    )
    return timed(
        "curl PUT (the server's ceiling)", time.perf_counter() - began, path.stat().st_size
    )


def bench_obstore(path: Path, bucket: str) -> float:
    import obstore
    from obstore.store import S3Store

    store = S3Store(bucket, client_options={"allow_http": True}, config={"region": "us-east-1"})
    began = time.perf_counter()
    with open(path, "rb") as fh:
        obstore.put(store, "obstore/blob", fh, chunk_size=PART, max_concurrency=2)
    return timed("obstore put (multipart)", time.perf_counter() - began, path.stat().st_size)


def bench_aiobotocore(path: Path, bucket: str, endpoint: str) -> float:
    from aiobotocore.session import get_session

    async def upload() -> None:
        session = get_session()
        async with session.create_client("s3", endpoint_url=endpoint) as client:
            made = await client.create_multipart_upload(Bucket=bucket, Key="aiobotocore/blob")
            upload_id = made["UploadId"]
            limit = asyncio.Semaphore(2)  # parts in flight, as maas.store.s3 does

            async def part(number: int, data: bytes) -> dict[str, object]:
                try:
                    got = await client.upload_part(
                        Bucket=bucket,
                        Key="aiobotocore/blob",
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=data,
                    )
                finally:
                    limit.release()
                return {"PartNumber": number, "ETag": got["ETag"]}

            tasks = []
            source = await asyncio.to_thread(open, path, "rb")
            try:
                while True:
                    await limit.acquire()  # memory bounded like obstore's
                    data = await asyncio.to_thread(source.read, PART)
                    if not data:
                        limit.release()
                        break
                    tasks.append(asyncio.create_task(part(len(tasks) + 1, data)))
                parts = await asyncio.gather(*tasks)
            finally:
                source.close()
            await client.complete_multipart_upload(
                Bucket=bucket,
                Key="aiobotocore/blob",
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )

    began = time.perf_counter()
    asyncio.run(upload())
    return timed("aiobotocore (multipart)", time.perf_counter() - began, path.stat().st_size)


def gateway_pids(supervisor: int) -> list[int]:
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    found = []
    for pid in map(int, children):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"worker" not in cmdline:
            found.append(pid)
    return found


def memory(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            name, value = line.split(":")
            fields[name] = int(value.split()[0]) * 1024
    return fields


def bench_gateway(
    path: Path, bucket: str | None, env: dict[str, str], work: Path
) -> tuple[float, int]:
    """Upload through `maas serve` into `bucket`, or into its local directory when None."""
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    admin = "bench-admin-key-0123456789"
    settings = {
        "MAAS_PORT": str(port),
        "MAAS_DATA_DIR": str(work / "data"),
        "MAAS_DATABASE_URL": f"sqlite:///{work / 'registry.db'}",
        "MAAS_ARTIFACT_DIR": str(work / "scratch"),
        "MAAS_BOOTSTRAP_ADMIN_KEY": admin,
        "MAAS_MAX_ARTIFACT_BYTES": str(8 * 1024 * MiB),
    }
    if bucket is not None:
        settings["MAAS_ARTIFACT_URL"] = f"s3://{bucket}/gateway"
    server = subprocess.Popen(
        [sys.executable, "-m", "maas", "serve", "--workers", "0", "--gateways", "1"],
        env={**env, **settings},
        stdout=open(work / "serve.log", "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        pids = gateway_pids(server.pid)
        before = {pid: memory(pid)["VmRSS"] for pid in pids}
        headers = {"Authorization": f"Bearer {admin}"}
        meta = (
            '{"format": "torchscript", "load": false, "inputs": [{"name": "x", '
            '"dtype": "float32", "shape": [-1, 4]}], "outputs": [{"name": "y", '
            '"dtype": "float32", "shape": [-1, 2]}]}'
        )
        boundary = "maasbenchboundary"

        def body() -> Iterator[bytes]:
            yield (
                f'--{boundary}\r\nContent-Disposition: form-data; name="meta"\r\n\r\n{meta}\r\n'
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                'filename="model.pt"\r\nContent-Type: application/octet-stream\r\n\r\n'
            ).encode()
            with open(path, "rb") as fh:
                while block := fh.read(MiB):
                    yield block
            yield f"\r\n--{boundary}--\r\n".encode()

        began = time.perf_counter()
        answer = httpx.post(
            f"{base}/admin/models/big/versions?create_model=true",
            content=body(),
            headers={**headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
            timeout=600,
        )
        took = time.perf_counter() - began
        if answer.status_code != 201:
            raise SystemExit(f"upload answered {answer.status_code}: {answer.text[:500]}")
        growth = max(memory(pid)["VmHWM"] - before[pid] for pid in pids)
        where = "S3" if bucket else "a directory"
        timed(f"upload through maas serve to {where}", took, path.stat().st_size)
        say(f"gateway peak RSS growth: {growth / MiB:.1f} MiB")
        return took, growth
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--libraries", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="maas-s3-bench-"))
    moto, endpoint = start_moto(work / "moto.log")
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench-secret",
        "AWS_REGION": "us-east-1",
    }
    os.environ.update(env)
    try:
        httpx.put(f"{endpoint}/bench", timeout=10).raise_for_status()
        path = work / "model.pt"
        archive(path, args.mib)
        say(f"file: {path.stat().st_size / MiB:.0f} MiB; moto at {endpoint}")
        cp_rate = bench_cp(path)
        server_rate = bench_curl(path, "bench", endpoint)
        if args.libraries:
            bench_obstore(path, "bench")
            bench_aiobotocore(path, "bench", endpoint)
        bench_gateway(path, None, env, work / "local")
        took, _ = bench_gateway(path, "bench", env, work / "s3")
        rate = path.stat().st_size / MiB / took
        say(f"upload through maas ÷ cp: {rate / cp_rate:.2f}; ÷ curl PUT: {rate / server_rate:.2f}")
    finally:
        moto.terminate()
        moto.wait(10)
        subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    main()
