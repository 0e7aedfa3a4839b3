"""The mirror to an alias's shadow (`maas.serving.shadow`) through `serve`, over a fake backend
that answers each version as the test says: the client's answer comes from the primary alone,
the candidate's answer is compared and counted, mirrors past the bound are dropped and counted,
a failing candidate is counted and never seen, and shutdown cancels the mirrors in flight. And
`compare`, the comparison itself."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from maas.api.native.codec import NativeCodec
from maas.config import Settings
from maas.dispatch.fake import FakeBackend, FakeCall
from maas.errors import InvalidInput
from maas.observability.scraped import Scrape
from maas.registry.records import VersionRecord
from maas.serving.shadow_compare import Mismatch, compare
from maas.transport.telemetry import BackendTelemetry
from maas.types import ModelRef, Shadow, TensorSpec, VersionKey
from support.prometheus import parse, value
from support.serving_parts import Services, call, stack, version
from support.waiting import until

NATIVE = NativeCodec()
# The candidate (m@2) answers as the primary (m@1) does, except for instances whose last number
# is positive: those it answers reversed, so their top-1 moves (first and last differ by 2).
AGREES, DISAGREES = [1.0, 2.0, 3.0, 0.0], [1.0, 2.0, 3.0, 1.0]
PAIR = {"model": "m", "primary": "1", "candidate": "2"}


def primary_then_reversed(call: FakeCall) -> list[Any]:
    (x,) = call.inputs
    y = x[:, :3].copy()
    if call.key.version == 2:
        flip = x[:, 3] > 0
        y[flip] = y[flip, ::-1]
    return [y]


def held_by(release: asyncio.Event) -> Any:
    """A handler as `primary_then_reversed`, whose candidate (m@2) answers once `release` is set."""

    async def held_candidate(call: FakeCall) -> list[Any]:
        if call.key.version == 2:
            await release.wait()
        return primary_then_reversed(call)

    return held_candidate


async def gateway(
    tmp_path: Path,
    handler: Any = primary_then_reversed,
    candidate: VersionRecord | None = None,
    **extra: Any,
) -> tuple[Services, FakeBackend]:
    """m@1 (production) and m@2 (`candidate`), ready; production's shadow is m@2 at 100%."""
    registry, backend, plane = await stack(
        handler,
        version(number=1),
        candidate or version(number=2),
        aliases=[("m", "production", 1)],
    )
    registry.shadow("m", "production", Shadow(version=2, percent=100))
    settings = Settings(data_dir=tmp_path, artifact_dir=tmp_path / "a")
    return Services(settings, plane, **extra), backend


async def predict(services: Services, *rows: list[float], ref: ModelRef | None = None) -> Any:
    answer = await call(services, NATIVE, ref or ModelRef("m"), {"instances": list(rows)})
    assert answer is not None
    assert answer.status == 200, answer.body
    return answer.body


async def settled(services: Services) -> dict[Any, float]:
    """The maas_shadow_* samples once no mirror is in flight."""
    await until(lambda: services.shadow.in_flight == 0, "the mirrors to end")
    services.exposition.flush()
    scrape = Scrape(models={}, backend=BackendTelemetry())
    families, samples = parse(services.exposition.render(scrape).decode())
    assert {"maas_shadow_requests", "maas_shadow_abs_diff"} <= families
    return samples


def requests(samples: dict[Any, float], outcome: str) -> float:
    return value(samples, "maas_shadow_requests_total", outcome=outcome, **PAIR) or 0.0


async def test_the_client_gets_the_primarys_answer_and_the_candidates_is_compared(
    tmp_path: Path,
) -> None:
    services, _ = await gateway(tmp_path)
    agreeing = await predict(services, AGREES, AGREES)
    assert b'"version":1' in agreeing
    assert await predict(services, AGREES, DISAGREES) == await predict(services, AGREES, DISAGREES)
    samples = await settled(services)
    assert requests(samples, "agree") == 1
    assert requests(samples, "disagree") == 2
    assert requests(samples, "error") == requests(samples, "dropped") == 0
    instances = "maas_shadow_instances_total"
    assert value(samples, instances, outcome="agree", **PAIR) == 4
    assert value(samples, instances, outcome="disagree", **PAIR) == 2
    assert value(samples, "maas_shadow_abs_diff_count", **PAIR) == 3
    assert value(samples, "maas_shadow_abs_diff_sum", **PAIR) == 4.0  # 0, 2, 2
    assert value(samples, "maas_shadow_abs_diff_bucket", le="1e-06", **PAIR) == 1
    assert value(samples, "maas_shadow_latency_ratio_count", **PAIR) == 3


