"""XDMoD backup and restore on two real MariaDB servers (started by scripts/services/mariadb.sh).

The source holds XDMoD-like databases (InnoDB and Aria tables, BLOBs, non-ASCII text, a view,
routines, a trigger, an event); the second server is the scratch server for verification and
the restore target. The DAGs run under `airflow dags test`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from conftest import MARIADB_PAIR_PASSWORD as PASSWORD
from conftest import MARIADB_PAIR_PORTS as SERVERS
from conftest import ROOT, STATE, start_pair_server
from xdmod_usage.backup_catalog import BackupInfo, list_backups, plan_retention, read_json
from xdmod_usage.backup_dump import DumpOptions, DumpSplitter, mysqldump_argv
from xdmod_usage.backup_make import make_backup
from xdmod_usage.backup_restore import RestoreRefusedError, VerificationError, restore_backup, verify_backup
from xdmod_usage.mysql_client import DbEndpoint, defaults_file
from xdmod_usage.staging import Store
from xdmod_usage.synthetic_xdmod_db import DATABASES, create_xdmod_like, insert_jobs

OPTIONS = DumpOptions(databases=["moddb", "modw"], patterns=["mod%"], optional=["modw_cloud"],
                      users=["xdmod", "xdmod_ro"])  # fmt: skip
RO_PASSWORD = "ro-pw 'quoted' ✓"


@pytest.fixture
def source(mariadb_pair):
    """Fresh XDMoD-like databases and a second account (password with quotes, grants on modw)."""
    endpoint = mariadb_pair["source"]
    create_xdmod_like(endpoint, jobs=3000)
    conn = endpoint.connect()
    cursor = conn.cursor()
    for host in ("127.0.0.1", "localhost"):
        cursor.execute("DROP USER IF EXISTS %s@%s", ("xdmod_ro", host))
        cursor.execute("CREATE USER %s@%s IDENTIFIED BY %s", ("xdmod_ro", host, RO_PASSWORD))
        cursor.execute("GRANT SELECT ON modw.* TO %s@%s", ("xdmod_ro", host))
    conn.close()
    return endpoint


@pytest.fixture
def scratch(mariadb_pair):
    endpoint = mariadb_pair["scratch"]
    conn = endpoint.connect()
    cursor = conn.cursor()
    cursor.execute("SHOW DATABASES")
    for (name,) in cursor.fetchall():
        if name.startswith(("mod", "xuv_")):
            cursor.execute(f"DROP DATABASE `{name}`")
    for host in ("127.0.0.1", "localhost"):
        cursor.execute("DROP USER IF EXISTS %s@%s", ("xdmod_ro", host))
    conn.close()
    return endpoint


def query(endpoint: DbEndpoint, sql: str, args: tuple = ()) -> list[tuple]:
    conn = endpoint.connect()
    try:
        cursor = conn.cursor()
        cursor.execute(sql, args)
        return list(cursor.fetchall())
    finally:
        conn.close()


def checksums(endpoint: DbEndpoint, tables: list[str]) -> dict[str, int]:
    return {row[0]: row[1] for row in query(endpoint, "CHECKSUM TABLE " + ", ".join(tables))}


ALL_TABLES = ["moddb.Users", "moddb.UserAudit", "modw.jobfact", "modw.resourcefact", "modw_aggregates.jobfact_by_day",
              "mod_logger.log_table", "mod_hpcdb.hpcdb_people"]  # fmt: skip


def test_backup_verifies_and_restores_everything_byte_for_byte(source, scratch, tmp_path):
    store = Store.from_path(tmp_path / "backups")
    facts = make_backup(store, source, OPTIONS, 6, None)
    assert sorted(facts["databases"]) == sorted(DATABASES)
    assert facts["absent_optional"] == ["modw_cloud"]
    server = facts["server"]
    assert server["version"].startswith("10.11") and server["endpoint"] == f"127.0.0.1:{SERVERS['source']}"
    assert server["file"].startswith("binlog.") and server["position"] > 0 and server["gtid_binlog_pos"]
    assert facts["databases"]["modw"]["tables"]["jobfact"]["rows"] == 3000
    assert facts["databases"]["moddb"] | {"tables": None, "file": None} == {
        "tables": None, "file": None, "views": 1, "routines": 1, "events": 1, "triggers": 1,
        "charset": "utf8mb4", "collation": "utf8mb4_general_ci"}  # fmt: skip
    assert facts["users"]["accounts"] == ["xdmod@127.0.0.1", "xdmod@localhost", "xdmod_ro@127.0.0.1",
                                          "xdmod_ro@localhost"]  # fmt: skip
    # Nothing marks it usable before verification.
    assert [(b.id, b.status) for b in list_backups(store)] == [(facts["id"], "unverified")]

    manifest = verify_backup(store, facts["id"], scratch, None)
    assert [(b.id, b.status) for b in list_backups(store)] == [(facts["id"], "verified")]
    assert manifest["verification"]["databases"]["modw"]["rows"] == 3003
    assert not query(scratch, "SHOW DATABASES LIKE 'xuv%%'")  # scratch copies dropped after the pass

    report = restore_backup(store, manifest, scratch, None)
    assert report["databases"]["moddb"] == {**report["databases"]["moddb"], "tables": 2, "rows": 400}
    assert checksums(scratch, ALL_TABLES) == checksums(source, ALL_TABLES)
    # Non-ASCII text, quotes, newlines and every byte value in BLOBs came back unchanged.
    assert query(scratch, "SELECT jobname, script FROM modw.jobfact WHERE job_id = 3") == query(
        source, "SELECT jobname, script FROM modw.jobfact WHERE job_id = 3")  # fmt: skip
    assert query(scratch, "SELECT full_name FROM moddb.Users WHERE id = 4")[0][0] == 'O\'Brien, "Bob"'
    assert query(scratch, "SELECT moddb.initials('Zoë')")[0][0] == "Z."
    assert query(scratch, "SELECT DEFINER, STATUS FROM information_schema.EVENTS WHERE EVENT_SCHEMA = 'moddb'") == [
        ("xdmod@127.0.0.1", "DISABLED")]  # fmt: skip
    # The trigger was restored and works; the view too.
    conn = scratch.connect()
    conn.cursor().execute("INSERT INTO moddb.Users (username, full_name, created) VALUES ('new', 'N', NOW())")
    conn.close()
    assert query(scratch, "SELECT note FROM moddb.UserAudit ORDER BY id DESC LIMIT 1") == [("created new",)]
    assert query(scratch, "SELECT COUNT(*) FROM moddb.UserNames") == [(201,)]
    # The account came back with its password and grant.
    ro = DbEndpoint("127.0.0.1", SERVERS["scratch"], "xdmod_ro", RO_PASSWORD)
    assert query(ro, "SELECT COUNT(*) FROM modw.jobfact") == [(3000,)]


def test_restore_refuses_a_non_empty_target_unless_told_to_replace(source, scratch, tmp_path):
    store = Store.from_path(tmp_path / "backups")
    facts = make_backup(store, source, OPTIONS, 1, None)
    manifest = verify_backup(store, facts["id"], scratch, None)
    restore_backup(store, manifest, scratch, None, databases=["modw"])
    conn = scratch.connect()
    conn.cursor().execute("DELETE FROM modw.jobfact WHERE job_id < 100")
    conn.close()
    with pytest.raises(RestoreRefusedError, match="already has tables in modw"):
        restore_backup(store, manifest, scratch, None, databases=["modw"])
    assert query(scratch, "SELECT COUNT(*) FROM modw.jobfact") == [(2900,)]  # untouched
    report = restore_backup(store, manifest, scratch, None, databases=["modw"], replace=True)
    assert report["databases"]["modw"]["rows"] == 3003
    assert query(scratch, "SELECT COUNT(*) FROM modw.jobfact") == [(3000,)]


def test_writes_during_the_dump_do_not_cause_a_false_failure(source, scratch, tmp_path):
    """Writers keep inserting (InnoDB and a non-transactional Aria table) while a ~2 s dump runs."""
    create_xdmod_like(source, jobs=3000, filler_mb=60)
    store = Store.from_path(tmp_path / "backups")
    stop, written = threading.Event(), {"innodb": 0, "aria": 0}

    def writer() -> None:
        conn = source.connect()
        cursor = conn.cursor()
        n = 10_000_000
        while not stop.is_set():
            insert_jobs(cursor, n, 5)
            cursor.execute("INSERT INTO mod_logger.log_table (logtime, ident, message) VALUES (NOW(), 'w', 'ü')")
            written["innodb"] += 6
            cursor.execute("UPDATE modw_aggregates.jobfact_by_day SET job_count = job_count + 1 LIMIT 1")
            written["aria"] += 1
            n += 5
        conn.close()

    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(0.3)
    try:
        before = written["innodb"]
        facts = make_backup(store, source, OPTIONS, 1, None)
        during = written["innodb"] - before
    finally:
        stop.set()
        thread.join()
    assert during > 50, f"only {during} rows were written during the dump: the test shows nothing"
    snapshot_rows = facts["databases"]["modw"]["tables"]["jobfact"]["rows"]
    assert query(source, "SELECT COUNT(*) FROM modw.jobfact")[0][0] > snapshot_rows
    aggregates = facts["databases"]["modw_aggregates"]["tables"]["jobfact_by_day"]
    assert aggregates["changed_during_dump"] is True  # non-transactional and written: flagged, not compared
    manifest = verify_backup(store, facts["id"], scratch, None)
    assert manifest["verification"]["databases"]["modw"]["rows"] == snapshot_rows + 3
    assert manifest["verification"]["databases"]["modw_aggregates"]["not_comparable"] == 1


def _server_pid(name: str) -> int:
    return int((STATE / f"backup-{name}" / "mariadbd.server.pid").read_text().strip())


def test_source_killed_mid_dump_leaves_nothing_complete_and_the_retry_succeeds(source, scratch, tmp_path):
    create_xdmod_like(source, jobs=3000, filler_mb=150)
    store = Store.from_path(tmp_path / "backups")
    outcome: dict = {}

    def attempt() -> None:
        try:
            make_backup(store, source, OPTIONS, 1, None)
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=attempt)
    thread.start()
    deadline = time.monotonic() + 30
    while not list((tmp_path / "backups").rglob(".*.tmp")):  # the first file is being written
        assert time.monotonic() < deadline, "the dump never started writing"
        time.sleep(0.01)
    os.kill(_server_pid("source"), signal.SIGKILL)
    thread.join(timeout=120)
    assert "error" in outcome, "the dump survived the server's death"
    (failed,) = list_backups(store)
    assert failed.status == "incomplete"
    leftovers = [p for p in (tmp_path / "backups").rglob("*") if p.is_file()]
    assert leftovers == [], f"a failed attempt left files: {leftovers}"

    start_pair_server("source")  # what a retry meets after the server came back
    facts = make_backup(store, source, OPTIONS, 1, None)
    verify_backup(store, facts["id"], scratch, None)
    assert [b.status for b in list_backups(store)] == ["incomplete", "verified"]
    plan = plan_retention(list_backups(store), weekly=4, monthly=6)
    assert plan.delete == {failed.id: f"incomplete attempt, superseded by {facts['id']}"}


def test_a_corrupted_stored_file_fails_verification(source, scratch, tmp_path):
    store = Store.from_path(tmp_path / "backups")
    facts = make_backup(store, source, OPTIONS, 6, None)
    path = tmp_path / "backups" / facts["databases"]["modw"]["file"]["path"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(VerificationError, match="sha256") as raised:
        verify_backup(store, facts["id"], scratch, None)
    assert raised.value.retryable is False
    assert [b.status for b in list_backups(store)] == ["failed"]
    failed = read_json(store, f"backups/{facts['id']}/failed.json")
    assert "modw.sql.gz" in failed["problems"][0]


def test_encrypted_backup_on_s3_verifies_and_restores(source, scratch, s3_endpoint, monkeypatch):
    import base64

    import boto3
    from airflow.sdk import ObjectStoragePath

    monkeypatch.setenv("AIRFLOW_CONN_BACKUP_S3", json.dumps({"conn_type": "aws", "login": "testing",
        "password": "testing", "extra": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"}}))  # fmt: skip
    client = boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id="testing",
                          aws_secret_access_key="testing", region_name="us-east-1")  # fmt: skip
    client.create_bucket(Bucket="xdmod-backups")
    store = Store.from_path(ObjectStoragePath("s3://xdmod-backups/site", conn_id="backup_s3"))
    key = base64.b64decode(base64.b64encode(bytes(range(32))))
    facts = make_backup(store, source, OPTIONS, 6, key)
    keys = sorted(obj["Key"] for obj in client.list_objects_v2(Bucket="xdmod-backups")["Contents"])
    assert f"site/backups/{facts['id']}/db/modw.sql.gz.aes" in keys
    body = client.get_object(Bucket="xdmod-backups", Key=f"site/backups/{facts['id']}/db/moddb.sql.gz.aes")
    raw = body["Body"].read()
    assert raw.startswith(b"XUENC1") and b"O'Brien" not in raw
    with pytest.raises(VerificationError):
        verify_backup(store, facts["id"], scratch, bytes(32))  # the wrong key cannot read it
    manifest = verify_backup(store, facts["id"], scratch, key)
    assert manifest["encryption"]["key_id"] and manifest["status"] == "verified"
    restore_backup(store, manifest, scratch, key, databases=["modw"])
    assert checksums(scratch, ["modw.jobfact"]) == checksums(source, ["modw.jobfact"])


def test_retention_keeps_weekly_and_monthly_and_never_the_last_verified():
    def info(day: str, status: str = "verified") -> BackupInfo:
        taken = dt.datetime.fromisoformat(day).replace(hour=3, tzinfo=dt.UTC)
        return BackupInfo(taken.strftime("%Y%m%dT%H%M%SZ"), taken, status)

    weekly = [info(f"2026-{m:02d}-{d:02d}") for m, d in ((8, 2), (8, 9), (8, 30), (9, 6), (9, 27), (10, 4),
              (10, 11), (10, 18), (10, 25), (11, 1), (11, 8), (11, 15))]  # fmt: skip
    backups = [*weekly, info("2026-11-14", "failed"), info("2026-11-22", "incomplete")]
    plan = plan_retention(sorted(backups, key=lambda b: b.taken_at), weekly=4, monthly=3)
    kept = sorted(plan.keep)
    # 4 weekly: Nov 15, 8, 1, Oct 25; monthly: newest of Nov (15), Oct (25), Sep (27); plus the in-progress attempt.
    assert kept == sorted(b.id for b in [weekly[11], weekly[10], weekly[9], weekly[8], weekly[4], backups[-1]])
    assert sorted(plan.delete) == sorted(b.id for b in [*weekly[:4], *weekly[5:8], backups[-2]])
    # Only failed attempts and nothing verified: nothing is deleted.
    assert plan_retention([info("2026-11-01", "failed"), info("2026-11-08", "unverified")], 1, 0).delete == {}
    # The one verified backup is kept whatever the counts; older attempts go.
    only = info("2026-01-04")
    plan = plan_retention([info("2026-01-01", "incomplete"), only], 1, 0)
    assert plan.keep == {only.id: "newest verified backup"} and list(plan.delete) == ["20260101T030000Z"]


def test_credentials_never_on_a_command_line():
    endpoint = DbEndpoint("db.example", 3306, "xdmod", 's3cr3t "quoted" \\ back')
    with defaults_file(endpoint) as cnf:
        assert oct(cnf.stat().st_mode & 0o777) == "0o600"
        argv = mysqldump_argv("mysqldump", str(cnf), ["modw"])
        assert not any("s3cr3t" in word for word in argv)
        assert 'password="s3cr3t \\"quoted\\" \\\\ back"' in cnf.read_text()
    assert not cnf.exists()
    assert "s3cr3t" not in repr(endpoint)


def test_splitter_routes_sections_and_ignores_markers_inside_routine_bodies():
    sinks: dict[str, list[bytes]] = {}

    class Sink(list):
        write = list.append

    def open_sink(name: str) -> Sink:
        return sinks.setdefault(name, Sink())

    splitter = DumpSplitter(["a", "b"], open_sink)
    for line in [b"-- header\n", b"SET NAMES utf8mb4;\n", b"--\n", b"-- Current Database: `a`\n", b"--\n", b"\n",
                 b"CREATE DATABASE /*!32312 IF NOT EXISTS*/ `a`;\n", b"\n", b"USE `a`;\n", b"INSERT 1;\n",
                 b"-- Current Database: `a`\n",  # inside a body: a is open, b not yet: no reroute
                 b"-- Current Database: `c`\n", b"-- Current Database: `b`\n", b"USE `b`;\n", b"INSERT 2;\n",
                 b"-- Current Database: `a`\n", b"USE `a`;\n", b"VIEW a;\n"]:  # fmt: skip
        splitter.feed(line)
    splitter.check_complete()
    assert b"".join(sinks["a"]) == (b"-- header\nSET NAMES utf8mb4;\n--\n-- Current Database: `a`\n--\n\n\nINSERT 1;\n"
                                   b"-- Current Database: `a`\n-- Current Database: `c`\n-- Current Database: `a`\n"
                                   b"VIEW a;\n")  # fmt: skip
    assert b"".join(sinks["b"]) == b"-- header\nSET NAMES utf8mb4;\n--\n-- Current Database: `b`\nINSERT 2;\n"


# --- the DAGs under `airflow dags test` -------------------------------------------------------------------------


def _airflow(env: dict[str, str], *args: str, log: Path) -> int:
    import subprocess

    with open(log, "a") as out:
        return subprocess.run([str(Path(sys.executable).with_name("airflow")), *args], env=env, stdout=out,
                              stderr=subprocess.STDOUT).returncode  # fmt: skip


def _site_env(tmp_path: Path, mariadb_pair: dict, backup: dict, extra_env: dict | None = None) -> dict[str, str]:
    example = yaml.safe_load((ROOT / "include" / "site-config.example.yaml").read_text())
    staging = tmp_path / "staging"
    resource = {**example["resources"][0], "lateness_deadline": None}
    config = {"staging": {"root": f"file://{staging}"}, "tasks": {"retries": 1, "retry_delay": "1s",
              "max_retry_delay": "2s", "execution_timeout": "10m"}, "resources": [resource],
              "backup": {"lateness_deadline": None, "databases": ["moddb", "modw"], "users": ["xdmod", "xdmod_ro"],
                         "store": {"root": f"file://{tmp_path / 'backups'}"}, **backup}}  # fmt: skip
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(config))
    conns = {f"AIRFLOW_CONN_{name.upper()}": json.dumps({"conn_type": "mysql", "host": "127.0.0.1",
             "port": SERVERS[server], "login": "xdmod", "password": PASSWORD})
             for name, server in (("xdmod_db", "source"), ("xdmod_backup_scratch", "scratch"),
                                  ("restore_target", "scratch"))}  # fmt: skip
    return {**os.environ, "XDMOD_USAGE_CONFIG": str(path), **conns, **(extra_env or {})}


def _stage_a_day(tmp_path: Path) -> dict:
    """One real staged Slurm day (synthetic sacct lines) whose raw archive the backup must copy."""
    from xdmod_usage.slurm_pipeline import SlurmDay, stage_slurm_day
    from xdmod_usage.synthetic import synthetic_sacct_lines
    from xdmod_usage.window import UsageWindow

    window = UsageWindow.for_day(dt.date(2026, 11, 20))
    lines = b"".join(synthetic_sacct_lines(window, 500))
    result = stage_slurm_day(Store.from_path(tmp_path / "staging"), SlurmDay("hpc1", "hpc1", "synth", window),
                             lambda out: out.write(lines), {"type": "t"}, max_quarantine_share=1.0)  # fmt: skip
    return json.loads(Path(result.manifest_url.removeprefix("file://")).read_text())


def _asset_events(backup_id: str) -> dict[str, dict]:
    import sqlite3

    with sqlite3.connect(Path(os.environ["AIRFLOW_HOME"]) / "airflow.db") as db:
        rows = db.execute("SELECT a.name, e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id").fetchall()
    return {name: json.loads(extra) for name, extra in rows if backup_id in extra}


def _lineage_events(log: Path) -> dict[str, dict]:
    """COMPLETE events the OpenLineage console transport wrote into the log, by job name."""
    events = {}
    for line in log.read_text().splitlines():
        if '"eventType": "COMPLETE"' in line and "openlineage.client.transport.console" in line:
            event = json.loads(line[line.index("{") : line.rindex("}") + 1])
            events[event["job"]["name"]] = event
    return events


def test_backup_dag_then_restore_dag(source, scratch, tmp_path, airflow_db, receivers):
    config_dir = tmp_path / "etc" / "xdmod"
    (config_dir / "roles.d").mkdir(parents=True)
    (config_dir / "portal_settings.ini").write_text('[general]\ntitle = "Zoë\'s XDMoD"\n')
    (config_dir / "roles.d" / "usr.json").write_text("{}\n")
    staged = _stage_a_day(tmp_path)
    routes = [{"type": "webhook", "conn_id": "alert_hook"}]
    lineage = {"AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "console"})}  # events into the task log
    env = _site_env(tmp_path, {}, {"config": {"path": str(config_dir)}, "alerts": routes},
                    {**receivers.env, **lineage})  # fmt: skip
    log = tmp_path / "airflow.log"
    _airflow(env, "pools", "set", "xdmod", "1", "XDMoD", "--include-deferred", log=log)
    assert _airflow(env, "dags", "test", "xdmod_backup", "2026-11-22T03:00:00+00:00", log=log) == 0, log.read_text()
    store = Store.from_path(tmp_path / "backups")
    (done,) = list_backups(store)
    assert done.status == "verified"
    manifest = read_json(store, f"backups/{done.id}/manifest.json")
    assert manifest["config"]["source"] == f"path:{config_dir}"
    raw = staged["files"]["raw.sacct.gz"]
    (copied,) = manifest["archive"]["files"]
    path = f"archive/hpc1/2026-11-20/{raw['sha256'][:16]}-raw.sacct.gz"
    assert copied == {"resource": "hpc1", "day": "2026-11-20", "name": "raw.sacct.gz", "sha256": raw["sha256"],
                      "bytes": raw["bytes"], "path": path, "copied_now": True}  # fmt: skip
    assert (tmp_path / "backups" / copied["path"]).stat().st_size == raw["bytes"]
    text = log.read_text()
    assert PASSWORD not in text and RO_PASSWORD not in text
    assert "backup " + done.id + f" verified on 127.0.0.1:{SERVERS['scratch']}" in text
    events = _asset_events(done.id)  # one asset event per database backup, with its facts
    assert sorted(events) == [f"xdmod_backup.{db}" for db in sorted(DATABASES)]
    modw = manifest["databases"]["modw"]["file"]
    assert events["xdmod_backup.modw"] == {"backup_id": done.id, "url": store.url(modw["path"]),
                                           "sha256": modw["sha256"], "bytes": modw["bytes"], "rows": 3003}  # fmt: skip
    assert receivers.posts == []
    dumped = _lineage_events(log)["xdmod_backup.dump_databases"]
    inputs = {(d["namespace"], d["name"]) for d in dumped["inputs"]}
    outputs = {(d["namespace"], d["name"]) for d in dumped["outputs"]}
    source_ns = f"mysql://127.0.0.1:{SERVERS['source']}"
    assert {(source_ns, "modw.jobfact"), (source_ns, "moddb.Users")} <= inputs
    assert ("file", str(tmp_path / "backups" / modw["path"])) in outputs

    # The restore refuses without the confirmation, then restores with it.
    conf = {"backup_id": done.id, "target_conn_id": "restore_target", "config_dir": str(tmp_path / "restored-etc")}
    code = _airflow(env, "dags", "test", "xdmod_restore", "--conf", json.dumps(conf), log=log)
    assert code != 0 and "params.confirm must repeat the backup id" in log.read_text()
    assert not query(scratch, "SHOW DATABASES LIKE 'modw'")
    code = _airflow(env, "dags", "test", "xdmod_restore", "--conf", json.dumps({**conf, "confirm": done.id}), log=log)
    assert code == 0, log.read_text()[-5000:]
    assert checksums(scratch, ALL_TABLES) == checksums(source, ALL_TABLES)
    assert (tmp_path / "restored-etc" / "portal_settings.ini").read_text() == '[general]\ntitle = "Zoë\'s XDMoD"\n'
    assert "restored modw: 2 tables, 3003 rows, matching the backup's snapshot" in log.read_text()
    restored = _lineage_events(log)["xdmod_restore.restore"]
    scratch_ns = f"mysql://127.0.0.1:{SERVERS['scratch']}"
    assert (scratch_ns, "modw.jobfact") in {(d["namespace"], d["name"]) for d in restored["outputs"]}

    # A stored file corrupted since: the restore's check fails before touching anything, and alerts.
    corrupt = tmp_path / "backups" / manifest["databases"]["moddb"]["file"]["path"]
    data = bytearray(corrupt.read_bytes())
    data[len(data) // 2] ^= 0x01
    corrupt.write_bytes(bytes(data))
    code = _airflow(env, "dags", "test", "xdmod_restore", "--conf", json.dumps({**conf, "confirm": done.id,
                    "replace": True}), log=log)  # fmt: skip
    assert code != 0
    refused, alert = [body for _path, body in receivers.posts]  # the unconfirmed trigger alerted too
    assert "params.confirm must repeat the backup id" in refused["error"]
    assert alert["dag_id"] == "xdmod_restore" and alert["task_id"] == "check_backup"
    assert "moddb.sql.gz: sha256" in alert["error"] and "manifest says" in alert["error"]
    assert checksums(scratch, ALL_TABLES) == checksums(source, ALL_TABLES)  # untouched


def test_backup_operator_lineage(source, scratch, tmp_path, monkeypatch):
    from xdmod_usage.backup_tasks import XdmodBackupOperator
    from xdmod_usage.config import parse_site_config

    env = _site_env(tmp_path, {}, {"config": {"source": "none"}})
    for key, value in env.items():
        if key.startswith("AIRFLOW_CONN_"):
            monkeypatch.setenv(key, value)
    site = parse_site_config(Path(env["XDMOD_USAGE_CONFIG"]).read_text())
    operator = XdmodBackupOperator(task_id="dump_databases", site=site)
    result = operator.execute({})
    lineage = operator.get_openlineage_facets_on_complete(None)
    inputs = {(d.namespace, d.name) for d in lineage.inputs}
    assert (f"mysql://127.0.0.1:{SERVERS['source']}", "modw.jobfact") in inputs and len(inputs) == len(ALL_TABLES)
    outputs = {(d.namespace, d.name) for d in lineage.outputs}
    assert ("file", str(tmp_path / "backups" / "backups" / result["id"] / "db" / "modw.sql.gz")) in outputs


def test_retention_on_the_store_removes_exactly_the_planned_backups(tmp_path):
    from xdmod_usage.backup_catalog import apply_retention, write_json

    store = Store.from_path(tmp_path / "backups")
    made = {}
    for day, status in (("2026-09-06", "verified"), ("2026-10-04", "verified"), ("2026-10-11", "verified"),
                        ("2026-10-18", "failed"), ("2026-10-25", "verified"), ("2026-11-01", "incomplete"),
                        ("2026-11-08", "verified"), ("2026-11-15", "unverified")):  # fmt: skip
        ident = dt.datetime.fromisoformat(day).strftime("%Y%m%dT030000Z")
        store.put_bytes(f"backups/{ident}/db/modw.sql.gz", b"x")
        name = {"verified": "manifest.json", "failed": "failed.json", "unverified": "dump.json"}.get(status)
        if name:
            write_json(store, f"backups/{ident}/{name}", {"id": ident})
        made[day] = ident
    store.put_bytes("archive/hpc1/2026-09-01/abc-raw.sacct.gz", b"raw")
    plan = apply_retention(store, weekly=2, monthly=2)
    # Weekly: Nov 8, Oct 25; monthly: Nov (Nov 8), Oct (Oct 25); the unverified Nov 15 is newer: kept.
    assert sorted(plan.keep) == [made["2026-10-25"], made["2026-11-08"], made["2026-11-15"]]
    assert sorted(store.list_names("backups")) == sorted(plan.keep)
    assert store.exists("archive/hpc1/2026-09-01/abc-raw.sacct.gz")  # the raw archive is never pruned


def test_config_from_the_xdmod_host_over_ssh(sshd_login, tmp_path, monkeypatch):
    """backup.config.source: ssh — a tar made on the "XDMoD host" (a real sshd) streamed into the store."""
    import tarfile

    from xdmod_usage.backup_streams import open_object
    from xdmod_usage.backup_tasks import backup_config
    from xdmod_usage.config import parse_site_config

    etc = tmp_path / "remote-etc" / "xdmod"
    etc.mkdir(parents=True)
    (etc / "portal_settings.ini").write_text("[database]\npass = 'kept in the backup'\n")
    for key, value in sshd_login.airflow_env("xdmod_ssh").items():
        monkeypatch.setenv(key, value)
    config = yaml.safe_load((ROOT / "include" / "site-config.example.yaml").read_text())
    config["xdmod"] = {"runner": "ssh", "ssh": {"conn_id": "xdmod_ssh"}}
    config["backup"] = {"config": {"source": "ssh", "path": str(etc)},
                        "store": {"root": f"file://{tmp_path / 'backups'}"}}  # fmt: skip
    site = parse_site_config(yaml.safe_dump(config))
    entry = backup_config(site, "20261122T030000Z")
    assert entry["source"] == f"ssh:{etc}"
    store = Store.from_path(tmp_path / "backups")
    with open_object(store, entry, None) as plain, tarfile.open(fileobj=plain, mode="r|") as tar:
        members = {m.name: tar.extractfile(m).read() if m.isfile() else None for m in tar}
    assert members["xdmod/portal_settings.ini"] == b"[database]\npass = 'kept in the backup'\n"

    config["backup"]["config"]["path"] = str(tmp_path / "missing")
    with pytest.raises(RuntimeError, match="exited 2 on the remote host"):
        backup_config(parse_site_config(yaml.safe_dump(config)), "20261122T040000Z")
    stored = [path.parent.name for path in (tmp_path / "backups").rglob("config.tar*")]
    assert stored == ["20261122T030000Z"], "a failed tar must not be stored"


def test_preflight_checks_the_backup_setup(source, scratch, tmp_path, monkeypatch):
    from xdmod_usage.config import parse_site_config
    from xdmod_usage.preflight import check_backup, judge_backup_grants

    env = _site_env(tmp_path, {}, {"config": {"source": "none"}})
    for key, value in env.items():
        if key.startswith("AIRFLOW_CONN_"):
            monkeypatch.setenv(key, value)
    site = parse_site_config(Path(env["XDMOD_USAGE_CONFIG"]).read_text())

    def verdicts() -> dict[str, tuple[bool | None, str]]:
        return {check.name: (check.ok, check.detail) for check in check_backup(site)}

    found = verdicts()
    assert all(ok for ok, _ in found.values()), found
    absent = "['modw_etl', 'modw_cloud', 'modw_supremm', 'modw_jobefficiency', 'modw_ondemand', 'mod_appkernel', "
    assert found["backup databases"] == (True, f"5 to dump; optional absent: {absent}'modw_gateways']")
    conn = scratch.connect()
    conn.cursor().execute("SET GLOBAL event_scheduler = ON")
    try:
        ok, detail = verdicts()["backup scratch event_scheduler"]
        assert not ok and "set it OFF" in detail
    finally:
        conn.cursor().execute("SET GLOBAL event_scheduler = OFF")
        conn.close()
    assert judge_backup_grants(["GRANT SELECT, LOCK TABLES ON *.* TO `b`@`%`", "GRANT ALL ON `modw`.* TO `b`@`%`"]) \
        .detail == "missing on *.*: SHOW VIEW, TRIGGER, EVENT, PROCESS"  # fmt: skip
