"""Reading deploy/ the way its tools do: kustomize's output, compose files, the Dockerfile, the
Prometheus rules and the Grafana dashboard, and the `maas` commands and settings in them."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from maas.cli import main as maas_cli
from maas.config import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
# Artifacts on a bucket (the base's way), and on a ReadWriteMany volume (the component).
BUCKET_OVERLAYS = ("cpu", "gpu")
SHARED_VOLUME_OVERLAY = "shared-volume"
OVERLAYS = (*BUCKET_OVERLAYS, SHARED_VOLUME_OVERLAY)
COMPOSE = DEPLOY / "compose.yaml"
COMPOSE_GPU = DEPLOY / "compose.gpu.yaml"
PROMETHEUS = DEPLOY / "prometheus"
RULES = PROMETHEUS / "rules.yml"
RULES_TEST = ROOT / "tests" / "deploy" / "rules_test.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "maas.json"
GRAFANA_PROVISIONING = DEPLOY / "grafana" / "provisioning"
SETTINGS_DOC = ROOT / "docs" / "settings.md"

# The standard AWS variables maas's object storage reads (maas.store.s3, through obstore): the
# only non-MAAS_* names deploy/ may give a maas container, besides POD_NAME.
AWS_VARIABLES = {
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
}
# Where the bucket's credentials must come from: a Secret, never a ConfigMap or a literal.
AWS_CREDENTIALS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


# Kubernetes.


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.skip("kubectl is not on PATH: the kustomize overlays cannot be rendered here")
    return path


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize DIR`, as documents (DIR may be outside the repository: an overlay a
    test writes on top of deploy/k8s)."""
    done = subprocess.run(
        [kubectl(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} in the rendered overlay"
    return found[0]


def by_prefix(docs: list[dict[str, Any]], kind: str, prefix: str) -> dict[str, Any]:
    """A generated ConfigMap or Secret, whose name has kustomize's hash suffix."""
    found = [
        d for d in docs if d["kind"] == kind and d["metadata"]["name"].startswith(prefix + "-")
    ]
    assert len(found) == 1, f"{kind}/{prefix}-*: {len(found)} in the rendered overlay"
    return found[0]


def pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, pod template) of every Deployment, StatefulSet and Job."""
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield doc, doc["spec"]["template"]


def container(workload: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = (c for c in workload["spec"]["template"]["spec"]["containers"] if c["name"] == name)
    return found


def object_data(obj: dict[str, Any]) -> dict[str, str]:
    """A rendered ConfigMap's or Secret's keys and values (a Secret's data decoded)."""
    import base64

    if obj["kind"] == "ConfigMap":
        return dict(obj.get("data") or {})
    data = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
    return data | dict(obj.get("stringData") or {})


def container_env_sources(
    docs: list[dict[str, Any]], c: dict[str, Any]
) -> dict[str, tuple[str, str, str]]:
    """A container's environment as the kubelet gives it: envFrom sources in order, then env,
    each later one winning. name -> (value, kind of its source, name of that object): kind is
    ConfigMap, Secret, or "value" / "fieldRef" for env entries of their own. A reference to an
    object the overlay does not render fails, as the pod would (a kubelet leaves it unstarted)."""
    env: dict[str, tuple[str, str, str]] = {}
    for source in c.get("envFrom", []):
        ((ref_kind, ref),) = source.items()
        kind = {"configMapRef": "ConfigMap", "secretRef": "Secret"}[ref_kind]
        values = object_data(find(docs, kind, ref["name"]))
        env.update({k: (v, kind, ref["name"]) for k, v in values.items()})
    for var in c.get("env", []):
        if "value" in var:
            env[var["name"]] = (var["value"], "value", "")
            continue
        ((ref_kind, ref),) = var["valueFrom"].items()
        if ref_kind == "fieldRef":
            env[var["name"]] = (f"<{ref['fieldPath']}>", "fieldRef", "")
            continue
        kind = {"configMapKeyRef": "ConfigMap", "secretKeyRef": "Secret"}[ref_kind]
        env[var["name"]] = (
            object_data(find(docs, kind, ref["name"]))[ref["key"]],
            kind,
            ref["name"],
        )
    return env


def container_env(docs: list[dict[str, Any]], c: dict[str, Any]) -> dict[str, str]:
    """A container's environment, name -> value (container_env_sources without the sources)."""
    return {name: value for name, (value, _, _) in container_env_sources(docs, c).items()}


# Compose.


def compose(*paths: Path) -> dict[str, Any]:
    """compose files merged the way `docker compose -f A -f B` merges services: mappings key
    by key, everything else (command, lists) replaced."""

    def merge(base: Any, over: Any) -> Any:
        if isinstance(base, dict) and isinstance(over, dict):
            out = dict(base)
            for key, value in over.items():
                out[key] = merge(base[key], value) if key in base else value
            return out
        return over

    merged: dict[str, Any] = {}
    for path in paths:
        merged = merge(merged, load_yaml(path))
    return merged


def maas_services(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run the maas image (they are built from deploy/Dockerfile)."""
    return {name: svc for name, svc in doc["services"].items() if "build" in svc}


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """target -> source of a service's short-syntax volumes ("" for an anonymous volume: one of
    the container's own)."""
    out = {}
    for entry in service.get("volumes", []):
        parts = entry.split(":")
        if len(parts) == 1:
            out[parts[0]] = ""
        else:
            out[parts[1]] = parts[0]
    return out


def named_volume_mounts(service: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """target -> (named volume, read-only) of a service's short-syntax mounts of named volumes:
    not bind mounts (a path: `/`, `.` or `~` first), not anonymous volumes (no source)."""
    out = {}
    for entry in service.get("volumes", []):
        source, *rest = entry.split(":")
        if rest and not source.startswith(("/", ".", "~")):
            target, *options = rest
            out[target] = (source, "ro" in ",".join(options).split(","))
    return out


# The maas command line.


def maas_argvs_in_shell(script: str) -> list[list[str]]:
    """`maas ...` invocations in a `sh -c` script (`a || exec maas x`, `a && maas y`)."""
    found = []
    for part in re.split(r"\|\||&&|;", script):
        words = shlex.split(part)
        if words[:1] == ["exec"]:
            words = words[1:]
        if words[:1] == ["maas"]:
            found.append(words[1:])
    return found


def planned_text() -> str:
    """docs/settings.md's section of settings and commands planned but not built yet."""
    text = SETTINGS_DOC.read_text()
    start = text.find("## Planned, not yet working")
    if start < 0:
        return ""  # nothing is planned: every setting and command listed is built
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def parse_maas(argv: list[str]) -> click.Context | None:
    """Parse `maas ARGV` with the real CLI, up to the command that would run (nothing runs).
    A usage error (unknown command or option, a bad type) raises click.UsageError. Returns
    None for a command that does not exist yet but docs/settings.md lists as planned."""
    command: click.Command = maas_cli
    ctx = click.Context(maas_cli, info_name="maas")
    path = ["maas"]
    args = list(argv)
    while isinstance(command, click.Group):
        name = args.pop(0)
        sub = command.get_command(ctx, name)
        path.append(name)
        if sub is None:
            if f"`{' '.join(path)}`" in planned_text():
                return None
            raise click.UsageError(f"no command {' '.join(path)!r}")
        command, ctx = sub, click.Context(sub, info_name=name, parent=ctx)
    return command.make_context(path[-1], args, parent=ctx.parent)


def planned_variables() -> set[str]:
    """MAAS_* names in docs/settings.md's planned table: their names are part of the interface,
    their values are not read yet (or not in this form)."""
    return set(re.findall(r"`(MAAS_[A-Z0-9_]+)`", planned_text()))


def known_variables() -> set[str]:
    return {"MAAS_" + name.upper() for name in Settings.model_fields} | {"MAAS_URL", "MAAS_API_KEY"}


# PromQL in the rules and the dashboard.

_NOT_METRICS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "and",
    "or",
    "unless",
}


def rule_exprs() -> dict[str, str]:
    return {
        rule.get("alert") or rule["record"]: rule["expr"]
        for group in load_yaml(RULES)["groups"]
        for rule in group["rules"]
    }


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def dashboard_exprs() -> dict[str, str]:
    """Every PromQL expression of the dashboard: panel targets and template variables'
    `label_values(EXPR, label)` (as `EXPR`, with `label` kept as a grouping)."""
    out = {}
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            out[f"{panel['title']} / {target['refId']}"] = target["expr"]
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else ""
        match = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query)
        assert match, f"template variable {variable['name']}: {query!r}"
        out[f"${variable['name']}"] = f"count by ({match[2]}) ({match[1]})"
    return out


def as_prometheus_would(expr: str) -> str:
    """Grafana's template variables as a query reaches Prometheus."""
    expr = expr.replace("$__rate_interval", "1m").replace("$__interval", "15s")
    return re.sub(r"\$\{?(\w+)\}?", ".*", expr)


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects: identifiers not followed by `(` (functions),
    not label names (inside `{...}` or a grouping), not keywords or durations."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values and strings
    expr = re.sub(r"\{[^}]*\}", "{}", expr)  # matchers
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", expr):
        name = match[1]
        if name in _NOT_METRICS or re.fullmatch(r"\d+[smhdwy]", name):
            continue
        names.add(name)
    return names


def label_names(expr: str) -> set[str]:
    """The label names an expression matches on or groups by."""
    expr_no_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    names = set()
    for matchers in re.findall(r"\{([^}]*)\}", expr_no_strings):
        names |= set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers))
    for grouping in re.findall(
        r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", expr_no_strings
    ):
        names |= {name.strip() for name in grouping.split(",") if name.strip()}
    return names
