"""Per-key request rates: a token bucket per key, shared through one file by every gateway
process of a host, and the 429 with Retry-After a key past its rate gets."""

from __future__ import annotations

import math
import multiprocessing
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from maas.auth.rates import KeyRates
from maas.errors import RateLimited
from support.processes import maas_server


def test_a_bucket_admits_its_rate_then_says_when_to_come_back() -> None:
    rates = KeyRates()
    rates.take(7, 2.0, "k")
    rates.take(7, 2.0, "k")
    with pytest.raises(RateLimited) as refused:
        rates.take(7, 2.0, "k")
    assert refused.value.retry_after == 1
    assert "2 requests per second" in refused.value.message
    rates.take(8, 2.0, "other")  # another key has its own bucket


def _take_all(folder: str, start: Any, tries: int, out: Any) -> None:
    rates = KeyRates(Path(folder))
    start.wait()
    admitted = 0
    began = time.monotonic()
    for _ in range(tries):
        try:
            rates.take(42, 3.0, "shared")
            admitted += 1
        except RateLimited:
            pass
    out.put((admitted, time.monotonic() - began))


def test_processes_sharing_the_file_share_one_bucket(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    start, out = context.Event(), context.Queue()
    processes = [
        context.Process(target=_take_all, args=(str(tmp_path), start, 20, out)) for _ in range(3)
    ]
    for process in processes:
        process.start()
    start.set()
    results = [out.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(10)
    admitted = sum(count for count, _ in results)
    longest = max(seconds for _, seconds in results)
    # 3 tokens in the one bucket, plus what 3/s refilled while the 60 tries ran; three
    # buckets of their own would have admitted at least 9
    assert 3 <= admitted <= 3 + math.ceil(3 * longest), results


@pytest.mark.slow
def test_the_gateways_of_one_serve_hold_a_key_to_its_rate(tmp_path: Path) -> None:
    secret = "rates-admin-0123456789abcdef"
    env = {"MAAS_BOOTSTRAP_ADMIN_KEY": secret}
    with maas_server(tmp_path, "--workers", "0", "--gateways", "2", env=env) as url:
        made = httpx.post(
            f"{url}/admin/keys",
            json={"name": "slow", "scopes": ["admin"], "rate_limit_per_s": 2},
            headers={"Authorization": f"Bearer {secret}"},
        )
        assert made.status_code == 201, made.text
        assert made.json()["rate_limit_per_s"] == 2
        slow = {"Authorization": f"Bearer {made.json()['secret']}"}

        def ask(_: int) -> httpx.Response:
            with httpx.Client() as client:  # a connection each: the kernel spreads them
                return client.get(f"{url}/admin/models", headers=slow)

        began = time.monotonic()
        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(ask, range(12)))
        took = time.monotonic() - began
        codes = [a.status_code for a in answers]
        # 2 in the host's one bucket, plus 2/s refilled meanwhile; a bucket per gateway
        # process would admit 4 at once
        assert 2 <= codes.count(200) <= 2 + math.ceil(2 * took), (codes, took)
        refused = [a for a in answers if a.status_code == 429]
        assert refused[0].json()["error"]["code"] == "rate_limited"
        assert refused[0].headers["retry-after"] == "1"
