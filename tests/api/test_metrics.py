"""`/metrics` in one gateway process: CONTRACT's families, and every request counted once."""

from __future__ import annotations

from pathlib import Path

import pytest

from maas.observability.metrics import RequestMetrics
from maas.observability.scraped import Scrape
from maas.transport.telemetry import BackendTelemetry, VersionTelemetry, WorkerHealth
from maas.types import PHASES
from support.inprocess_gateway import ADMIN, Gateway, make_settings, running_gateway
from support.model_files import failing_meta, mlp_meta, tiny_mlp, torchscript_bytes
from support.prometheus import CONTRACT_FAMILIES, parse, value

ROW = {"instances": [[1.0, 2.0, 3.0, 4.0], [0.5, 0.5, 0.5, 0.5]]}
WORKER_FAMILIES = (
    "maas_queue_wait_seconds",
    "maas_inference_duration_seconds",
    "maas_batch_size",
    "maas_queue_depth",
    "maas_padding_waste_ratio",
)


async def _scrape(gateway: Gateway) -> tuple[set[str], dict]:  # type: ignore[type-arg]
    response = await gateway.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


async def test_every_family_is_exposed_from_the_start(gateway: Gateway) -> None:
    families, samples = await _scrape(gateway)
    assert families >= CONTRACT_FAMILIES
    assert value(samples, "maas_worker_up", worker="inprocess") == 1.0
    assert value(samples, "maas_worker_restarts_total", worker="inprocess") == 0.0


async def test_requests_are_counted_under_the_version_they_resolved_to(gateway: Gateway) -> None:
    artifact = torchscript_bytes(tiny_mlp())
    await gateway.deploy("mlp", artifact, mlp_meta())
    _, before = await _scrape(gateway)
    mlp_here = {"model": "mlp", "version": "1", "worker": "inprocess"}
    # A ready version's series exist before its first request.
    assert value(before, "maas_request_duration_seconds_count", model="mlp", version="1") == 0
    assert value(before, "maas_batch_size_count", **mlp_here) == 0

    for _ in range(3):
        assert (await gateway.predict("/v1/models/mlp:predict", ROW)).status_code == 200
    bad = await gateway.predict("/v1/models/mlp@1:predict", b"{not json")
    assert bad.status_code == 400
    for junk in ("ghost", "ghost-2", "mlp@77", "mlp@nosuchalias"):
        assert (await gateway.predict(f"/v1/models/{junk}:predict", ROW)).status_code == 404

    _, samples = await _scrape(gateway)
    mlp = {"model": "mlp", "version": "1", "protocol": "v1"}
    assert value(samples, "maas_requests_total", code="200", **mlp) == 3
    assert value(samples, "maas_requests_total", code="400", **mlp) == 1
    unknown = {"model": "_unknown", "version": "_", "protocol": "v1"}
    assert value(samples, "maas_requests_total", code="404", **unknown) == 4
    assert not any("ghost" in str(labels) for _, labels in samples)
    assert value(samples, "maas_request_duration_seconds_count", model="_unknown", version="_")
    # No worker answered them: no phase series for what resolved to nothing.
    assert not any(
        name.startswith("maas_request_phase") and ("model", "_unknown") in labels
        for name, labels in samples
    )
    assert value(samples, "maas_request_duration_seconds_count", model="mlp", version="1") == 4
    # Three forwards of two instances each, measured by the one (in-process) worker.
    assert value(samples, "maas_inference_duration_seconds_count", **mlp_here) == 3
    assert value(samples, "maas_queue_wait_seconds_count", **mlp_here) == 3
    assert value(samples, "maas_batch_size_sum", **mlp_here) == 6
    assert value(samples, "maas_batch_size_bucket", **mlp_here, le="1.0") == 0
    assert value(samples, "maas_batch_size_bucket", **mlp_here, le="2.0") == 3
    assert value(samples, "maas_queue_depth", **mlp_here) == 0
    assert value(samples, "maas_padding_waste_ratio", **mlp_here) == 0
    # Every worker figure is under a worker: a sum over the series is a sum over the workers.
    for name, labels in samples:
        if name.startswith(WORKER_FAMILIES):
            assert dict(labels).get("worker") == "inprocess", name


