"""The xdmod_hierarchy DAG under `airflow dags test`, every source real: the site's mapping file, ColdFront
1.1.10 (scripts/services/coldfront.sh), OpenShift namespaces in a real Prometheus (the generated day), and
Keystone projects with properties (the OpenStack control plane); the history on a real MariaDB; imports
through the SSH runner into stand-in XDMoD commands on a real sshd (tests/xdmod_standin.py).

Asserted: what each source says reaches the files; the files are XDMoD's CSV; every file is imported
once, in XDMoD's order, then the history is re-ingested in chunks; an unchanged run records and imports
nothing; one changed source imports only the file it changed; a past run's files regenerate byte for
byte; a broken source records nothing.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import sys
from pathlib import Path

import pytest
from scripts.local_run import LocalSite

from conftest import MARIADB_PAIR_PASSWORD, MARIADB_PAIR_PORTS
from xdmod_standin import install
from xdmod_usage.hierarchy_history import CSV_FILES

HISTORY_DB = "xu_hierarchy_dag"


def parse(data: bytes) -> list[tuple[str, ...]]:
    return [tuple(row) for row in csv.reader(io.StringIO(data.decode("utf-8")))]


@pytest.fixture(scope="module")
def hierarchy_site(tmp_path_factory, coldfront_site, prometheus_site, openstack_site, mariadb_pair, sshd_login,
                   airflow_db):  # fmt: skip
    out = tmp_path_factory.mktemp("hierarchy-dag")
    scratch = mariadb_pair["scratch"]
    conn = scratch.connect()
    conn.cursor().execute(f"DROP DATABASE IF EXISTS {HISTORY_DB}")
    conn.cursor().execute(f"CREATE DATABASE {HISTORY_DB}")
    # Keystone properties of the workload's projects: alpha has a PI and an organization, beta none.
    cloud = openstack_site.connect()
    alpha = cloud.identity.find_project("alpha")
    cloud.identity.update_project(alpha, pi="zmuller", organization="Universitetet i Tromsø")
    standin = install(out / "xdmod-host", sys.executable, {"port": scratch.port, "user": "xdmod",
                                                           "password": MARIADB_PAIR_PASSWORD})  # fmt: skip
    mapping = out / "hierarchy.yaml"
    mapping.write_text(
        'organizations:\n  eng: College of Engineering, "Main" Campus\n'
        "people:\n  zsmith: {first: Zoë, last: 'Smith, Jr.'}\n"
        "projects:\n  smith_lab: {pi: zsmith, organization: eng, title: Smith Lab}\n"
        "  arctic_mb: {title: Arctic (HPC account)}\n",
        encoding="utf-8",
    )
    site = LocalSite(out / "state", out, {}, prometheus_site[0], openstack_site.env, openstack_site.day)
    site.write_config()
    config = json.loads(site.config_path.read_text())
    lookback_days = (dt.datetime.now(dt.UTC).date() - dt.date.fromisoformat(prometheus_site[2])).days + 2
    config["xdmod"] = {"runner": "ssh", "pool": "xdmod", "db_conn_id": "xdmod_db", "input_dir": str(out / "input"),
                       "ssh": {"conn_id": "xdmod_host", "command_dir": str(standin.bin_dir)}}  # fmt: skip
    config["hierarchy"] = {
        "db_conn_id": "xdmod_usage_history", "reingest_chunk_days": 7, "lateness_deadline": None,
        "sources": [
            {"type": "file", "path": str(mapping)},
            {"type": "coldfront", "conn_id": "coldfront", "resources": {
                "OpenShift Prod": {"xdmod_resource": "ocp_demo", "group_attribute": "Allocated Project ID"},
                "OpenStack Cloud": {"xdmod_resource": "cloud_demo", "group_attribute": "Allocated Project Name",
                                    "cloud": True},
                "HPC Cluster": {"xdmod_resource": "democluster", "group_attribute": "slurm_account_name"}}},
            {"type": "openshift", "resource": "ocp-demo", "lookback": f"{lookback_days}d"},
            {"type": "openstack", "resource": "cloud-demo"},
        ],
    }  # fmt: skip
    site.config_path.write_text(json.dumps(config, indent=1))
    site.prepare_airflow()
    env = {
        **sshd_login.airflow_env("xdmod_host"),
        "AIRFLOW_CONN_COLDFRONT": json.dumps({"conn_type": "http", "host": coldfront_site.url,
                                              "password": coldfront_site.token}),
        "AIRFLOW_CONN_XDMOD_USAGE_HISTORY": json.dumps({"conn_type": "mysql", "host": "127.0.0.1",
                                                        "port": MARIADB_PAIR_PORTS["scratch"], "login": "xdmod",
                                                        "password": MARIADB_PAIR_PASSWORD, "schema": HISTORY_DB}),
    }  # fmt: skip
    yield site, standin, env, mapping, conn, {"prometheus": prometheus_site, "openstack": openstack_site}
    conn.close()


def run(site, env, conf=None):
    log = site.output_dir / f"hierarchy-{dt.datetime.now(dt.UTC):%H%M%S%f}.log"
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    proc = site.airflow("dags", "test", "xdmod_hierarchy", when, "--conf", json.dumps(conf or {}), log=log,
                        extra_env=env)  # fmt: skip
    return proc.returncode, log.read_text()


def latest(site) -> dict:
    days = sorted((site.staging_root / "_hierarchy").glob("20*/manifest.json"))
    manifest = json.loads(days[-1].read_text())
    base = days[-1].parent
    files = {name: (base / manifest["files"][f"{name}.csv"]["path"]).read_bytes() for name in CSV_FILES}
    return {"manifest": manifest, "files": files, "dir": base}


def history_rows(conn) -> int:
    cursor = conn.cursor()
    cursor.execute("SELECT COUNT(*) FROM xu_hierarchy_dag.hierarchy_history")
    return cursor.fetchone()[0]


@pytest.fixture(scope="module")
def first_run(hierarchy_site):
    site, standin, env, *_ = hierarchy_site
    status, log = run(site, env)
    assert status == 0, log[-5000:]
    return latest(site), standin.calls(), log


def test_every_source_reaches_the_files_as_xdmods_csv(hierarchy_site, first_run):
    _site, _standin, _env, _mapping, _conn, services = hierarchy_site
    staged, _calls, log = first_run
    files = {name: parse(data) for name, data in staged["files"].items()}
    units = {row[0]: row for row in files["hierarchy"]}
    groups = dict(files["group-to-hierarchy"])
    # The mapping file (first in priority): its organization name with a comma and quotes, quoted per RFC 4180.
    assert units["eng"] == ("eng", 'College of Engineering, "Main" Campus', "")
    assert b'eng,"College of Engineering, ""Main"" Campus",\n' in staged["files"]["hierarchy"]
    assert units["smith_lab"] == ("smith_lab", "Smith Lab", "zsmith") and units["zsmith"][2] == "eng"
    # ColdFront: every provisioned allocation's group, with its project's PI, institution and title; the
    # mapping file's title for arctic_mb wins over ColdFront's (priority), the rest comes from ColdFront.
    from conftest import COLDFRONT_SEED

    for group, pi in (("arctic-microbiomes", "zmuller"), ("climate_ens", "liwei"), ("seismic_legacy", "rbrien")):
        assert units[group][2] == pi and groups[group] == group
    assert units["arctic_mb"] == ("arctic_mb", "Arctic (HPC account)", "zmuller")
    assert units["zmuller"] == ("zmuller", "Zoë Müller-Østergaard", "Universitetet i Tromsø")
    assert ("rbrien", 'Robert "Bob"', "O'Brien") in files["names"]
    assert b'rbrien,"Robert ""Bob""",O\'Brien\n' in staged["files"]["names"]
    assert {u["username"] for u in COLDFRONT_SEED["users"]} <= {row[0] for row in files["names"]}
    assert ("liwei", "climate-ensemble", "cloud_demo") in files["cloud-project-to-pi"]
    # OpenShift: each attributed namespace's project under its PI, exactly as the usage rows attribute it.
    truth = services["prometheus"][1]
    metas = truth["namespace_meta"].values()
    attributed = {meta["annotation_cf_project_id"]: meta["annotation_cf_pi"] for meta in metas
                  if meta.get("annotation_cf_pi") and meta.get("annotation_cf_project_id")}  # fmt: skip
    assert attributed and all(units[project][2] == pi for project, pi in attributed.items())
    # Keystone: alpha's properties; beta has no PI property and is reported, not guessed.
    assert units["alpha"][2] == "zmuller" and ("zmuller", "alpha", "cloud_demo") in files["cloud-project-to-pi"]
    assert "beta" not in units and "source openstack:cloud-demo skipped beta: no pi property" in log
    # The whole hierarchy is consistent: parents exist, groups map to bottom units.
    report = staged["manifest"]["report"]
    assert report["by_source"]["coldfront"] == 6 and report["quarantined"] == []


