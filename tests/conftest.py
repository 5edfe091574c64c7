"""Shared fixtures. Airflow reads its settings at import, so they are set here first.

Services (Slurm, MariaDB, the S3 endpoint) are real processes started by the project's scripts on
127.0.0.1 and stopped by PID at the end of the session.
"""

from __future__ import annotations

import contextlib
import email
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("XU_STATE_DIR", ROOT / ".services"))
AIRFLOW_HOME = STATE / "airflow-test"
ARTIFACTS = ROOT / "test-artifacts"
# Shifts every fixed service port of the fixtures, so two test sessions (each with its own
# XU_STATE_DIR) can run side by side on one machine.
PORT_OFFSET = int(os.environ.get("XU_TEST_PORT_OFFSET", "0"))


def port(base: int) -> str:
    return str(base + PORT_OFFSET)


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


@contextlib.contextmanager
def moto_server(log: Path) -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 (its URL), started here and stopped by PID; also used by bench/."""
    import time
    import urllib.request

    port = free_port()
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
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def stop_group(proc: subprocess.Popen, timeout: float = 30) -> None:
    """Stop a process started with start_new_session=True and all its children (TERM, then KILL)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory) -> Iterator[str]:
    """moto's S3 server on 127.0.0.1, started here and stopped by PID."""
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as url:
        yield url


