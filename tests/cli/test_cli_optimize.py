"""`maas models optimize NAME@V --int8` against a real server (one gateway, one worker): the
figures table, `--json`, `show` of a derived version, the usage and refusal exit codes, and
promote / canary refusing a version below its agreement bound unless `--force`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from support.cli import Cli, admin, cli_server, unreachable_url, wait_status
from support.model_files import expected, mlp_meta, onnx_bytes, tiny_mlp, torchscript_bytes

ROWS = [[1.0, 2.0, 3.0, 4.0], [-1.0, 0.5, 2.0, -3.0]]
POSITIVE = [[float(i + 1), 2.0, 0.5 * i + 1, 3.0] for i in range(8)]


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    with cli_server(tmp_path_factory.mktemp("cli-optimize")) as running:
        yield running


def _near_tie() -> torch.nn.Module:
    """Classes 0 and 1 differ by less than an int8 step: the int8 twin never agrees on
    positive inputs (as in tests/api/test_optimize.py)."""
    layer = torch.nn.Linear(4, 3)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0] * 4, [1.0001] * 4, [-1.0] * 4]))
        layer.bias.zero_()
    return torch.nn.Sequential(layer).eval()


def _parent(cli: Cli, name: str, artifact: bytes, meta: dict[str, Any]) -> None:
    created = admin(cli.url, "POST", "/admin/models", json={"name": name})
    assert created.status_code == 201, created.text
    uploaded = admin(
        cli.url,
        "POST",
        f"/admin/models/{name}/versions",
        files={"file": ("model.onnx", artifact)},
        data={"meta": json.dumps(meta)},
    )
    assert uploaded.status_code == 201, uploaded.text
    wait_status(cli.url, name, 1, "ready")


def _holdout(directory: Path, data: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    file = directory / "holdout.json"
    file.write_text(json.dumps(data))
    return file


def test_optimize_prints_the_figures_and_show_the_derivation(cli: Cli) -> None:
    module = tiny_mlp()
    golden = [{"inputs": ROWS, "outputs": expected(module, ROWS)}]
    _parent(cli, "opt", onnx_bytes(module), mlp_meta("onnx", golden=golden))
    labels = [row.index(max(row)) for row in expected(module, POSITIVE)]
    holdout = _holdout(cli.home / "opt", {"instances": POSITIVE, "labels": labels})
    run = cli(
        "models", "optimize", "opt@1", "--int8", "--min-agreement", "0.5",
        "--holdout", str(holdout), "--wait",
    ).ok()  # fmt: skip
    for text in (
        "opt@2: int8 of opt@1",
        "agreement (top-1)",
        "latency b32 (ms)",
        "accuracy",
        "measured on",
    ):
        assert text in run.out, run.out
    assert "opt@2 is ready" in run.out
    answer = cli("models", "optimize", "opt@1", "--int8", "--json").json()
    assert answer["version"] == 3
    assert answer["derived_from"] == {"version": 1, "method": "int8_dynamic", "min_agreement": 0.99}
    assert 0 <= answer["metrics"]["agreement"] <= 1
    shown = cli("models", "show", "opt@2").ok().out
    assert "derived_from" in shown
    assert "int8_dynamic" in shown
    assert "agreement=" in shown
    assert "parent_size_bytes=" in shown


def test_usage_refusals_and_an_unreachable_server(cli: Cli) -> None:
    no_method = cli("models", "optimize", "opt@1")
    assert "--int8" in no_method.failed(2)
    no_version = cli("models", "optimize", "opt", "--int8")
    no_version.failed(2)
    bound = cli("models", "optimize", "opt@1", "--int8", "--min-agreement", "2")
    bound.failed(2)
    bad = cli.home / "bad.json"
    bad.write_text('{"rows": []}')
    assert "instances" in cli(
        "models", "optimize", "opt@1", "--int8", "--holdout", str(bad)
    ).failed(2)
    missing = cli("models", "optimize", "opt@1", "--int8", "--holdout", str(cli.home / "nope"))
    assert "no such file" in missing.failed(2)
    admin(cli.url, "POST", "/admin/models", json={"name": "ts"})
    admin(
        cli.url,
        "POST",
        "/admin/models/ts/versions",
        files={"file": ("model.pt", torchscript_bytes(tiny_mlp()))},
        data={"meta": json.dumps(mlp_meta(load=False))},
    )
    refused = cli("models", "optimize", "ts@1", "--int8", "--json")
    assert refused.failed_json(1)["code"] == "invalid_artifact"
    assert "422 invalid_artifact" in cli("models", "optimize", "ts@1", "--int8").failed(1)
    gone = cli("models", "optimize", "opt@1", "--int8", env={"MAAS_URL": unreachable_url()})
    gone.failed(3)


def test_promote_and_canary_refuse_below_the_bound_unless_forced(cli: Cli) -> None:
    _parent(cli, "tie", onnx_bytes(_near_tie()), mlp_meta("onnx"))
    holdout = _holdout(cli.home / "tie", {"instances": POSITIVE})
    run = cli(
        "models", "optimize", "tie@1", "--int8", "--min-agreement", "0.9",
        "--holdout", str(holdout), "--wait",
    ).ok()  # fmt: skip
    assert "below its bound 90.00%" in run.out
    assert "--force" in run.out
    canary = cli("models", "canary", "tie@2", "--weight", "10")
    assert "409 below_agreement" in canary.failed(1)
    cli("models", "canary", "tie@2", "--weight", "10", "--force").ok()
    promote = cli("models", "promote", "tie@2")
    assert "409 below_agreement" in promote.failed(1)
    forced = cli("models", "promote", "tie@2", "--force").ok()
    assert forced.out.startswith("production of tie → 2")
