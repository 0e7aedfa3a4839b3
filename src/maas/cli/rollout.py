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
from rich.text import Text

from maas.cli.client import Client, path
from maas.cli.output import (
    CliError,
    F,
    Unreachable,
    emit_json,
    json_option,
    plain,
    routes_text,
    say,
    short_time,
    table,
    usage_error,
)
from maas.cli.refs import alias_name, model_name, version_ref
from maas.types import DEFAULT_ALIAS, is_number

POLL_S = 0.5  # how often `status --wait` reads the rollout again
ACTIVE = ("running", "paused")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_STATE_STYLE = {"running": "yellow", "paused": "yellow", "succeeded": "green", "failed": "red"}


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


def duration_text(seconds: Any) -> str:
    """`500ms`, `30s`, `5m`, `1h`, `90s`: the shortest unit that gives a whole number."""
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        return plain(seconds)
    for unit, size in (("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{int(seconds / size)}{unit}"
    return f"{seconds:g}s" if seconds >= 1 else f"{seconds * 1000:g}ms"


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


# --- how a rollout reads ---------------------------------------------------------------------


def _name(r: dict[str, Any]) -> str:
    return f"rollout {r.get('id')} of {r.get('model')}@{r.get('alias')}"


def _where(r: dict[str, Any]) -> str:
    """`step 2 of 4: 2 takes 10% (1 90%)`, or the shadow phase."""
    steps = (r.get("plan") or {}).get("steps") or []
    step, weight, stable = int(r.get("step") or 0), int(r.get("weight") or 0), r.get("stable")
    if step < 0:
        return f"shadow phase: {stable} answers every request, mirrored to {r.get('candidate')}"
    rest = f" ({stable} {100 - weight}%)" if weight < 100 else ""
    return f"step {step + 1} of {len(steps)}: {r.get('candidate')} takes {weight}%{rest}"


def rollout_sentence(r: dict[str, Any]) -> str:
    """Where the rollout stands, in one sentence."""
    state, alias, stable = r.get("state"), r.get("alias"), r.get("stable")
    reason = f" ({r['reason']})" if r.get("reason") else ""
    if state == "succeeded":
        head = f"{_name(r)} succeeded: {alias} → {r.get('candidate')} (was {stable})"
    elif state in ("failed", "aborted"):
        head = f"{_name(r)} {state}{reason}: {alias} is back on {stable}"
    else:
        head = f"{_name(r)} is {state} at {_where(r)}{reason if state == 'paused' else ''}"
    generation = r.get("generation")
    return head if generation is None else f"{head}; generation {generation}"


def _plan_text(plan: dict[str, Any]) -> str:
    steps = ", ".join(f"{s}%" for s in plan.get("steps") or [])
    text = (
        f"steps {steps}, {duration_text(plan.get('interval_s'))} each, at least "
        f"{plan.get('min_requests')} requests"
    )
    if plan.get("shadow_s"):
        text = f"shadow {duration_text(plan['shadow_s'])}, then {text}"
    return f"{text}; {plan.get('on_failure')} after {plan.get('failure_limit')} failed interval(s)"


def _guards_text(guards: dict[str, Any]) -> str:
    shown = [
        f"{label} {fmt.format(guards[key])}"
        for key, label, fmt in (
            ("max_error_rate", "error rate ≤", "{:.2%}"),
            ("max_p99_ms", "p99 ≤", "{:g} ms"),
            ("max_p99_ratio", "p99 ≤", "{:g} x the stable's"),
            ("max_disagreement", "disagreement ≤", "{:.2%}"),
        )
        if isinstance(guards.get(key), int | float)
    ]
    return ", ".join(shown) or "none"


def _figure(value: Any, fmt: str) -> str | None:
    return fmt.format(value) if isinstance(value, int | float) else None


def _interval_row(i: dict[str, Any], verdict: Any) -> list[Any]:
    return [
        short_time(i.get("at")),
        i.get("phase"),
        "shadow" if i.get("step") == -1 else (i.get("step") or 0) + 1,
        f"{i.get('weight')}%",
        verdict,
        i.get("requests"),
        _figure(i.get("error_rate"), "{:.2%}"),
        _figure(i.get("p99_ms"), "{:.2f}"),
        _figure(i.get("stable_p99_ms"), "{:.2f}"),
        _figure(i.get("disagreement"), "{:.2%}"),
        "; ".join(i.get("breaches") or []) or None,
    ]


def show_rollout(r: dict[str, Any]) -> None:
    """The rollout's fields, then its intervals (and the current window so far)."""
    plan, weights, state = r.get("plan") or {}, r.get("weights") or {}, r.get("state")
    rows: list[list[Any]] = [
        ["state", Text(str(state), style=_STATE_STYLE.get(str(state), ""))],
        ["phase", r.get("phase")],
        ["at", _where(r) if state in ACTIVE else "—"],
        ["weights", routes_text([{"version": k, "weight": w} for k, w in weights.items() if w])],
        ["failures", f"{r.get('failures')} of {plan.get('failure_limit')}"],
        ["reason", r.get("reason")],
        ["plan", _plan_text(plan)],
        ["guards", _guards_text(plan.get("guards") or {})],
        ["created", f"{short_time(r.get('created_at'))} by {plain(r.get('created_by'))}"],
        ["ended", short_time(r.get("ended_at"))],
    ]
    title = f"{_name(r)}: {r.get('stable')} → {r.get('candidate')}"
    table(["FIELD", "VALUE"], rows, title=title)
    intervals = [_interval_row(i, i.get("verdict")) for i in r.get("intervals") or []]
    if isinstance(r.get("window"), dict):
        intervals.append(_interval_row(r["window"], Text("so far", style="italic")))
    if not intervals:
        say("no interval judged yet")
        return
    columns = "AT|PHASE|STEP|WEIGHT|VERDICT|REQUESTS|ERROR RATE|P99 MS|STABLE P99 MS"
    table([*columns.split("|"), "DISAGREEMENT", "BREACHES"], intervals, title="intervals")


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
                f"{_name(r)} is still {r.get('state')} after {duration_text(timeout)} "
                f"({_where(r)}); see `maas rollout status {r.get('model')} --id {r.get('id')}`",
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
        f"{rollout_sentence(answer)}; plan: {_plan_text(answer.get('plan') or {})}; follow it "
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