# Own ports, so a demo instance left running does not clash with the test instance.
TEST_PORTS = {
    "XU_MARIADB_PORT": port(23306),
    "XU_SLURMCTLD_PORT": port(26817),
    "XU_SLURMD_PORT": port(26818),
    "XU_SLURMDBD_PORT": port(26819),
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


@pytest.fixture(scope="session")
def sshd_login():
    """A private sshd on 127.0.0.1 letting the tests' key in as root; stopped by PID at the end."""
    state = STATE / "sshd-test"
    env = {"XU_STATE_DIR": str(state), "XU_SSHD_PORT": str(free_port())}
    script = str(ROOT / "scripts" / "services" / "sshd.sh")
    try:
        run_script(script, "start", env=env, timeout=900)  # may apt-get install openssh-server
        from scripts.local_run import read_env_sh

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


PROM_TEST_PORT = port(29090)


@pytest.fixture(scope="session")
def prometheus_site(tmp_path_factory):
    """A real Prometheus 2.42 (scripts/services/prometheus.sh) holding a synthetic OpenShift day.

    The day (60 random pods plus the named cases, seed 7) is generated into a tmp dir and backfilled
    with promtool into a data dir wiped first (own state dir and port, so a demo instance does not
    interfere). Yields (base_url, truth, day), truth being the JSON form (`Truth.as_dict()`, as written by
    --truth); stopped by PID at the end of the session.
    """
    yield from _prometheus_with_day(tmp_path_factory, "prom-test", PROM_TEST_PORT, pods=60, seed=7)


PROM_KSM_TEST_PORT = port(29091)


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


OS_TEST_PORT_BASE = port(25000)


@dataclass(frozen=True)
class OpenStackSite:
    """The test cloud (scripts/services/openstack.sh) after the workload: its env.sh, the day, the truth,
    and the staging store holding DAY - 1, DAY and DAY + 1, each staged just after it closed."""

    env: dict[str, str]  # service env (XU_OS_DIR, port base) plus what env.sh describes
    day: object  # datetime.date: the workload's DAY
    truth: dict
    store: object  # xdmod_usage.staging.Store
    staged: dict  # day offset -> (StageResult, the OpenStackApi used)

    def connect(self):
        from xdmod_usage.openstack_api import connect

        return connect(cloud=self.env["XU_OS_CLOUD"])

    def api(self, **options):
        from xdmod_usage.openstack_api import OpenStackApi

        return OpenStackApi(self.connect(), **options)

    def admin_password(self) -> str:
        import yaml

        config = yaml.safe_load(Path(self.env["OS_CLIENT_CONFIG_FILE"]).read_text())
        return config["clouds"][self.env["XU_OS_CLOUD"]]["auth"]["password"]


@pytest.fixture(scope="session")
def openstack_site(tmp_path_factory):
    """A real OpenStack Zed control plane on a fake clock, and the workload's day on it.

    The clock starts at 21:00 the evening before DAY (three days before today, so every day is
    closed by the end); the workload moves it forward step by step to DAY + 2 00:05. At 00:05 of
    each day the day before is staged from the live APIs, as the daily DAG would. Wiped first (the
    clock never goes back), own state dir and ports; stopped by PID at the end.
    """
    import datetime as dt

    from scripts.local_run import read_env_sh
    from scripts.openstack_workload import Workload, step_time

    from xdmod_usage.openstack_api import OpenStackApi, connect
    from xdmod_usage.openstack_pipeline import stage_openstack_day
    from xdmod_usage.staging import Store
    from xdmod_usage.window import UsageWindow

    day = (dt.datetime.now(dt.UTC) - dt.timedelta(days=3)).date()
    offset = int((step_time(day, -1, "21:00") - dt.datetime.now(dt.UTC)).total_seconds())
    os_dir = STATE / "os-test"
    env = {"XU_OS_DIR": str(os_dir), "XU_OS_PORT_BASE": OS_TEST_PORT_BASE, "XU_OS_FAKE_CLOCK": "1"}
    script = str(ROOT / "scripts" / "services" / "openstack.sh")
    store = Store.from_path(tmp_path_factory.mktemp("os-staging"))
    staged = {}

    def stage_day_before(now: dt.datetime) -> None:
        closed = now.date() - dt.timedelta(days=1)
        api = OpenStackApi(connect(cloud=env["XU_OS_CLOUD"]))
        result = stage_openstack_day(store, "cloud", "cloud_openstack", UsageWindow.for_day(closed), api,
                                     max_quarantine_share=1.0)  # fmt: skip
        staged[(closed - day).days] = (result, api)

    try:
        run_script(script, "reset", env=env, timeout=300)
        run_script(script, "start", env={**env, "XU_OS_CLOCK_OFFSET": str(offset)}, timeout=1200)
        env.update(read_env_sh(os_dir / "env.sh"))
        os.environ["OS_CLIENT_CONFIG_FILE"] = env["OS_CLIENT_CONFIG_FILE"]
        workload = Workload(env["XU_OS_CLOUD"], env)
        workload.setup()
        truth = workload.run(day, checkpoint=stage_day_before)
        yield OpenStackSite(env, day, truth, store, staged)
    finally:
        run_script(script, "stop", env=env, timeout=300)


WEBHOOK_TOKEN = "T000/B000/abc"


class Receivers:
    def __init__(self) -> None:
        self.mails: list[email.message.Message] = []
        self.posts: list[tuple[str, dict]] = []


@pytest.fixture
def receivers(monkeypatch):
    """Loopback alert receivers: an SMTP server (aiosmtpd) and an HTTP server for the Slack/webhook routes."""
    from aiosmtpd.controller import Controller

    got = Receivers()

    class SmtpHandler:
        async def handle_DATA(self, server, session, envelope):
            got.mails.append(email.message_from_bytes(envelope.content))
            return "250 OK"

    class HttpHandler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.posts.append((self.path, json.loads(body)))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    smtp = Controller(SmtpHandler(), hostname="127.0.0.1", port=free_port())
    smtp.start()
    http = ThreadingHTTPServer(("127.0.0.1", 0), HttpHandler)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    port = http.server_address[1]
    connections = {
        "AIRFLOW_CONN_ALERT_SMTP": {"conn_type": "smtp", "host": "127.0.0.1", "port": smtp.port,
                                    "extra": {"disable_tls": True, "disable_ssl": True, "retry_limit": 1}},
        "AIRFLOW_CONN_ALERT_SLACK": {"conn_type": "slackwebhook", "host": f"127.0.0.1:{port}/services",
                                     "schema": "http", "password": WEBHOOK_TOKEN},
        "AIRFLOW_CONN_ALERT_HOOK": {"conn_type": "http", "host": "127.0.0.1", "port": port, "schema": "http"},
        "AIRFLOW_CONN_ALERT_DEAD": {"conn_type": "http", "host": "127.0.0.1", "port": free_port(), "schema": "http"},
    }  # fmt: skip
    got.env = {key: json.dumps(value) for key, value in connections.items()}
    for key, value in got.env.items():
        monkeypatch.setenv(key, value)
    yield got
    smtp.stop()
    http.shutdown()


# Two more MariaDB servers (backup source, scratch/restore target; also the hierarchy history's home).
MARIADB_PAIR_PORTS = {"source": 23316 + PORT_OFFSET, "scratch": 23317 + PORT_OFFSET}
MARIADB_PAIR_PASSWORD = "xdmod-test-pw"


def _pair_env(name: str) -> dict[str, str]:
    # The source logs binary logs, as a replicated XDMoD server does: the manifest records the position.
    return {"XU_MARIADB_DIR": str(STATE / f"backup-{name}"), "XU_MARIADB_PORT": str(MARIADB_PAIR_PORTS[name]),
            "XU_MARIADB_BINLOG": "1" if name == "source" else "0"}  # fmt: skip


def start_pair_server(name: str) -> None:
    run_script("scripts/services/mariadb.sh", "start", env=_pair_env(name), timeout=300)


@pytest.fixture(scope="session")
def mariadb_pair():
    """Two real servers: the source with XDMoD-like data, the scratch/target (empty of XDMoD)."""
    for name in MARIADB_PAIR_PORTS:
        start_pair_server(name)
    from xdmod_usage.mysql_client import DbEndpoint

    yield {
        name: DbEndpoint("127.0.0.1", port, "xdmod", MARIADB_PAIR_PASSWORD) for name, port in MARIADB_PAIR_PORTS.items()
    }
    for name in MARIADB_PAIR_PORTS:
        run_script("scripts/services/mariadb.sh", "stop", env=_pair_env(name))


# ColdFront (scripts/services/coldfront.sh): PIs, projects, allocations and user names for the hierarchy.
COLDFRONT_TEST_PORT = port(28000)
# Resources, PIs (names with non-ASCII, a comma, quotes), projects in several statuses, allocations with the
# attributes sites use: also the demo's ColdFront.
COLDFRONT_SEED = json.loads((ROOT / "scripts" / "data" / "coldfront-seed.json").read_text(encoding="utf-8"))


@dataclass(frozen=True)
class ColdFrontSite:
    """The running test ColdFront, as its env.sh describes it, and the seed loaded into it."""

    url: str
    token: str  # staff superuser xu-admin
    member_token: str  # ordinary user xu-member, PI or member of nothing
    seed: dict
    seed_file: Path
    env: dict[str, str]  # the service script's environment (state dir, port)
    directory: Path  # XU_COLDFRONT_DIR: logs, database

    def __repr__(self) -> str:  # tokens stay out of pytest's output
        return f"ColdFrontSite({self.url!r})"

    def api(self, token: str | None = None, **options):
        from xdmod_usage.coldfront_api import ColdFrontApi

        return ColdFrontApi(options.pop("base_url", self.url), token or self.token, **options)


@pytest.fixture(scope="session")
def coldfront_site(tmp_path_factory):
    """A real ColdFront 1.1.10 (gunicorn, SQLite) holding COLDFRONT_SEED: wiped first, own state dir and
    port, so a demo instance does not interfere; stopped by PID at the end of the session."""
    from scripts.local_run import read_env_sh

    env = {"XU_STATE_DIR": str(STATE / "coldfront-test"), "XU_COLDFRONT_PORT": COLDFRONT_TEST_PORT}
    script = str(ROOT / "scripts" / "services" / "coldfront.sh")
    seed_file = tmp_path_factory.mktemp("coldfront") / "seed.json"
    seed_file.write_text(json.dumps(COLDFRONT_SEED, ensure_ascii=False, indent=1), encoding="utf-8")
    try:
        run_script(script, "reset", env=env, timeout=120)
        run_script(script, "start", env=env, timeout=900)  # the first start builds ColdFront's venv
        run_script(script, "load", str(seed_file), env=env, timeout=300)
        described = read_env_sh(STATE / "coldfront-test" / "coldfront" / "env.sh")
        yield ColdFrontSite(url=described["XU_COLDFRONT_URL"], token=described["XU_COLDFRONT_TOKEN"],
                            member_token=described["XU_COLDFRONT_MEMBER_TOKEN"], seed=COLDFRONT_SEED,
                            seed_file=seed_file, env=env, directory=Path(described["XU_COLDFRONT_DIR"]))  # fmt: skip
    finally:
        run_script(script, "stop", env=env, timeout=120)
