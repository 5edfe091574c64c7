"""A stand-in XDMoD host for DAG tests: scripts at XDMoD's command paths, reached over the real sshd.

XDMoD cannot run here. These scripts record every argv (and copy the files they were given), and keep
the few tables the reconciliation reads (include/sql/xdmod_schema_subset.sql) on a real MariaDB the way
XDMoD's own commands change them, in the simplest form: the shredder records each job line's duplicate key
in its own table (as XDMoD's shredded_job_slurm unique key does) and inserts one modw.job_tasks row for each
line not seen before; `xdmod-admin --jobs --delete=R` deletes R's rows from both, `--truncate` all. So a
row lost from the warehouse stays lost when the same file is shredded again, as in XDMoD. They prove what
our DAGs send and what they check afterwards, never XDMoD's behaviour; the expectation the reconciliation
compares with is computed by xdmod_usage.xdmod_expected, code these scripts do not share.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

SCRIPT = r"""#!{python}
# Stand-in for {name} (tests/xdmod_standin.py): records argv, acts on the stand-in XDMoD tables.
import calendar, json, os, shutil, sys, time
import MySQLdb

RECORD = {record!r}
DB = {db!r}
time.sleep({delay!r})  # a real XDMoD command takes a while
name, args = os.path.basename(sys.argv[0]), sys.argv[1:]
entry = {{"command": name, "argv": args, "at": time.time()}}
files = []
if "-i" in args:
    files = [args[args.index("-i") + 1]]
if "-d" in args:
    folder = args[args.index("-d") + 1]
    files = [os.path.join(folder, f) for f in sorted(os.listdir(folder)) if not f.startswith(".")]
entry["files"] = [os.path.basename(f) for f in files]
keep = os.path.join(RECORD, "inputs")
os.makedirs(keep, exist_ok=True)
for f in files:
    shutil.copy(f, os.path.join(keep, f"{{len(os.listdir(keep)):04d}}-{{os.path.basename(f)}}"))
with open(os.path.join(RECORD, "calls.jsonl"), "a") as out:
    out.write(json.dumps(entry) + "\n")

def connect():
    return MySQLdb.connect(host="127.0.0.1", port=DB["port"], user=DB["user"], passwd=DB["password"],
                           charset="utf8mb4", autocommit=True)

def resource_id(cursor, code):
    cursor.execute("SELECT id FROM modw.resourcefact WHERE code = %s", (code,))
    row = cursor.fetchone()
    if row:
        return row[0]
    cursor.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM modw.resourcefact")
    new = cursor.fetchone()[0]
    cursor.execute("INSERT INTO modw.resourcefact (id, name, code) VALUES (%s, %s, %s)", (new, code, code))
    return new

def ts(text):
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%S"))

def day_id(seconds):  # XDMoD's day key YYYY00DDD (this stand-in's database runs in UTC)
    moment = time.gmtime(seconds)
    return moment.tm_year * 100000 + moment.tm_yday

if name == "xdmod-shredder" and "slurm" in args:
    conn = connect(); cursor = conn.cursor()
    rid = resource_id(cursor, args[args.index("-r") + 1])
    for f in files:
        for line in open(f, encoding="utf-8", errors="replace"):
            fields = line.rstrip("\n").split("|", 25)
            if len(fields) < 26:
                continue
            job, _, index = fields[0].partition("_")
            index = int(index) if index.isdigit() else -1
            submit, start, end = ts(fields[10]), ts(fields[12]), ts(fields[13])
            cursor.execute("INSERT IGNORE INTO xu_standin.shredded VALUES (%s, %s, %s, %s, %s)",
                           (rid, int(job), index, submit, end))
            if cursor.rowcount == 0:
                continue  # the duplicate key: XDMoD skips the line
            cursor.execute("SELECT COALESCE(MAX(job_id), 0) + 1 FROM modw.job_tasks")
            job_id = cursor.fetchone()[0]
            cursor.execute(
                "INSERT INTO modw.job_tasks (job_record_id, job_id, job_id_origin_id, creation_time, local_jobid, "
                "local_job_array_index, local_job_id_raw, resource_id, systemaccount_id, person_id, "
                "person_organization_id, person_nsfstatuscode_id, job_task_type_id, submit_time_ts, start_time_ts, "
                "end_time_ts, start_day_id, end_day_id, eligible_day_id, wallduration, waitduration, cpu_time, "
                "gpu_time) VALUES (%s,%s,%s,NOW(),%s,%s,%s,%s,1,1,1,1,1,%s,%s,%s,%s,%s,%s,%s,%s,0,0)",
                (job_id, job_id, job_id, int(job), index, int(fields[1].partition("_")[0] or job), rid,
                 submit, start, end, day_id(start), day_id(end), day_id(submit), end - start, start - submit))
    print(f"Shredded {{len(files)}} files")
