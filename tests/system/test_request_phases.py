"""Large requests under `maas serve`: batched together, and every phase of their time counted.

Two gateway processes and one worker, a model with 1 MiB inputs and a slow forward (~85 ms),
eight clients sending v2 binary requests at once. The worker reads requests while a forward
runs, so those sent meanwhile form the next batch (a worker that read only between forwards
ran them one by one: the socket holds a fraction of one request). The phase histogram, read
from the gateways' multiprocess files, accounts for the whole of each request's duration.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from maas.types import PHASES
from support.inprocess_gateway import ADMIN_SECRET
from support.model_files import WIDE_IN as WIDTH
from support.model_files import SlowMean, torchscript_bytes
from support.processes import deploy, maas_server, wait_ready
from support.prometheus import Sample, parse, value

CLIENTS, ROUNDS = 8, 4
pytestmark = pytest.mark.slow


def _binary_request(seed: int) -> tuple[bytes, dict[str, str]]:
    raw = np.full((1, WIDTH), float(seed), np.float32).tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [1, WIDTH],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    ).encode()
    headers = {
        "Inference-Header-Content-Length": str(len(header)),
        "Content-Type": "application/octet-stream",
    }
    return header + raw, headers


def _client(url: str, seed: int) -> None:
    body, headers = _binary_request(seed)
    with httpx.Client(base_url=url, timeout=60) as client:
        for _ in range(ROUNDS):
            response = client.post("/v2/models/big/infer", content=body, headers=headers)
            assert response.status_code == 200, response.text
            assert response.json()["outputs"][0]["data"] == [pytest.approx(float(seed))]


def _mean(samples: dict[Sample, float], family: str, **labels: str) -> float:
    total = value(samples, f"{family}_sum", **labels)
    count = value(samples, f"{family}_count", **labels)
    assert total is not None
    assert count
    return total / count


def _scrape_until_counted(url: str, requests: int) -> dict[Sample, float]:
    """A scrape once both gateways wrote every request's phases (each writes every 0.2 s)."""
    deadline = time.monotonic() + 10
    while True:
        _, samples = parse(httpx.get(url + "/metrics").text)
        counts = [
            value(samples, "maas_request_phase_seconds_count", model="big", version="1", phase=p)
            for p in PHASES
        ]
        if counts == [requests] * len(PHASES) or time.monotonic() > deadline:
            return samples
        time.sleep(0.05)


def _total(samples: dict[Sample, float], name: str) -> float:
    """`name` added up over the workers, for model `big`."""
    return sum(v for (n, labels), v in samples.items() if n == name and ("model", "big") in labels)


def test_large_requests_are_batched_and_their_phases_add_up(tmp_path: Path) -> None:
    meta = {
        "format": "torchscript",
        "inputs": [{"name": "x", "dtype": "float32", "shape": [WIDTH]}],
        "outputs": [{"name": "y", "dtype": "float32", "shape": [1]}],
        "batching": {"max_batch_size": 8, "max_delay_ms": 5},
    }
    env = {"MAAS_BOOTSTRAP_ADMIN_KEY": ADMIN_SECRET}
    with maas_server(tmp_path, "--workers", "1", "--gateways", "2", env=env) as url:
        deploy(url, torchscript_bytes(SlowMean(rounds=150)), meta, name="big")
        wait_ready(url)
        with ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(lambda seed: _client(url, seed), range(CLIENTS)))
        samples = _scrape_until_counted(url, CLIENTS * ROUNDS)

    version = {"model": "big", "version": "1"}
    answered = value(samples, "maas_request_duration_seconds_count", **version)
    assert answered == CLIENTS * ROUNDS
    phases = {p: _mean(samples, "maas_request_phase_seconds", phase=p, **version) for p in PHASES}
    duration = _mean(samples, "maas_request_duration_seconds", **version)
    assert sum(phases.values()) == pytest.approx(duration, rel=0.10), (phases, duration)
    # Requests waited for the model, and that wait is counted as such, not hidden in a hop.
    assert phases["queue"] > phases["transfer"], phases
    assert phases["inference"] > 0.02, phases
    batch = _total(samples, "maas_batch_size_sum") / _total(samples, "maas_batch_size_count")
    assert batch > 1.5, f"mean batch {batch:.2f}: large requests were not batched"
