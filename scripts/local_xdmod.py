"""The demo's site-wide XDMoD DAGs on the local services (called by scripts/local_run.py after the daily runs):
the hierarchy (the site's mapping file, a local ColdFront 1.1.10, the local Prometheus' namespaces, the local
cloud's Keystone projects; history in the local MariaDB), the two aggregation DAGs on the daily runs' ingest
events, and a reload of the Slurm resource. XDMoD's steps run in dry run: the exact commands and pods are
printed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
from pathlib import Path

from scripts.local_run import CLOUD, CLUSTER, DAY, MARIADB_PASSWORD, NEXT_DAY, OCP, REPO, LocalSite

HISTORY_DB = "xdmod_usage_history"
COLDFRONT_PORT = "18000"
MAPPING = """# The demo site's own hierarchy mapping (first in priority).
organizations:
  eng: College of Engineering, "Main" Campus
people:
  alice: {first: Alice, last: "Ångström"}
  bob: {first: Bob, last: "O'Hara"}
projects:
  physics: {pi: alice, organization: eng, title: Plasma Physics}
  chem: {pi: bob, organization: eng, title: Computational Chemistry}
"""


def coldfront(site: LocalSite, *args: str) -> None:
    env = {**os.environ, "XU_STATE_DIR": str(site.state_dir.with_name(site.state_dir.name + "-coldfront")),
           "XU_COLDFRONT_PORT": COLDFRONT_PORT}  # fmt: skip
    subprocess.run([str(REPO / "scripts" / "services" / "coldfront.sh"), *args], env=env, check=True)


def _coldfront_env(site: LocalSite) -> dict[str, str]:
    from scripts.local_run import read_env_sh

    described = read_env_sh(site.state_dir.with_name(site.state_dir.name + "-coldfront") / "coldfront" / "env.sh")
    return {"AIRFLOW_CONN_COLDFRONT": json.dumps({"conn_type": "http", "host": described["XU_COLDFRONT_URL"],
                                                  "password": described["XU_COLDFRONT_TOKEN"]})}  # fmt: skip


def _history_env(site: LocalSite) -> dict[str, str]:
    from xdmod_usage.mysql_client import DbEndpoint

    port = int(site.ports.get("XU_MARIADB_PORT", "13306"))
    conn = DbEndpoint("127.0.0.1", port, "xdmod", MARIADB_PASSWORD).connect()
    conn.cursor().execute(f"CREATE DATABASE IF NOT EXISTS {HISTORY_DB}")
    conn.close()
    return {"AIRFLOW_CONN_XDMOD_USAGE_HISTORY": json.dumps({"conn_type": "mysql", "host": "127.0.0.1", "port": port,
                                                            "login": "xdmod", "password": MARIADB_PASSWORD,
                                                            "schema": HISTORY_DB})}  # fmt: skip


def _run(site: LocalSite, dag_id: str, name: str, conf: dict, env: dict[str, str] | None = None) -> Path:
    log = site.output_dir / f"airflow-dags-test-{name}.log"
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    proc = site.airflow("dags", "test", dag_id, when, "--conf", json.dumps(conf), log=log, extra_env=env)
    if proc.returncode:
        print(log.read_text()[-5000:])
        raise SystemExit(f"airflow dags test {dag_id} failed; full log: {log}")
    return log


def run_hierarchy(site: LocalSite) -> Path:
    """The hierarchy DAG once: every source, history recorded, files staged, imports and re-ingest shown."""
    coldfront(site, "reset")
    coldfront(site, "start")
    coldfront(site, "load", str(REPO / "scripts" / "data" / "coldfront-seed.json"))
    mapping = site.output_dir / "hierarchy.yaml"
    mapping.write_text(MAPPING, encoding="utf-8")
    sources: list[dict] = [
        {"type": "file", "path": str(mapping)},
        {"type": "coldfront", "conn_id": "coldfront", "resources": {
            "OpenShift Prod": {"xdmod_resource": OCP.replace("-", "_"), "group_attribute": "Allocated Project ID"},
            "OpenStack Cloud": {"xdmod_resource": CLOUD.replace("-", "_"), "group_attribute": "Allocated Project Name",
                                "cloud": True},
            "HPC Cluster": {"xdmod_resource": CLUSTER, "group_attribute": "slurm_account_name"}}},
        {"type": "openshift", "resource": OCP, "lookback": f"{(dt.datetime.now(dt.UTC).date() - DAY).days + 2}d"},
    ]  # fmt: skip
    if site.openstack_env:
        import openstack

        cloud = openstack.connect(cloud=site.openstack_env["XU_OS_CLOUD"])
        cloud.identity.update_project(cloud.identity.find_project("alpha"), pi="alice", organization="eng")
        sources.append({"type": "openstack", "resource": CLOUD})
    config = json.loads(site.config_path.read_text())
    config["hierarchy"] = {"db_conn_id": "xdmod_usage_history", "lateness_deadline": None, "sources": sources}
    site.config_path.write_text(json.dumps(config, indent=2) + "\n")
    return _run(site, "xdmod_hierarchy", "xdmod_hierarchy", {"dry_run": True},
                {**_coldfront_env(site), **_history_env(site)})  # fmt: skip


def _message(line: str) -> str:
    """The message of an Airflow log line (without its time, level and logger)."""
    match = re.search(r"\] (.*?)(?: \[[\w.]+\] loc=.*)?$", line)
    return (match.group(1) if match else line).strip()


def _dry_run_lines(log: Path) -> list[str]:
    return [line.split("DRY RUN", 1)[1].split(" [xdmod_usage")[0].strip() for line in log.read_text().splitlines()
            if "DRY RUN would run argv" in line]  # fmt: skip


def print_hierarchy_summary(site: LocalSite, log: Path) -> None:
    manifest_path = sorted((site.staging_root / "_hierarchy").glob("20*/manifest.json"))[-1]
    manifest = json.loads(manifest_path.read_text())
    print("\n=== Hierarchy (xdmod_hierarchy) ===")
    for name, summary in manifest["sources"].items():
        print(f"  source {name}: {summary['attributions']} attributions, {summary['people']} names, "
              f"{len(summary['skipped'])} skipped")  # fmt: skip
    print(f"  history changes as of {manifest['as_of']}: {manifest['changes']}")
    print(f"  conflicts {len(manifest['report']['conflicts'])}, quarantined {manifest['report']['quarantined']}")
    for name, entry in manifest["files"].items():
        where = manifest_path.parent / entry["path"]
        print(f"  {name:<26} {entry['bytes']:>6} B  sha256 {entry['sha256'][:16]}…  {where}")
    first = (manifest_path.parent / manifest["files"]["hierarchy.csv"]["path"]).read_text().splitlines()[:4]
    print("  hierarchy.csv starts:\n" + "\n".join(f"    {line}" for line in first))
    print("  XDMoD commands (dry run):")
    for line in _dry_run_lines(log):
        print(f"    {line}")


def run_aggregations(site: LocalSite) -> dict[str, Path]:
    """Each realm's aggregation DAG once: it aggregates the ingests the daily runs just recorded."""
    logs = {}
    for dag_id in ("xdmod_aggregate_jobs", "xdmod_aggregate_cloud"):
        if dag_id == "xdmod_aggregate_cloud" and not site.openstack_env:
            continue
        logs[dag_id] = _run(site, dag_id, dag_id, {"dry_run": True})
    return logs


