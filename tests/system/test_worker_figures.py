"""The workers' figures under `maas serve`: once per worker on every gateway, never backwards.

Two gateway processes and two workers. Each worker writes what it measured into the run
directory's multiprocess files, and a scrape on either gateway reads them all: a sum over the
`worker` series is the whole, the same on every scrape, whichever gateway answers. A worker
killed with SIGKILL comes back as a new process under the same name; its predecessor's figures
still count, so no counter is ever lower than it was, and what both did adds up.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from support.inprocess_gateway import ADMIN, ADMIN_SECRET
from support.model_files import mlp_meta, tiny_mlp, torchscript_bytes
from support.processes import deploy, maas_server, wait_ready
from support.prometheus import CONTRACT_FAMILIES, Sample, parse

INSTANCES = [[float(i), 1.0, 2.0, 3.0] for i in range(3)]  # per request
BEFORE, AFTER = 24, 16  # requests sent before the kill, and after it
# Histogram samples: counters, which must never be lower than on an earlier scrape.
HISTOGRAMS = ("maas_queue_wait_seconds", "maas_inference_duration_seconds", "maas_batch_size")
COUNTED = tuple(f"{h}_{part}" for h in HISTOGRAMS for part in ("bucket", "count", "sum"))


def _workers(url: str) -> list[dict[str, Any]]:
    workers: list[dict[str, Any]] = httpx.get(url + "/admin/workers", headers=ADMIN).json()[
        "workers"
    ]
    return workers


def _wait_workers(url: str, check: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 20
    while not check(workers := _workers(url)):
        if time.monotonic() > deadline:
            raise AssertionError(f"the workers never reached the expected state: {workers}")
        time.sleep(0.05)
    return workers


def _serving(restarts: dict[str, int]) -> Callable[[list[dict[str, Any]]], bool]:
    """Both workers healthy, holding m@1, seen by both gateways, restarted as many times."""
    return lambda ws: (
        len(ws) == 2
        and all(
            w["healthy"]
            and w["versions"] == ["m@1"]
            and w["gateways"] == 2
            and w["restarts"] == restarts[w["id"]]
            for w in ws
        )
    )


def _predict(url: str, count: int) -> None:
    for _ in range(count):
        # A new connection each time: the kernel spreads them over the gateway processes.
        with httpx.Client(base_url=url) as client:
            response = client.post("/v1/models/m:predict", json={"instances": INSTANCES})
        assert response.status_code == 200, response.text


def _scrape(url: str) -> dict[Sample, float]:
    """One scrape on a new connection (so on one gateway or the other)."""
    families, samples = parse(httpx.get(url + "/metrics").text)
    assert families >= CONTRACT_FAMILIES
    return samples


def _version_samples(samples: dict[Sample, float]) -> dict[Sample, float]:
    """The worker figures of m@1, each under its worker."""
    out = {}
    for (name, labels), value in samples.items():
        found = dict(labels)
        if name.startswith(HISTOGRAMS) and found.get("model") == "m":
            assert found.get("version") == "1"
            assert found.get("worker") in ("w0", "w1"), (name, found)
            out[(name, labels)] = value
    return out


def _labels(worker: str) -> frozenset[tuple[str, str]]:
    return frozenset({("model", "m"), ("version", "1"), ("worker", worker)})


def _total(samples: dict[Sample, float], name: str) -> float:
    """The sum over the workers' series of `name` (a `_sum` or `_count`)."""
    return sum(value for (found, _), value in samples.items() if found == name)


def _totals(samples: dict[Sample, float]) -> tuple[float, float, float, float]:
    return (
        _total(samples, "maas_batch_size_sum"),
        _total(samples, "maas_batch_size_count"),
        _total(samples, "maas_queue_wait_seconds_count"),
        _total(samples, "maas_inference_duration_seconds_count"),
    )


def _settle(url: str, requests: int, floor: dict[Sample, float]) -> dict[Sample, float]:
    """Scrape until the figures account for `requests` requests, then again: every scrape after
    that gives the same figures. No scrape on the way is below `floor`."""
    deadline = time.monotonic() + 10
    while True:
        samples = _version_samples(_scrape(url))
        _never_lower(floor, samples)
        if _total(samples, "maas_batch_size_sum") == requests * len(INSTANCES):
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"the figures never counted {requests} requests: {samples}")
        time.sleep(0.05)
    _, batches, waited, forwards = _totals(samples)
    assert waited == requests  # one queue wait per request
    assert batches == forwards <= requests  # one batch size and one forward time per batch
    for _ in range(8):
        assert _version_samples(_scrape(url)) == samples
    return samples


def _never_lower(earlier: dict[Sample, float], later: dict[Sample, float]) -> None:
    for sample, value in earlier.items():
        if sample[0].startswith(COUNTED):
            assert later.get(sample, 0.0) >= value, (sample, value, later.get(sample))


def test_worker_figures_are_exposed_once_and_survive_a_killed_worker(tmp_path: Path) -> None:
    env = {"MAAS_BOOTSTRAP_ADMIN_KEY": ADMIN_SECRET}
    with maas_server(tmp_path, "--gateways", "2", "--workers", "2", env=env) as url:
        deploy(url, torchscript_bytes(tiny_mlp()), mlp_meta())
        workers = _wait_workers(url, _serving({"w0": 0, "w1": 0}))
        wait_ready(url)
        # Each loaded version's series are there before its first request, at 0.
        fresh = _settle(url, 0, {})
        assert {dict(labels)["worker"] for _, labels in fresh} == {"w0", "w1"}

        _predict(url, BEFORE)
        before = _settle(url, BEFORE, fresh)

        # The worker that ran the most (an idle pool sends every request to its first worker).
        served = {w["id"]: before[("maas_batch_size_sum", _labels(w["id"]))] for w in workers}
        victim = next(w for w in workers if w["id"] == max(served, key=served.__getitem__))
        assert served[victim["id"]] > 0
        os.kill(victim["pid"], signal.SIGKILL)
        restarted = _wait_workers(url, _serving({w["id"]: w is victim for w in workers}))
        assert next(w for w in restarted if w["id"] == victim["id"])["pid"] != victim["pid"]
        wait_ready(url)
        samples = _scrape(url)
        assert samples[("maas_worker_restarts_total", frozenset({("worker", victim["id"])}))] == 1
        _never_lower(before, _version_samples(samples))
        assert _totals(_version_samples(samples)) == _totals(before)

        _predict(url, AFTER)
        _settle(url, BEFORE + AFTER, before)
