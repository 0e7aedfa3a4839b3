"""`maas.supervision.wiring`: what `maas serve` gives each child on top of the user's settings,
and the line between those and the user's settings (`maas.config`), in the code and in
docs/settings.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from maas.cli.serve import worker
from maas.config import INTERNAL_SETTINGS, Settings
from maas.supervision.wiring import (
    RunDir,
    gateway_settings,
    worker_command,
    worker_endpoints,
    worker_environment,
)

SETTINGS_DOC = Path(__file__).parents[2] / "docs" / "settings.md"
INTERNAL_SECTION = "## Set by `maas serve`"


def _user_settings(**given: object) -> Settings:
    defaults: dict[str, object] = {
        "workers": 2,
        "worker_endpoints": "tcp://10.0.0.5:5555",
        "bootstrap_admin_key": "k" * 16,
        "drain_s": 3.0,
        "torch_threads": 3,
    }
    return Settings(**{**defaults, **given})  # type: ignore[arg-type]


def test_a_gateway_gets_the_users_settings_every_worker_and_the_internal_ones(
    tmp_path: Path,
) -> None:
    user = _user_settings()
    run = RunDir(tmp_path)
    got = gateway_settings(user, run, 1)
    assert got.worker_endpoints == (
        f"ipc://{tmp_path}/worker-0.sock",
        f"ipc://{tmp_path}/worker-1.sock",
        "tcp://10.0.0.5:5555",
    )
    assert (got.gateway_index, got.peers_dir, got.rates_dir) == (1, run.peers, run.rates)
    assert got.migrate_on_start is False
    assert got.bootstrap_admin_key is None  # the supervisor created it, once
    changed = {"worker_endpoints", "bootstrap_admin_key", *INTERNAL_SETTINGS}
    for name in Settings.model_fields.keys() - changed:
        assert getattr(got, name) == getattr(user, name), name
    # What the gateway process rebuilds from the supervisor's dump is the same.
    assert Settings(**got.model_dump(mode="json")) == got


def test_a_worker_command_is_one_maas_worker_takes(tmp_path: Path) -> None:
    user = _user_settings()
    run = RunDir(tmp_path)
    command = worker_command(
        user, run, 1, name="w1", restarts=2, log_level="debug", supervisor_pid=4321
    )
    assert command[1:4] == ["-m", "maas", "worker"]
    with worker.make_context("worker", command[4:]) as context:
        params = context.params
    assert params["listen"] == worker_endpoints(user, run)[1]
    assert (params["worker_id"], params["index"], params["restarts"]) == ("w1", 1, 2)
    assert (params["threads"], params["log_level"], params["supervisor_pid"]) == (3, "debug", 4321)


def test_a_worker_environment_drops_the_unknown_maas_variables() -> None:
    environ = {
        "MAAS_DRAIN_S": "2",
        "MAAS_WORKER": "2",  # a typo `maas serve` warned of once
        "MAAS_API_KEY": "secret",  # the CLI's own: known
        "PROMETHEUS_MULTIPROC_DIR": "/run/maas/metrics",
        "PATH": "/usr/bin",
    }
    env = worker_environment(_user_settings(), environ)
    assert env == {
        "MAAS_DRAIN_S": "2",
        "MAAS_API_KEY": "secret",
        "PROMETHEUS_MULTIPROC_DIR": "/run/maas/metrics",
        "PATH": "/usr/bin",
        "OMP_NUM_THREADS": "3",
        "MKL_NUM_THREADS": "3",
    }


def test_unknown_variables_know_every_setting_and_only_those() -> None:
    environ = {f"MAAS_{name.upper()}": "x" for name in Settings.model_fields}
    environ |= {"MAAS_URL": "x", "MAAS_API_KEY": "x", "MAAS_WORKER": "2", "MAASX": "1"}
    assert Settings.unknown_variables(environ) == ["MAAS_WORKER"]


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_setting_is_documented_where_it_belongs(name: str) -> None:
    """A user's setting in the tables of docs/settings.md, an internal one in the section on
    what `maas serve` sets (MAAS_WORKER_ENDPOINTS is both: yours, and its local ones added)."""
    users, _, internal = SETTINGS_DOC.read_text().partition(INTERNAL_SECTION)
    variable = f"`MAAS_{name.upper()}`"
    if name in INTERNAL_SETTINGS:
        assert variable in internal
        assert variable not in users
    else:
        assert variable in users
