"""Benchmark: the daily reconciliation's two costs, with the core library (no Airflow imported).

1. ``xdmod_expected.expected_job_rows`` on a staged day: synthetic sacct lines (``xdmod_usage.synthetic``)
   staged by the writer (``stage_slurm_day``), then the rules run over the staged file in a fresh
   process (lines/s, peak RSS of that process, and its RSS before the call). Also on the raw pull.
2. ``reconcile_jobs.sql`` / ``reconcile_cloud.sql`` on a private MariaDB (``scripts/services/mariadb.sh``,
   own state dir and port, stopped at the end): XDMoD's tables from ``xdmod_schema_subset.sql`` with
   1,000,000 job_tasks rows and 1,000,000 cloud events for 10 resources over 100 days. Query time
   (first run, then best of 5) through ``count_held``/``count_held_by_day``, with EXPLAIN, beside the
   same count without the end_day_id bound (what the index buys).

    .venv/bin/python bench/reconcile.py [--lines 1060000] [--port 23690] [--state /tmp/xu-bench-rec]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "plugins"))
DAY = dt.date(2026, 11, 20)
MARIADB = ROOT / "scripts" / "services" / "mariadb.sh"
PASSWORD = "xdmod-test-pw"
RESOURCES, DAYS, ROWS = 10, 100, 1_000_000  # as the seq_1_to_N tables below say
FIRST_DAY = dt.date(2026, 8, 1)


def stage(raw: Path, staging: Path, lines: int) -> dict:
    from xdmod_usage.slurm_pipeline import SlurmDay, stage_slurm_day
    from xdmod_usage.staging import Store
    from xdmod_usage.synthetic import synthetic_sacct_lines
    from xdmod_usage.window import UsageWindow

    window = UsageWindow.for_day(DAY)
    with open(raw, "wb") as out:
        buf: list[bytes] = []
        for line in synthetic_sacct_lines(window, lines):
            buf.append(line)
            if len(buf) == 10_000:
                out.write(b"".join(buf))
                buf.clear()
        out.write(b"".join(buf))

    def pull(out):
        with open(raw, "rb") as handle:
            shutil.copyfileobj(handle, out, 1 << 20)

    day = SlurmDay("bench", "bench", "synth", window)
    result = stage_slurm_day(Store.from_path(staging), day, pull, {"type": "file"}, max_quarantine_share=1.0)
    return {"manifest_counts": result.manifest["counts"], "staged": str(next(staging.rglob(day.staged_name)))}


def child_expected(path: str) -> None:
    """Runs in a fresh interpreter so its peak RSS is the rules' alone."""
    from xdmod_usage.window import UsageWindow
    from xdmod_usage.xdmod_expected import expected_job_rows

    window = UsageWindow.for_day(DAY)
    before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with open(path, "rb") as handle:
        lines = sum(1 for _ in handle)
    started = time.perf_counter()
    with open(path, "rb", buffering=1 << 20) as handle:
        expected = expected_job_rows(handle, window.start, window.end)
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "lines": lines,
                "seconds": seconds,
                "lines_per_second": lines / seconds,
                "rss_before_mb": before_mb,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "expected": expected.as_dict(),
                "airflow_imported": any(m.split(".")[0] == "airflow" for m in sys.modules),
            }
        )
    )


def measure_expected(path: Path, runs: int = 3) -> dict:
    results = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, __file__, "--child-expected", str(path)], check=True, capture_output=True, text=True
        ).stdout
        results.append(json.loads(out))
    best = min(results, key=lambda r: r["seconds"])
    return {
        "lines": best["lines"],
        "seconds_best_of_3": round(best["seconds"], 2),
        "seconds_all": [round(r["seconds"], 2) for r in results],
        "lines_per_second": round(best["lines_per_second"]),
        "peak_rss_mb": round(max(r["peak_rss_mb"] for r in results), 1),
        "rss_before_call_mb": round(best["rss_before_mb"], 1),
        "expected": best["expected"],
        "airflow_imported": best["airflow_imported"],
    }


