"""The port of `maas serve`, in the supervisor process: bound first, before anything exists
on disk, so a busy port is one line for the operator (`StartupError`), and inherited by every
gateway, which listen on it together (the kernel spreads connections).

The supervisor binds it and does not listen itself: the first gateway that serves does, so a
connection is accepted only once something answers it. `accepts` is how the supervisor sees
that moment, to say it is ready.
"""

from __future__ import annotations

import errno
import socket


class StartupError(Exception):
    """`maas serve` cannot start (the port is taken...): one line for the operator, said
    before anything was created."""


def bind(host: str, port: int) -> socket.socket:
    """The socket on `host:port`, bound and inheritable, not yet listening."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(
                f"port {port} on {host} is already in use by another process; stop it or "
                "choose another port with --port or MAAS_PORT"
            ) from None
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def accepts(host: str, port: int) -> bool:
    """Whether a connection to `host:port` is accepted (a gateway listens and serves)."""
    target = "127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host
    try:
        with socket.create_connection((target, port), timeout=0.2):
            return True
    except OSError:
        return False
