"""Two DAGs' XDMoD commands never overlap, and XDMoD aggregates once for their ingests, under a real
scheduler and executor (`airflow standalone`: scheduler, LocalExecutor, dag-processor, triggerer, API
server, on SQLite), with the real Slurm as the source and the SSH runner reaching stand-in XDMoD commands
(which sleep) on a real sshd.

Two resources, two days each, four runs at once; a third resource's DAG is paused. The checks are made
on the metadata database: every pair of tasks in the `xdmod` pool (the aggregation's included) is disjoint
in time, while tasks outside the pool did run in parallel (so the executor could have overlapped them:
the pool is what prevented it); the jobs aggregation DAG, scheduled on ANY ingest event (the paused
resource stalls nothing), covered every ingest exactly once, each aggregation from the earliest pre-shred
timestamp among the ingests it covered, with fewer XDMoD aggregations than ingests.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import subprocess
import sys
import time

import pytest

from conftest import free_port, stop_group
from xdmod_standin import apply_xdmod_schema, install
from xdmod_usage.mysql_client import DbEndpoint

pytestmark = pytest.mark.slurm

SLOW_SACCT = """#!/bin/sh
# sacct that takes a few seconds, so the staging tasks of different runs overlap.
sleep 3
exec sacct "$@"
"""


def overlapping(intervals):
    return [(a, b) for a, b in itertools.combinations(intervals, 2) if a[1] < b[2] and b[1] < a[2]]


def test_xdmod_commands_of_two_dags_never_overlap(slurm_site, sshd_login, tmp_path):
    from scripts.local_run import MARIADB_PASSWORD

    site, _ = slurm_site
    # The stand-ins keep the XDMoD tables the runs' reconcile task reads, on the xdmod_db server.
    endpoint = DbEndpoint("127.0.0.1", int(site.ports["XU_MARIADB_PORT"]), "xdmod", MARIADB_PASSWORD)
    with endpoint.connect() as conn:
        apply_xdmod_schema(conn)
    standin = install(tmp_path / "xdmod-host", sys.executable, {"port": endpoint.port, "user": endpoint.user,
                                                                "password": endpoint.password}, delay=2)  # fmt: skip
    bin_dir = standin.bin_dir
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
        for name in ("alpha", "beta", "gamma")
    ]  # fmt: skip
    # The aggregation waits for ingests finishing meanwhile; the four runs' ingests come within about a minute.
    config["aggregation"] = {"settle_delay": "100s", "lateness_deadline": "1h"}
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
    subprocess.run([*airflow, "dags", "reserialize"], env=env, check=True, capture_output=True)
    subprocess.run([*airflow, "dags", "pause", "usage_slurm_gamma"], env=env, check=True, capture_output=True)
    log = open(tmp_path / "standalone.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([*airflow, "standalone"], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    db = home / "airflow.db"
    try:
        deadline = time.monotonic() + 540
        states: list = []
        while time.monotonic() < deadline:
            time.sleep(5)
            assert proc.poll() is None, (tmp_path / "standalone.log").read_text()[-3000:]
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
                states = conn.execute("SELECT dag_id, state FROM dag_run WHERE dag_id LIKE 'usage_%' "
                                      "OR dag_id = 'xdmod_aggregate_jobs'").fetchall()  # fmt: skip
            usage = [state for dag_id, state in states if dag_id.startswith("usage_")]
            aggregations = [state for dag_id, state in states if dag_id == "xdmod_aggregate_jobs"]
            done = ("success", "failed")
            finished = len(usage) == 4 and all(state in done for state in usage + aggregations)
            if finished and aggregations and _all_ingests_covered(db):
                break
        else:
            pytest.fail(f"runs did not finish: {states}\n{(tmp_path / 'standalone.log').read_text()[-3000:]}")
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
            rows = conn.execute(
                "SELECT dag_id || ' ' || run_id || ' ' || task_id, start_date, end_date, pool, state "
                "FROM task_instance WHERE start_date IS NOT NULL AND (dag_id LIKE 'usage_%' "
                "OR dag_id = 'xdmod_aggregate_jobs')"
            ).fetchall()
            ingests, aggregated = _events(conn)
    finally:
        stop_group(proc)
        log.close()

    usage_states = sorted((d, st) for d, st in states if d.startswith("usage_"))
    assert usage_states == [("usage_slurm_alpha", "success")] * 2 + [("usage_slurm_beta", "success")] * 2, rows
    xdmod = [(name, start, end) for name, start, end, pool, _ in rows if pool == "xdmod"]
    others = [(name, start, end) for name, start, end, pool, _ in rows if pool != "xdmod"]
    aggregate_tasks = [name for name, *_ in xdmod if name.startswith("xdmod_aggregate_jobs ")]
    assert len(xdmod) - len(aggregate_tasks) == 4 * 3  # timestamp, shred, ingest in each run
    assert overlapping(xdmod) == []
    assert overlapping(others), "nothing ran in parallel: this run cannot show what the pool prevents"
    calls = standin.argvs()
    shreds = [argv for argv in calls if argv[0] == "xdmod-shredder"]
    assert len(shreds) == 4 and {argv[2] for argv in shreds} == {"alpha", "beta"}

    # Aggregation: every ingest covered exactly once; each XDMoD aggregation from the earliest timestamp among
    # the ingests it covered; batched (fewer aggregations than ingests), and never before an ingest it covers.
    assert len(ingests) == 4 and {i["resource"] for i in ingests.values()} == {"alpha", "beta"}
    covered = [ingest_id for event in aggregated for ingest_id in event["covered"]]
    assert sorted(covered) == sorted(ingests)
    runs = [argv for argv in calls if "--aggregate=job" in argv]
    assert [run[-1] for run in runs] == [event["last_modified_start"] for event in aggregated]
    for event in aggregated:
        assert event["last_modified_start"] == min(ingests[i]["last_modified_start"] for i in event["covered"])
        assert all(ingests[i]["timestamp"] <= event["timestamp"] for i in event["covered"])
    assert 1 <= len(runs) < len(ingests), runs
    assert not any(" usage_slurm_gamma " in name for name, *_ in rows)  # paused: ran nothing, stalled nothing


def _events(conn) -> tuple[dict[str, dict], list[dict]]:
    """The ingest events (by ingest id) and the aggregations' events, from the metadata database."""
    found = conn.execute("SELECT a.name, e.extra, e.timestamp FROM asset_event e JOIN asset a ON a.id = e.asset_id "
                         "WHERE a.name LIKE 'xdmod-%' ORDER BY e.id").fetchall()  # fmt: skip
    ingests = {}
    aggregated = []
    for name, extra, timestamp in found:
        facts = {**json.loads(extra), "timestamp": timestamp}
        if name.startswith("xdmod-ingest."):
            ingests[facts["ingest_id"]] = facts
        else:
            aggregated.append(facts)
    return ingests, aggregated


def _all_ingests_covered(db) -> bool:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        ingests, aggregated = _events(conn)
    return len(ingests) == 4 and {i for e in aggregated for i in e["covered"]} == set(ingests)