def fill(cursor) -> dict:
    """1M job_tasks rows and 1M cloud events: 10 resources x 100 days x 1,000 per resource-day."""
    from xdmod_usage.reconciliation import apply_schema_subset

    cursor.execute("SET SESSION sql_mode = ''")
    for name in ("modw", "modw_cloud"):
        cursor.execute(f"DROP DATABASE IF EXISTS {name}")
    apply_schema_subset(cursor)
    cursor.execute("USE modw")  # the seq_1_to_N tables of MariaDB's Sequence engine need a database
    cursor.execute(
        "INSERT INTO modw.resourcefact (id, name, code) "
        "SELECT seq, CONCAT('Resource ', seq), CONCAT('hpc', seq) FROM seq_1_to_10"
    )
    t0 = int(dt.datetime.combine(FIRST_DAY, dt.time(), dt.UTC).timestamp())
    per_day = ROWS // DAYS  # rows per day, all resources
    started = time.perf_counter()
    # Row n: resource 1 + n % 10, day (n - 1) div 10,000, end spread over the day, ran up to 10 h.
    cursor.execute(
        "INSERT INTO modw.job_tasks (job_record_id, job_id_origin_id, creation_time, local_jobid, local_job_id_raw, "
        "resource_id, systemaccount_id, person_id, person_organization_id, person_nsfstatuscode_id, job_task_type_id, "
        "submit_time_ts, start_time_ts, end_time_ts, start_day_id, end_day_id, eligible_day_id, wallduration, "
        "waitduration, cpu_time, gpu_time, completed) "
        "SELECT seq, seq, NOW(), seq, seq, 1 + seq %% %s, 1, 1, 1, 0, 1, e - w - 600, e - w, e, "
        "YEAR(FROM_UNIXTIME(e - w)) * 100000 + DAYOFYEAR(FROM_UNIXTIME(e - w)), "
        "YEAR(FROM_UNIXTIME(e)) * 100000 + DAYOFYEAR(FROM_UNIXTIME(e)), 0, w, 600, w, 0, 1 "
        "FROM (SELECT seq, %s + (seq - 1) DIV %s * 86400 + (seq * 7919) %% 86400 AS e, (seq * 104729) %% 36000 AS w "
        "FROM seq_1_to_1000000) AS g",
        (RESOURCES, t0, per_day),
    )
    jobs_seconds = time.perf_counter() - started
    started = time.perf_counter()
    cursor.execute(
        "INSERT INTO modw_cloud.event (resource_id, instance_id, event_time_ts, event_type_id, host_id) "
        "SELECT 1 + seq %% %s, 2 + (seq DIV %s) %% 500, "
        "%s + (seq - 1) DIV %s * 86400 + (seq * 7919) %% 86400 + (seq %% 1000) / 1000, 16, 2 "
        "FROM seq_1_to_1000000 ORDER BY 1, 2, 3",  # in key order: a random-order load takes minutes
        (RESOURCES, RESOURCES, t0, per_day),
    )
    events_seconds = time.perf_counter() - started
    cursor.execute("ANALYZE TABLE modw.job_tasks, modw_cloud.event")
    cursor.fetchall()
    return {"fill_jobs_seconds": round(jobs_seconds, 1), "fill_events_seconds": round(events_seconds, 1)}


def timed(call, runs: int = 5) -> dict:
    times, value = [], None
    for _ in range(runs + 1):
        started = time.perf_counter()
        value = call()
        times.append(time.perf_counter() - started)
    return {"first_ms": round(times[0] * 1000, 1), "best_of_5_ms": round(min(times[1:]) * 1000, 1), "value": value}


def explain(cursor, sql: str, params: tuple) -> list[str]:
    cursor.execute("EXPLAIN " + sql, params)
    names = [d[0] for d in cursor.description]
    return [" ".join(f"{n}={v}" for n, v in zip(names, row, strict=True) if v is not None) for row in cursor.fetchall()]