def test_files_are_imported_once_in_xdmods_order_then_the_history_is_reingested(hierarchy_site, first_run):
    site, standin, *_ = hierarchy_site
    staged, calls, _log = first_run
    imports = [call for call in calls if call["command"] == "xdmod-import-csv"]
    assert [call["argv"][1] for call in imports] == list(CSV_FILES)
    kept = sorted((standin.record / "inputs").iterdir())
    assert [path.read_bytes() for path in kept] == [staged["files"][name] for name in CSV_FILES]  # what XDMoD read
    reingests = [call["argv"] for call in calls if call["command"] == "xdmod-ingestor"]
    starts = [dt.date.fromisoformat(argv[1]) for argv in reingests]
    ends = [dt.date.fromisoformat(argv[3]) for argv in reingests]
    config = json.loads(site.config_path.read_text())
    assert starts[0] == min(dt.date.fromisoformat(r["start_date"]) for r in config["resources"])
    assert ends[-1] == dt.datetime.now(dt.UTC).date()
    assert all(later == earlier + dt.timedelta(days=1) for earlier, later in zip(ends, starts[1:], strict=False))
    assert all((end - start).days == 6 for start, end in zip(starts[:-1], ends[:-1], strict=True))  # 7-day chunks
    assert calls.index(imports[-1]) < calls.index(next(c for c in calls if c["command"] == "xdmod-ingestor"))


