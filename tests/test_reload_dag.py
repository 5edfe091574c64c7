"""Reconciliation and the reload DAG under `airflow dags test`, on the real Slurm (the session's cluster and
workload), the SSH runner into stand-in XDMoD commands on a real sshd, and XDMoD's tables the
reconciliation reads on the cluster's real MariaDB (the xdmod_db connection), kept by the stand-ins
(tests/xdmod_standin.py).

Asserted: a daily run reconciles equal counts and records it; a missing row fails the run and alerts with
both numbers; the reload lists by default, refuses an incomplete archive, a wrong confirmation and the loss
of jobs older than the archive, and otherwise deletes the resource's jobs, re-shreds every day in order,
ingests, emits the ingest event the aggregation DAG runs on, and reconciles every day: an extra row an
earlier collector left is gone and nothing is counted twice.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sqlite3
import sys

import pytest
from scripts.local_run import CLUSTER, DAG_ID, DAY, MARIADB_PASSWORD, NEXT_DAY, LocalSite

from xdmod_standin import apply_xdmod_schema, copy_job_row, install
from xdmod_usage.mysql_client import DbEndpoint

pytestmark = pytest.mark.slurm
REAL = {"dry_run": False}


@pytest.fixture(scope="module")
def reload_site(slurm_site, sshd_login, tmp_path_factory, airflow_db):
    cluster, _workload = slurm_site
    out = tmp_path_factory.mktemp("reload-dag")
    site = LocalSite(out / "state", out, cluster.ports)
    site.write_config(SLURM_CONF=cluster.slurm_conf)
    endpoint = DbEndpoint("127.0.0.1", int(cluster.ports["XU_MARIADB_PORT"]), "xdmod", MARIADB_PASSWORD)
    conn = endpoint.connect()
    apply_xdmod_schema(conn)
    standin = install(out / "xdmod-host", sys.executable, {"port": endpoint.port, "user": endpoint.user,
                                                           "password": endpoint.password})  # fmt: skip
    config = json.loads(site.config_path.read_text())
    config["xdmod"] = {"runner": "ssh", "pool": "xdmod", "db_conn_id": "xdmod_db", "input_dir": str(out / "input"),
                       "ssh": {"conn_id": "xdmod_host", "command_dir": str(standin.bin_dir)}}  # fmt: skip
    config["alerts"] = [{"type": "webhook", "conn_id": "alert_hook"}]
    config["tasks"]["retries"] = 0
    site.config_path.write_text(json.dumps(config, indent=1))
    site.prepare_airflow()
    yield site, standin, sshd_login.airflow_env("xdmod_host"), conn
    conn.close()


def held(conn, day) -> int:
    start = int(dt.datetime.combine(day, dt.time(0), tzinfo=dt.UTC).timestamp())
    cursor = conn.cursor()
    query = (
        "SELECT COUNT(*) FROM modw.job_tasks t JOIN modw.resourcefact r ON r.id = t.resource_id "
        "WHERE r.code = %s AND t.end_time_ts >= %s AND t.end_time_ts < %s"
    )
    cursor.execute(query, (CLUSTER, start, start + 86400))
    return cursor.fetchone()[0]


def retire(site, end_date) -> None:
    """end_date bounds the reload to the staged days (a manual daily run past end_date would run no task)."""
    config = json.loads(site.config_path.read_text())
    config["resources"][0]["end_date"] = end_date
    site.config_path.write_text(json.dumps(config, indent=1))


def reload(site, env, **conf):
    retire(site, NEXT_DAY.isoformat())
    log = site.output_dir / f"reload-{len(list(site.output_dir.glob('reload-*.log')))}.log"
    try:
        proc = site.airflow("dags", "test", "xdmod_reload", "2026-12-01T00:00:00+00:00", "--conf",
                            json.dumps({"resource": CLUSTER, **conf}), log=log, extra_env=env)  # fmt: skip
    finally:
        retire(site, None)
    return proc.returncode, log.read_text()


def asset_events(site) -> list[dict]:
    with sqlite3.connect(site.state_dir / "airflow" / "airflow.db") as db:
        rows = db.execute("SELECT a.name, e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id "
                          "WHERE a.name LIKE 'xdmod-ingest.%' ORDER BY e.id").fetchall()  # fmt: skip
    return [{"asset": name, **json.loads(extra)} for name, extra in rows]


@pytest.fixture(scope="module")
def ingested(reload_site):
    site, _standin, env, _conn = reload_site
    for day in (DAY, NEXT_DAY):
        status, log = site.run_day(day, conf=REAL, extra_env=env)
        assert status == 0, log.read_text()[-5000:]
    return {day: site.manifest(day) for day in (DAY, NEXT_DAY)}


def test_daily_runs_reconcile_equal_counts_and_record_it(reload_site, ingested):
    site, standin, _env, conn = reload_site
    for day, manifest in ingested.items():
        note = manifest["reconciliation"]
        assert note["status"] == "ok" and note["held"] == note["expected"] == manifest["counts"]["xdmod_rows"] > 0
        assert held(conn, day) == note["held"]
        assert manifest["xdmod_ingest"]["dry_run"] is False
    argvs = standin.argvs()
    assert [argv[0] for argv in argvs] == ["xdmod-shredder", "xdmod-ingestor"] * 2  # no aggregation here any more
    assert all("--aggregate=job" not in argv for argv in argvs)
    events = [e for e in asset_events(site) if e["asset"] == f"xdmod-ingest.job.{CLUSTER}"]
    assert [e["day"] for e in events][-2:] == [DAY.isoformat(), NEXT_DAY.isoformat()]
    assert all(e["dry_run"] is False and len(e["last_modified_start"]) == 19 for e in events[-2:])


def test_a_missing_row_fails_the_run_and_alerts_with_both_numbers(reload_site, ingested, receivers):
    site, _standin, env, conn = reload_site
    expected = ingested[DAY]["reconciliation"]["expected"]
    start = int(dt.datetime.combine(DAY, dt.time(0), tzinfo=dt.UTC).timestamp())
    conn.cursor().execute("DELETE FROM modw.job_tasks WHERE end_time_ts >= %s AND end_time_ts < %s ORDER BY job_id "
                          "LIMIT 1", (start, start + 86400))  # fmt: skip
    # The rerun's shred does not bring it back: identical lines are duplicates to XDMoD (and to the stand-in).
    status, log = site.run_day(DAY, conf=REAL, extra_env={**env, **receivers.env})
    text = log.read_text()
    assert status != 0
    (alert,) = [body for _path, body in receivers.posts if body.get("task_id") == "reconcile"]
    assert f"XDMoD holds {expected - 1} job rows, expected {expected}" in alert["error"]
    assert "missing" in alert["error"] and DAY.isoformat() in alert["error"]
    note = site.manifest(DAY)["reconciliation"]
    assert note["status"] == "mismatch" and (note["held"], note["expected"]) == (expected - 1, expected)
    assert "reconciliation failed" in text


def test_the_reload_lists_by_default_and_changes_nothing(reload_site, ingested):
    site, standin, env, _conn = reload_site
    calls = len(standin.calls())
    status, log = reload(site, env)
    assert status == 0, log[-4000:]
    assert f"{CLUSTER} ({CLUSTER}): 2 days {DAY} .. {NEXT_DAY}" in log
    assert f"xdmod-admin --jobs --delete={CLUSTER} --force" in log and "list only: nothing restaged or deleted" in log
    assert len(standin.calls()) == calls


def test_the_reload_refuses_an_incomplete_archive_and_deletes_nothing(reload_site, ingested):
    site, standin, env, _conn = reload_site
    manifest = site.manifest(NEXT_DAY)
    raw = site.staging_root / CLUSTER / NEXT_DAY.isoformat() / manifest["files"]["raw.sacct.gz"]["path"]
    aside = raw.with_name("aside")
    shutil.move(raw, aside)
    calls = len(standin.calls())
    try:
        status, log = reload(site, env, list_only=False, confirm=CLUSTER)
    finally:
        shutil.move(aside, raw)
    assert status != 0
    assert f"{CLUSTER} {NEXT_DAY}: raw.sacct.gz listed in the manifest is missing" in log
    assert "nothing was deleted" in log and len(standin.calls()) == calls


def test_the_reload_needs_the_confirmation_and_refuses_to_lose_older_jobs(reload_site, ingested):
    site, standin, env, conn = reload_site
    calls = len(standin.calls())
    status, log = reload(site, env, list_only=False, confirm="yes")
    assert status != 0 and f"confirm must be '{CLUSTER}'" in log
    # A job from before the resource's start_date (an earlier collector's): no archive of ours holds it.
    copy_job_row(conn, CLUSTER, id_offset=100000, end_shift=-30 * 86400)
    status, log = reload(site, env, list_only=False, confirm=CLUSTER)
    assert status != 0 and "XDMoD holds jobs that ended before these resources' start_date" in log
    conn.cursor().execute("DELETE FROM modw.job_tasks WHERE job_id > 100000")
    assert len(standin.calls()) == calls


def test_the_reload_deletes_reshreds_every_day_in_order_and_reconciles(reload_site, ingested):
    site, standin, env, conn = reload_site
    # An earlier collector's copy of a job with other ids: XDMoD now counts it twice.
    copy_job_row(conn, CLUSTER, id_offset=200000, jobid_offset=900000)
    standin.reset()
    status, log = reload(site, env, list_only=False, confirm=CLUSTER, dry_run=False)
    assert status == 0, log[-5000:]
    argvs = standin.argvs()
    subdir = f"{site.output_dir / 'input'}/reload-{CLUSTER}-{DAY:%Y-%m}"
    assert argvs == [["xdmod-admin", "--jobs", f"--delete={CLUSTER}", "--force"],
                     ["xdmod-shredder", "-r", CLUSTER, "-f", "slurm", "-d", subdir],
                     ["xdmod-ingestor", "--ingest"]]  # fmt: skip
    assert standin.calls()[1]["files"] == [f"slurm-{CLUSTER}-{day}.log" for day in (DAY, NEXT_DAY)]
    assert "0 day(s) changed by the rebuild" in log  # same code, same archive: the same bytes
    for day in (DAY, NEXT_DAY):
        note = site.manifest(day)["reconciliation"]
        assert note["status"] == "ok" and held(conn, day) == note["expected"] == site.manifest(day)["counts"][
            "xdmod_rows"]  # fmt: skip
        assert note["run_id"] != ingested[day]["reconciliation"]["run_id"]
    event = asset_events(site)[-1]
    assert event["asset"] == f"xdmod-ingest.job.{CLUSTER}" and event["reload"] is True
    assert event["day"] == f"{DAY}..{NEXT_DAY}" and event["dry_run"] is False


def test_the_dag_runs_daily_again_after_a_reload(reload_site, ingested):
    site, _standin, env, conn = reload_site
    status, log = site.run_day(NEXT_DAY, conf=REAL, extra_env=env)
    assert status == 0, log.read_text()[-4000:]
    assert site.manifest(NEXT_DAY)["reconciliation"]["status"] == "ok"
    assert held(conn, NEXT_DAY) == site.manifest(NEXT_DAY)["counts"]["xdmod_rows"]
    assert DAG_ID in log.read_text()
