"""OpenLineage of every DAG kind, as the installed provider sends it: each DAG run under `airflow dags test` with
the file transport configured from the environment (AIRFLOW__OPENLINEAGE__TRANSPORT, as a deployment would set
it), and each relevant task's COMPLETE event read back from the file and compared with the exact datasets
(namespace, name) its task read and wrote.

The runs are the smallest that cover each kind, on the session's real services: one daily Slurm run with the
SSH runner into stand-in XDMoD commands (tests/xdmod_standin.py), so the XDMoD steps really run and report
XDMoD's tables, then the jobs aggregation and a reload of that day; one dry-run day each of OpenShift (the
generated Prometheus day) and OpenStack (the test cloud), which report their sources and staged files and,
as dry runs, no XDMoD table; one hierarchy run over its four real sources. The backup DAG's lineage is
tested in tests/test_backup.py. The expectations are written out here (XDMoD's table names, the staging
paths from the manifests), not taken from xdmod_usage.lineage.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from scripts.local_run import CLOUD, CLOUD_DAG_ID, CLUSTER, DAG_ID, DAY, MARIADB_PASSWORD, OCP, OCP_DAG_ID, LocalSite

from test_hierarchy_dag import HISTORY_DB, hierarchy_site  # noqa: F401 - the same setup, its own instance
from xdmod_standin import apply_xdmod_schema, install
from xdmod_usage.mysql_client import DbEndpoint

pytestmark = pytest.mark.slurm
NAMESPACE = "xdmod-usage-lineage-test"
REAL = {"dry_run": False}


def lineage_env(path: Path) -> dict[str, str]:
    """OpenLineage on, from the environment: the file transport (one JSON event per line) and a job namespace."""
    transport = {"type": "file", "log_file_path": str(path), "append": True}
    return {"AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(transport), "AIRFLOW__OPENLINEAGE__NAMESPACE": NAMESPACE}


def completed(path: Path) -> dict[str, tuple[set, set]]:
    """Per job (dag.task) of the file: the last COMPLETE event's inputs and outputs as (namespace, name) sets."""
    found = {}
    for line in path.read_text().splitlines():
        event = json.loads(line)
        if event["eventType"] == "COMPLETE":
            assert event["job"]["namespace"] == NAMESPACE
            found[event["job"]["name"]] = tuple({(d["namespace"], d["name"]) for d in event.get(key) or []}
                                                for key in ("inputs", "outputs"))  # fmt: skip
    return found


def day_datasets(site: LocalSite, resource: str, day: dt.date) -> tuple[dict[str, tuple], tuple]:
    """The committed day's files by name and its manifest, as file datasets."""
    root = site.staging_root / resource / day.isoformat()
    manifest = json.loads((root / "manifest.json").read_text())
    files = {name: ("file", str(root / entry["path"])) for name, entry in manifest["files"].items()}
    return files, ("file", str(root / "manifest.json"))


def tables(server: str, *names: str) -> set[tuple[str, str]]:
    return {(f"mysql://{server}", name) for name in names}


def test_stored_objects_and_promql_metrics_are_named_as_openlineage_says():
    from xdmod_usage import lineage

    local = lineage.stored("file:///srv/st/hpc1/2026-11-20/manifest.json")
    assert (local.namespace, local.name) == ("file", "/srv/st/hpc1/2026-11-20/manifest.json")
    s3 = lineage.stored("s3://usage-bucket/staging/hpc1/2026-11-20/manifest.json")
    assert (s3.namespace, s3.name) == ("s3://usage-bucket", "staging/hpc1/2026-11-20/manifest.json")
    query = 'max by (ns) (max_over_time(kube_namespace_labels[1d])) + count(up{job="x"}) + rate(foo_total [5m])'
    assert lineage.promql_metrics([query]) == ["foo_total", "kube_namespace_labels", "up"]


