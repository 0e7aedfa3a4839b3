"""`maas.observability.traffic_series`: gateways' samples into per-version bins. Requests add
up over gateways; the workers' counters, which every gateway reports alike, are taken once;
a restarted worker and junk in a sample do not make figures up."""

from __future__ import annotations

from maas.observability.traffic_series import series
from maas.registry.traffic import Sample
from maas.transport.telemetry import SECONDS_BOUNDS

MS_5 = str(SECONDS_BOUNDS.index(0.005))  # the bucket (2.5 ms, 5 ms]


def sample(reporter: str, at: float, **figures: dict[str, object]) -> Sample:
    return Sample(reporter=reporter, at=at, figures=figures)


def test_requests_add_up_over_gateways_and_workers_count_once() -> None:
    samples = [
        # before the first bin: only the workers' counters count, as the baseline
        sample("a", 99, **{"1": {"requests": 50, "batches": {"w": [10, 40]}}}),
        sample(
            "a",
            100,
            **{
                "1": {
                    "requests": 6,
                    "errors": 1,
                    "refused": 0,
                    "buckets": {MS_5: 6},
                    "queue_depth": 3,
                    "batches": {"w": [12, 48]},
                }
            },
        ),
        sample(
            "b",
            100.5,
            **{
                "1": {
                    "requests": 4,
                    "errors": 0,
                    "refused": 2,
                    "buckets": {MS_5: 4},
                    "queue_depth": 5,
                    "batches": {"w": [12, 48]},
                }
            },
        ),  # the same worker, seen by b
        sample(
            "a", 102, **{"1": {"requests": 2, "buckets": {MS_5: 2}, "batches": {"w": [13, 52]}}}
        ),
    ]
    by_version, gateways = series(samples, start=100, end=104, step_s=2)
    assert gateways == 2
    first, second = by_version["1"]
    assert (first.at, second.at) == (100, 102)
    assert first.requests_per_s == 5.0  # 10 requests over 2 s
    assert first.error_rate == 0.1
    assert first.refused_rate == 0.2
    assert first.mean_batch_size == 4.0  # 8 instances in 2 batches, not counted twice
    assert first.queue_depth == 5
    assert first.p50_ms is not None
    assert 2.5 < first.p50_ms <= 5.0
    assert second.requests_per_s == 1.0
    assert second.mean_batch_size == 4.0
    assert second.queue_depth == 0


def test_empty_bins_restarted_workers_and_junk() -> None:
    samples = [
        sample("a", 100, **{"2": {"requests": 1, "batches": {"w": [500, 900]}}}),
        sample(
            "a",
            101,
            **{
                "2": {
                    "requests": 1,
                    "batches": {"w": [3, 6]},  # restarted
                    "buckets": {"junk": 5, "999": 1, MS_5: 1},
                }
            },
        ),
        sample("a", 110, **{"2": {"requests": 1}}),  # after the last bin: left out
    ]
    by_version, gateways = series(samples, start=100, end=106, step_s=1)
    points = by_version["2"]
    assert [p.requests_per_s for p in points] == [1, 1, 0, 0, 0, 0]
    assert points[0].mean_batch_size is None  # one reading: nothing measured yet
    assert points[1].mean_batch_size is None  # went back: not a negative batch size
    assert points[1].p99_ms is not None
    assert points[1].p99_ms <= 5.0
    assert points[2].p50_ms is None
    assert points[2].error_rate is None
    assert gateways == 1


def test_versions_sort_by_number_and_nothing_is_empty() -> None:
    samples = [sample("a", 100, **{v: {"requests": 1}}) for v in ("10", "9", "1")]
    by_version, _ = series(samples, start=100, end=101, step_s=1)
    assert list(by_version) == ["1", "9", "10"]
    assert series([], start=100, end=160, step_s=5) == ({}, 0)
