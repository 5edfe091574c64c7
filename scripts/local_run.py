"""Run the daily Slurm and OpenShift DAGs end to end on local services: the demo (README command 1), e2e tests.

Starts a real one-node Slurm with accounting (scripts/services/slurm.sh) on a fake clock so that a
job runs across a UTC midnight, submits the mixed workload (scripts/slurm_workload.py), runs
``airflow dags test`` on SQLite for the two UTC days it touched with the dry-run XDMoD runner,
then loads a generated OpenShift day into a local Prometheus (scripts/services/prometheus.sh) and runs
the OpenShift DAG for it, then starts a local OpenStack control plane on a fake clock
(scripts/services/openstack.sh), plays a day of VM life on it (scripts/openstack_workload.py) and runs
the OpenStack DAG for each day right after it closes; then the hierarchy DAG (a local ColdFront too), the
aggregation DAGs and a reload (scripts/local_xdmod.py), and the backup; prints a summary, and stops what
it started.

    .venv/bin/python scripts/local_run.py [--keep-running] [--skip-openstack]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
for path in (REPO / "plugins", REPO):  # the library (generator) and scripts.openstack_workload
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
# The workload starts 90 s before this fake midnight: short jobs end on DAY, one job spans into NEXT_DAY.
DAY = dt.date(2026, 11, 20)
NEXT_DAY = DAY + dt.timedelta(days=1)
FAKE_NOW = f"{DAY.isoformat()}T23:58:30Z"
CLUSTER = "democluster"
DAG_ID = f"usage_slurm_{CLUSTER}"
OCP = "ocp-demo"  # the OpenShift resource, fed by a local Prometheus holding a generated day
OCP_DAG_ID = f"usage_openshift_{OCP}"
OCP_CONN_ID = "prometheus_ocp"
CLOUD = "cloud-demo"  # the OpenStack resource, fed by the local control plane of scripts/services/openstack.sh
CLOUD_DAG_ID = f"usage_openstack_{CLOUD}"
CLOUD_CONN_ID = "openstack_demo"
MARIADB_PASSWORD = os.environ.get(
    "XU_MARIADB_PASSWORD", "xdmod-test-pw"
)  # the throwaway local test instance of scripts/services/mariadb.sh


@dataclass(frozen=True)
class LocalSite:
    """Paths and ports of one local environment (the demo's or the tests')."""

    state_dir: Path
    output_dir: Path
    ports: dict[str, str]
    prometheus_url: str | None = None  # with it, the config also has the OpenShift resource
    openstack_env: dict[str, str] | None = None  # openstack.sh's env.sh: the config also has the OpenStack resource
    openstack_start: dt.date | None = None

    @property
    def service_env(self) -> dict[str, str]:
        return {"XU_STATE_DIR": str(self.state_dir), **self.ports}

    @property
    def slurm_conf(self) -> str:
        return str(self.state_dir / "slurm" / "etc" / "slurm.conf")

    @property
    def staging_root(self) -> Path:
        return self.output_dir / "staging"

    @property
    def config_path(self) -> Path:
        return self.output_dir / "site.yaml"

    def write_config(self, **source_env: str) -> Path:
        """The site config for the local cluster (JSON is YAML)."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        config = {
            "staging": {"root": f"file://{self.staging_root}"},
            # The production shape: XDMoD in pods, file staging carried by a volume. No cluster runs
            # here, so every run is triggered with dry_run=true and the runner shows the exact pods.
            "xdmod": {
                "runner": "kubernetes",
                "pool": "xdmod",
                "db_conn_id": "xdmod_db",
                "kubernetes": {
                    "namespace": "xdmod",
                    "image": "registry.example.edu/xdmod/xdmod:11.0.2",
                    "staging_claim": "xdmod-usage-staging",
                },
            },
            "tasks": {"retries": 1, "retry_delay": "1s", "max_retry_delay": "2s", "execution_timeout": "10m"},
            # Aggregate at once (a site waits for other ingests); no deadline under `dags test` (see below).
            "aggregation": {"settle_delay": "0s", "lateness_deadline": None},
            "resources": [
                {
                    "name": CLUSTER,
                    "kind": "slurm",
                    "xdmod_resource": CLUSTER,
                    "start_date": DAY.isoformat(),
                    "settle_delay": "0s",
                    # Airflow 3.3.2's `dags test` crashes when a successful run's DAG has a
                    # DeadlineAlert (it reads the alerts as ids): off for these local runs only.
                    "lateness_deadline": None,
                    "source": {"cluster": CLUSTER, "env": {"SLURM_CONF": self.slurm_conf, **source_env}},
                }
            ],
        }
        if self.prometheus_url:
            config["resources"].append(
                {
                    "name": OCP,
                    "kind": "openshift",
                    "xdmod_resource": OCP.replace("-", "_"),
                    "start_date": DAY.isoformat(),
                    "settle_delay": "0s",
                    "lateness_deadline": None,
                    "source": {"prometheus_conn_id": OCP_CONN_ID, "policies": [
                        {"effective": DAY.isoformat(), "gpu_fallback_type": "unlabelled-gpu"}]},
                }
            )  # fmt: skip
        if self.openstack_env:
            config["resources"].append(
                {
                    "name": CLOUD,
                    "kind": "openstack",
                    "xdmod_resource": CLOUD.replace("-", "_"),
                    "start_date": (self.openstack_start or DAY).isoformat(),
                    "settle_delay": "0s",
                    "lateness_deadline": None,
                    # The workload's zero-vCPU server is quarantined on purpose: allow its share.
                    "max_quarantine_share": 0.2,
                    "source": {"conn_id": CLOUD_CONN_ID},
                }
            )
        self.config_path.write_text(json.dumps(config, indent=2) + "\n")
        return self.config_path

    def airflow_env(self) -> dict[str, str]:
        """Environment for the airflow CLI: SQLite home, this repo's dags/plugins, connections."""
        port = self.ports.get("XU_MARIADB_PORT", "13306")
        return {
            **os.environ,
            # Airflow starts its own subcommands (standalone, task runners) by name: same venv.
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
            "AIRFLOW_HOME": str(self.state_dir / "airflow"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "PYTHONPATH": str(REPO / "plugins"),
            "XDMOD_USAGE_CONFIG": str(self.config_path),
            # Connections from the environment, as a deployment would from a secrets backend.
            "AIRFLOW_CONN_XDMOD_DB": json.dumps(
                {
                    "conn_type": "mysql",
                    "host": "127.0.0.1",
                    "port": int(port),
                    "login": "xdmod",
                    "password": MARIADB_PASSWORD,
                }
            ),
            **(
                {f"AIRFLOW_CONN_{OCP_CONN_ID.upper()}": json.dumps({"conn_type": "http", "host": self.prometheus_url})}
                if self.prometheus_url
                else {}
            ),
            **({f"AIRFLOW_CONN_{CLOUD_CONN_ID.upper()}": self.openstack_connection()} if self.openstack_env else {}),
        }

    def openstack_connection(self) -> str:
        """The Airflow connection to the local cloud, as an operator would enter it (admin role)."""
        import yaml

        cloud = yaml.safe_load(Path(self.openstack_env["OS_CLIENT_CONFIG_FILE"]).read_text())["clouds"][
            self.openstack_env["XU_OS_CLOUD"]]  # fmt: skip
        auth = cloud["auth"]
        return json.dumps({
            "conn_type": "generic", "host": auth["auth_url"], "login": auth["username"], "password": auth["password"],
            "extra": {"project_name": auth["project_name"], "user_domain_name": auth.get("user_domain_name", "Default"),
                      "project_domain_name": auth.get("project_domain_name", "Default"),
                      "region_name": cloud.get("region_name", "RegionOne"), "interface": "public"},
        })  # fmt: skip

    def airflow(self, *args: str, log: Path | None = None, extra_env: dict[str, str] | None = None):
        env = {**self.airflow_env(), **(extra_env or {})}
        airflow_bin = str(Path(sys.executable).with_name("airflow"))
        if log is None:
            return subprocess.run([airflow_bin, *args], env=env, capture_output=True, text=True)
        with open(log, "w") as out:
            return subprocess.run([airflow_bin, *args], env=env, stdout=out, stderr=subprocess.STDOUT, text=True)

    def prepare_airflow(self) -> None:
        (self.state_dir / "airflow").mkdir(parents=True, exist_ok=True)
        for args in (("db", "migrate"), ("pools", "set", "xdmod", "1", "XDMoD commands, one at a time",
                                          "--include-deferred")):  # fmt: skip
            proc = self.airflow(*args)
            if proc.returncode:
                raise SystemExit(f"airflow {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")

    def run_day(
        self, day: dt.date, conf: dict | None = None, extra_env: dict[str, str] | None = None, dag_id: str = DAG_ID
    ):
        """``airflow dags test`` for one UTC day: logical date day+1 has the window [day, day+1)."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        log = self.output_dir / f"airflow-dags-test-{dag_id}-{day.isoformat()}.log"
        args = ["dags", "test", dag_id, (day + dt.timedelta(days=1)).isoformat()]
        args += ["--conf", json.dumps({"dry_run": True, **(conf or {})})]
        proc = self.airflow(*args, log=log, extra_env=extra_env)
        return proc.returncode, log

    def manifest(self, day: dt.date, resource: str = CLUSTER) -> dict:
        return json.loads((self.staging_root / resource / day.isoformat() / "manifest.json").read_text())

    def staged_path(self, day: dt.date, resource: str = CLUSTER) -> Path:
        manifest = self.manifest(day, resource)
        entry = manifest["files"][manifest["staged_name"]]
        return self.staging_root / resource / day.isoformat() / entry["path"]


def read_env_sh(path: Path) -> dict[str, str]:
    """The variables a service script's env.sh exports (written with printf %q)."""
    env = {}
    for line in path.read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            (env[key],) = shlex.split(value)
    return env


def services(site: LocalSite, action: str) -> None:
    env = {**os.environ, **site.service_env}
    if action == "start":
        env["XU_SLURM_FAKE_NOW"] = FAKE_NOW
    subprocess.run([str(REPO / "scripts" / "services" / "slurm.sh"), action], env=env, check=True)


def fresh_cluster_with_workload(site: LocalSite) -> dict:
    """Stop any old instance, wipe its state, start anew and run the workload; returns its record."""
    services(site, "stop")
    subprocess.run(["rm", "-rf", str(site.state_dir)], check=True)
    services(site, "start")
    out = site.state_dir / "workload.json"
    subprocess.run([sys.executable, str(REPO / "scripts" / "slurm_workload.py"), "--state-dir", str(site.state_dir),
                    "--out", str(out)], env={**os.environ, **site.service_env}, check=True)  # fmt: skip
    return json.loads(out.read_text())


def prometheus(site: LocalSite, *args: str) -> None:
    # Beside, not inside, the Slurm state dir: a fresh cluster wipes that one.
    env = {
        **os.environ,
        "XU_STATE_DIR": str(site.state_dir.with_name(site.state_dir.name + "-prometheus")),
        "XU_PROM_PORT": site.ports.get("XU_PROM_PORT", "19090"),
    }
    subprocess.run([str(REPO / "scripts" / "services" / "prometheus.sh"), *args], env=env, check=True)


def fresh_prometheus_day(site: LocalSite, pods: int = 300) -> dict:
    """A generated OpenShift day (DAY) backfilled into a fresh local Prometheus; returns the truth."""
    from xdmod_usage.openshift_synthetic import write_day

    site.output_dir.mkdir(parents=True, exist_ok=True)
    path = site.output_dir / f"openshift-{DAY.isoformat()}.om"
    truth = write_day(path, DAY.isoformat(), pods=pods, seed=1).as_dict()
    prometheus(site, "reset")
    prometheus(site, "load", str(path))
    prometheus(site, "start")
    path.unlink()
    return truth


def print_openshift_summary(site: LocalSite, log: Path, truth: dict) -> None:
    manifest = site.manifest(DAY, OCP)
    source, counts = manifest["source_counts"], manifest["counts"]
    print(f"\n=== Daily OpenShift ETL ({OCP_DAG_ID}): UTC day {DAY} ===")
    print(f"  Prometheus: {manifest['source']['queries']['queries']} queries, "
          f"{manifest['source']['queries']['samples']} samples fetched")  # fmt: skip
    print(f"  pods {source['pods']}, segments {source['segments']}, rows staged {counts['staged']}, "
          f"quarantined {counts['quarantined']}, zero-request segments {source['zero_request_segments']}")  # fmt: skip
    print(f"  holes in Prometheus data: {source['holes']}")
    print(f"  unattributed namespaces: {source['unattributed_namespaces']} ({source['unattributed_rows']} rows)")
    rows = [line.split("|", 25) for line in site.staged_path(DAY, OCP).read_text().splitlines()]
    cpu = sum(int(r[18]) / 1000 * _seconds(r) for r in rows)
    print(
        f"  CPU core-hours staged {cpu / 3600:.3f}; generator's truth {truth['total']['cpu_core_seconds'] / 3600:.3f}"
    )
    print("  XDMoD commands (dry run):")
    for line in log.read_text().splitlines():
        if "DRY RUN would run argv" in line:
            print("    " + line.split("DRY RUN", 1)[1].split(" [xdmod_usage")[0].strip())
    print(f"  first rows ({site.staged_path(DAY, OCP)}):")
    for row in rows[:5]:
        print("    " + "|".join(row))


def openstack_dir(site: LocalSite) -> Path:
    return site.state_dir.with_name(site.state_dir.name + "-openstack")


def openstack(site: LocalSite, *args: str, env: dict[str, str] | None = None) -> None:
    """scripts/services/openstack.sh for the demo's cloud (its own state dir beside Slurm's)."""
    full = {**os.environ, "XU_OS_DIR": str(openstack_dir(site)), "XU_OS_FAKE_CLOCK": "1",
            "XU_OS_PORT_BASE": site.ports.get("XU_OS_PORT_BASE", "15000"), **(env or {})}  # fmt: skip
    subprocess.run([str(REPO / "scripts" / "services" / "openstack.sh"), *args], env=full, check=True)


def run_openstack_days(site: LocalSite) -> tuple[LocalSite, dict[dt.date, Path]]:
    """A fresh local cloud on a fake clock, the workload played on DAY, and the OpenStack DAG run for
    each day right after it closes (00:05 UTC), as the scheduler would; returns the logs by day."""
    from scripts.openstack_workload import Workload, step_time

    openstack(site, "reset")
    offset = int((step_time(DAY, -1, "21:00") - dt.datetime.now(dt.UTC)).total_seconds())
    openstack(site, "start", env={"XU_OS_CLOCK_OFFSET": str(offset)})
    os_dir = openstack_dir(site)
    described = read_env_sh(os_dir / "env.sh")
    os.environ["OS_CLIENT_CONFIG_FILE"] = described["OS_CLIENT_CONFIG_FILE"]
    cloud_site = replace(site, openstack_env=described, openstack_start=DAY - dt.timedelta(days=1))
    cloud_site.write_config()
    logs: dict[dt.date, Path] = {}

    def run_closed_day(now: dt.datetime) -> None:
        closed = now.date() - dt.timedelta(days=1)
        status, logs[closed] = cloud_site.run_day(closed, dag_id=CLOUD_DAG_ID)
        if status != 0:
            print(logs[closed].read_text()[-5000:])
            raise SystemExit(f"airflow dags test failed for {CLOUD_DAG_ID} {closed}; full log: {logs[closed]}")
        print(f"openstack: {CLOUD_DAG_ID} ran for {closed} at the cloud's {now:%Y-%m-%d %H:%M} UTC")

    workload = Workload(described["XU_OS_CLOUD"], {"XU_OS_DIR": str(os_dir)})
    workload.setup()
    workload.run(DAY, checkpoint=run_closed_day)
    return cloud_site, logs


def print_openstack_summary(site: LocalSite, logs: dict[dt.date, Path]) -> None:
    manifest = site.manifest(DAY, CLOUD)
    source, counts = manifest["source_counts"], manifest["counts"]
    day_dir = site.staging_root / CLOUD / DAY.isoformat()
    print(f"\n=== Daily OpenStack ETL ({CLOUD_DAG_ID}): UTC day {DAY} ===")
    print(f"  API: {manifest['source']['api']['calls']} calls {manifest['source']['api']['by_path']}")
    print(f"  servers {source['servers']}, events staged {counts['staged']} (heartbeats {source['heartbeats']}), "
          f"quarantined {counts['quarantined']}, skipped {counts['skipped']}")  # fmt: skip
    print(f"  previous day's state: {source['previous_state']}")
    print(f"  flavor assumed for: {source['flavor_assumed']}; hypervisors {source['hypervisors']}")
    for name, entry in manifest["files"].items():
        print(f"  {name:<48} {entry['bytes']:>7} B  sha256 {entry['sha256'][:16]}…")
    print("  XDMoD commands (dry run):")
    for line in logs[DAY].read_text().splitlines():
        if "DRY RUN would run argv" in line:
            print("    " + line.split("DRY RUN", 1)[1].split(" [xdmod_usage")[0].strip())
    events = json.loads((day_dir / manifest["files"][manifest["xdmod_inputs"]["events"]]["path"]).read_text())
    print("  instance events other than the hourly heartbeats:")
    for event in events:
        if event["event_type"] != "compute.instance.exists":
            print(f"    {event['generated']}  {event['event_type']:<38} {event['instance_id'][:8]} "
                  f"{event['project_name']:<6} {event['instance_type']:<7} vcpus {event['vcpus']}")  # fmt: skip


def _seconds(row: list[str]) -> float:
    return (dt.datetime.fromisoformat(row[13]) - dt.datetime.fromisoformat(row[12])).total_seconds()


def print_summary(site: LocalSite, days: list[dt.date], logs: dict[dt.date, Path]) -> None:
    print("\n=== Daily Slurm ETL: summary ===")
    for day in days:
        manifest = site.manifest(day)
        counts = manifest["counts"]
        print(f"\nUTC day {day}  (window {manifest['window']['start']} .. {manifest['window']['end']})")
        print(f"  read {counts['read']}, staged {counts['staged']} (XDMoD rows {counts['xdmod_rows']}), "
              f"outside window {counts['outside_window']}, skipped {counts['skipped']}, "
              f"quarantined {counts['quarantined']}, het ids rewritten {counts['het_ids_rewritten']}")  # fmt: skip
        print(f"  manifest: {site.staging_root / CLUSTER / day.isoformat() / 'manifest.json'}")
        for name, entry in manifest["files"].items():
            print(f"  {name:<34} {entry['bytes']:>7} B  sha256 {entry['sha256'][:16]}…")
        print("  XDMoD commands (dry run):")
        in_pod = False
        for line in logs[day].read_text().splitlines():
            if in_pod and line[:2] != "20":  # the pod spec's YAML lines, until the next log record
                print("      " + line)
                continue
            in_pod = False
            if "DRY RUN" in line:
                text = line.split("DRY RUN", 1)[1].split(" [xdmod_usage")[0].strip()
                in_pod = text.startswith("pod spec")
                print("    " + text)
        print(f"  staged rows ({site.staged_path(day)}):")
        for row in site.staged_path(day).read_text().splitlines():
            fields = row.split("|", 25)
            print(f"    job {fields[0]:<6} {fields[16]:<18} {fields[8]:<6} start {fields[12]} end {fields[13]} "
                  f"{fields[25]}")  # fmt: skip


BACKUP_SCRATCH_CONN_ID = "xdmod_backup_scratch"


def run_backup(site: LocalSite) -> Path:
    """The weekly backup once: XDMoD-like databases made in the local MariaDB (standing in for
    XDMoD's server), dumped, verified by a restore into xuv_* databases on the same server (the
    scratch connection), raw archives of the staged days copied; returns the log."""
    from xdmod_usage.mysql_client import DbEndpoint
    from xdmod_usage.synthetic_xdmod_db import create_xdmod_like

    port = int(site.ports.get("XU_MARIADB_PORT", "13306"))
    create_xdmod_like(DbEndpoint("127.0.0.1", port, "xdmod", MARIADB_PASSWORD), jobs=20_000)
    etc = site.output_dir / "etc-xdmod"
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "portal_settings.ini").write_text('[general]\ntitle = "Demo XDMoD"\n')
    (etc / "resources.json").write_text(json.dumps([{"resource": CLUSTER, "resource_type": "HPC"}]) + "\n")
    config = json.loads(site.config_path.read_text())
    config["backup"] = {
        "databases": ["moddb", "modw", "modw_aggregates", "mod_logger", "mod_hpcdb"], "optional": ["modw_cloud"],
        "config": {"path": str(etc)}, "store": {"root": f"file://{site.output_dir / 'backups'}"},
        "verify_conn_id": BACKUP_SCRATCH_CONN_ID, "lateness_deadline": None,
    }  # fmt: skip
    site.config_path.write_text(json.dumps(config, indent=2) + "\n")
    scratch = json.loads(site.airflow_env()["AIRFLOW_CONN_XDMOD_DB"])  # the same server: xuv_* names
    log = site.output_dir / "airflow-dags-test-xdmod_backup.log"
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    extra_env = {f"AIRFLOW_CONN_{BACKUP_SCRATCH_CONN_ID.upper()}": json.dumps(scratch)}
    proc = site.airflow("dags", "test", "xdmod_backup", when, log=log, extra_env=extra_env)
    if proc.returncode:
        print(log.read_text()[-5000:])
        raise SystemExit(f"airflow dags test xdmod_backup failed; full log: {log}")
    return log


