"""deploy/k8s as a cluster would take it: each overlay rendered by `kubectl kustomize`, every
object valid against the Kubernetes schemas (kubernetes-validate, strict: no unknown fields),
and the pieces wired to each other and to maas's real command line and settings."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from kubernetes_validate.utils import ValidationError

from maas.config import Settings
from maas.transport.curve import make_keys
from support.deploy_files import (
    AWS_CREDENTIALS,
    AWS_VARIABLES,
    BUCKET_OVERLAYS,
    K8S,
    OVERLAYS,
    SHARED_VOLUME_OVERLAY,
    by_prefix,
    container,
    container_env,
    container_env_sources,
    find,
    known_variables,
    kustomize,
    parse_maas,
    planned_variables,
    pod_specs,
)

# The newest schema set kubernetes-validate ships; the manifests use only GA APIs.
SCHEMA_VERSION = kubernetes_validate.latest_version()


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, kustomize(K8S / "overlays" / request.param)


@pytest.fixture(scope="module", params=BUCKET_OVERLAYS)
def on_a_bucket(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return kustomize(K8S / "overlays" / request.param)


def assert_valid(docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, SCHEMA_VERSION, strict=True)
        except ValidationError as exc:
            name = f"{doc['kind']}/{doc['metadata']['name']}"
            pytest.fail(f"{name}: {exc.message} at {'.'.join(map(str, exc.path))}")


def test_every_object_is_valid_against_the_kubernetes_schemas(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = rendered
    kinds = sorted({d["kind"] for d in docs})
    assert_valid(docs)
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
                else:
                    assert name in AWS_VARIABLES | {"POD_NAME"}, f"{c['name']}: {name}"
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


def test_every_object_is_in_the_maas_namespace(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    """Including what a component adds after the base set the namespace (kustomize does not)."""
    _, docs = rendered
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "maas", f"{doc['kind']}/{doc['metadata']}"


# Where artifacts live: a bucket (the base), or a ReadWriteMany volume (the shared-volume
# component and overlay).


def read_write_many_claims(docs: list[dict[str, Any]]) -> list[str]:
    """PersistentVolumeClaims, standalone or a StatefulSet's templates, that ask for RWX."""
    claims = [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    for doc in docs:
        if doc["kind"] == "StatefulSet":
            claims += doc["spec"].get("volumeClaimTemplates", [])
    return [c["metadata"]["name"] for c in claims if "ReadWriteMany" in c["spec"]["accessModes"]]


def artifact_volume(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The gateway pod's volume mounted at MAAS_ARTIFACT_DIR."""
    gateway = find(docs, "Deployment", "maas-gateway")
    c = container(gateway, "gateway")
    artifact_dir = container_env(docs, c)["MAAS_ARTIFACT_DIR"]
    (mount,) = (m for m in c["volumeMounts"] if m["mountPath"] == artifact_dir)
    assert not mount.get("readOnly"), "the gateway writes its uploads there"
    volumes = gateway["spec"]["template"]["spec"]["volumes"]
    (volume,) = (v for v in volumes if v["name"] == mount["name"])
    return volume


def test_the_base_needs_no_read_write_many_volume() -> None:
    docs = kustomize(K8S / "base")
    assert read_write_many_claims(docs) == []
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"] == []
    for workload, template in pod_specs(docs):
        claims = [v for v in template["spec"]["volumes"] if "persistentVolumeClaim" in v]
        assert claims == [], workload["metadata"]["name"]


def test_on_a_bucket_the_artifact_dir_is_each_gateways_own_scratch(
    on_a_bucket: list[dict[str, Any]],
) -> None:
    assert read_write_many_claims(on_a_bucket) == []
    volume = artifact_volume(on_a_bucket)
    assert set(volume) == {"name", "emptyDir"}, volume


def test_gateways_and_workers_get_the_bucket_from_the_config_and_the_secret(
    on_a_bucket: list[dict[str, Any]],
) -> None:
    """Both read the same bucket with the same settings: MAAS_ARTIFACT_URL and the region from
    a ConfigMap, the key pair from a Secret (never a ConfigMap or a literal in the pod)."""
    docs = on_a_bucket
    seen = {}
    for kind, name, container_name in (
        ("Deployment", "maas-gateway", "gateway"),
        ("StatefulSet", "maas-worker", "worker"),
    ):
        sources = container_env_sources(docs, container(find(docs, kind, name), container_name))
        bucket = {
            k: v for k, v in sources.items() if k == "MAAS_ARTIFACT_URL" or k in AWS_VARIABLES
        }
        required = {"MAAS_ARTIFACT_URL", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
        assert required <= set(bucket), container_name
        for variable, (_, source_kind, _) in bucket.items():
            expected = "Secret" if variable in AWS_CREDENTIALS else "ConfigMap"
            assert source_kind == expected, f"{container_name}: {variable} from a {source_kind}"
        seen[container_name] = {k: v for k, (v, _, _) in bucket.items()}
    assert seen["gateway"] == seen["worker"]
    for config in (d for d in docs if d["kind"] == "ConfigMap"):
        assert not set(config["data"]) & AWS_CREDENTIALS, config["metadata"]["name"]
    url = seen["gateway"]["MAAS_ARTIFACT_URL"]
    assert Settings(artifact_url=url).artifact_url == url  # maas's own check of the URL
    # The secret is the maas-s3 one a deployment replaces, its values placeholders here.
    secret = by_prefix(docs, "Secret", "maas-s3")
    assert secret["data"].keys() == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert "CHANGE-ME" in seen["gateway"]["AWS_SECRET_ACCESS_KEY"]
    # The migration only touches the registry: no bucket, no credentials.
    job = find(docs, "Job", "maas-migrate")
    assert not set(container_env(docs, job["spec"]["template"]["spec"]["containers"][0])) & (
        AWS_VARIABLES | {"MAAS_ARTIFACT_URL"}
    )


def test_the_shared_volume_overlay_brings_back_the_read_write_many_volume() -> None:
    docs = kustomize(K8S / "overlays" / SHARED_VOLUME_OVERLAY)
    assert read_write_many_claims(docs) == ["maas-artifacts"]
    volume = artifact_volume(docs)
    assert set(volume) == {"name", "persistentVolumeClaim"}, volume
    assert volume["persistentVolumeClaim"]["claimName"] == "maas-artifacts"
    # No bucket anywhere: without MAAS_ARTIFACT_URL maas keeps artifacts in MAAS_ARTIFACT_DIR,
    # and workers fetch them from a gateway.
    for _, template in pod_specs(docs):
        for c in template["spec"]["containers"]:
            env = container_env(docs, c)
            assert not set(env) & (AWS_VARIABLES | {"MAAS_ARTIFACT_URL"}), c["name"]
    names = [d["metadata"]["name"] for d in docs if d["kind"] in ("ConfigMap", "Secret")]
    assert not [n for n in names if n.startswith(("maas-artifact-store", "maas-s3"))], names
    # Otherwise the CPU overlay as it is.
    cpu = kustomize(K8S / "overlays" / "cpu")
    assert {(d["kind"], d["metadata"]["name"]) for d in docs} - {
        (d["kind"], d["metadata"]["name"]) for d in cpu
    } == {("PersistentVolumeClaim", "maas-artifacts")}


SITE_OVERLAY = """\
# deploy/README.md's own overlay, in short: the bucket on a MinIO of the cluster's, the
# credentials in a Secret maas-s3 made outside kustomize.
resources: [{base}]
configMapGenerator:
  - name: maas-artifact-store
    behavior: merge
    literals:
      - MAAS_ARTIFACT_URL=s3://models/maas
      - AWS_REGION=us-east-1
      - AWS_ENDPOINT_URL=http://minio.storage.svc:9000
patches:
  - patch: |-
      $patch: delete
      apiVersion: v1
      kind: Secret
      metadata:
        name: maas-s3
"""


@pytest.mark.parametrize("overlay", BUCKET_OVERLAYS)
def test_a_deployment_sets_its_bucket_and_brings_its_own_secret(
    overlay: str, tmp_path: Path
) -> None:
    """What deploy/README.md tells an operator to do: the endpoint added to the ConfigMap, the
    generated placeholder Secret deleted so that the pods read a maas-s3 made by other means."""
    site = tmp_path / "site"
    site.mkdir()
    base = os.path.relpath(K8S / "overlays" / overlay, site)
    (site / "kustomization.yaml").write_text(SITE_OVERLAY.format(base=base))
    docs = kustomize(site)
    assert_valid(docs)
    assert not [d for d in docs if d["kind"] == "Secret" and "maas-s3" in d["metadata"]["name"]]
    for kind, name, container_name in (
        ("Deployment", "maas-gateway", "gateway"),
        ("StatefulSet", "maas-worker", "worker"),
    ):
        c = container(find(docs, kind, name), container_name)
        assert {"secretRef": {"name": "maas-s3"}} in c["envFrom"], container_name
        refs = [s["configMapRef"]["name"] for s in c["envFrom"] if "configMapRef" in s]
        (store,) = (find(docs, "ConfigMap", r) for r in refs if r.startswith("maas-artifact-store"))
        assert store["data"] == {
            "MAAS_ARTIFACT_URL": "s3://models/maas",
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": "http://minio.storage.svc:9000",
        }
