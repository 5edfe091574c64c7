"""Benchmark: the backup's streaming dump beside a raw `mysqldump --single-transaction | gzip`.

For each size (default 0.5 and 1 GB of dump text) the script fills a private MariaDB with
XDMoD-like data, then in the same run times, alternately and `--runs` times each:

* raw:  bash -o pipefail -c 'mysqldump <same flags> | gzip -<level> > file' (the manual backup),
* ours: make_backup() in a fresh Python process (no Airflow imported) into a file store, and
* ours into S3 (moto's server on loopback), when --s3.

Peak RSS of the streaming path is that process's ru_maxrss (Python, zlib, hashing, the upload
buffers) and, separately, mysqldump's (its child). Wall time of ours includes the lock dance and
the per-table counts and CHECKSUM TABLE in the snapshot, which the raw pipeline does not do.

    .venv/bin/python bench/backup_stream.py [--sizes 0.5 1] [--runs 2] [--level 6] [--s3] [--verify]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "plugins"))

STATE = ROOT / ".services" / "bench-backup"
PORTS = {"source": 43316, "scratch": 43317}
PASSWORD = "xdmod-test-pw"
DUMPED = ["moddb", "modw", "mod_hpcdb", "mod_logger", "modw_aggregates"]  # what make_backup selects here


def endpoint(name: str):
    from xdmod_usage.mysql_client import DbEndpoint

    return DbEndpoint("127.0.0.1", PORTS[name], "xdmod", PASSWORD)


def server(name: str, action: str) -> None:
    env = {**os.environ, "XU_MARIADB_DIR": str(STATE / name), "XU_MARIADB_PORT": str(PORTS[name])}
    subprocess.run([str(ROOT / "scripts/services/mariadb.sh"), action], env=env, check=True)


def worker(args: argparse.Namespace) -> None:
    """One streaming dump in this fresh process; prints its facts as JSON."""
    from xdmod_usage.backup_dump import DumpOptions
    from xdmod_usage.backup_make import make_backup
    from xdmod_usage.staging import Store

    if args.store.startswith("s3://"):
        import s3fs

        fs = s3fs.S3FileSystem(key="testing", secret="testing", endpoint_url=args.s3_endpoint)
        store = Store(fs, args.store.removeprefix("s3://"), False)
        store.exists("probe")  # the client and its event loop exist before the baseline is taken
    else:
        store = Store.from_path(Path(args.store))
    import MySQLdb  # noqa: F401 - loaded by the dump anyway: part of the baseline, not of the stream

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    options = DumpOptions(databases=["moddb", "modw"], patterns=["mod%"], users=["xdmod"])
    started = time.monotonic()
    facts = make_backup(store, endpoint("source"), options, args.level, None)
    wall = time.monotonic() - started
    print(json.dumps({
        "id": facts["id"], "wall_s": round(wall, 2), "dump_seconds": facts["dump_seconds"],
        "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_before_dump_mb": round(baseline / 1024, 1),
        "rss_stream_mb": round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline) / 1024, 1),
        "mysqldump_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "stored_bytes": sum(db["file"]["bytes"] for db in facts["databases"].values()),
        "plain_bytes": sum(db["file"]["plain_bytes"] for db in facts["databases"].values()),
    }))  # fmt: skip


def raw_dump(level: int, out: Path, databases: list[str]) -> dict:
    from xdmod_usage.backup_dump import mysqldump_argv
    from xdmod_usage.mysql_client import defaults_file

    with defaults_file(endpoint("source")) as cnf:
        argv = mysqldump_argv("mysqldump", str(cnf), databases)
        script = 'set -o pipefail; "$@" | gzip -' + str(level) + ' > "$OUT"'
        started = time.monotonic()
        subprocess.run(["bash", "-c", script, "raw", *argv], env={**os.environ, "OUT": str(out)}, check=True)
        wall = time.monotonic() - started
    return {"wall_s": round(wall, 2), "stored_bytes": out.stat().st_size}


UPLOAD = """
import sys, boto3
from boto3.s3.transfer import TransferConfig
client = boto3.client("s3", endpoint_url=sys.argv[1], aws_access_key_id="testing", aws_secret_access_key="testing",
                      region_name="us-east-1")
client.upload_fileobj(sys.stdin.buffer, "bench", sys.argv[2],
                      Config=TransferConfig(multipart_chunksize=8 << 20, max_concurrency=1))