def print_backup_summary(site: LocalSite, log: Path) -> None:
    from xdmod_usage.backup_catalog import list_backups, read_manifest
    from xdmod_usage.staging import Store

    store = Store.from_path(site.output_dir / "backups")
    backup = [b for b in list_backups(store) if b.status == "verified"][-1]
    manifest = read_manifest(store, backup.id)
    print(f"\n=== Weekly XDMoD backup (xdmod_backup): {backup.id} ===")
    print(f"  server {manifest['server']['endpoint']} ({manifest['server']['version']}), dump "
          f"{manifest['dump_seconds']} s; absent optional databases: {manifest['absent_optional']}")  # fmt: skip
    for name, facts in sorted(manifest["databases"].items()):
        checked = manifest["verification"]["databases"][name]
        rows = sum(t["rows"] for t in facts["tables"].values())
        print(f"  {name:<16} {len(facts['tables'])} tables {rows:>6} rows  {facts['file']['bytes']:>8} B "
              f"sha256 {facts['file']['sha256'][:16]}…  restored as {checked['loaded_as']}: {checked['rows']} rows, "
              "counts and CHECKSUM TABLE equal")  # fmt: skip
    print(f"  accounts: {manifest['users']['accounts']}; config: {manifest['config']['bytes']} B from "
          f"{manifest['config']['source']}")  # fmt: skip
    archive = manifest["archive"]
    print(f"  raw source archives: {len(archive['files'])} ({archive['copied']} copied, {archive['present']} "
          "already there)")  # fmt: skip
    print(f"  verified on {manifest['verification']['scratch']} in {manifest['verification']['seconds']} s; "
          f"manifest: {store.url(f'backups/{backup.id}/manifest.json')}")  # fmt: skip
    for line in log.read_text().splitlines():
        if "keeping backup" in line or "deleted backup" in line:
            print("  retention: " + line.split("INFO - ", 1)[-1].split(" [xdmod_usage")[0].strip()[-90:])


