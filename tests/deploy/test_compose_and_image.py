"""deploy/compose*.yaml and deploy/Dockerfile read the way docker would read them (no container
engine runs here): every `maas` command parses with the real CLI, every setting exists, the
services are wired to each other, and the image installs exactly what the Makefile installs."""

from __future__ import annotations

import re
import shlex
import subprocess
import tomllib

import pytest

from maas.config import Settings
from support.deploy_files import (
    AWS_VARIABLES,
    COMPOSE,
    COMPOSE_GPU,
    DEPLOY,
    ROOT,
    compose,
    compose_env,
    known_variables,
    maas_argvs_in_shell,
    maas_services,
    named_volume_mounts,
    parse_maas,
    planned_variables,
)

DOCKERFILE = DEPLOY / "Dockerfile"
MAKEFILE = ROOT / "Makefile"


@pytest.fixture(params=["cpu", "gpu"])
def stack(request: pytest.FixtureRequest) -> dict:  # type: ignore[type-arg]
    files = (COMPOSE,) if request.param == "cpu" else (COMPOSE, COMPOSE_GPU)
    return compose(*files)


def service_argvs(service: dict) -> list[list[str]]:  # type: ignore[type-arg]
    """The `maas ...` argument lists a service runs (the image's entry point is `maas`)."""
    command = service.get("command", ["serve"])
    if "entrypoint" in service:
        assert service["entrypoint"] == ["/bin/sh", "-c"]
        return [argv for script in command for argv in maas_argvs_in_shell(script)]
    return [command]


def test_every_maas_command_and_variable_is_real(stack: dict) -> None:  # type: ignore[type-arg]
    known = known_variables() | planned_variables() | AWS_VARIABLES
    commands = []
    for name, service in maas_services(stack).items():
        argvs = service_argvs(service)
        assert argvs, f"{name} runs no maas command"
        for argv in argvs:
            parse_maas(argv)
            commands.append(argv[0])
        for variable in compose_env(service):
            assert variable in known, f"{name}: {variable} is no maas or AWS setting"
    assert {"db", "keys", "serve", "worker"} <= set(commands)


def test_a_wrong_command_would_be_caught() -> None:
    import click

    with pytest.raises(click.UsageError):
        parse_maas(["worker", "--listne", "0.0.0.0:5555"])
    with pytest.raises(click.UsageError):
        parse_maas(["serve", "--workers", "many"])


def test_gateways_reach_every_worker_with_the_shared_keys(stack: dict) -> None:  # type: ignore[type-arg]
    services = stack["services"]
    gateway = compose_env(services["gateway"])
    workers = {
        name: svc for name, svc in maas_services(stack).items() if svc["command"][0] == "worker"
    }
    listed = gateway["MAAS_WORKER_ENDPOINTS"].split(",")
    expected = []
    for name, svc in workers.items():
        port = svc["command"][svc["command"].index("--listen") + 1].rsplit(":", 1)[1]
        expected.append(f"tcp://{name}:{port}")
        assert str(port) in [str(p) for p in svc.get("expose", [])], name
        env = compose_env(svc)
        assert env["MAAS_WORKER_KEYS_DIR"] == gateway["MAAS_WORKER_KEYS_DIR"]
        assert "MAAS_DATABASE_URL" not in env, f"{name}: a worker needs no database"
        volumes = [v.split(":")[0] for v in svc["volumes"]]
        assert "worker-keys" in volumes
        assert "artifacts" not in volumes, f"{name}: workers fetch artifacts, no shared store"
    assert sorted(listed) == sorted(expected)


def services_running(stack: dict, command: str) -> dict[str, dict]:  # type: ignore[type-arg]
    """The maas services whose command is `maas COMMAND ...` (serve: the gateways)."""
    return {
        name: svc
        for name, svc in maas_services(stack).items()
        if svc.get("command", ["serve"])[0] == command
    }