elif name == "xdmod-admin" and "--jobs" in args:
    conn = connect(); cursor = conn.cursor()
    deleting = [a for a in args if a.startswith("--delete=")]
    if deleting:
        rid = resource_id(cursor, deleting[0].split("=", 1)[1])
        cursor.execute("DELETE FROM modw.job_tasks WHERE resource_id = %s", (rid,))
        cursor.execute("DELETE FROM xu_standin.shredded WHERE resource_id = %s", (rid,))
    elif "--truncate" in args:
        cursor.execute("TRUNCATE modw.job_tasks")
        cursor.execute("TRUNCATE xu_standin.shredded")
    print("done")
else:
    print("done")
"""

COMMANDS = ("xdmod-shredder", "xdmod-ingestor", "xdmod-admin", "xdmod-import-csv")


@dataclass(frozen=True)
class StandIn:
    """Where the stand-in commands are and what they recorded."""

    bin_dir: Path
    record: Path

    def calls(self) -> list[dict]:
        path = self.record / "calls.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def argvs(self) -> list[list[str]]:
        return [[call["command"], *call["argv"]] for call in self.calls()]

    def reset(self) -> None:
        (self.record / "calls.jsonl").unlink(missing_ok=True)


def install(directory: Path, python: str, db: dict, delay: float = 0.0) -> StandIn:
    """Write the stand-in commands (db: port, user, password of the stand-in XDMoD database server); each
    takes ``delay`` seconds, like a real XDMoD command."""
    bin_dir, record = directory / "bin", directory / "record"
    bin_dir.mkdir(parents=True, exist_ok=True)
    record.mkdir(parents=True, exist_ok=True)
    for name in COMMANDS:
        path = bin_dir / name
        path.write_text(SCRIPT.format(python=python, name=name, record=str(record), db=db, delay=delay))
        path.chmod(0o700)
    return StandIn(bin_dir, record)


def apply_xdmod_schema(conn) -> None:
    """The XDMoD tables the reconciliation reads (include/sql/xdmod_schema_subset.sql), empty, and the
    stand-in shredder's own table of duplicate keys."""
    from xdmod_usage.reconciliation import apply_schema_subset

    cursor = conn.cursor()
    for database in ("modw", "modw_cloud", "xu_standin"):
        cursor.execute(f"DROP DATABASE IF EXISTS {database}")
    apply_schema_subset(cursor)
    cursor.execute("CREATE DATABASE xu_standin")
    cursor.execute("CREATE TABLE xu_standin.shredded (resource_id INT NOT NULL, job_id INT UNSIGNED NOT NULL, "
                   "array_index INT NOT NULL, submit INT UNSIGNED NOT NULL, end INT UNSIGNED NOT NULL, "
                   "PRIMARY KEY (resource_id, job_id, array_index, submit, end))")  # fmt: skip


def copy_job_row(conn, resource: str, *, id_offset: int, end_shift: int = 0, jobid_offset: int = 0) -> None:
    """Put a modified copy of one of ``resource``'s job_tasks rows straight into the warehouse, as an
    earlier collector or a stray load would have (the stand-in shredder never saw it)."""
    cursor = conn.cursor()
    cursor.execute("SELECT t.* FROM modw.job_tasks t JOIN modw.resourcefact r ON r.id = t.resource_id "
                   "WHERE r.code = %s ORDER BY t.job_id LIMIT 1", (resource,))  # fmt: skip
    names = [column[0] for column in cursor.description]
    row = dict(zip(names, cursor.fetchone(), strict=True))
    for key in ("job_record_id", "job_id", "job_id_origin_id"):
        row[key] += id_offset
    row["local_jobid"] += jobid_offset
    row["end_time_ts"] += end_shift
    moment = time.gmtime(row["end_time_ts"])
    row["end_day_id"] = moment.tm_year * 100000 + moment.tm_yday
    columns, marks = ", ".join(names), ", ".join(["%s"] * len(names))  # names from the server's own columns
    cursor.execute(f"INSERT INTO modw.job_tasks ({columns}) VALUES ({marks})", list(row.values()))  # noqa: S608
