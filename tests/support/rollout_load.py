"""Rollouts of a real `maas serve` under load: client threads predicting a model's production
alias for a whole scenario, each answer recorded with the version that gave it, and the admin
calls a rollout test makes (start, read, wait, verbs, audit rows, /metrics samples)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import torch

from support.control import upload, wait_converged, wait_for, wait_ready_version
from support.inprocess_gateway import ADMIN
from support.model_files import SlowMLP
from support.processes import deploy
from support.prometheus import parse


@dataclass(frozen=True)
class Reply:
    """One predict: when it was sent and answered, its status (0: no HTTP answer), the
    version named by its `x-model-version` header (None when it has none) and, failing, the
    start of its body."""

    sent: float
    answered: float
    status: int
    version: int | None
    error: str = ""


class Load:
    """`clients` threads predicting `model` (its production alias) until `stop`; each request
    carries `per_request` rows, taken in turn from `rows` (each client walks the whole list, so
    every share built into it holds per client), then waits `pause_s`."""

    def __init__(
        self,
        url: str,
        model: str,
        rows: list[list[float]],
        *,
        clients: int = 4,
        per_request: int = 1,
        pause_s: float = 0.0,
    ) -> None:
        assert len(rows) % per_request == 0, "each request takes whole slices of the rows"
        self.url, self.model, self.rows = url, model, rows
        self.per_request, self.pause_s = per_request, pause_s
        self.replies: list[Reply] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._loop, args=(k,), daemon=True) for k in range(clients)
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _loop(self, client: int) -> None:
        path = f"/v1/models/{self.model}:predict"
        start = client * self.per_request  # clients start at different rows
        with httpx.Client(base_url=self.url, timeout=30) as http:
            while not self._stop.is_set():
                at = start % len(self.rows)
                body = {"instances": self.rows[at : at + self.per_request]}
                start += self.per_request
                sent = time.monotonic()
                try:
                    answer = http.post(path, json=body)
                except httpx.HTTPError as exc:
                    self.replies.append(Reply(sent, time.monotonic(), 0, None, repr(exc)))
                    continue
                named = answer.headers.get("x-model-version")
                error = "" if answer.status_code == 200 else answer.text[:300]
                self.replies.append(
                    Reply(
                        sent,
                        time.monotonic(),
                        answer.status_code,
                        int(named) if named else None,
                        error,
                    )
                )
                if self.pause_s:
                    self._stop.wait(self.pause_s)

    def count(self) -> int:
        return len(self.replies)

    def wait_more(self, more: int, what: str, timeout_s: float = 30) -> None:
        """Until `more` answers came after those counted now."""
        base = self.count()
        wait_for(lambda: self.count() >= base + more, what, timeout_s)

    def failed(self) -> list[Reply]:
        return [r for r in self.replies if r.status != 200]

    def versions(self, since: float = 0.0) -> dict[int | None, int]:
        """How many answers (sent at `since` or later) each version gave."""
        counts: dict[int | None, int] = {}
        for reply in self.replies:
            if reply.sent >= since:
                counts[reply.version] = counts.get(reply.version, 0) + 1
        return counts


def two_versions(
    url: str, model: str, stable: bytes, candidate: bytes, meta: dict[str, Any]
) -> int:
    """`model` with `stable` as version 1 (its production alias) and `candidate` as version 2,
    both ready and servable from every gateway; the candidate's number."""
    deploy(url, stable, meta, name=model)
    number = upload(url, model, candidate, meta)
    wait_ready_version(url, model, number)
    for version in (1, number):
        wait_servable(url, model, version)
    return number


def wait_servable(url: str, model: str, version: int, hits: int = 8, timeout_s: float = 30) -> None:
    """Until `hits` predicts of `model@version` in a row answer 200, each on a new connection
    (so from every gateway process, as the kernel spreads them): a gateway learns that a worker
    holds a version from the worker's next heartbeat, and answers 503 before."""
    path = f"{url}/v1/models/{model}/versions/{version}:predict"
    body = {"instances": [[0.0] * 4]}
    deadline, streak, answer = time.monotonic() + timeout_s, 0, None
    while streak < hits:
        answer = httpx.post(path, json=body, timeout=10)
        streak = streak + 1 if answer.status_code == 200 else 0
        assert time.monotonic() < deadline, f"{model}@{version} not servable: {answer.text}"
        if answer.status_code != 200:
            time.sleep(0.05)


