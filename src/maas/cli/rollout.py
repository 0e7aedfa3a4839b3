"""`maas rollout start|status|pause|resume|promote|abort`: a candidate version walked onto an
alias step by step by the server's leader, which judges every interval; through the admin API.

The verbs name a model and an alias, not a rollout: they act on the alias's running or paused
rollout (there is at most one), and refuse (exit 1) when there is none. `status --wait` is a CI
gate: exit 0 once the rollout succeeded, 1 once it failed or was aborted (one error line with
the reason), 3 when `--timeout` passes first (as for a server that does not answer in time).
"""

from __future__ import annotations

import functools
import itertools
import re
import time
from collections.abc import Callable
from typing import Any

import click

from maas.cli.client import Client, path
from maas.cli.output import (
    CliError,
    F,
    Unreachable,
    emit_json,
    json_option,
    say,
    usage_error,
)
from maas.cli.refs import alias_name, model_name, version_ref
from maas.cli.rollout_view import (
    ACTIVE,
    duration_text,
    plan_text,
    rollout_name,
    rollout_sentence,
    show_rollout,
    where,
)
from maas.types import DEFAULT_ALIAS, is_number

POLL_S = 0.5  # how often `status --wait` reads the rollout again
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration(option: str, text: str, *, zero: bool = False) -> float:
    """Seconds from `500ms`, `30s`, `5m`, `1h` (a bare number is seconds); a usage error for
    anything else, and for 0 unless `zero`."""
    match = _DURATION.match(text)
    seconds = float(match.group(1)) * _UNIT_S[match.group(2) or "s"] if match else -1.0
    if seconds < 0 or (seconds == 0 and not zero):
        least = "0 or more" if zero else "more than 0"
        raise usage_error(
            f"{option} {text!r}: expected a duration ({least}) such as 500ms, 30s, 5m, 1h"
        )
    return seconds


def parse_steps(text: str) -> list[int]:
    """`1,10,50,100`: rising percents of the alias's traffic, 1 to 100 each."""
    parts = [p.strip() for p in text.split(",")]
    if not all(is_number(p) and len(p) <= 3 and 1 <= int(p) <= 100 for p in parts):
        raise usage_error(
            f"--steps {text!r}: expected percents 1-100 separated by commas, such as 1,10,50,100"
        )
    steps = [int(p) for p in parts]
    if any(b <= a for a, b in itertools.pairwise(steps)):
        raise usage_error(f"--steps {text!r}: the steps must rise, such as 1,10,50,100")
    return steps