def test_a_task_reports_what_it_read_and_wrote_once_per_try_through_its_operator(monkeypatch):
    from types import SimpleNamespace

    from xdmod_usage import lineage

    task, ti = SimpleNamespace(), SimpleNamespace(try_number=1)
    monkeypatch.setattr(lineage, "enabled", lambda: False)
    lineage.manifest_note({"task": task, "ti": ti}, ["file:///st/m.json"])
    assert not hasattr(task, "get_openlineage_facets_on_complete")  # OpenLineage off: nothing computed or set
    a, b = lineage.stored("file:///st/a"), lineage.table("db:3306", "modw.job_tasks")
    lineage.report({"task": task, "ti": ti}, [a], [b])
    lineage.report({"task": task, "ti": ti}, [a, b], [])
    facets = task.get_openlineage_facets_on_complete(None)
    assert [(d.namespace, d.name) for d in facets.inputs] == [("file", "/st/a"), ("mysql://db:3306", "modw.job_tasks")]
    assert [(d.namespace, d.name) for d in facets.outputs] == [("mysql://db:3306", "modw.job_tasks")]
    monkeypatch.setattr(lineage, "enabled", lambda: True)
    from xdmod_usage.xdmod_commands import ingest

    lineage.xdmod_command({"task": task, "ti": ti}, SimpleNamespace(db_conn_id="no_such_conn"), ingest(),
                          {"dry_run": False})  # an unknown connection: logged, the task goes on  # fmt: skip
    ti.try_number = 2  # a retry starts empty
    lineage.report({"task": task, "ti": ti}, [], [a])
    facets = task.get_openlineage_facets_on_complete(None)
    assert (facets.inputs, [(d.namespace, d.name) for d in facets.outputs]) == ([], [("file", "/st/a")])


JOB_INGEST = ("mod_hpcdb.hpcdb_jobs", "modw.job_records", "modw.job_tasks")
JOB_AGGREGATES = tuple(f"modw_aggregates.jobfact_by_{unit}" for unit in ("day", "month", "quarter", "year"))


@pytest.fixture(scope="module")
def job_site(slurm_site, sshd_login, prometheus_site, openstack_site, tmp_path_factory):
    """The session's Airflow home and cluster, one site config with the Slurm, OpenShift and OpenStack resources,
    XDMoD commands through the SSH runner into stand-ins keeping XDMoD's tables on the cluster's MariaDB."""
    cluster, _workload = slurm_site
    out = tmp_path_factory.mktemp("lineage")
    site = LocalSite(cluster.state_dir, out, cluster.ports, prometheus_site[0], openstack_site.env, openstack_site.day)
    site.write_config()
    endpoint = DbEndpoint("127.0.0.1", int(cluster.ports["XU_MARIADB_PORT"]), "xdmod", MARIADB_PASSWORD)
    conn = endpoint.connect()
    apply_xdmod_schema(conn)
    conn.close()
    standin = install(out / "xdmod-host", sys.executable, {"port": endpoint.port, "user": endpoint.user,
                                                           "password": endpoint.password})  # fmt: skip
    config = json.loads(site.config_path.read_text())
    config["xdmod"] = {"runner": "ssh", "pool": "xdmod", "db_conn_id": "xdmod_db", "input_dir": str(out / "input"),
                       "ssh": {"conn_id": "xdmod_host", "command_dir": str(standin.bin_dir)}}  # fmt: skip
    config["tasks"]["retries"] = 0
    site.config_path.write_text(json.dumps(config, indent=1))
    return site, sshd_login.airflow_env("xdmod_host"), endpoint.label


@pytest.fixture(scope="module")
def slurm_day(job_site):
    """The Slurm DAG for DAY with XDMoD's steps run for real (the stand-ins)."""
    site, ssh_env, _server = job_site
    events = site.output_dir / "slurm-daily.jsonl"
    status, log = site.run_day(DAY, conf=REAL, extra_env={**ssh_env, **lineage_env(events)})
    assert status == 0, log.read_text()[-5000:]
    return completed(events)


def test_slurm_daily_dag_reports_the_cluster_the_staged_day_and_xdmods_tables(job_site, slurm_day):
    site, _env, server = job_site
    files, manifest = day_datasets(site, CLUSTER, DAY)
    rows = files[f"slurm-{CLUSTER}-{DAY}.log"]
    assert set(files) == {f"slurm-{CLUSTER}-{DAY}.log", "quarantine.jsonl", "raw.sacct.gz"}
    assert slurm_day[f"{DAG_ID}.stage"] == ({(f"slurm://{CLUSTER}", "accounting")}, {*files.values(), manifest})
    assert slurm_day[f"{DAG_ID}.xdmod_shred"] == ({rows}, tables(server, "mod_shredder.shredded_job_slurm"))
    assert slurm_day[f"{DAG_ID}.xdmod_ingest"] == (tables(server, "mod_shredder.shredded_job_slurm"),
                                                   {*tables(server, *JOB_INGEST), manifest})  # fmt: skip
    counted = tables(server, "modw.job_tasks", "modw.resourcefact")
    assert slurm_day[f"{DAG_ID}.reconcile"] == ({manifest, rows, *counted}, {manifest})


