"""The predict path asks the registry nothing: not in the steady state, not for junk names.

Every SQL statement the process sends is recorded (SQLAlchemy's cursor event, on every
engine). The only ones allowed while requests flow are the control plane's own: the one-row
generation poll (every 250 ms, whatever the traffic) and this gateway's heartbeat row.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from support.inprocess_gateway import Gateway
from support.model_files import mlp_meta, tiny_mlp, torchscript_bytes
from support.waiting import until

ROW = {"instances": [[1.0, 2.0, 3.0, 4.0]]}
V2_ROW = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
CATALOGUE = re.compile(
    r"\b(models|model_versions|aliases|alias_routes|alias_history|api_keys|audit_events)\b"
)


@pytest.fixture
def statements() -> Iterator[list[str]]:
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", record)


async def _send(gateway: Gateway, paths: list[str], concurrency: int = 50) -> list[int]:
    codes: list[int] = []
    for start in range(0, len(paths), concurrency):
        answers = await asyncio.gather(
            *(
                gateway.predict(p, V2_ROW if p.startswith("/v2") else ROW)
                for p in paths[start : start + concurrency]
            )
        )
        codes.extend(a.status_code for a in answers)
    return codes


async def test_junk_names_and_steady_traffic_cost_no_registry_query(
    gateway: Gateway, statements: list[str]
) -> None:
    await gateway.deploy("mlp", torchscript_bytes(tiny_mlp()), mlp_meta())
    wanted = await gateway.services.registry.generation()  # the deployment's last change
    await until(lambda: gateway.services.plane.served >= wanted, "the deployment's reads done")
    reloads = gateway.services.router.reloads
    polls = gateway.services.plane.polls
    statements.clear()
    started = time.monotonic()

    junk = [f"/v1/models/ghost-{n}:predict" for n in range(10_000)]
    junk += [f"/v1/models/mlp@{n}:predict" for n in range(100, 600)]
    junk += [f"/v1/models/mlp@nosuch{n}:predict" for n in range(500)]
    valid = ["/v1/models/mlp:predict", "/v1/models/mlp@1:predict", "/v2/models/mlp/infer"] * 300
    codes = await _send(gateway, junk)
    assert set(codes) == {404}
    valid_codes = await _send(gateway, valid[:600])
    assert set(valid_codes) == {200}

    elapsed = time.monotonic() - started
    other = [s for s in statements if CATALOGUE.search(s)]
    assert other == [], other[:5]
    assert gateway.services.router.reloads == reloads  # the routing table was never read again
    generation_reads = [s for s in statements if "registry_state" in s]
    # The poll's own pace, whatever the traffic: one read per 250 ms, not one per miss.
    assert len(generation_reads) == gateway.services.plane.polls - polls
    assert len(generation_reads) <= elapsed / 0.25 + 2
    print(
        f"\n{len(codes)} junk and {len(valid_codes)} valid requests in {elapsed:.1f} s: "
        f"{len(generation_reads)} generation reads, "
        f"{len(statements) - len(generation_reads)} heartbeat statements (BEGIN/UPDATE/COMMIT), "
        "0 catalogue queries"
    )
