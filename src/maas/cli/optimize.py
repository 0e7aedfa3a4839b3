"""`maas models optimize NAME@V --int8`: derive an int8 version from an ONNX version on a
running server (`POST /admin/models/{name}/versions/{version}/optimize`) and show what was
measured against the parent: top-1 agreement, the largest difference of the compared output,
latency at batch 1 and 32, sizes, and with labelled holdout data both accuracies.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from maas.cli.client import Client, path
from maas.cli.output import CliError, emit_json, human_size, json_option, say, table, usage_error
from maas.cli.refs import version_ref


def read_holdout(file: Path) -> dict[str, Any]:
    """`--holdout FILE`: a JSON object `{"instances": [...], "labels"?: [...]}`."""
    where = f"--holdout {str(file)!r}"
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise usage_error(f"{where}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise usage_error(f"{where}: cannot read it ({exc})") from None
    except json.JSONDecodeError as exc:
        raise usage_error(
            f"{where}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("instances"), list):
        raise usage_error(
            f'{where}: must be a JSON object {{"instances": [...], "labels"?: [...]}}'
        )
    extra = sorted(set(data) - {"instances", "labels"})
    if extra:
        raise usage_error(f"{where}: unexpected key(s) {', '.join(extra)} (instances, labels)")
    return data


@click.command("optimize")
@click.argument("ref")
@click.option("--int8", "int8", is_flag=True, help="Dynamic int8 quantisation (ONNX Runtime).")
@click.option(
    "--min-agreement",
    type=click.FloatRange(0, 1),
    default=None,
    metavar="X",
    help="Top-1 agreement with the parent (0-1) below which promote and canary refuse the new "
    "version unless --force (server default 0.99).",
)
@click.option(
    "--holdout",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE",
    help='JSON {"instances": [...], "labels"?: [...]} to measure on, besides the golden examples.',
)
@click.option(
    "--wait", is_flag=True, help="Answer once the new version is loaded (exit 1 if it failed)."
)
@json_option
def models_optimize(
    ref: str,
    int8: bool,
    min_agreement: float | None,
    holdout: Path | None,
    wait: bool,
    as_json: bool,
) -> None:
    """Derive an int8 version from the ONNX version NAME@V, measured against it."""
    target = version_ref(ref)
    assert target.version is not None
    if not int8:
        raise usage_error("say how to optimise: --int8 (dynamic int8 quantisation)")
    body: dict[str, Any] = {"method": "int8_dynamic"}
    if min_agreement is not None:
        body["min_agreement"] = min_agreement
    if holdout is not None:
        body["holdout"] = read_holdout(holdout)
    url = path("models", target.name, "versions", target.version, "optimize")
    with Client() as client:
        answer = client.call(
            "POST", url, json=body, params={"wait": "true" if wait else None}, timeout=None
        )
    if as_json:
        emit_json(answer)
    else:
        show_figures(answer, str(target))
    if answer.get("status") == "failed":
        raise CliError(
            f"{answer.get('model')}@{answer.get('version')} failed to load: "
            f"{answer.get('load_error') or 'no error recorded'}",
            code="model_load_error",
        )


def _percent(value: Any) -> str | None:
    return f"{value:.2%}" if isinstance(value, int | float) else None


def _figure(value: Any) -> str | None:
    return f"{value:.3g}" if isinstance(value, int | float) else None


def show_figures(version: dict[str, Any], parent: str) -> None:
    """The new version's figures beside its parent's, and whether aliasing it is bounded."""
    metrics = version.get("metrics") or {}
    derived = version.get("derived_from") or {}
    ref = f"{version.get('model')}@{version.get('version')}"
    rows: list[list[Any]] = [
        ["agreement (top-1)", _percent(metrics.get("agreement")), "—"],
        ["max abs diff", _figure(metrics.get("max_abs_diff")), "—"],
        [
            "latency b1 (ms)",
            _figure(metrics.get("latency_ms_b1")),
            _figure(metrics.get("parent_latency_ms_b1")),
        ],
        [
            "latency b32 (ms)",
            _figure(metrics.get("latency_ms_b32")),
            _figure(metrics.get("parent_latency_ms_b32")),
        ],
        [
            "size",
            human_size(metrics.get("size_bytes")),
            human_size(metrics.get("parent_size_bytes")),
        ],
    ]
    if "accuracy" in metrics:
        rows.append(
            [
                "accuracy",
                _percent(metrics.get("accuracy")),
                _percent(metrics.get("parent_accuracy")),
            ]
        )
    measured = (
        f"{metrics.get('golden_count', 0)} golden + {metrics.get('holdout_count', 0)} holdout"
    )
    rows.append(["measured on", f"{measured} instances", "—"])
    table(["FIGURE", ref, parent], rows, title=f"{ref}: int8 of {parent}")
    agreement, bound = metrics.get("agreement"), derived.get("min_agreement")
    status = version.get("status")
    head = f"{ref} is {status}"
    if isinstance(agreement, int | float) and isinstance(bound, int | float) and agreement < bound:
        say(
            f"{head}; its agreement {_percent(agreement)} is below its bound {_percent(bound)}: "
            f"promote and canary refuse it unless --force"
        )
    elif status == "loading":
        say(f"{head}; follow it with `maas models show {ref}`, then `maas models canary {ref}`")
    else:
        say(head)
