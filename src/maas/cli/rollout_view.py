"""How `maas rollout` shows a rollout: one sentence for where it stands, or its fields and a
table of its intervals (with the current window so far)."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from maas.cli.output import plain, routes_text, say, short_time, table

ACTIVE = ("running", "paused")
_STATE_STYLE = {"running": "yellow", "paused": "yellow", "succeeded": "green", "failed": "red"}


def duration_text(seconds: Any) -> str:
    """`500ms`, `30s`, `5m`, `1h`, `90s`: the shortest unit that gives a whole number."""
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        return plain(seconds)
    for unit, size in (("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{int(seconds / size)}{unit}"
    return f"{seconds:g}s" if seconds >= 1 else f"{seconds * 1000:g}ms"


def rollout_name(r: dict[str, Any]) -> str:
    return f"rollout {r.get('id')} of {r.get('model')}@{r.get('alias')}"


def where(r: dict[str, Any]) -> str:
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
        head = f"{rollout_name(r)} succeeded: {alias} → {r.get('candidate')} (was {stable})"
    elif state in ("failed", "aborted"):
        head = f"{rollout_name(r)} {state}{reason}: {alias} is back on {stable}"
    else:
        head = f"{rollout_name(r)} is {state} at {where(r)}{reason if state == 'paused' else ''}"
    generation = r.get("generation")
    return head if generation is None else f"{head}; generation {generation}"


def plan_text(plan: dict[str, Any]) -> str:
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
            ("max_p99_ratio", "forward p99 ≤", "{:g} x the stable's"),
            ("max_disagreement", "disagreement ≤", "{:.2%}"),
        )
        if isinstance(guards.get(key), int | float)
    ]
    return ", ".join(shown) or "none"


def _figure(value: Any, fmt: str) -> str | None:
    return fmt.format(value) if isinstance(value, int | float) else None


def _pair(candidate: Any, stable: Any) -> str | None:
    """Forward p99s, the candidate's / the stable version's (the ratio guard's figures)."""
    if candidate is None and stable is None:
        return None
    return f"{_figure(candidate, '{:.2f}') or '—'} / {_figure(stable, '{:.2f}') or '—'}"


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
        _pair(i.get("forward_p99_ms"), i.get("stable_forward_p99_ms")),
        _figure(i.get("disagreement"), "{:.2%}"),
        "; ".join(i.get("breaches") or []) or None,
    ]


def show_rollout(r: dict[str, Any]) -> None:
    """The rollout's fields, then its intervals (and the current window so far)."""
    plan, weights, state = r.get("plan") or {}, r.get("weights") or {}, r.get("state")
    rows: list[list[Any]] = [
        ["state", Text(str(state), style=_STATE_STYLE.get(str(state), ""))],
        ["phase", r.get("phase")],
        ["at", where(r) if state in ACTIVE else "—"],
        ["weights", routes_text([{"version": k, "weight": w} for k, w in weights.items() if w])],
        ["failures", f"{r.get('failures')} of {plan.get('failure_limit')}"],
        ["reason", r.get("reason")],
        ["plan", plan_text(plan)],
        ["guards", _guards_text(plan.get("guards") or {})],
        ["created", f"{short_time(r.get('created_at'))} by {plain(r.get('created_by'))}"],
        ["ended", short_time(r.get("ended_at"))],
    ]
    title = f"{rollout_name(r)}: {r.get('stable')} → {r.get('candidate')}"
    table(["FIELD", "VALUE"], rows, title=title)
    intervals = [_interval_row(i, i.get("verdict")) for i in r.get("intervals") or []]
    if isinstance(r.get("window"), dict):
        intervals.append(_interval_row(r["window"], Text("so far", style="italic")))
    if not intervals:
        say("no interval judged yet")
        return
    columns = "AT|PHASE|STEP|WEIGHT|VERDICT|REQUESTS|ERROR RATE|P99 MS|STABLE P99 MS|FORWARD MS"
    table([*columns.split("|"), "DISAGREEMENT", "BREACHES"], intervals, title="intervals")
