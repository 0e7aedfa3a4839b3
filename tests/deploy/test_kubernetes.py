"""deploy/k8s as a cluster would take it: each overlay rendered by `kubectl kustomize`, every
object valid against the Kubernetes schemas (kubernetes-validate, strict: no unknown fields),
and the pieces wired to each other and to maas's real command line and settings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from deploy_files import (
    K8S,
    OVERLAYS,
    container,
    container_env,
    find,
    known_variables,
    kustomize,
    parse_maas,
    planned_variables,
    pod_specs,
)
from kubernetes_validate.utils import ValidationError

from maas.transport.curve import make_keys

# The newest schema set kubernetes-validate ships; the manifests use only GA APIs.
SCHEMA_VERSION = kubernetes_validate.latest_version()


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, kustomize(K8S / "overlays" / request.param)


def test_every_object_is_valid_against_the_kubernetes_schemas(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = rendered
    kinds = sorted({d["kind"] for d in docs})
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, SCHEMA_VERSION, strict=True)
        except ValidationError as exc:
            name = f"{doc['kind']}/{doc['metadata']['name']}"
            pytest.fail(f"{name}: {exc.message} at {'.'.join(map(str, exc.path))}")
    for kind in (
        "Deployment",
        "StatefulSet",
        "Job",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ConfigMap",
        "Secret",
    ):
        assert kind in kinds, f"no {kind} in the rendered overlay"


def test_a_schema_violation_is_caught() -> None:
    """The check above can fail: a field in the wrong place is refused."""
    bad = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "x"},
        "spec": {"ports": [{"port": "eighty"}], "nosuchfield": 1},
    }
    with pytest.raises(ValidationError):
        kubernetes_validate.validate(bad, SCHEMA_VERSION, strict=True)


def test_every_maas_command_and_variable_is_real(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = rendered
    known, planned = known_variables(), planned_variables()
    seen = []
    for _, template in pod_specs(docs):
        for c in template["spec"]["containers"]:
            env = container_env(docs, c)
            argv = [re.sub(r"\$\((\w+)\)", lambda m: f"<{m[1]}>", a) for a in c["args"]]
            seen.append(argv[0])
            parse_maas(argv)  # raises on an unknown command or option
            for name in env:
                if name.startswith("MAAS_"):
                    assert name in known | planned, f"{c['name']}: {name} is no setting"
            # The pod-name reference resolves: POD_NAME comes from the downward API.
            if any("$(POD_NAME)" in a for a in c["args"]):
                assert {
                    "name": "POD_NAME",
                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                } in c["env"]
    assert sorted(seen) == ["db", "serve", "worker"]


def test_gateways_are_probed_limited_and_not_root(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = rendered
    gateway = find(docs, "Deployment", "maas-gateway")
    c = container(gateway, "gateway")
    assert c["args"][:1] == ["serve"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for workload, template in pod_specs(docs):
        spec = template["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, workload["metadata"]["name"]
        for each in spec["containers"]:
            assert {"cpu", "memory"} <= set(each["resources"]["requests"]), each["name"]
            assert "memory" in each["resources"]["limits"], each["name"]
    annotations = gateway["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(c["ports"][0]["containerPort"])


def test_the_autoscaler_budget_and_services_select_the_gateways(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = rendered
    gateway = find(docs, "Deployment", "maas-gateway")
    pod_labels = gateway["spec"]["template"]["metadata"]["labels"]
    hpa = find(docs, "HorizontalPodAutoscaler", "maas-gateway")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "maas-gateway",
    }
    pdb = find(docs, "PodDisruptionBudget", "maas-gateway")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    for name in ("maas-gateway", "maas-gateway-pods"):
        service = find(docs, "Service", name)
        assert service["spec"]["selector"].items() <= pod_labels.items(), name
    assert find(docs, "Service", "maas-gateway-pods")["spec"]["clusterIP"] == "None"


def test_workers_announce_the_address_gateways_reach_them_on(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    """Each worker pod announces itself in the gateways' registry under its DNS name behind
    the headless Service, on the port it listens on; gateways list no workers of their own."""
    _, docs = rendered
    workers = find(docs, "StatefulSet", "maas-worker")
    service = find(docs, "Service", workers["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None"
    worker = container(workers, "worker")
    args = worker["args"]
    port = args[args.index("--listen") + 1].rsplit(":", 1)[1]
    assert (
        args[args.index("--advertise") + 1] == f"$(POD_NAME).{service['metadata']['name']}:{port}"
    )
    assert {p["containerPort"] for p in worker["ports"]} == {int(port)}
    gateway = find(docs, "Deployment", "maas-gateway")
    gateway_env = container_env(docs, container(gateway, "gateway"))
    worker_env = container_env(docs, worker)
    assert "MAAS_WORKER_ENDPOINTS" not in gateway_env
    assert container(gateway, "gateway")["args"] == ["serve", "--workers", "0"]
    assert worker_env["MAAS_DATABASE_URL"] == gateway_env["MAAS_DATABASE_URL"]
    # Both sides mount the same key Secret where MAAS_WORKER_KEYS_DIR points.
    for workload, name in ((workers, "worker"), (gateway, "gateway")):
        c = container(workload, name)
        keys_dir = container_env(docs, c)["MAAS_WORKER_KEYS_DIR"]
        (mount,) = (m for m in c["volumeMounts"] if m["mountPath"] == keys_dir)
        volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
        assert volumes[mount["name"]]["secret"]["secretName"].startswith("maas-worker-keys")


def test_the_worker_key_secret_holds_the_files_maas_keys_writes(
    rendered: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    _, docs = rendered
    (secret,) = (
        d for d in docs if d["kind"] == "Secret" and "worker-keys" in d["metadata"]["name"]
    )
    assert set(secret["data"]) == {path.name for path in make_keys(tmp_path)}


def test_workers_keep_their_own_artifact_cache_and_no_shared_store(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = rendered
    workers = find(docs, "StatefulSet", "maas-worker")
    c = container(workers, "worker")
    env = container_env(docs, c)
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounts[env["MAAS_WORKER_CACHE_DIR"]] in {
        t["metadata"]["name"] for t in workers["spec"]["volumeClaimTemplates"]
    }
    claims = [
        v for v in workers["spec"]["template"]["spec"]["volumes"] if "persistentVolumeClaim" in v
    ]
    assert claims == []


def test_the_gpu_overlay_puts_workers_on_gpu_nodes(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    overlay, docs = rendered
    workers = find(docs, "StatefulSet", "maas-worker")
    c = container(workers, "worker")
    spec = workers["spec"]["template"]["spec"]
    if overlay == "gpu":
        assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert spec["nodeSelector"]
        assert c["args"][c["args"].index("--device") + 1] == "cuda:0"
        assert c["image"].endswith(":cuda")
    else:
        assert "nvidia.com/gpu" not in c["resources"]["limits"]
        assert "--device" not in c["args"]
    gateway = container(find(docs, "Deployment", "maas-gateway"), "gateway")
    assert gateway["image"].endswith(":cpu"), "gateways never import torch: the CPU image"


def test_the_migration_job_upgrades_the_registry(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = rendered
    job = find(docs, "Job", "maas-migrate")
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert c["args"][:2] == ["db", "upgrade"]
    assert "MAAS_DATABASE_URL" in container_env(docs, c)
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("Never", "OnFailure")