def test_minio_holds_the_artifacts_in_a_bucket_made_before_maas_starts(stack: dict) -> None:  # type: ignore[type-arg]
    services = stack["services"]
    minio = services["minio"]
    image, tag = minio["image"].rsplit(":", 1)
    assert image.endswith("minio/minio")
    assert tag.startswith("RELEASE."), "a pinned release, not latest"
    data = minio["command"][minio["command"].index("server") + 1]
    assert named_volume_mounts(minio)[data] == ("minio-data", False), "data in a volume"
    assert minio["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL")
    assert not minio["healthcheck"].get("disable")
    # The one-shot bucket step: after MinIO is healthy, with MinIO's own credentials.
    bucket_step = services["minio-bucket"]
    assert bucket_step["image"].rsplit(":", 1)[1].startswith("RELEASE.")
    assert bucket_step["depends_on"]["minio"] == {"condition": "service_healthy"}
    assert bucket_step["restart"] == "no"
    script = " ".join(bucket_step["command"])
    step_env = compose_env(bucket_step)
    root = compose_env(minio)
    for variable in ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"):
        assert step_env[variable] == root[variable]
        # `$$`: the shell reads it from the environment, compose does not put it in the command
        assert f"$${variable}" in script
    alias = re.search(r"mc alias set (\S+) (\S+) ", script)
    assert alias
    # Every gateway and worker: the bucket that step makes, on that MinIO, as its root user.
    made = re.findall(rf"mc mb --ignore-existing {alias[1]}/(\S+)", script)
    assert len(made) == 1
    readers = services_running(stack, "serve") | services_running(stack, "worker")
    assert len(readers) == 3  # the gateway service (2 replicas) and 2 workers
    for name, svc in readers.items():
        env = compose_env(svc)
        assert Settings(artifact_url=env["MAAS_ARTIFACT_URL"]).artifact_url
        assert env["MAAS_ARTIFACT_URL"].removeprefix("s3://").split("/")[0] == made[0], name
        assert env["AWS_ENDPOINT_URL"] == alias[2] == "http://minio:9000", name
        assert env["AWS_REGION"]
        assert env["AWS_ACCESS_KEY_ID"] == root["MINIO_ROOT_USER"], name
        assert env["AWS_SECRET_ACCESS_KEY"] == root["MINIO_ROOT_PASSWORD"], name
        assert svc["depends_on"]["minio-bucket"] == {
            "condition": "service_completed_successfully"
        }, name
    assert len({compose_env(svc)["MAAS_ARTIFACT_URL"] for svc in readers.values()}) == 1


def test_dev_credentials_are_defaults_an_env_file_overrides() -> None:
    """MinIO's key pair has public defaults (dev only) that deploy/.env may set, and the
    .env.example says so."""
    text = COMPOSE.read_text()
    for variable in ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"):
        assert re.search(rf"\$\{{{variable}:-[^}}]+\}}", text), variable
        assert f"${{{variable}:?" not in text
    assert "DEV ONLY" in text
    example = (DEPLOY / ".env.example").read_text()
    assert re.search(r"^# ?MINIO_ROOT_PASSWORD=", example, re.MULTILINE)


def test_gateways_share_no_artifact_volume(stack: dict) -> None:  # type: ignore[type-arg]
    """With the bucket, a gateway's MAAS_ARTIFACT_DIR is scratch of its own: no named volume
    there (a service's replicas would all mount it) and none a gateway writes to at all."""
    gateways = services_running(stack, "serve")
    assert gateways
    for name, svc in gateways.items():
        artifact_dir = compose_env(svc)["MAAS_ARTIFACT_DIR"]
        volumes = named_volume_mounts(svc)
        assert artifact_dir not in volumes, name
        assert all(read_only for _, read_only in volumes.values()), f"{name}: {volumes}"
    assert "artifacts" not in (stack.get("volumes") or {})


def test_gpu_workers_ask_for_a_gpu_and_use_it() -> None:
    stack = compose(COMPOSE, COMPOSE_GPU)
    for name in ("worker-1", "worker-2"):
        svc = stack["services"][name]
        (device,) = svc["deploy"]["resources"]["reservations"]["devices"]
        assert "gpu" in device["capabilities"]
        assert svc["command"][svc["command"].index("--device") + 1].startswith("cuda")
        assert svc["build"]["args"]["TORCH_INDEX"].startswith("https://download.pytorch.org/whl/cu")
    assert "build" not in compose(COMPOSE_GPU)["services"].get("gateway", {})


def test_every_required_variable_is_in_the_env_example() -> None:
    text = COMPOSE.read_text() + COMPOSE_GPU.read_text()
    required = set(re.findall(r"\$\{(\w+):\?", text))
    example = (DEPLOY / ".env.example").read_text()
    given = set(re.findall(r"^(\w+)=", example, re.MULTILINE))
    assert required
    assert required <= given, f"not in deploy/.env.example: {sorted(required - given)}"