def _duration_option(
    name: str, dest: str, help_text: str, *, zero: bool = False
) -> Callable[[F], F]:
    """An option that takes a duration (D), given to the command in seconds."""

    def convert(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
        return None if value is None else duration(name, value, zero=zero)

    return click.option(name, dest, metavar="D", callback=convert, help=help_text)


def _alias_option(default: str | None) -> Callable[[F], F]:
    return click.option(
        "--alias",
        default=default,
        metavar="ALIAS",
        help="The alias (default production)." if default else "Only rollouts of this alias.",
        callback=lambda c, p, v: None if v is None else alias_name(v),
    )


# --- finding the rollout ---------------------------------------------------------------------


def _read(client: Client, name: str, rollout_id: Any) -> dict[str, Any]:
    """One rollout as `GET .../rollouts/{id}` gives it: with its current window."""
    answer: dict[str, Any] = client.call("GET", path("models", name, "rollouts", rollout_id))
    return answer


def _find(client: Client, name: str, alias: str | None, *, active: bool) -> dict[str, Any]:
    """The newest rollout (of `alias` when given), or with `active` the alias's running or
    paused one; a refusal (exit 1) saying why there is none."""
    listed: list[dict[str, Any]] = client.call("GET", path("models", name, "rollouts"))["rollouts"]
    found = [r for r in listed if alias is None or r.get("alias") == alias]  # newest first
    start = f"`maas rollout start {name}@V{f' --alias {alias}' if alias else ''}`"
    if not found:
        where = f"on {alias}" if alias else "yet"
        raise CliError(
            f"{name} has no rollout {where}; start one with {start}", code="rollout_not_found"
        )
    newest: dict[str, Any] | None = found[0]
    if active:
        newest = next((r for r in found if r.get("state") in ACTIVE), None)
    if newest is None:
        raise CliError(
            f"{alias} of {name} has no running or paused rollout: its newest, "
            f"{found[0].get('id')}, has {found[0].get('state')}; start another with {start}",
            code="rollout_ended",
        )
    return _read(client, name, newest["id"]) if newest.get("state") in ACTIVE else newest


def _wait(client: Client, r: dict[str, Any], timeout: float | None) -> dict[str, Any]:
    """Poll until the rollout ends; Unreachable (exit 3) once `timeout` has passed."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while r.get("state") in ACTIVE:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise Unreachable(
                f"{rollout_name(r)} is still {r.get('state')} after {duration_text(timeout)} "
                f"({where(r)}); see `maas rollout status {r.get('model')} --id {r.get('id')}`",
                code="timeout",
            )
        time.sleep(POLL_S if left is None else min(POLL_S, left))
        r = _read(client, str(r.get("model")), r.get("id"))
    return r


# --- commands --------------------------------------------------------------------------------


@click.group()
def rollout() -> None:
    """Roll a version onto an alias step by step, judged on its errors and latency
    (MAAS_URL, MAAS_API_KEY)."""


_PLAN_OPTIONS = (
    click.option("--steps", metavar="P,P,...", help="Percents, rising (default 1,10,50,100)."),
    _duration_option("--interval", "interval_s", "The least time per step (default 60s)."),
    click.option(
        "--min-requests", type=click.IntRange(min=0), metavar="N", help="Per window (default 100)."
    ),
    _duration_option("--shadow", "shadow_s", "A shadow phase first, this long.", zero=True),
    click.option("--max-error-rate", type=click.FloatRange(0, 1), metavar="X"),
    click.option("--max-p99-ratio", type=click.FloatRange(0, min_open=True), metavar="X"),
    click.option("--max-p99-ms", type=click.FloatRange(0, min_open=True), metavar="MS"),
    click.option("--max-disagreement", type=click.FloatRange(0, 1), metavar="X"),
    click.option("--failure-limit", type=click.IntRange(1, 1000), metavar="N"),
    click.option("--on-failure", type=click.Choice(["rollback", "pause"])),
)
_GUARDS = ("max_error_rate", "max_p99_ratio", "max_p99_ms", "max_disagreement")


def _plan_options(func: F) -> F:
    return functools.reduce(lambda f, option: option(f), reversed(_PLAN_OPTIONS), func)


@rollout.command("start")
@click.argument("ref")
@_alias_option(DEFAULT_ALIAS)
@_plan_options
@json_option
def rollout_start(ref: str, alias: str, steps: str | None, as_json: bool, **plan: Any) -> None:
    """Start rolling NAME@V onto ALIAS, from the one version ALIAS points at now: a --shadow
    phase (mirrors only) if given, then --steps percents of its traffic, each held for at least
    --interval (D: 500ms, 30s, 5m, 1h) and --min-requests; an interval that breaches a guard
    (--max-*) fails. The server's defaults fill what is not given."""
    target = version_ref(ref)
    guards = {k: plan.pop(k) for k in _GUARDS if plan.get(k) is not None}
    body: dict[str, Any] = {
        "alias": alias,
        "candidate": target.version,
        **({"steps": parse_steps(steps)} if steps is not None else {}),
        **{k: v for k, v in plan.items() if v is not None and k not in _GUARDS},
        **({"guards": guards} if guards else {}),
    }
    with Client() as client:
        answer = client.call("POST", path("models", target.name, "rollouts"), json=body)
    if as_json:
        emit_json(answer)
        return
    say(
        f"{rollout_sentence(answer)}; plan: {plan_text(answer.get('plan') or {})}; follow it "
        f"with `maas rollout status {target.name} --alias {alias}`"
    )


@rollout.command("status")
@click.argument("name")
@_alias_option(None)
@click.option("--id", "rollout_id", type=click.IntRange(min=1), metavar="N")
@click.option("--wait", is_flag=True, help="Until it ends: exit 0 succeeded, 1 failed or aborted.")
@_duration_option("--timeout", "timeout", "With --wait: give up after D (exit 3).")
@json_option
def rollout_status(
    name: str,
    alias: str | None,
    rollout_id: int | None,
    wait: bool,
    timeout: float | None,
    as_json: bool,
) -> None:
    """The model's newest rollout (of ALIAS, or rollout N): state, weights, intervals. --wait
    polls until it ends (exit 0 succeeded, 1 failed or aborted; 3 after --timeout D)."""
    model_name(name)
    if alias is not None and rollout_id is not None:
        raise usage_error("give --alias or --id, not both")
    if timeout is not None and not wait:
        raise usage_error("--timeout goes with --wait")
    with Client() as client:
        found = (
            _read(client, name, rollout_id)
            if rollout_id is not None
            else _find(client, name, alias, active=False)
        )
        if wait:
            found = _wait(client, found, timeout)
    if wait and found.get("state") != "succeeded":
        raise CliError(
            f"{rollout_sentence(found)}; see `maas rollout status {name} --id {found.get('id')}`",
            code=f"rollout_{found.get('state')}",
        )
    if as_json:
        emit_json(found)
    else:
        show_rollout(found)


def _verb(verb: str, name: str, alias: str, as_json: bool, body: Any = None) -> None:
    model_name(name)
    with Client() as client:
        current = _find(client, name, alias, active=True)
        url = path("models", name, "rollouts", current["id"], verb)
        answer = client.call("POST", url, json=body)
    if as_json:
        emit_json(answer)
    elif answer.get("state") == current.get("state") and verb in ("pause", "resume"):
        say(f"{rollout_sentence(answer)}; nothing changed")
    else:
        say(rollout_sentence(answer))


@rollout.command("promote")
@click.argument("name")
@_alias_option(DEFAULT_ALIAS)
@click.option("--full", is_flag=True, help="To the end at once: the candidate takes the alias.")
@json_option
def rollout_promote(name: str, alias: str, full: bool, as_json: bool) -> None:
    """On to the next step of ALIAS's rollout now, or with --full to the end."""
    _verb("promote", name, alias, as_json, {"full": True} if full else None)


_VERBS = {
    "pause": "Hold ALIAS's rollout where it is: no verdicts, the weights stay.",
    "resume": "Go on with ALIAS's paused rollout, on a fresh window at its step.",
    "abort": "Stop ALIAS's rollout and send its traffic back to the stable version.",
}


def _verb_command(verb: str) -> None:
    def act(name: str, alias: str, as_json: bool) -> None:
        _verb(verb, name, alias, as_json)

    act.__doc__ = _VERBS[verb]
    command = click.argument("name")(_alias_option(DEFAULT_ALIAS)(json_option(act)))
    rollout.command(verb)(command)


for _name_of_verb in _VERBS:
    _verb_command(_name_of_verb)