async def test_a_ref_naming_a_version_is_never_mirrored(tmp_path: Path) -> None:
    services, _ = await gateway(tmp_path)
    for ref in (ModelRef("m", version=1), ModelRef("m", version=2)):
        await predict(services, AGREES, ref=ref)
    samples = await settled(services)
    assert not any(name.startswith("maas_shadow") for name, _ in samples)


async def test_a_full_mirror_drops_and_counts_never_holding_the_primary(tmp_path: Path) -> None:
    release = asyncio.Event()
    held_candidate = held_by(release)
    services, _ = await gateway(tmp_path, held_candidate, max_mirrors=1)
    for _ in range(5):  # each answered while the first mirror is still held
        await predict(services, AGREES)
    assert services.shadow.in_flight == 1
    release.set()
    samples = await settled(services)
    assert requests(samples, "agree") == 1
    assert requests(samples, "dropped") == 4


async def test_mirrors_queued_behind_a_running_one_go_to_the_candidate_as_one_call(
    tmp_path: Path,
) -> None:
    release = asyncio.Event()
    held_candidate = held_by(release)
    services, backend = await gateway(tmp_path, held_candidate, mirror_batches=1)
    await predict(services, AGREES)  # its mirror is held
    await until(lambda: len(backend.calls) == 2, "the first mirror to reach the candidate")
    await predict(services, AGREES, DISAGREES)
    await predict(services, DISAGREES)
    assert services.shadow.in_flight == 3
    release.set()
    samples = await settled(services)
    mirrored = [len(c.inputs[0]) for c in backend.calls if c.key.version == 2]
    assert mirrored == [1, 3]  # the first alone, the two queued behind it stacked
    assert requests(samples, "agree") == 1
    assert requests(samples, "disagree") == 2
    assert value(samples, "maas_shadow_instances_total", outcome="disagree", **PAIR) == 2


async def test_a_candidate_runs_a_few_batches_at_once_before_requests_queue(
    tmp_path: Path,
) -> None:
    release = asyncio.Event()
    held_candidate = held_by(release)
    services, backend = await gateway(tmp_path, held_candidate, mirror_batches=2)
    for calls in (2, 4):  # each predict: the primary's call, then its mirror's
        await predict(services, AGREES)  # a batch of its own: fewer than two run
        await until(lambda n=calls: len(backend.calls) == n, "the mirror to reach the candidate")
    for _ in range(3):
        await predict(services, DISAGREES)  # both batches held: these queue
    release.set()
    samples = await settled(services)
    assert [len(c.inputs[0]) for c in backend.calls if c.key.version == 2] == [1, 1, 3]
    assert (requests(samples, "agree"), requests(samples, "disagree")) == (2, 3)


async def test_a_batch_the_model_refuses_is_retried_request_by_request(tmp_path: Path) -> None:
    release = asyncio.Event()

    async def picky_candidate(call: FakeCall) -> list[Any]:
        if call.key.version == 2:
            await release.wait()
            if (call.inputs[0][:, 3] > 0).any():
                raise InvalidInput("the model rejected the input")
        return primary_then_reversed(call)

    services, backend = await gateway(tmp_path, picky_candidate, mirror_batches=1)
    await predict(services, AGREES)  # held
    await until(lambda: len(backend.calls) == 2, "the first mirror to reach the candidate")
    await predict(services, DISAGREES)  # these two queue behind it
    await predict(services, AGREES)
    release.set()
    samples = await settled(services)
    assert requests(samples, "agree") == 2
    assert requests(samples, "error") == 1  # only the request the model refuses
    mirrored = [len(c.inputs[0]) for c in backend.calls if c.key.version == 2]
    assert mirrored == [1, 2, 1, 1]  # the refused batch of two, then each on its own