GLYPHS = {"missing": "M", "staged": "s", "ingested": "i", "reconciled": "R", "mismatch": "X"}


def print_coverage_summary(site: LocalSite, days: int = 21) -> None:
    """The coverage view's grid (Airflow UI: Browse -> XDMoD coverage) as text, from the coverage index."""
    from xdmod_usage.config import load_site_config
    from xdmod_usage.coverage_view import grid
    from xdmod_usage.staging import Store

    data = grid(load_site_config(site.config_path), lambda resource: Store.from_path(site.staging_root),
                dt.datetime.now(dt.UTC).date(), days)  # fmt: skip
    print(f"\n=== Coverage {data['days'][0]} .. {data['days'][-1]} (the API server's page /xdmod-coverage/) ===")
    print("  M missing, s staged (XDMoD steps in dry run here), i ingested, R reconciled, X mismatch, . not due;")
    print("  the demo runs only the days above: the scheduler (catchup) or the page's Backfill runs the missing ones")
    for row in data["resources"]:
        cells = "".join(GLYPHS[c["state"]] if c else "." for c in row["cells"])
        counts = ", ".join(f"{n} {state}" for state, n in row["totals"].items() if n)
        print(f"  {row['name']:<12} {cells}  {counts}; {row['quarantined_days']} days with quarantined records")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep-running", action="store_true", help="leave the local services running")
    parser.add_argument("--skip-openstack", action="store_true",
                        help="leave out the OpenStack part (its control plane takes ~2 GB RAM and ~2 min)")  # fmt: skip
    args = parser.parse_args()
    started = time.monotonic()
    site = LocalSite(REPO / ".services" / "demo", REPO / "demo-output", {}, "http://127.0.0.1:19090")
    try:
        truth = fresh_prometheus_day(site)
        print(f"prometheus: generated OpenShift day {DAY} ({len(truth['pods'])} pods charged) loaded")
        workload = fresh_cluster_with_workload(site)
        print(f"workload: {len(workload['jobs'])} jobs submitted; fake midnight {workload['midnight_fake']}")
        site.write_config()
        site.prepare_airflow()
        logs = {}
        for day in (DAY, NEXT_DAY):
            status, logs[day] = site.run_day(day)
            if status != 0:
                print(logs[day].read_text()[-5000:])
                print(f"airflow dags test failed for {day}; full log: {logs[day]}", file=sys.stderr)
                return 1
        print_summary(site, [DAY, NEXT_DAY], logs)
        status, ocp_log = site.run_day(DAY, dag_id=OCP_DAG_ID)
        if status != 0:
            print(ocp_log.read_text()[-5000:])
            print(f"airflow dags test failed for {OCP_DAG_ID}; full log: {ocp_log}", file=sys.stderr)
            return 1
        print_openshift_summary(site, ocp_log, truth)
        last = site
        if not args.skip_openstack:
            cloud_site, cloud_logs = run_openstack_days(site)
            print_openstack_summary(cloud_site, cloud_logs)
            last = cloud_site
        from scripts import local_xdmod

        local_xdmod.print_hierarchy_summary(last, local_xdmod.run_hierarchy(last))
        local_xdmod.print_aggregation_summary(local_xdmod.run_aggregations(last))
        local_xdmod.print_reload_summary(local_xdmod.run_reload(last))
        print_backup_summary(last, run_backup(last))
        print_coverage_summary(last)
    finally:
        if not args.keep_running:
            from scripts import local_xdmod

            services(site, "stop")
            prometheus(site, "stop")
            local_xdmod.coldfront(site, "stop")
            if not args.skip_openstack:
                openstack(site, "stop")
    print(f"\ndemo wall time: {time.monotonic() - started:.0f} s (logs and staging under {site.output_dir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
