"""`maas models shadow`: an alias's shadow on a running server, through the admin API.
`NAME@V --percent P` mirrors P percent of the alias's requests to version V (the client's
answers still come from the alias's own targets); `NAME --off` stops it. A change is answered
in one sentence, as the other alias commands answer theirs. `shadow_text` is how every alias
listing shows a shadow."""

from __future__ import annotations

from typing import Any

import click

from maas.cli.aliases import ALIAS_OPTION, served_text
from maas.cli.client import Client, path
from maas.cli.output import emit_json, json_option, say, usage_error
from maas.cli.refs import parse_ref


def shadow_text(shadow: Any) -> str:
    """`5 (10%)`; `—` for none."""
    if not isinstance(shadow, dict):
        return "—"
    return f"{shadow.get('version')} ({shadow.get('percent')}%)"


def _pair(shadow: Any) -> tuple[Any, Any] | None:
    return None if not isinstance(shadow, dict) else (shadow.get("version"), shadow.get("percent"))


def shadow_sentence(answer: dict[str, Any], before: Any) -> str:
    """`production of digits mirrors 10% of its requests to 5 (was none); generation 17, ...`."""
    alias, model, shadow = answer.get("alias"), answer.get("model"), answer.get("shadow")
    if _pair(before) == _pair(shadow):
        head = (
            f"{alias} of {model} has no shadow; nothing changed"
            if shadow is None
            else f"{alias} of {model} already mirrors {shadow_text(shadow)}; nothing changed"
        )
    elif shadow is None:
        head = f"{alias} of {model} no longer mirrors its requests (was {shadow_text(before)})"
    else:
        was = "was none" if before is None else f"was {shadow_text(before)}"
        head = (
            f"{alias} of {model} mirrors {shadow.get('percent')}% of its requests to "
            f"{shadow.get('version')} ({was})"
        )
    return f"{head}; {served_text(answer)}"


@click.command("shadow")
@click.argument("ref")
@click.option(
    "--percent",
    type=click.IntRange(1, 100),
    default=None,
    metavar="P",
    help="Percent of ALIAS's requests also run on NAME@V (1-100).",
)
@click.option("--off", is_flag=True, help="Stop mirroring ALIAS's requests (give NAME).")
@ALIAS_OPTION
@json_option
def models_shadow(ref: str, percent: int | None, off: bool, alias: str, as_json: bool) -> None:
    """Mirror P percent of ALIAS's requests to NAME@V, or stop with NAME --off. The shadow's
    answers never reach the client; they are compared with ALIAS's (maas_shadow_* in
    /metrics)."""
    target = parse_ref(ref)
    if target.alias is not None:
        raise usage_error(
            f"expected NAME@VERSION (or NAME with --off), got {ref!r}; name the alias with --alias"
        )
    if off:
        if percent is not None or target.version is not None:
            raise usage_error(f"--off takes NAME alone (maas models shadow {target.name} --off)")
        body: dict[str, Any] = {"shadow": None}
    else:
        if target.version is None:
            raise usage_error(
                f"give NAME@VERSION and --percent P to set a shadow, or --off to remove it "
                f"(maas models shadow {target.name}@V --percent 10)"
            )
        if percent is None:
            raise usage_error(f"give --percent P (1-100) for {target}")
        body = {"shadow": {"version": target.version, "percent": percent}}
    url = path("models", target.name, "aliases", alias)
    with Client() as client:
        found = client.find(url)
        answer = client.call("PUT", url, json=body)
    if as_json:
        emit_json(answer)
    else:
        say(shadow_sentence(answer, None if found is None else found.get("shadow")))
