"""Two DAGs' XDMoD commands never overlap, under a real scheduler and executor (`airflow standalone`:
scheduler, LocalExecutor, dag-processor, triggerer, API server, on SQLite), with the real Slurm as
the source and the SSH runner reaching stand-in XDMoD commands (which sleep) on a real sshd.

Two resources, two days each, four runs at once. The check is made on the metadata database's task
instances: every pair of tasks in the `xdmod` pool is disjoint in time, while tasks outside the pool
did run in parallel (so the executor could have overlapped them: the pool is what prevented it).
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from conftest import free_port

pytestmark = pytest.mark.slurm

STAND_IN = """#!/bin/sh
# Stand-in for an XDMoD command: takes a while, like the real one, and records its argv.
echo "$(date +%s.%N) $(basename "$0") $*" >> {record}
sleep 2
echo "done $(basename "$0")"
"""
SLOW_SACCT = """#!/bin/sh
# sacct that takes a few seconds, so the staging tasks of different runs overlap.
sleep 3
exec sacct "$@"
"""


def overlapping(intervals):
    return [(a, b) for a, b in itertools.combinations(intervals, 2) if a[1] < b[2] and b[1] < a[2]]


def test_xdmod_commands_of_two_dags_never_overlap(slurm_site, sshd_login, tmp_path):
    site, _ = slurm_site
    bin_dir, record = tmp_path / "xdmod-bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    for name in ("xdmod-shredder", "xdmod-ingestor"):
        (bin_dir / name).write_text(STAND_IN.format(record=record))
        (bin_dir / name).chmod(0o755)
    slow_sacct = tmp_path / "sacct"
    slow_sacct.write_text(SLOW_SACCT)
    slow_sacct.chmod(0o755)

    config = json.loads(site.config_path.read_text())
    config["xdmod"] = {"runner": "ssh", "pool": "xdmod", "db_conn_id": "xdmod_db",
                       "input_dir": str(tmp_path / "xdmod-input"),
                       "ssh": {"conn_id": "xdmod_host", "command_dir": str(bin_dir)}}  # fmt: skip
    base = config["resources"][0]
    config["resources"] = [
        {**base, "name": name, "xdmod_resource": name, "start_date": "2026-11-20", "end_date": "2026-11-21",
         "lateness_deadline": "12h",  # the scheduler path handles deadlines (dags test does not)
         "source": {**base["source"], "sacct_path": str(slow_sacct)}}
        for name in ("alpha", "beta")
    ]  # fmt: skip
    (tmp_path / "site.json").write_text(json.dumps(config))
    home, port = tmp_path / "airflow", free_port()
    env = {
        **site.airflow_env(),
        **sshd_login.airflow_env("xdmod_host"),
        "AIRFLOW_HOME": str(home),
        "XDMOD_USAGE_CONFIG": str(tmp_path / "site.json"),
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
    }
    airflow = [sys.executable, "-m", "airflow"]
    home.mkdir()
    subprocess.run([*airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    subprocess.run([*airflow, "pools", "set", "xdmod", "1", "XDMoD", "--include-deferred"], env=env, check=True,
                   capture_output=True)  # fmt: skip
    log = open(tmp_path / "standalone.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([*airflow, "standalone"], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    db = home / "airflow.db"
    try:
        deadline = time.monotonic() + 420
        states: list = []
        while time.monotonic() < deadline:
            time.sleep(5)
            assert proc.poll() is None, (tmp_path / "standalone.log").read_text()[-3000:]
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
                states = conn.execute("SELECT dag_id, state FROM dag_run WHERE dag_id LIKE 'usage_%'").fetchall()
            if len(states) == 4 and all(state in ("success", "failed") for _, state in states):
                break
        else:
            pytest.fail(f"runs did not finish: {states}\n{(tmp_path / 'standalone.log').read_text()[-3000:]}")
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
            rows = conn.execute(
                "SELECT dag_id || ' ' || run_id || ' ' || task_id, start_date, end_date, pool, state "
                "FROM task_instance WHERE start_date IS NOT NULL AND dag_id LIKE 'usage_%'"
            ).fetchall()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()

    assert sorted(states) == [("usage_slurm_alpha", "success")] * 2 + [("usage_slurm_beta", "success")] * 2, rows
    xdmod = [(name, start, end) for name, start, end, pool, _ in rows if pool == "xdmod"]
    others = [(name, start, end) for name, start, end, pool, _ in rows if pool != "xdmod"]
    assert len(xdmod) == 4 * 4  # timestamp, shred, ingest, aggregate in each run
    assert overlapping(xdmod) == []
    assert overlapping(others), "nothing ran in parallel: this run cannot show what the pool prevents"
    calls = record.read_text().splitlines()
    assert sum(" xdmod-shredder " in line for line in calls) == 4
    assert {line.split(" ")[3] for line in calls if " xdmod-shredder " in line} == {"alpha", "beta"}
