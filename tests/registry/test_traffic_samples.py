"""Traffic samples in the registry, on SQLite and a real PostgreSQL: each gateway's rows per
model, read back per model and after a time, and the old ones dropped by any writer."""

from __future__ import annotations

from maas.registry.service import Registry


async def test_samples_are_read_per_model_after_a_time_and_old_ones_go(registry: Registry) -> None:
    first = {"digits": {"1": {"requests": 3, "buckets": {"4": 3}}}, "other": {"2": {"requests": 1}}}
    await registry.report_traffic(reporter="gw-a", at=100.0, figures=first)
    await registry.report_traffic(
        reporter="gw-b", at=100.0, figures={"digits": {"1": {"requests": 5}}}
    )
    await registry.report_traffic(
        reporter="gw-a", at=101.0, figures={"digits": {"2": {"requests": 1}}}
    )
    digits = await registry.traffic(model="digits", since=99.0)
    assert [(s.reporter, s.at) for s in digits] == [
        ("gw-a", 100.0),
        ("gw-b", 100.0),
        ("gw-a", 101.0),
    ]
    assert digits[0].figures == {"1": {"requests": 3, "buckets": {"4": 3}}}  # JSON round trip
    assert [s.at for s in await registry.traffic(model="digits", since=100.0)] == [101.0]
    assert [s.reporter for s in await registry.traffic(model="other", since=0)] == ["gw-a"]
    assert await registry.traffic(model="nobody", since=0) == []
    # a writer drops every sample before its bound, whoever wrote it
    await registry.report_traffic(
        reporter="gw-c", at=160.0, figures={"digits": {"1": {"requests": 1}}}, drop_before=101.0
    )
    kept = await registry.traffic(model="digits", since=0)
    assert [(s.reporter, s.at) for s in kept] == [("gw-a", 101.0), ("gw-c", 160.0)]
    assert await registry.traffic(model="other", since=0) == []
