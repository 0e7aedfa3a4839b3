"""CurveZMQ on `tcp://` links: ZeroMQ's own encryption and authentication between gateways and
workers on other hosts (`ipc://` stays as it is: the file's permissions guard it).

One deployment has two key pairs in one folder (`MAAS_WORKER_KEYS_DIR`, made by `maas keys
worker --out DIR`): the workers' (`worker.key`, `worker.key_secret`) and the gateways'
(`gateway.key`, `gateway.key_secret`). A worker is a CURVE server that admits only the gateways'
public key (a ZAP handler on its own thread); a gateway must know the workers' public key to
connect at all. A peer without the keys gets no connection: the handshake fails before a single
message is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

WORKER, GATEWAY = "worker", "gateway"


class KeysError(Exception):
    """The key folder is missing a file or holds a bad one: one line for the operator."""


@dataclass(frozen=True)
class DeploymentKeys:
    worker_public: bytes
    worker_secret: bytes
    gateway_public: bytes
    gateway_secret: bytes

    @classmethod
    def load(cls, folder: Path) -> DeploymentKeys:
        pairs = {}
        for role in (WORKER, GATEWAY):
            path = folder / f"{role}.key_secret"
            try:
                public, secret = zmq.auth.load_certificate(path)
            except (OSError, ValueError) as exc:
                raise KeysError(
                    f"cannot read {path} ({exc}); make the keys with: maas keys worker --out "
                    f"{folder}"
                ) from None
            if secret is None:
                raise KeysError(f"{path} holds no secret key")
            pairs[role] = (public, secret)
        return cls(*pairs[WORKER], *pairs[GATEWAY])


def make_keys(folder: Path) -> list[Path]:
    """Write both key pairs into `folder` (refusing to overwrite); the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    existing = [
        folder / f"{role}{ext}" for role in (WORKER, GATEWAY) for ext in (".key", ".key_secret")
    ]
    if any(path.exists() for path in existing):
        raise KeysError(f"{folder} already holds worker keys; remove them first to make new ones")
    for role in (WORKER, GATEWAY):
        zmq.auth.create_certificates(folder, role)
    for path in existing:
        path.chmod(0o600 if path.suffix == ".key_secret" else 0o644)
    return existing


def needs_curve(endpoint: str) -> bool:
    return endpoint.startswith("tcp://")


def serve_securely(
    context: zmq.Context[zmq.Socket[bytes]], sock: zmq.Socket[bytes], keys: DeploymentKeys
) -> ThreadAuthenticator:
    """Make `sock` (before it binds) a CURVE server that admits only the gateways' key; the
    authenticator returned must be stopped with the socket."""
    auth = ThreadAuthenticator(context)
    auth.start()
    auth.certs["*"] = {keys.gateway_public: True}
    sock.curve_secretkey = keys.worker_secret
    sock.curve_publickey = keys.worker_public
    sock.curve_server = True
    return auth


def connect_securely(sock: zmq.Socket[bytes], keys: DeploymentKeys) -> None:
    """Make `sock` (before it connects) a CURVE client of the workers."""
    sock.curve_secretkey = keys.gateway_secret
    sock.curve_publickey = keys.gateway_public
    sock.curve_serverkey = keys.worker_public