async def test_a_failing_candidate_is_counted_and_never_reaches_the_client(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def refusing_candidate(call: FakeCall) -> list[Any]:
        if call.key.version == 2:
            raise InvalidInput("the candidate refuses this")
        return primary_then_reversed(call)

    services, backend = await gateway(tmp_path, refusing_candidate)
    with caplog.at_level(logging.DEBUG):
        for _ in range(3):
            await predict(services, AGREES)
        await backend.unload(VersionKey("m", 2))
        await predict(services, AGREES)  # the candidate's worker no longer holds it
        samples = await settled(services)
    assert requests(samples, "error") == 4
    assert requests(samples, "agree") == requests(samples, "disagree") == 0
    assert not any(record.exc_info for record in caplog.records)


async def test_a_candidate_past_its_deadline_is_an_error(tmp_path: Path) -> None:
    async def stuck_candidate(call: FakeCall) -> list[Any]:
        if call.key.version == 2:
            await asyncio.Event().wait()
        return primary_then_reversed(call)

    services, _ = await gateway(tmp_path, stuck_candidate, mirror_timeout_s=0.05)
    await predict(services, AGREES)
    assert requests(await settled(services), "error") == 1


async def test_closing_cancels_the_mirrors_in_flight_and_starts_no_more(tmp_path: Path) -> None:
    async def stuck_candidate(call: FakeCall) -> list[Any]:
        if call.key.version == 2:
            await asyncio.Event().wait()
        return primary_then_reversed(call)

    services, _ = await gateway(tmp_path, stuck_candidate)
    await predict(services, AGREES)
    await predict(services, AGREES)
    assert services.shadow.in_flight == 2
    await services.shadow.close()
    assert services.shadow.in_flight == 0
    await predict(services, AGREES)  # still answered; not mirrored
    assert services.shadow.in_flight == 0
    samples = await settled(services)
    assert sum(requests(samples, o) for o in ("agree", "disagree", "error", "dropped")) == 0


async def test_a_request_the_candidates_signature_refuses_is_an_error(tmp_path: Path) -> None:
    five = version(number=2, inputs=(TensorSpec("x", "float32", (5,)),))
    services, backend = await gateway(tmp_path, candidate=five)
    await predict(services, AGREES)
    samples = await settled(services)
    assert requests(samples, "error") == 1
    assert [c.key.version for c in backend.calls] == [1]  # never sent to the candidate


def rows(*values: list[float]) -> np.ndarray[Any, Any]:
    return np.array(values, dtype=np.float32)


def test_top1_decides_with_a_class_axis_and_the_largest_difference_is_kept() -> None:
    primary = [rows([0.1, 0.9, 0.0], [0.5, 0.2, 0.3]), rows([1.0, 0.0, 0.0])]
    candidate = [rows([0.3, 0.7, 0.0], [0.1, 0.6, 0.3]), rows([1.0, 0.0, 0.0])]
    result = compare(primary, candidate)
    assert (result.instances, result.agreeing) == (3, 2)
    assert result.max_abs_diff == pytest.approx(0.4)


def test_without_a_class_axis_numbers_agree_within_the_tolerance() -> None:
    primary = [rows([1.0], [100.0], [5.0])]
    candidate = [rows([1.00005], [100.05], [5.1])]
    result = compare(primary, candidate)
    assert (result.instances, result.agreeing) == (3, 2)
    assert result.max_abs_diff == pytest.approx(0.1, rel=1e-4)
    flat = compare([np.array([1.0, 2.0])], [np.array([1.0, 2.5])])
    assert (flat.instances, flat.agreeing, flat.max_abs_diff) == (2, 1, 0.5)


def test_a_nan_on_one_side_disagrees_on_both_sides_it_does_not() -> None:
    nan = float("nan")
    result = compare([rows([nan, 1.0], [nan, 1.0])], [rows([nan, 1.0], [0.0, 1.0])])
    assert (result.instances, result.agreeing) == (2, 1)
    assert result.max_abs_diff == float("inf")


def test_answers_of_different_shapes_are_a_mismatch() -> None:
    with pytest.raises(Mismatch, match=r"shape \[1, 4\], the primary's \[1, 3\]"):
        compare([rows([1.0, 2.0, 3.0])], [rows([1.0, 2.0, 3.0, 4.0])])


def test_a_one_instance_answer_is_compared_as_a_batch_of_them_is() -> None:
    # One-instance answers take a plain-Python path; several instances take numpy's.
    rng = np.random.default_rng(3)
    for classes in (1, 3, 10):
        mine = rng.integers(0, 4, size=(200, classes)).astype(np.float32) / 2  # ties, often
        theirs = mine + rng.choice([0.0, 0.0, 1e-5, 0.5, -1.0], size=mine.shape)
        batch = compare([mine], [theirs])
        alone = [compare([mine[i : i + 1]], [theirs[i : i + 1]]) for i in range(len(mine))]
        assert batch.agreeing == sum(one.agreeing for one in alone)
        assert batch.max_abs_diff == max(one.max_abs_diff for one in alone)
        assert 0 < batch.agreeing < batch.instances == 200