def test_aggregation_dag_reports_the_fact_table_in_and_the_aggregates_out(job_site, slurm_day):
    site, ssh_env, server = job_site
    events = site.output_dir / "aggregate.jsonl"
    log = site.output_dir / "aggregate.log"
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    proc = site.airflow("dags", "test", "xdmod_aggregate_jobs", when, "--conf", json.dumps(REAL), log=log,
                        extra_env={**ssh_env, **lineage_env(events)})  # fmt: skip
    assert proc.returncode == 0, log.read_text()[-5000:]
    assert "'--aggregate=job'" in log.read_text()  # it ran, for the daily run's ingest
    assert completed(events)["xdmod_aggregate_jobs.aggregate"] == (tables(server, "modw.job_tasks"),
                                                                   tables(server, *JOB_AGGREGATES))  # fmt: skip


def _end_date(site: LocalSite, value: str | None) -> None:
    config = json.loads(site.config_path.read_text())
    config["resources"][0]["end_date"] = value
    site.config_path.write_text(json.dumps(config, indent=1))


def test_reload_dag_reports_archives_in_and_the_rebuilt_day_and_xdmods_tables_out(job_site, slurm_day):
    site, ssh_env, server = job_site
    events = site.output_dir / "reload.jsonl"
    log = site.output_dir / "reload.log"
    conf = {"resource": CLUSTER, "list_only": False, "confirm": CLUSTER, "dry_run": False}
    _end_date(site, DAY.isoformat())  # the one staged day is the resource's whole history
    try:
        proc = site.airflow("dags", "test", "xdmod_reload", "2026-12-01T00:00:00+00:00", "--conf", json.dumps(conf),
                            log=log, extra_env={**ssh_env, **lineage_env(events)})  # fmt: skip
    finally:
        _end_date(site, None)
    assert proc.returncode == 0, log.read_text()[-5000:]
    found = completed(events)
    files, manifest = day_datasets(site, CLUSTER, DAY)
    rows = files[f"slurm-{CLUSTER}-{DAY}.log"]
    assert found["xdmod_reload.restage"] == ({files["raw.sacct.gz"]}, {*files.values(), manifest})
    assert found["xdmod_reload.delete_jobs"] == (set(), tables(server, "mod_shredder.shredded_job_slurm",
                                                                *JOB_INGEST, *JOB_AGGREGATES))  # fmt: skip
    assert found["xdmod_reload.shred"] == ({rows}, tables(server, "mod_shredder.shredded_job_slurm"))
    assert found["xdmod_reload.xdmod_ingest"] == (tables(server, "mod_shredder.shredded_job_slurm"),
                                                  {*tables(server, *JOB_INGEST), manifest})  # fmt: skip
    assert found["xdmod_reload.reconcile"] == ({manifest, rows, *tables(server, "modw.job_tasks", "modw.resourcefact")},
                                               {manifest})  # fmt: skip


def test_openshift_daily_dag_reports_prometheus_metrics_and_a_dry_run_no_xdmod_table(job_site, prometheus_site):
    site, ssh_env, _server = job_site
    day = dt.date.fromisoformat(prometheus_site[2])
    events = site.output_dir / "openshift-daily.jsonl"
    status, log = site.run_day(day, extra_env={**ssh_env, **lineage_env(events)}, dag_id=OCP_DAG_ID)  # dry run
    assert status == 0, log.read_text()[-5000:]
    found = completed(events)
    files, manifest = day_datasets(site, OCP, day)
    assert set(files) == {f"openshift-{OCP.replace('-', '_')}-{day}.log", "quarantine.jsonl", "raw.openshift.json.gz"}
    prometheus = f"prometheus://{urlsplit(prometheus_site[0]).netloc}"
    metrics = {"kube_pod_resource_request", "kube_node_labels", "kube_namespace_annotations", "kube_namespace_labels"}
    assert found[f"{OCP_DAG_ID}.stage"] == ({(prometheus, metric) for metric in metrics}, {*files.values(), manifest})
    rows = files[f"openshift-{OCP.replace('-', '_')}-{day}.log"]
    assert found[f"{OCP_DAG_ID}.xdmod_ingest"] == (set(), {manifest})  # its note; XDMoD was not touched
    assert found[f"{OCP_DAG_ID}.reconcile"] == ({manifest, rows}, {manifest})  # XDMoD not asked in a dry run


