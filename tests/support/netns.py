"""Hosts of a test's own: Linux network namespaces on one bridge, each with its own address.

`Network` makes a bridge in the test's namespace (the test itself is the "client host" at
.254) and one namespace per host with a veth link to it; `Host.popen` starts a process inside a
host (`support.processes.start`). Needs root and iproute2; `skip_reason()` says why not where
they are missing. Everything made is removed on exit, processes first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.processes import Child, kill_all, start, stop_all


def skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not on PATH"
    probe = f"maasprobe{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot make a network namespace here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str, netns: str | None = None) -> None:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    done = subprocess.run([*prefix, "ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")


@dataclass
class Host:
    name: str
    netns: str
    address: str
    processes: list[Child] = field(default_factory=list)

    def popen(self, cmd: list[str], *, env: dict[str, str], log: Path) -> Child:
        """Start `cmd` inside this host, in a process group of its own (so `kill` takes its
        children too), writing to `log`."""
        process = start(["ip", "netns", "exec", self.netns, *cmd], log=log, env=env, own_group=True)
        self.processes.append(process)
        return process

    def run(self, cmd: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.netns, *cmd], capture_output=True, text=True
        )

    def kill(self) -> None:
        """Every process of this host dies at once (SIGKILL to each group): the host is gone."""
        kill_all(self.processes)
        self.processes.clear()

    def stop(self) -> None:
        stop_all(self.processes, grace_s=15)
        self.processes.clear()

    def cut_from(self, other: Host) -> None:
        """No route from this host to `other` any more (others still reach both)."""
        _ip("route", "add", "blackhole", f"{other.address}/32", netns=self.netns)


@dataclass
class Network:
    subnet: str  # "10.213.7" — hosts get .1 .. .253, the test itself .254
    bridge: str
    hosts: dict[str, Host] = field(default_factory=dict)
    _links: list[str] = field(default_factory=list)

    @property
    def client_address(self) -> str:
        return f"{self.subnet}.254"

    def add(self, name: str, number: int) -> Host:
        tag = uuid.uuid4().hex[:6]
        netns, outside = f"maas-{tag}-{name}", f"mv{tag}{number}"
        _ip("netns", "add", netns)
        host = Host(name, netns, f"{self.subnet}.{number}")
        self.hosts[name] = host
        _ip("link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", netns)
        self._links.append(outside)
        _ip("link", "set", outside, "master", self.bridge, "up")
        _ip("addr", "add", f"{host.address}/24", "dev", "eth0", netns=netns)
        _ip("link", "set", "eth0", "up", netns=netns)
        _ip("link", "set", "lo", "up", netns=netns)
        return host


@contextmanager
def network(subnet_octet: int | None = None) -> Iterator[Network]:
    octet = subnet_octet if subnet_octet is not None else 100 + int(uuid.uuid4().hex[:2], 16) % 100
    bridge = f"mbr{uuid.uuid4().hex[:8]}"
    net = Network(f"10.213.{octet}", bridge)
    _ip("link", "add", bridge, "type", "bridge")
    try:
        _ip("addr", "add", f"{net.client_address}/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        yield net
    finally:
        for host in net.hosts.values():
            host.stop()  # SIGTERM: `maas serve` stops its own children (process groups)
        for host in net.hosts.values():
            subprocess.run(["ip", "netns", "del", host.netns], capture_output=True)
        for link in net._links:
            subprocess.run(["ip", "link", "del", link], capture_output=True)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)


def env_of(**extra: Any) -> dict[str, str]:
    return {**os.environ, **{k: str(v) for k, v in extra.items()}}
