"""`maas.supervision.lifeline`: a process holding one ends within a second of its parent's SIGKILL,
by the kernel's parent-death signal or by the watch used where that is missing; with `group=True`
its children go with it; a parent that died before `hold` is noticed too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# The child: holds a lifeline to its parent, starts a grandchild in its own process group, and
# says both pids. argv: parent pid, group (0/1), watch (0/1: as if prctl were missing).
CHILD = """
import os, subprocess, sys, time
from maas.supervision import lifeline
parent, group, watch = int(sys.argv[1]), sys.argv[2] == "1", sys.argv[3] == "1"
if watch:
    lifeline._parent_death_signal = lambda signum: False
lifeline.hold(parent, group=group)
grandchild = subprocess.Popen(["sleep", "60"])
print(os.getpid(), grandchild.pid, flush=True)
time.sleep(60)
"""

# The parent: starts the child leading a process group of its own, as `maas serve` does.
PARENT = """
import os, subprocess, sys, time
subprocess.Popen([sys.executable, "-c", sys.argv[1], str(os.getpid()), *sys.argv[2:]],
                 process_group=0)
time.sleep(60)
"""


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting for its new parent to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _gone_within(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := [p for p in pids if _running(p)]) and time.monotonic() < deadline:
        time.sleep(0.01)
    return left


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
@pytest.mark.parametrize("watch", [False, True], ids=["prctl", "watch"])
@pytest.mark.parametrize("group", [False, True], ids=["alone", "group"])
def test_a_child_ends_with_its_killed_parent(group: bool, watch: bool) -> None:
    argv = [sys.executable, "-c", PARENT, CHILD, str(int(group)), str(int(watch))]
    parent = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child, grandchild = (int(p) for p in parent.stdout.readline().split())
    try:
        assert _running(child)
        assert _running(grandchild)
        parent.send_signal(signal.SIGKILL)
        parent.wait(5)
        assert _gone_within([child], 1.0) == []
        # With group=True the grandchild, which kept the child's group, goes with it.
        assert _gone_within([grandchild], 1.0 if group else 0.3) == ([] if group else [grandchild])
    finally:
        for pid in (child, grandchild):
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
        parent.stdout.close()


@pytest.mark.parametrize("watch", [False, True], ids=["prctl", "watch"])
def test_a_parent_dead_before_hold_is_noticed(watch: bool) -> None:
    # This test's process is the child's parent, not pid 1: as if the expected parent had died
    # and the child had been handed to another.
    argv = [sys.executable, "-c", CHILD, "1", "0", str(int(watch))]
    child = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    assert child.returncode == -signal.SIGKILL
    assert child.stdout == ""