def test_openstack_daily_dag_reports_nova_and_keystone_and_the_staged_day(job_site, openstack_site):
    site, ssh_env, _server = job_site
    day = openstack_site.day
    events = site.output_dir / "openstack-daily.jsonl"
    status, log = site.run_day(day, extra_env={**ssh_env, **lineage_env(events)}, dag_id=CLOUD_DAG_ID)  # dry run
    assert status == 0, log.read_text()[-5000:]
    found = completed(events)
    files, manifest = day_datasets(site, CLOUD, day)
    cloud = f"openstack://{urlsplit(openstack_site.env['XU_OS_AUTH_URL']).netloc}"
    region = json.loads(site.airflow_env()["AIRFLOW_CONN_OPENSTACK_DEMO"])["extra"]["region_name"]
    apis = {*(f"{region}/compute/{name}" for name in ("servers", "os-instance-actions", "os-hypervisors")),
            *(f"identity/{name}" for name in ("domains", "projects", "users"))}  # fmt: skip
    assert found[f"{CLOUD_DAG_ID}.stage"] == ({(cloud, name) for name in apis}, {*files.values(), manifest})
    events_file = files[f"{day}T00:00:00_{day}T23:59:59.json"]
    assert found[f"{CLOUD_DAG_ID}.reconcile"] == ({manifest, events_file}, {manifest})


def test_hierarchy_dag_reports_its_sources_the_history_and_the_files_and_xdmods_tables(hierarchy_site):  # noqa: F811
    site, standin, env, mapping, _conn, services = hierarchy_site
    events = site.output_dir / "hierarchy.jsonl"
    log = site.output_dir / "hierarchy-lineage.log"
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    proc = site.airflow("dags", "test", "xdmod_hierarchy", when, "--conf", "{}", log=log,
                        extra_env={**env, **lineage_env(events)})  # fmt: skip
    assert proc.returncode == 0, log.read_text()[-5000:]
    found = completed(events)
    coldfront = "coldfront://" + urlsplit(json.loads(env["AIRFLOW_CONN_COLDFRONT"])["host"]).netloc
    prometheus = f"prometheus://{urlsplit(services['prometheus'][0]).netloc}"
    keystone = f"openstack://{urlsplit(services['openstack'].env['XU_OS_AUTH_URL']).netloc}"
    sources = {("file", str(mapping)), *((coldfront, f"api/{name}") for name in ("projects", "allocations", "users")),
               (prometheus, "kube_namespace_annotations"), (prometheus, "kube_namespace_labels"),
               (keystone, "identity/projects"), (keystone, "identity/domains")}  # fmt: skip
    history = json.loads(env["AIRFLOW_CONN_XDMOD_USAGE_HISTORY"])
    history_server = f"{history['host']}:{history['port']}"
    days = sorted((site.staging_root / "_hierarchy").glob("20*/manifest.json"))
    manifest = json.loads(days[-1].read_text())
    staged = {("file", str(days[-1].parent / entry["path"])) for name, entry in manifest["files"].items()
              if name.endswith(".csv")}  # fmt: skip
    assert len(staged) == 4
    assert found["xdmod_hierarchy.snapshot"] == (sources, {*tables(history_server, f"{HISTORY_DB}.hierarchy_history"),
                                                           *staged, ("file", str(days[-1]))})  # fmt: skip
    imported = [call["argv"][1] for call in standin.calls() if call["command"] == "xdmod-import-csv"]
    assert imported == ["hierarchy", "group-to-hierarchy", "names", "cloud-project-to-pi"]
    xdmod = json.loads(site.airflow_env()["AIRFLOW_CONN_XDMOD_DB"])
    server = f"{xdmod['host']}:{xdmod['port']}"
    written = tables(server, "mod_hpcdb.hpcdb_fields_of_science", "mod_hpcdb.hpcdb_requests",
                     "mod_hpcdb.hpcdb_accounts", "mod_shredder.staging_pi", "mod_hpcdb.hpcdb_people",
                     "mod_shredder.staging_union_user_pi", "modw_cloud.staging_pi_to_project")  # fmt: skip
    recorded = tables(history_server, f"{HISTORY_DB}.hierarchy_import")
    assert found["xdmod_hierarchy.import_files"] == (staged, {*written, *recorded})