def measure_queries(cursor) -> dict:
    from xdmod_usage.reconciliation import _sql, count_held, count_held_by_day

    day = FIRST_DAY + dt.timedelta(days=61)
    start = dt.datetime.combine(day, dt.time(), dt.UTC)
    end = start + dt.timedelta(days=1)
    window = ("hpc3", int(start.timestamp()), int(end.timestamp()))
    plain = (
        "SELECT COUNT(*) FROM modw.job_tasks AS jt WHERE jt.is_deleted = 0 AND jt.end_time_ts >= %s "
        "AND jt.end_time_ts < %s AND jt.resource_id IN (SELECT id FROM modw.resourcefact WHERE code = %s)"
    )

    def plain_count():
        cursor.execute(plain, (window[1], window[2], window[0]))
        return cursor.fetchone()[0]

    month_end = day + dt.timedelta(days=30)
    return {
        "window": f"{day} (day 62 of 100), resource hpc3",
        "reconcile_jobs": {
            **timed(lambda: count_held(cursor, "job", "hpc3", start, end)),
            "explain": explain(cursor, _sql("reconcile_jobs.sql", "modw", "modw_cloud"), window),
        },
        "same_count_without_end_day_id_bound": {
            **timed(plain_count),
            "explain": explain(cursor, plain, window[1:] + window[:1]),
        },
        "reconcile_jobs_by_day_31_days": {
            **timed(lambda: sum(count_held_by_day(cursor, "job", "hpc3", day, month_end).values())),
            "explain": explain(
                cursor,
                _sql("reconcile_jobs_by_day.sql", "modw", "modw_cloud"),
                ("hpc3", window[1], window[1] + 31 * 86400),
            ),
        },
        "reconcile_cloud": {
            **timed(lambda: count_held(cursor, "cloud", "hpc3", start, end)),
            "explain": explain(cursor, _sql("reconcile_cloud.sql", "modw", "modw_cloud"), window),
        },
        "reconcile_cloud_by_day_31_days": timed(
            lambda: sum(count_held_by_day(cursor, "cloud", "hpc3", day, month_end).values())
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=1_060_000, help="raw sacct lines (about 94%% are staged)")
    parser.add_argument("--port", type=int, default=23690)
    parser.add_argument("--state", default="/tmp/xu-bench-rec")
    parser.add_argument("--child-expected", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_expected:
        child_expected(args.child_expected)
        return
    report: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-rec-") as tmp:
        t0 = time.perf_counter()
        staged = stage(Path(tmp) / "raw.sacct", Path(tmp) / "staging", args.lines)
        report["staging_seconds"] = round(time.perf_counter() - t0, 1)
        report["writer_counts"] = staged["manifest_counts"]
        report["expected_job_rows_staged_file"] = measure_expected(Path(staged["staged"]))
        report["expected_job_rows_raw_pull"] = measure_expected(Path(tmp) / "raw.sacct")
        report["writer_and_rules_agree"] = (
            report["expected_job_rows_staged_file"]["expected"]["rows"] == staged["manifest_counts"]["xdmod_rows"]
        )

    env = {
        **os.environ,
        "XU_STATE_DIR": args.state,
        "XU_MARIADB_DIR": f"{args.state}/mariadb",
        "XU_MARIADB_PORT": str(args.port),
        "XU_MARIADB_PASSWORD": PASSWORD,
    }
    subprocess.run([str(MARIADB), "start"], check=True, env=env, capture_output=True)
    try:
        from xdmod_usage.mysql_client import DbEndpoint

        conn = DbEndpoint("127.0.0.1", args.port, "xdmod", PASSWORD).connect()
        cursor = conn.cursor()
        cursor.execute("SELECT VERSION()")
        report["mariadb"] = cursor.fetchone()[0]
        report["tables"] = {
            "job_tasks_rows": ROWS,
            "cloud_events": ROWS,
            "resources": RESOURCES,
            "days": DAYS,
            **fill(cursor),
        }
        report["queries"] = measure_queries(cursor)
        conn.close()
    finally:
        subprocess.run([str(MARIADB), "stop"], check=True, env=env, capture_output=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