async def test_the_phases_of_answered_requests_add_up_to_their_duration(gateway: Gateway) -> None:
    await gateway.deploy("mlp", torchscript_bytes(tiny_mlp()), mlp_meta())
    _, before = await _scrape(gateway)
    mlp = {"model": "mlp", "version": "1"}
    for phase in PHASES:  # a ready version's phase series exist before its first request
        assert value(before, "maas_request_phase_seconds_count", phase=phase, **mlp) == 0
    for _ in range(5):
        assert (await gateway.predict("/v1/models/mlp:predict", ROW)).status_code == 200
    _, samples = await _scrape(gateway)
    phase_total = 0.0
    for phase in PHASES:
        assert value(samples, "maas_request_phase_seconds_count", phase=phase, **mlp) == 5
        seconds = value(samples, "maas_request_phase_seconds_sum", phase=phase, **mlp)
        assert seconds is not None
        assert seconds >= 0.0
        phase_total += seconds
    duration = value(samples, "maas_request_duration_seconds_sum", **mlp)
    assert duration is not None
    assert duration > 0
    assert phase_total == pytest.approx(duration, rel=1e-6)  # one clock: they add up exactly
    forward = value(samples, "maas_request_phase_seconds_sum", phase="inference", **mlp)
    assert forward is not None
    assert forward > 0


async def test_a_request_cut_into_pieces_counts_its_phases_once(gateway: Gateway) -> None:
    batching = {"max_batch_size": 2, "max_delay_ms": 2, "max_queue": 64}
    await gateway.deploy("mlp", torchscript_bytes(tiny_mlp()), mlp_meta(batching=batching))
    five = {"instances": [[float(i), 0.0, 0.0, 0.0] for i in range(5)]}  # pieces of 2, 2, 1
    assert (await gateway.predict("/v1/models/mlp:predict", five)).status_code == 200
    _, samples = await _scrape(gateway)
    mlp = {"model": "mlp", "version": "1"}
    total = 0.0
    for phase in PHASES:
        assert value(samples, "maas_request_phase_seconds_count", phase=phase, **mlp) == 1
        total += value(samples, "maas_request_phase_seconds_sum", phase=phase, **mlp) or 0.0
    duration = value(samples, "maas_request_duration_seconds_sum", **mlp)
    assert total == pytest.approx(duration, rel=1e-6)


async def test_a_refused_request_has_a_duration_and_no_phases(gateway: Gateway) -> None:
    await gateway.deploy("mlp", torchscript_bytes(tiny_mlp()), mlp_meta())
    assert (await gateway.predict("/v1/models/mlp:predict", b"{not json")).status_code == 400
    _, samples = await _scrape(gateway)
    mlp = {"model": "mlp", "version": "1"}
    assert value(samples, "maas_request_duration_seconds_count", **mlp) == 1
    assert value(samples, "maas_request_phase_seconds_count", phase="decode", **mlp) == 0


async def test_statuses_and_alias_splits_are_exposed(gateway: Gateway) -> None:
    artifact = torchscript_bytes(tiny_mlp())
    await gateway.deploy("mlp", artifact, mlp_meta())
    await gateway.deploy("mlp", torchscript_bytes(tiny_mlp(seed=1)), mlp_meta(), alias=None)
    split = await gateway.client.put(
        "/admin/models/mlp/aliases/canary",
        json={"routes": [{"version": 1, "weight": 3}, {"version": 2, "weight": 1}]},
        headers=ADMIN,
    )
    assert split.status_code == 200, split.text
    broken = await gateway.upload("mlp", torchscript_bytes(tiny_mlp()), failing_meta())
    assert broken.status_code == 201
    assert (await gateway.wait_settled("mlp", 3))["status"] == "failed"
    assert (await gateway.predict("/v1/models/mlp@3:predict", ROW)).status_code == 409

    _, samples = await _scrape(gateway)
    status = "maas_model_version_status"
    assert value(samples, status, model="mlp", version="1", status="ready") == 1
    assert value(samples, status, model="mlp", version="3", status="failed") == 1
    assert value(samples, status, model="mlp", version="3", status="ready") == 0
    target = "maas_alias_target"
    assert value(samples, target, model="mlp", alias="production", version="1") == 1
    assert value(samples, target, model="mlp", alias="canary", version="1") == 0.75
    assert value(samples, target, model="mlp", alias="canary", version="2") == 0.25
    # A version that exists but cannot serve is counted under its own name.
    assert (
        value(samples, "maas_requests_total", model="mlp", version="3", protocol="v1", code="409")
        == 1
    )