def admin(
    url: str, method: str, path: str, body: Any = None, expect: int | None = 200
) -> httpx.Response:
    """An admin call with the bootstrap key; fails unless it answers `expect` (None: any)."""
    answer = httpx.request(method, url + path, json=body, headers=ADMIN, timeout=30)
    if expect is not None:
        assert answer.status_code == expect, f"{method} {path}: {answer.status_code} {answer.text}"
    return answer


def start_rollout(url: str, model: str, **body: Any) -> dict[str, Any]:
    started: dict[str, Any] = admin(
        url, "POST", f"/admin/models/{model}/rollouts", body, 201
    ).json()
    return started


def rollout(url: str, model: str, rollout_id: int) -> dict[str, Any]:
    body: dict[str, Any] = admin(url, "GET", f"/admin/models/{model}/rollouts/{rollout_id}").json()
    return body


def verb(url: str, model: str, rollout_id: int, name: str) -> dict[str, Any]:
    body: dict[str, Any] = admin(
        url, "POST", f"/admin/models/{model}/rollouts/{rollout_id}/{name}"
    ).json()
    return body


def wait_rollout(
    url: str,
    model: str,
    rollout_id: int,
    check: Callable[[dict[str, Any]], object],
    what: str,
    timeout_s: float = 60,
) -> dict[str, Any]:
    """Poll the rollout until `check(it)` is true; it then. Fails showing where it stands."""
    seen: list[dict[str, Any]] = []

    def probe() -> dict[str, Any] | None:
        body = rollout(url, model, rollout_id)
        seen[:] = [body]
        return body if check(body) else None

    try:
        return wait_for(probe, what, timeout_s)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the rollout: {seen[0] if seen else None}") from None


def ended(url: str, model: str, rollout_id: int, timeout_s: float = 60) -> dict[str, Any]:
    return wait_rollout(
        url,
        model,
        rollout_id,
        lambda r: r["state"] not in ("running", "paused"),
        f"rollout {rollout_id} of {model} to end",
        timeout_s,
    )


def routes(url: str, model: str, alias: str = "production") -> list[dict[str, int]]:
    body = admin(url, "GET", f"/admin/models/{model}/aliases/{alias}").json()
    return body["routes"]  # type: ignore[no-any-return]


def audit(url: str, model: str) -> list[dict[str, Any]]:
    """The model's rollout audit rows, oldest first."""
    body = admin(url, "GET", f"/admin/events?model={model}&action=rollout&limit=500").json()
    return list(reversed(body["events"]))


def actions(url: str, model: str) -> list[str]:
    return [event["action"] for event in audit(url, model)]


def converged_at(url: str) -> float:
    """Once every gateway serves the registry's routing of now: the moment from which every
    request is routed by it."""
    wait_converged(url)
    return time.monotonic()


def rollout_gauges(url: str, model: str) -> tuple[float | None, dict[str, float]]:
    """`maas_rollout_phase` of the model's production alias, and `maas_rollout_weight` by
    version."""
    alias = {"model": model, "alias": "production"}
    [phase] = metric_samples(url, "maas_rollout_phase", **alias).values() or [None]
    weights = metric_samples(url, "maas_rollout_weight", **alias)
    return phase, {dict(tags)["version"]: value for tags, value in weights.items()}


def metric_samples(url: str, name: str, **labels: str) -> dict[frozenset[tuple[str, str]], float]:
    """The samples of `name` in /metrics whose labels include `labels`, by their labels."""
    _, samples = parse(httpx.get(url + "/metrics", timeout=10).text)
    wanted = set(labels.items())
    return {
        tags: value
        for (sample, tags), value in samples.items()
        if sample == name and wanted <= tags
    }


def slow_rounds(extra_ms: float) -> int:
    """How many rounds make SlowMLP's forward of one instance `extra_ms` slower than a plain
    one, measured here on one torch thread as a worker runs it (machines differ tenfold): the
    best of several tries, as other processes on the machine only ever make it slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        best = {}
        for rounds in (0, 8):
            model = torch.jit.script(SlowMLP(rounds=rounds))
            x = torch.zeros(1, 4)
            model(x)
            tries = []
            for _ in range(5):
                started = time.perf_counter()
                for _ in range(3):
                    model(x)
                tries.append((time.perf_counter() - started) / 3)
            best[rounds] = min(tries)
    finally:
        torch.set_num_threads(threads)
    per_round_ms = 1000 * (best[8] - best[0]) / 8
    return max(1, round(extra_ms / per_round_ms))