# The image.


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines, current = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        if raw.lstrip().startswith("#") or not raw.strip():
            continue
        current += raw.rstrip("\\").strip() + " "
        if not raw.endswith("\\"):
            lines.append(current.strip())
            current = ""
    return [(line.split(" ", 1)[0].upper(), line.split(" ", 1)[1]) for line in lines]


def makefile_variable(name: str) -> str:
    match = re.search(rf"^{name}\s*\?=\s*(.+)$", MAKEFILE.read_text(), re.MULTILINE)
    assert match, name
    return match[1].strip()


def pip_installs(commands: list[str], variables: dict[str, str]) -> list[list[str]]:
    """What each `python -m pip install` installs, variables expanded and quiet/index flags and
    the editable/dev difference dropped: the packages, in order."""
    found = []
    for command in commands:
        for name, value in variables.items():
            command = re.sub(rf"\$\(?\{{?{name}\}}?\)?", value, command)
        words = shlex.split(command)
        if "pip" not in words or "install" not in words:
            continue
        args = words[words.index("install") + 1 :]
        packages, skip = [], False
        for word in args:
            if skip:
                skip = False
            elif word in ("--index-url", "--extra-index-url"):
                skip = True
            elif word in ("-q", "--quiet") or word == "-e":
                continue
            else:
                packages.append(re.sub(r"\[dev\]$", "", word))
        found.append(packages)
    return found


def test_the_image_installs_what_the_makefile_installs() -> None:
    makefile = MAKEFILE.read_text()
    recipe = makefile.split("$(STAMP): pyproject.toml\n", 1)[1].split("\n\n", 1)[0]
    make_steps = pip_installs(
        [line.strip() for line in recipe.splitlines()],
        {"TORCH_SPEC": makefile_variable("TORCH_SPEC")},
    )
    instructions = dockerfile_instructions()
    args = dict(
        value.split("=", 1) for kind, value in instructions if kind == "ARG" and "=" in value
    )
    docker_steps = pip_installs([value for kind, value in instructions if kind == "RUN"], args)
    assert args["TORCH_SPEC"] == makefile_variable("TORCH_SPEC")
    assert make_steps == [["--upgrade", "pip"], [makefile_variable("TORCH_SPEC")], ["."]]
    assert docker_steps == make_steps


def test_the_image_runs_maas_serve_as_a_user_with_health_checks() -> None:
    instructions = dockerfile_instructions()
    final_stage = instructions[max(i for i, (k, _) in enumerate(instructions) if k == "FROM") :]
    (user,) = [value for kind, value in final_stage if kind == "USER"]
    assert user.split(":")[0] not in ("0", "root")
    assert ("ENTRYPOINT", '["maas"]') in final_stage
    assert ("CMD", '["serve"]') in final_stage
    (health,) = [value for kind, value in final_stage if kind == "HEALTHCHECK"]
    assert "/healthz" in health
    env = " ".join(value for kind, value in final_stage if kind == "ENV")
    known = known_variables()
    for variable in re.findall(r"\b(MAAS_\w+)=", env):
        assert variable in known, variable
    base = next(value for kind, value in instructions if kind == "ARG" and "BASE_IMAGE" in value)
    python = re.search(r"python:(\d+)\.(\d+)", base)
    assert python
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = tuple(int(p) for p in re.search(r">=\s*(\d+)\.(\d+)", requires).groups())  # type: ignore[union-attr]
    assert (int(python[1]), int(python[2])) >= minimum


def test_the_build_context_leaves_secrets_and_local_state_out() -> None:
    """.dockerignore lets in only what `pip install .` reads."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "src", "migrations"}
    copied = [value for kind, value in dockerfile_instructions() if kind == "COPY"]
    sources = {
        word.rstrip("/")
        for value in copied
        if not value.startswith("--from")
        for word in value.split()[:-1]
    }
    assert sources <= allowed
    assert all((ROOT / source).exists() for source in sources)


def test_the_deploy_secrets_are_ignored_by_git() -> None:
    for secret in ("deploy/.env", "deploy/worker-keys/worker.key_secret"):
        done = subprocess.run(
            ["git", "check-ignore", "-q", secret], cwd=ROOT, capture_output=True, check=False
        )
        assert done.returncode == 0, f"git would commit {secret}"