def print_aggregation_summary(logs: dict[str, Path]) -> None:
    print("\n=== Aggregation (asset-driven, one XDMoD run for the realm's pending ingests) ===")
    for dag_id, log in logs.items():
        text = log.read_text()
        plan = [_message(line) for line in text.splitlines() if "aggregation plan for" in line or "  ingest " in line]
        print(f"  {dag_id}:")
        for line in plan + _dry_run_lines(log):
            print(f"    {line.strip()}")


def run_reload(site: LocalSite) -> Path:
    """A reload of the Slurm resource over its two staged days: plan, rebuild, then the XDMoD steps (dry run)."""
    config = json.loads(site.config_path.read_text())
    for resource in config["resources"]:
        if resource["name"] == CLUSTER:
            resource["end_date"] = NEXT_DAY.isoformat()
    site.config_path.write_text(json.dumps(config, indent=2) + "\n")
    return _run(site, "xdmod_reload", "xdmod_reload",
                {"resource": CLUSTER, "list_only": False, "confirm": CLUSTER, "dry_run": True})  # fmt: skip


def print_reload_summary(log: Path) -> None:
    print(f"\n=== Corrections by reload (xdmod_reload, resource {CLUSTER}) ===")
    for line in log.read_text().splitlines():
        if "reload plan" in line or f"  {CLUSTER} (" in line or "changed by the rebuild" in line:
            print("  " + _message(line))
    for line in _dry_run_lines(log):
        print(f"    {line}")
