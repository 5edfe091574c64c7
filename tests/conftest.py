"""Shared fixtures. Airflow reads its settings at import, so they are set here first.

Services (Slurm, MariaDB, the S3 endpoint) are real processes started by the project's scripts on
127.0.0.1 and stopped by PID at the end of the session.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("XU_STATE_DIR", ROOT / ".services"))
AIRFLOW_HOME = STATE / "airflow-test"
ARTIFACTS = ROOT / "test-artifacts"

os.environ["AIRFLOW_HOME"] = str(AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(ROOT / "plugins")
os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "INFO"
os.environ.setdefault("XDMOD_USAGE_CONFIG", str(ROOT / "include" / "site-config.example.yaml"))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "plugins"), os.environ.get("PYTHONPATH")]))


def run_script(*argv: str, env: dict[str, str] | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run a project script; on failure show its output (the scripts print service logs)."""
    proc = subprocess.run(
        list(argv), cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(argv)} exited {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated SQLite metadata DB for dag.test()."""
    AIRFLOW_HOME.mkdir(parents=True, exist_ok=True)
    run_script(sys.executable, "-m", "airflow", "db", "migrate", timeout=300)
    return AIRFLOW_HOME


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory) -> str:
    """moto's S3 server on 127.0.0.1, started here and stopped by PID."""
    import time
    import urllib.request

    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=out
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=2)  # noqa: S310 - loopback only
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"moto S3 server did not start on {url}:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


# Own ports, so a demo instance left running does not clash with the test instance.
TEST_PORTS = {
    "XU_MARIADB_PORT": "23306",
    "XU_SLURMCTLD_PORT": "26817",
    "XU_SLURMD_PORT": "26818",
    "XU_SLURMDBD_PORT": "26819",
}


@pytest.fixture(scope="session")
def slurm_site(tmp_path_factory, airflow_db):
    """A fresh real Slurm (fake clock over a UTC midnight), the workload run on it, and Airflow ready.

    Own state dir and ports, so a demo instance left running does not interfere. Stopped by PID at
    the end of the session.
    """
    from scripts.local_run import LocalSite, fresh_cluster_with_workload, services

    site = LocalSite(
        STATE / "test",
        tmp_path_factory.mktemp("slurm-e2e"),
        TEST_PORTS,
    )
    try:
        workload = fresh_cluster_with_workload(site)
        site.write_config()
        site.prepare_airflow()
        yield site, workload
    finally:
        services(site, "stop")


@dataclass(frozen=True)
class SshLogin:
    """The running test sshd (scripts/services/sshd.sh), as described by its env.sh."""

    port: int
    user: str
    key: str
    host_key: str  # "ssh-ed25519 AAAA..."
    log: Path

    def airflow_env(self, conn_id: str) -> dict[str, str]:
        conn = {
            "conn_type": "ssh",
            "host": "127.0.0.1",
            "port": self.port,
            "login": self.user,
            # host_key pins the server's key (the provider then verifies it); look_for_keys=false so
            # only key_file is offered, never whatever sits in ~/.ssh.
            "extra": {"key_file": self.key, "host_key": self.host_key, "look_for_keys": "false"},
        }
        return {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(conn)}

    def logins(self) -> int:
        return self.log.read_text().count(f"Accepted publickey for {self.user} ")


def read_env_sh(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            (env[key],) = shlex.split(value)
    return env


@pytest.fixture(scope="session")
def sshd_login():
    """A private sshd on 127.0.0.1 letting the tests' key in as root; stopped by PID at the end."""
    state = STATE / "sshd-test"
    env = {"XU_STATE_DIR": str(state), "XU_SSHD_PORT": str(free_port())}
    script = str(ROOT / "scripts" / "services" / "sshd.sh")
    try:
        run_script(script, "start", env=env, timeout=900)  # may apt-get install openssh-server
        described = read_env_sh(state / "sshd" / "env.sh")
        yield SshLogin(
            port=int(described["XU_SSHD_PORT"]),
            user=described["XU_SSHD_USER"],
            key=described["XU_SSHD_KEY"],
            host_key=" ".join(Path(described["XU_SSHD_HOST_KEY_PUB"]).read_text().split()[:2]),
            log=state / "sshd" / "sshd.log",
        )
    finally:
        run_script(script, "stop", env=env, timeout=120)


PROM_TEST_PORT = "29090"


@pytest.fixture(scope="session")
def prometheus_site(tmp_path_factory):
    """A real Prometheus 2.42 (scripts/services/prometheus.sh) holding a synthetic OpenShift day.

    The day (60 random pods plus the named cases, seed 7) is generated into a tmp dir and backfilled
    with promtool into a data dir wiped first (own state dir and port, so a demo instance does not
    interfere). Yields (base_url, truth, day), truth being the JSON form (`Truth.as_dict()`, as written by
    --truth); stopped by PID at the end of the session.
    """
    yield from _prometheus_with_day(tmp_path_factory, "prom-test", PROM_TEST_PORT, pods=60, seed=7)


PROM_KSM_TEST_PORT = "29091"


@pytest.fixture(scope="session")
def prometheus_ksm_site(tmp_path_factory):
    """Like `prometheus_site`, but the day also holds the kube-state-metrics pod families (``ksm=True``):
    per-container requests, pod phase and pod info, as on a cluster without the scheduler metric.

    40 random pods plus the named cases, seed 11; own state dir (.services/prom-ksm-test) and port, so it
    runs beside `prometheus_site`. Yields (base_url, truth, day), truth being `Truth.as_dict()`; stopped by
    PID at the end of the session.
    """
    yield from _prometheus_with_day(tmp_path_factory, "prom-ksm-test", PROM_KSM_TEST_PORT, pods=40, seed=11,
                                    ksm=True)  # fmt: skip


def _prometheus_with_day(tmp_path_factory, state: str, port: str, **day_options):
    """Generate the day, backfill it into a fresh Prometheus (own state dir and port), yield, stop by PID."""
    from xdmod_usage.openshift_synthetic import write_day

    day = "2026-11-20"
    env = {"XU_STATE_DIR": str(STATE / state), "XU_PROM_PORT": port}
    script = str(ROOT / "scripts" / "services" / "prometheus.sh")
    path = tmp_path_factory.mktemp(state) / f"openshift-{day}.om"
    truth = write_day(path, day, **day_options).as_dict()
    try:
        run_script(script, "reset", env=env, timeout=120)
        run_script(script, "load", str(path), env=env, timeout=900)  # may apt-get install prometheus
        run_script(script, "start", env=env, timeout=300)
        yield f"http://127.0.0.1:{port}", truth, day
    finally:
        run_script(script, "stop", env=env, timeout=120)
        path.unlink(missing_ok=True)