@pytest.mark.parametrize("key", [None, "Bearer wrong-key-0123456789"])
async def test_refused_requests_are_counted_without_a_version(
    tmp_path: Path, key: str | None
) -> None:
    settings = make_settings(tmp_path, require_infer_key=True)
    async with running_gateway(settings) as gateway:
        headers = {"Authorization": key} if key else {}
        response = await gateway.predict("/v1/models/mlp:predict", ROW, **headers)
        assert response.status_code == 401
        _, samples = await _scrape(gateway)
        unknown = {"model": "_unknown", "version": "_", "protocol": "v1"}
        assert value(samples, "maas_requests_total", code="401", **unknown) == 1


async def test_a_version_shows_its_live_figures(gateway: Gateway) -> None:
    await gateway.deploy("mlp", torchscript_bytes(tiny_mlp()), mlp_meta())
    fresh = (await gateway.client.get("/admin/models/mlp/versions/1", headers=ADMIN)).json()
    assert fresh["stats"]["loaded"] is True
    assert fresh["stats"]["batches"] == 0
    for _ in range(3):
        assert (await gateway.predict("/v1/models/mlp:predict", ROW)).status_code == 200
    stats = (await gateway.client.get("/admin/models/mlp/versions/1", headers=ADMIN)).json()[
        "stats"
    ]
    assert stats["batches"] == 3
    assert stats["instances"] == 6
    assert stats["mean_batch_size"] == 2
    assert stats["mean_inference_ms"] > 0
    assert stats["queue_depth"] == 0


def test_the_registry_generation_is_the_one_the_scrape_was_given() -> None:
    scrape = Scrape(models={}, backend=BackendTelemetry(), generation=41)
    families, samples = parse(RequestMetrics().render(scrape).decode())
    assert families >= CONTRACT_FAMILIES
    assert value(samples, "maas_registry_generation") == 41


def test_heartbeat_figures_are_one_series_per_worker() -> None:
    """A gateway without a multiprocess directory renders what each worker sent under its
    name (a backend lists a worker, then merges what it holds), and `/admin` the sum."""
    backend = BackendTelemetry()
    for name, instances in (("w0", (1, 2)), ("w1", (4,))):
        backend.workers.append(WorkerHealth(name, True, 0))
        figures = VersionTelemetry(queue_depth=len(instances))
        for count in instances:
            figures.batch_size.observe(count)
            figures.inference.observe(0.001)
        backend.merge("m@1", figures)
    _, samples = parse(RequestMetrics().render(Scrape(models={}, backend=backend)).decode())
    for worker, count, total, depth in (("w0", 2, 3, 2), ("w1", 1, 4, 1)):
        series = {"model": "m", "version": "1", "worker": worker}
        assert value(samples, "maas_batch_size_count", **series) == count
        assert value(samples, "maas_batch_size_sum", **series) == total
        assert value(samples, "maas_queue_depth", **series) == depth
    assert not any(
        name.startswith(WORKER_FAMILIES) and "worker" not in dict(labels)
        for name, labels in samples
    )
    merged = backend.versions["m@1"].summary()
    assert merged["batches"] == 3
    assert merged["instances"] == 7
    assert merged["queue_depth"] == 3