def test_an_unchanged_run_records_nothing_and_imports_nothing(hierarchy_site, first_run):
    site, standin, env, _mapping, conn, _ = hierarchy_site
    rows_before, calls_before = history_rows(conn), len(standin.calls())
    status, log = run(site, env)
    assert status == 0, log[-4000:]
    again = latest(site)
    assert all(change["opened"] == change["closed"] == 0 for change in again["manifest"]["changes"].values())
    assert history_rows(conn) == rows_before
    assert again["files"] == first_run[0]["files"]
    assert "XDMoD already imported these exact files" in log and len(standin.calls()) == calls_before


def test_one_changed_source_imports_only_the_file_it_changed(hierarchy_site, first_run):
    site, standin, env, mapping, conn, _ = hierarchy_site
    standin.reset()
    mapping.write_text(mapping.read_text().replace("title: Smith Lab}", "title: Smith Lab (renamed)}"))
    rows_before = history_rows(conn)
    status, log = run(site, env)
    assert status == 0, log[-4000:]
    changes = latest(site)["manifest"]["changes"]
    assert changes["hierarchy"]["opened"] == changes["hierarchy"]["closed"] == 1
    assert history_rows(conn) == rows_before + 1
    imports = [call["argv"][1] for call in standin.calls() if call["command"] == "xdmod-import-csv"]
    assert imports == ["hierarchy"]


def test_a_past_runs_files_regenerate_byte_for_byte(hierarchy_site, first_run):
    site, standin, env, *_ = hierarchy_site
    standin.reset()
    as_of = first_run[0]["manifest"]["as_of"]
    status, log = run(site, env, {"as_of": as_of})
    assert status == 0, log[-4000:]
    (regenerated,) = (site.staging_root / "_hierarchy").glob("as-of-*/manifest.json")
    manifest = json.loads(regenerated.read_text())
    files = {name: (regenerated.parent / manifest["files"][f"{name}.csv"]["path"]).read_bytes() for name in CSV_FILES}
    assert files == first_run[0]["files"] and manifest["regenerated"] is True
    assert "regenerated files are only staged" in log and standin.calls() == []  # no import without import_files


def test_a_broken_source_fails_the_run_and_records_nothing(hierarchy_site, first_run):
    site, _standin, env, mapping, conn, _ = hierarchy_site
    rows_before = history_rows(conn)
    text = mapping.read_text()
    mapping.write_text(text.replace("title: Arctic (HPC account)", "titel: Arctic (HPC account)"))
    try:
        status, log = run(site, env)
    finally:
        mapping.write_text(text)
    assert status != 0
    assert f"{mapping}: projects.arctic_mb.titel: unknown key" in log
    assert history_rows(conn) == rows_before
    bad_token = {**env, "AIRFLOW_CONN_COLDFRONT": json.dumps({**json.loads(env["AIRFLOW_CONN_COLDFRONT"]),
                                                              "password": "not-the-token"})}  # fmt: skip
    status, log = run(site, bad_token)
    assert status != 0 and "refused the API token (HTTP 401" in log and "not-the-token" not in log
    assert history_rows(conn) == rows_before


def test_the_history_database_names_who_said_what(hierarchy_site, first_run):
    *_, conn, _services = hierarchy_site
    cursor = conn.cursor()
    cursor.execute("SELECT source, COUNT(*) FROM xu_hierarchy_dag.hierarchy_current GROUP BY source")
    sources = dict(cursor.fetchall())
    assert set(sources) >= {"coldfront", "openshift:ocp-demo", "openstack:cloud-demo"}
    assert any(name.startswith("file:") for name in sources)


def test_dag_log_keeps_tokens_and_passwords_out(hierarchy_site, first_run):
    _site, _standin, env, *_ = hierarchy_site
    log = first_run[2]
    assert json.loads(env["AIRFLOW_CONN_COLDFRONT"])["password"] not in log
    assert MARIADB_PAIR_PASSWORD not in log
    assert Path(first_run[0]["dir"]).is_dir()