"""


def raw_dump_s3(level: int, s3_endpoint: str, key: str, databases: list[str]) -> dict:
    """The manual backup piped to S3: mysqldump | gzip | boto3 upload_fileobj (multipart, 8 MiB parts)."""
    from xdmod_usage.backup_dump import mysqldump_argv
    from xdmod_usage.mysql_client import defaults_file

    with defaults_file(endpoint("source")) as cnf:
        argv = mysqldump_argv("mysqldump", str(cnf), databases)
        script = 'set -o pipefail; "$@" | gzip -' + str(level) + ' | "$PY" -c "$UPLOAD" "$EP" "$KEY"'
        env = {**os.environ, "PY": sys.executable, "UPLOAD": UPLOAD, "EP": s3_endpoint, "KEY": key}
        started = time.monotonic()
        subprocess.run(["bash", "-c", script, "raw", *argv], env=env, check=True)
        return {"wall_s": round(time.monotonic() - started, 2)}


def ours(level: int, store: str, s3_endpoint: str | None) -> dict:
    argv = [sys.executable, __file__, "--worker", "--level", str(level), "--store", store]
    if s3_endpoint:
        argv += ["--s3-endpoint", s3_endpoint]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def fill(size_gb: float) -> dict:
    from xdmod_usage.synthetic_xdmod_db import create_xdmod_like

    started = time.monotonic()
    create_xdmod_like(endpoint("source"), jobs=3000, filler_mb=int(size_gb * 900))
    conn = endpoint("source").connect()
    cursor = conn.cursor()
    cursor.execute("ANALYZE TABLE modw.jobfact")
    cursor.fetchall()
    cursor.execute(
        "SELECT SUM(DATA_LENGTH + INDEX_LENGTH) FROM information_schema.TABLES WHERE TABLE_SCHEMA LIKE 'mod%'"
    )
    on_disk = int(cursor.fetchone()[0])
    conn.close()
    return {"fill_s": round(time.monotonic() - started, 1), "table_bytes": on_disk}


def start_moto() -> tuple[subprocess.Popen, str]:
    import socket
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1)  # noqa: S310 - loopback
            break
        except OSError:
            time.sleep(0.2)
    import boto3

    boto3.client("s3", endpoint_url=url, aws_access_key_id="testing", aws_secret_access_key="testing",
                 region_name="us-east-1").create_bucket(Bucket="bench")  # fmt: skip
    return proc, url


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--store", default="")
    parser.add_argument("--s3-endpoint", default=None)
    parser.add_argument("--sizes", type=float, nargs="+", default=[0.5, 1.0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--level", type=int, default=6)
    parser.add_argument("--s3", action="store_true")
    parser.add_argument("--verify", action="store_true", help="also time the verification restore (1 run)")
    parser.add_argument("--output", default=str(ROOT / "bench" / "results-backup.json"))
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    server("source", "start")
    if args.verify:
        server("scratch", "start")
    work = STATE / "out"
    moto = moto_url = None
    if args.s3:
        moto, moto_url = start_moto()
    results = []
    try:
        for size in args.sizes:
            row: dict = {"size_gb": size, **fill(size)}
            raw_runs, our_runs, s3_runs = [], [], []
            for run in range(args.runs):
                shutil.rmtree(work, ignore_errors=True)
                work.mkdir(parents=True)
                raw_runs.append(raw_dump(args.level, work / "raw.sql.gz", DUMPED))
                our_runs.append(ours(args.level, str(work / "store"), None))
                if moto_url:
                    s3_runs.append(ours(args.level, f"s3://bench/run{size}-{run}", moto_url))
                    s3_runs[-1]["raw_s3_wall_s"] = raw_dump_s3(args.level, moto_url, f"raw{size}-{run}.sql.gz",
                                                               DUMPED)["wall_s"]  # fmt: skip
                print(json.dumps({"size": size, "run": run, "raw": raw_runs[-1], "ours": our_runs[-1],
                                  "s3": s3_runs[-1] if s3_runs else None}), flush=True)  # fmt: skip
            row["raw"] = {"wall_s": statistics.median(r["wall_s"] for r in raw_runs), "runs": raw_runs}
            row["ours"] = {"wall_s": statistics.median(r["wall_s"] for r in our_runs),
                           "rss_mb": max(r["rss_mb"] for r in our_runs),
                           "rss_stream_mb": max(r["rss_stream_mb"] for r in our_runs), "runs": our_runs}  # fmt: skip
            row["ratio"] = round(row["ours"]["wall_s"] / row["raw"]["wall_s"], 3)
            if s3_runs:
                row["s3"] = {"wall_s": statistics.median(r["wall_s"] for r in s3_runs),
                             "raw_s3_wall_s": statistics.median(r["raw_s3_wall_s"] for r in s3_runs),
                             "rss_mb": max(r["rss_mb"] for r in s3_runs),
                             "rss_stream_mb": max(r["rss_stream_mb"] for r in s3_runs), "runs": s3_runs}  # fmt: skip
                row["s3_ratio"] = round(row["s3"]["wall_s"] / row["s3"]["raw_s3_wall_s"], 3)
            if args.verify:
                from xdmod_usage.backup_restore import verify_backup
                from xdmod_usage.staging import Store

                started = time.monotonic()
                verify_backup(Store.from_path(work / "store"), our_runs[-1]["id"], endpoint("scratch"), None)
                row["verify_s"] = round(time.monotonic() - started, 1)
            results.append(row)
            print(json.dumps({k: v for k, v in row.items() if k not in ("raw", "ours", "s3")}
                             | {"raw_s": row["raw"]["wall_s"], "ours_s": row["ours"]["wall_s"],
                                "ours_rss_mb": row["ours"]["rss_mb"], "stream_rss_mb": row["ours"]["rss_stream_mb"],
                                **({"s3_s": row["s3"]["wall_s"], "raw_s3_s": row["s3"]["raw_s3_wall_s"],
                                    "s3_rss_mb": row["s3"]["rss_mb"], "s3_stream_rss_mb": row["s3"]["rss_stream_mb"]}
                                   if s3_runs else {})}), flush=True)  # fmt: skip
    finally:
        if moto:
            moto.terminate()
    Path(args.output).write_text(json.dumps({"machine": f"{os.cpu_count()} cores", "level": args.level,
                                             "results": results}, indent=2) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
