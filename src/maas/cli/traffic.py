"""`maas traffic MODEL`: a model's live traffic per version, over every gateway, from the admin
API's `GET /admin/models/{name}/traffic`.

One row per version: the figures of the last complete bin (requests/s, 5xx and 4xx shares,
p50/p99, mean batch size, queue depth), the requests and 5xx answers over the whole span, and a
sparkline of its requests/s. The server holds the bounds (`--minutes` over 0, at most 900
points, a step of at least 1 s): what it refuses is a refusal, exit 1, with its message.
`--watch` reads and redraws it every step until Ctrl-C (exit 0).
"""

from __future__ import annotations

import math
import time
from datetime import datetime
from typing import Any

import click

from maas.cli.client import Client, path
from maas.cli.output import emit_json, json_option, plain, say, stdout_console, table
from maas.cli.refs import model_name
from maas.cli.rollout_view import duration_text

SPARK = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 60  # at most this many characters: longer series are averaged down to it
COLUMNS = (
    "VERSION",
    "REQ/S",
    "ERRORS",
    "REFUSED",
    "P50 MS",
    "P99 MS",
    "BATCH",
    "QUEUE",
    "REQUESTS",
    "5XX",
    "REQ/S OVER THE SPAN",
)


def sparkline(values: list[float], width: int = SPARK_WIDTH) -> str:
    """`▁▂▅█`: one block per value (averaged down to `width` blocks), scaled to the largest;
    `▁` is no traffic at all, any traffic is at least `▂`."""
    if not values:
        return ""
    size = math.ceil(len(values) / width)
    means = [
        sum(values[i : i + size]) / len(values[i : i + size]) for i in range(0, len(values), size)
    ]
    top = max(means)
    if top <= 0:
        return SPARK[0] * len(means)
    steps = len(SPARK) - 1
    return "".join(SPARK[0] if v <= 0 else SPARK[max(1, round(v / top * steps))] for v in means)


def totals(points: list[dict[str, Any]], step_s: float) -> tuple[int, int]:
    """Requests and 5xx answers the points add up to (each bin's rate times its length)."""
    requests = errors = 0.0
    for p in points:
        n = _number(p.get("requests_per_s")) * step_s
        requests += n
        errors += _number(p.get("error_rate")) * n
    return round(requests), round(errors)


def version_row(entry: dict[str, Any], step_s: float) -> list[Any]:
    """A version's row: its last (complete) bin, then the whole span."""
    points: list[dict[str, Any]] = entry.get("points") or []
    last = points[-1] if points else {}
    requests, errors = totals(points, step_s)
    return [
        entry.get("version"),
        _fixed(last.get("requests_per_s"), 2),
        _percent(last.get("error_rate")),
        _percent(last.get("refused_rate")),
        _fixed(last.get("p50_ms"), 2),
        _fixed(last.get("p99_ms"), 2),
        _fixed(last.get("mean_batch_size"), 2),
        last.get("queue_depth"),
        requests,
        errors,
        sparkline([_number(p.get("requests_per_s")) for p in points]),
    ]


def header(answer: dict[str, Any]) -> str:
    """`mlp over 5m, 12:00:00 to 12:05:00 UTC, in steps of 5s (the last from 12:04:55);
    1 gateway reported`."""
    since, until = _time(answer.get("since")), _time(answer.get("until"))
    step = _number(answer.get("step_s"))
    gateways = answer.get("gateways")
    reported = f"{gateways} gateway{'' if gateways == 1 else 's'} reported"
    if since is None or until is None:
        return f"{answer.get('model')} in steps of {duration_text(step)}; {reported}"
    span = duration_text((until - since).total_seconds())
    last = datetime.fromtimestamp(until.timestamp() - step, until.tzinfo)
    return (
        f"{answer.get('model')} over {span}, {since:%H:%M:%S} to {until:%H:%M:%S} UTC, in steps "
        f"of {duration_text(step)} (the last from {last:%H:%M:%S}); {reported}"
    )


def show_traffic(answer: dict[str, Any]) -> None:
    """The header line, then a row per version (or a sentence when none had traffic)."""
    say(header(answer))
    versions = sorted(answer.get("versions") or [], key=lambda v: _number(v.get("version")))
    if not versions:
        say(f"no traffic to {answer.get('model')} in this span")
        return
    step = _number(answer.get("step_s"))
    table(list(COLUMNS), (version_row(v, step) for v in versions))


@click.command()
@click.argument("name")
@click.option(
    "--minutes",
    type=float,
    default=None,
    metavar="M",
    help="How far back (default 5; at most what the server keeps).",
)
@click.option(
    "--step",
    "step_s",
    type=float,
    default=None,
    metavar="S",
    help="Each bin's length in seconds (default 5; rounded up to the report period).",
)
@click.option("--watch", is_flag=True, help="Read it again every step until Ctrl-C.")
@json_option
def traffic(
    name: str, minutes: float | None, step_s: float | None, watch: bool, as_json: bool
) -> None:
    """NAME's live traffic per version over every gateway: the last complete step's
    requests/s, 5xx and 4xx shares, p50/p99, batch size and queue depth, and the span's
    requests, 5xx answers and requests/s as a sparkline."""
    model_name(name)
    params = {"minutes": minutes, "step_s": step_s}
    with Client() as client:
        if not watch:
            _show(client.call("GET", path("models", name, "traffic"), params=params), as_json)
            return
        try:
            while True:
                answer = client.call("GET", path("models", name, "traffic"), params=params)
                if not as_json:
                    stdout_console().clear()  # on a terminal only
                _show(answer, as_json)
                time.sleep(max(1.0, _number(answer.get("step_s"))))
        except KeyboardInterrupt:
            return  # Ctrl-C ends --watch: done, exit 0


def _show(answer: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(answer)
    else:
        show_traffic(answer)


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _fixed(value: Any, digits: int) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else plain(None)


def _percent(value: Any) -> str:
    return f"{value:.2%}" if isinstance(value, int | float) else plain(None)


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
