"""deploy/prometheus and deploy/grafana, checked with Prometheus's own promtool and against the
families a real gateway's /metrics exposes: no alert or panel may query a metric or a label
that maas does not have."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from maas.rollout import PHASE_CODES
from support.deploy_files import (
    COMPOSE,
    DASHBOARD,
    GRAFANA_PROVISIONING,
    PROMETHEUS,
    RULES,
    RULES_TEST,
    as_prometheus_would,
    compose,
    dashboard,
    dashboard_exprs,
    label_names,
    load_yaml,
    metric_names,
    mounts,
    rule_exprs,
)
from support.inprocess_gateway import ADMIN, Gateway
from support.model_files import mlp_meta, tiny_mlp, torchscript_bytes
from support.prometheus import parse
from support.waiting import until

# What the issue asks the rules to watch, by the alert that does.
REQUIRED_ALERTS = {
    "version error rate": "MaasVersionErrorRate",
    "p99 latency": "MaasVersionLatencyHigh",
    "queue saturation": "MaasQueueSaturated",
    "worker down": "MaasWorkerDown",
    "version failed to load": "MaasVersionFailed",
    "gateway not converged": "MaasGatewayNotConverged",
    "rollout failed": "MaasRolloutFailed",
}
# What the Rollouts row of the dashboard shows, by family: the labels it keeps apart.
ROLLOUT_PANELS = {
    "maas_rollout_phase": {"model", "alias"},
    "maas_rollout_weight": {"model", "alias", "version"},
    "maas_shadow_requests_total": {"model", "primary", "candidate"},
}
# Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"job", "instance"}


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip(
            "promtool is not on PATH (Debian package prometheus; `make test` installs it where "
            "it runs as root with apt-get)"
        )
    return subprocess.run(
        [path, *args], capture_output=True, text=True, timeout=120, check=False, cwd=cwd
    )


@pytest.mark.parametrize("config", ["prometheus.yml", "kubernetes.yml"])
def test_promtool_accepts_the_scrape_config(config: str) -> None:
    done = promtool("check", "config", str(PROMETHEUS / config))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rule files found" in done.stdout


def test_promtool_accepts_the_rules() -> None:
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr


def test_each_alert_fires_on_its_series_and_not_on_healthy_ones() -> None:
    """tests/deploy/rules_test.yml: promtool's unit tests of the rules."""
    done = promtool("test", "rules", RULES_TEST.name, cwd=RULES_TEST.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_refuses_a_broken_rule(tmp_path: Path) -> None:
    """The checks above can fail."""
    broken = tmp_path / "rules.yml"
    broken.write_text(
        "groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: sum(rate(x[5m])\n"
    )
    assert promtool("check", "rules", str(broken)).returncode != 0


def test_the_alerts_the_issue_names_are_there() -> None:
    alerts = set(rule_exprs())
    missing = {what: name for what, name in REQUIRED_ALERTS.items() if name not in alerts}
    assert not missing
    tested = RULES_TEST.read_text()
    untested = [name for name in alerts if f"alertname: {name}" not in tested]
    assert not untested, f"alerts without a promtool unit test: {untested}"


@pytest.fixture
async def exposed(gateway: Gateway) -> tuple[set[str], set[str]]:
    """Sample names and label names of a gateway serving one aliased, requested version (so
    every per-version, per-alias and per-worker series exists), with a rollout of a second
    version in its shadow phase (so the rollout and shadow series exist too)."""
    await gateway.deploy("mlp", torchscript_bytes(tiny_mlp()), mlp_meta())
    await gateway.deploy("mlp", torchscript_bytes(tiny_mlp()), mlp_meta(), alias=None)
    rollout = {"candidate": 2, "shadow_s": 3600, "steps": [100], "interval_s": 60}
    started = await gateway.client.post("/admin/models/mlp/rollouts", json=rollout, headers=ADMIN)
    assert started.status_code == 201, started.text
    row = {"instances": [[1.0, 2.0, 3.0, 4.0]]}
    assert (await gateway.predict("/v1/models/mlp:predict", row)).status_code == 200
    await until(lambda: gateway.services.shadow.in_flight == 0, "the mirror to end")
    response = await gateway.client.get("/metrics")
    assert response.status_code == 200
    _, samples = parse(response.text)
    names = {name for name, _ in samples}
    labels = {label for _, pairs in samples for label, _ in pairs}
    return names, labels


async def test_every_metric_and_label_queried_is_one_maas_exposes(
    exposed: tuple[set[str], set[str]],
) -> None:
    names, labels = exposed
    queries = {f"rule {k}": v for k, v in rule_exprs().items()}
    queries |= {f"dashboard {k}": v for k, v in dashboard_exprs().items()}
    assert len(queries) > 20
    for where, expr in queries.items():
        expr = as_prometheus_would(expr)
        found = metric_names(expr)
        assert found, f"{where}: no metric found in {expr!r}"
        used = found - {"up"}  # `up` is Prometheus's own, per target
        assert used <= names, f"{where}: {sorted(used - names)} not in /metrics"
        unknown = label_names(expr) - labels - TARGET_LABELS
        assert not unknown, f"{where}: labels {sorted(unknown)} not in /metrics"


def test_the_name_check_sees_metrics_and_labels() -> None:
    """The parser the check above relies on finds names, not functions or keywords."""
    expr = (
        'histogram_quantile(0.99, sum by (model, le) (rate(maas_x_bucket{code=~"5.."}[5m])))'
        " / on (model) group_left () max(maas_y offset 1m)"
    )
    assert metric_names(expr) == {"maas_x_bucket", "maas_y"}
    assert label_names(expr) == {"model", "le", "code"}


def test_grafana_is_provisioned_with_the_dashboard_and_prometheus() -> None:
    board = dashboard()
    assert board["uid"]
    assert board["title"]
    datasources = load_yaml(GRAFANA_PROVISIONING / "datasources" / "prometheus.yaml")
    (source,) = datasources["datasources"]
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == source["uid"], panel["title"]
    doc = compose(COMPOSE)
    grafana = mounts(doc["services"]["grafana"])
    (provider,) = load_yaml(GRAFANA_PROVISIONING / "dashboards" / "maas.yaml")["providers"]
    mounted_dashboards = grafana[provider["options"]["path"]]
    assert (COMPOSE.parent / mounted_dashboards).resolve() == DASHBOARD.parent
    assert (COMPOSE.parent / grafana["/etc/grafana/provisioning"]).resolve() == GRAFANA_PROVISIONING
    # Prometheus in compose scrapes the gateway service by name and loads these rules.
    prometheus = mounts(doc["services"]["prometheus"])
    assert (COMPOSE.parent / prometheus["/etc/prometheus"]).resolve() == PROMETHEUS
    scrape = load_yaml(PROMETHEUS / "prometheus.yml")["scrape_configs"][0]
    assert scrape["dns_sd_configs"][0]["names"] == ["gateway"]
    assert "gateway" in doc["services"]


def test_the_dashboard_shows_rollouts_by_alias_and_shadow_disagreement_by_pair() -> None:
    exprs = [as_prometheus_would(expr) for expr in dashboard_exprs().values()]
    for family, kept in ROLLOUT_PANELS.items():
        found = [expr for expr in exprs if family in metric_names(expr)]
        assert found, f"no panel queries {family}"
        assert any(kept <= label_names(expr) for expr in found), f"{family} not by {kept}"
    shadow = [e for e in exprs if "maas_shadow_requests_total" in metric_names(e)]
    assert any('outcome="disagree"' in e for e in shadow), "no share of disagreeing mirrors"
    # The phase panel names each code as maas.rollout does.
    (phase,) = (
        panel
        for panel in dashboard()["panels"]
        for target in panel.get("targets", [])
        if "maas_rollout_phase" in target["expr"]
    )
    (mapping,) = phase["fieldConfig"]["defaults"]["mappings"]
    named = {int(code): shown["text"] for code, shown in mapping["options"].items()}
    assert named == {code: name for name, code in PHASE_CODES.items()}
