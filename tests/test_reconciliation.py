"""The daily reconciliation: what XDMoD holds (queried on a real MariaDB) against what it should hold.

Two halves. XDMoD's rules (``xdmod_expected``), checked line by line on lines edited from the
recorded sacct output and on hand-made events, each expected number stated from XDMoD's source
(ubccr/xdmod; file named in the comment). Then the queries and the verdict on the scratch MariaDB
server: XDMoD's three tables from ``include/sql/xdmod_schema_subset.sql`` in a fresh pair of
databases per test, filled by small stand-in loaders written here from XDMoD's documented path
(shredder table with its unique key, hpcdb merge, job_tasks filter; cloud event keys), which let
MariaDB itself do the conversions, NULL errors and key collisions XDMoD relies on.
"""

from __future__ import annotations

import ast
import contextlib
import datetime as dt
import itertools
import sys
from pathlib import Path

import MySQLdb
import pytest

from xdmod_usage.reconciliation import (
    Reconciliation,
    apply_schema_subset,
    count_held,
    count_held_by_day,
    reconcile,
)
from xdmod_usage.slurm_pipeline import SlurmDay, stage_slurm_day
from xdmod_usage.staging import Store
from xdmod_usage.window import UsageWindow
from xdmod_usage.xdmod_expected import Expected, expected_cloud_events, expected_job_rows

RECORDED = (Path(__file__).parent / "data" / "sacct-22.05-recorded.txt").read_bytes().splitlines()
DAY = dt.date(2026, 11, 20)  # the recorded short jobs ended then; the midnight job ended the next day
WINDOW = UsageWindow.for_day(DAY)
START, END = WINDOW.start, WINDOW.end
# XDMoD's field order (classes/OpenXdmod/Shredder/Slurm.php $fieldNames), kept here, not imported.
FIELDS = [
    "jobid",
    "jobidraw",
    "cluster",
    "partition",
    "qos",
    "account",
    "group",
    "gid",
    "user",
    "uid",
    "submit",
    "eligible",
    "start",
    "end",
    "elapsed",
    "exitcode",
    "state",
    "nnodes",
    "ncpus",
    "reqcpus",
    "reqmem",
    "reqtres",
    "alloctres",
    "timelimit",
    "nodelist",
    "jobname",
]
MODW, MODW_CLOUD = "xu_rec_modw", "xu_rec_modw_cloud"  # never modw itself: the backup tests restore that here
RESOURCES = {"hpc1": 1, "hpc2": 2, "cloud1": 3, "cloud2": 4}
ORIGINS = itertools.count(10_000_000, 10_000_000)  # distinct job_id_origin_id ranges per load or copy


def recorded(name: bytes) -> bytes:
    """The recorded line with this job name."""
    return next(line for line in RECORDED if line.split(b"|", 25)[-1] == name)


def edit(line: bytes, **changes: str) -> bytes:
    fields = line.split(b"|", 25)
    for name, value in changes.items():
        fields[FIELDS.index(name)] = value.encode()
    return b"|".join(fields)


COMPLETE = recorded(b"xu-complete")  # job 3, COMPLETED, ended 2026-11-20T23:58:44


def rows(lines: list[bytes]) -> Expected:
    return expected_job_rows([line + b"\n" for line in lines], START, END)


def staged_day(tmp_path: Path, lines: list[bytes]) -> tuple[dict, list[bytes]]:
    """Stage the lines as the daily DAG does (our writer) and return (manifest, staged file lines)."""
    result = stage_slurm_day(
        Store.from_path(tmp_path),
        SlurmDay("hpc1", "hpc1", "democluster", WINDOW),
        lambda out: out.write(b"".join(line + b"\n" for line in lines)),
        {"type": "test"},
        max_quarantine_share=1.0,
    )
    staged = next(tmp_path.rglob(result.manifest["staged_name"])).read_bytes().splitlines(keepends=True)
    return result.manifest, staged


# --- independence ----------------------------------------------------------------------------


def test_expected_rules_import_nothing_of_our_writers():
    source = Path(sys.modules[expected_job_rows.__module__].__file__).read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add("." * node.level + (node.module or ""))
    # Only the standard library: no relative import at all, so no writer (slurm_format,
    # openstack_events, openshift_rows, ...) nor anything that imports one.
    assert all(not name.startswith(".") and name.split(".")[0] in sys.stdlib_module_names for name in imported), (
        imported
    )
    assert not {"slurm_format", "openstack_events", "openshift_rows"} & {n.rsplit(".", 1)[-1] for n in imported}


# --- XDMoD's Slurm rules on recorded lines ------------------------------------------------------


def test_the_recorded_day():
    # 11 lines: 9 ended in the window (4 of them the array 5_1..5_4), the pending-cancelled job has
    # nodelist "None assigned" (Slurm.php: skipped), the midnight job ended on 2026-11-21.
    assert rows(RECORDED) == Expected(9, {"none_assigned": 1, "outside_window": 1})


@pytest.mark.parametrize(
    ("line", "held", "not_held"),
    [
        # Slurm.php shredLine: "Skip job steps" (a '.' anywhere in the job id).
        (edit(COMPLETE, jobid="4.batch"), 0, {"job_step": 1}),
        # Slurm.php: states in $nonEndedJobStates are skipped ...
        (edit(COMPLETE, state="PENDING"), 0, {"not_ended": 1}),
        (edit(COMPLETE, state="RUNNING"), 0, {"not_ended": 1}),
        # ... but end 'Unknown' is tested first (what sacct prints for a running job).
        (edit(COMPLETE, state="RUNNING", end="Unknown"), 0, {"end_unknown": 1}),
        # Slurm.php: explode(' ', strtoupper(state), 2)[0]: "CANCELLED by 0" is CANCELLED, ended.
        (edit(COMPLETE, state="CANCELLED by 0"), 1, {}),
        (edit(COMPLETE, state="cancelled by 0"), 1, {}),
        # Slurm.php: a state in no list is "unknown" and every job with it is ignored.
        (edit(COMPLETE, state="SPECIAL_EXIT"), 0, {"unknown_state": 1}),
        (edit(COMPLETE, end="Unknown"), 0, {"end_unknown": 1}),
        (edit(COMPLETE, nodelist="None assigned"), 0, {"none_assigned": 1}),
        # Slurm.php parseJobArrayIndexes: 10_[1,4-9] is 1 plus range(4, 9): 7 rows.
        (edit(COMPLETE, jobid="10_[1,4-9]"), 7, {}),
        (edit(COMPLETE, jobid="10_3"), 1, {}),
        # PHP 7.4 range("1", "3%2"): "1" is numeric, so both are read as integers (3%2 -> 3): 3 rows.
        (edit(COMPLETE, jobid="10_[1-3%2]"), 3, {}),
        # The same index twice is the same shredded_job_slurm key: the second insert is a duplicate.
        (edit(COMPLETE, jobid="10_[1,1-2]"), 2, {"duplicate_key": 1}),
        # Ended on the next day: held by XDMoD, but not in this window's count.
        (edit(COMPLETE, end="2026-11-21T00:00:01"), 0, {"outside_window": 1}),
        # The window is half-open: 00:00:00 of the day belongs to it.
        (edit(COMPLETE, start="2026-11-19T23:00:00", end="2026-11-20T00:00:00"), 1, {}),
        # createFromFormat('Y-m-d?H:i:s'): '?' is any byte, so a space parses too.
        (edit(COMPLETE, end="2026-11-20 23:58:44"), 1, {}),
        # Shredder.php fixJobTimes: an unparseable start is end - elapsed; the job is kept.
        (edit(COMPLETE, start="Unknown"), 1, {}),
        # ... an unparseable end is start + elapsed (here 23:58:42 + 2 s).
        (edit(COMPLETE, end="garbage"), 1, {}),
        # Two of start/end/elapsed missing: nothing to derive, NULL into NOT NULL start_time is
        # SQLSTATE 23000, which Shredder.php shredFile skips as a "duplicate".
        (edit(COMPLETE, start="Unknown", elapsed=""), 0, {"null_time": 1}),
        (edit(COMPLETE, submit="Unknown"), 0, {"null_time": 1}),
        # job-records-job-tasks.json: "j.nodecount <> 0" keeps it out of modw.job_tasks.
        (edit(COMPLETE, nnodes="0"), 0, {"zero_nodes": 1}),
        # The record with '|' in its name stays 26 fields (explode limit 26): one row.
        (recorded("naïve|résumé ✓".encode()), 1, {}),
    ],
)
def test_slurm_rules(line, held, not_held):
    assert rows([line]) == Expected(held, not_held)


def test_a_duplicate_line_is_held_once():
    # shredded_job_slurm UNIQUE KEY (cluster_name(20), job_id, job_array_index, submit_time, end_time)
    # (etl_sql.d/jobs/shredder/job-slurm.sql): the second insert fails with 1062 and is skipped.
    assert rows([COMPLETE, COMPLETE, recorded(b"xu-fail")]) == Expected(2, {"duplicate_key": 1})


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (b"|".join(COMPLETE.split(b"|")[:25]), "rejected_field_count"),  # Slurm.php: "Malformed Slurm sacct line"
        (edit(COMPLETE, jobid="_5"), "rejected_job_id"),  # "Unexpected underscore in job id"
        (edit(COMPLETE, jobid="5_"), "rejected_job_id"),
        (edit(COMPLETE, jobid="5_x"), "rejected_job_id"),  # parseJobArrayIndexes: "Failed to parse"
    ],
)
def test_one_line_xdmod_throws_on_loses_the_whole_file(bad, reason):
    # Shredder.php shredFile: any exception rolls back the file's transaction: nothing is held.
    assert rows([COMPLETE, bad, recorded(b"xu-fail")]) == Expected(0, {reason: 1, "file_rolled_back": 2})


def test_blank_and_control_characters_as_the_shredder_reads_them():
    # shredFile: rtrim, then control characters removed: "\x01\x0c" is a blank line; a tab in the
    # job id disappears before the split, so "3\t" is job 3 (and a duplicate of it).
    assert rows([b"\x01\x0c", COMPLETE, edit(COMPLETE, jobid="3\t")]) == Expected(
        1, {"blank_line": 1, "duplicate_key": 1}
    )


def test_same_job_and_submit_with_two_ends_is_one_row():
    # A requeued job can appear twice (sacct --duplicates) with one id and submit time but two ends:
    # the shredder keeps both (end_time is in its key) but mod_hpcdb.hpcdb_jobs' UNIQUE KEY uk_jobs
    # (resource_id, local_jobid, local_job_array_index, submit_time) (etl_tables.d/jobs/hpcdb/jobs.json)
    # has no end time, and pdoIngestor.php loads with ON DUPLICATE KEY UPDATE: the later row wins.
    first = edit(COMPLETE, end="2026-11-20T10:00:00", elapsed="00:00:05", start="2026-11-20T09:59:55")
    assert rows([first, COMPLETE]) == Expected(1, {"merged_same_submit": 1})
    # The later row decides the window: here it ended the next day, so this day holds nothing.
    assert rows([COMPLETE, edit(COMPLETE, end="2026-11-21T01:00:00")]) == Expected(
        0, {"merged_same_submit": 1, "outside_window": 1}
    )


def test_ids_xdmod_stores_as_the_same_job():
    # job_id is int(10) unsigned in shredded_job_slurm: MariaDB without strict mode stores "1001+0"
    # as 1001 (truncated), so two het components with one submit and end collide.
    het = [edit(COMPLETE, jobid="1001+0"), edit(COMPLETE, jobid="1001+1")]
    assert rows(het) == Expected(1, {"duplicate_key": 1})
    # hpcdb_jobs.local_jobid is int(11) (signed): ids above 2^31 - 1 are clipped and merge.
    big = [edit(COMPLETE, jobid="3000000000"), edit(COMPLETE, jobid="3000000001", end="2026-11-20T23:59:00")]
    assert rows(big) == Expected(1, {"merged_same_submit": 1})


def test_where_our_writer_and_xdmod_disagree():
    # Cases our writer (slurm_format) stages and counts differently from XDMoD's rules: the
    # reconciliation would report them as missing rows although nothing was lost in transit.
    from xdmod_usage.slurm_format import check_sacct_lines

    def writer_rows(lines: list[bytes]) -> int:
        return check_sacct_lines([line + b"\n" for line in lines], WINDOW, lambda _b: None, lambda _b: None).xdmod_rows

    requeued = [edit(COMPLETE, end="2026-11-20T10:00:00", start="2026-11-20T09:59:55"), COMPLETE]
    cases = {
        "same job and submit, two ends": requeued,  # hpcdb merge
        "duplicate line": [COMPLETE, COMPLETE],  # shredder duplicate key
        "array index twice": [edit(COMPLETE, jobid="10_[1,1-2]")],
    }
    assert {name: (writer_rows(lines), rows(lines).rows) for name, lines in cases.items()} == {
        "same job and submit, two ends": (2, 1),
        "duplicate line": (2, 1),
        "array index twice": (3, 2),
    }
    # Where the writer follows XDMoD: a job with no nodes is skipped (job_tasks nodecount <> 0); ids above
    # 2^31 - 1, which XDMoD's warehouse would clip to one id and merge, are quarantined, never staged.
    assert (writer_rows([edit(COMPLETE, nnodes="0")]), rows([edit(COMPLETE, nnodes="0")]).rows) == (0, 0)
    high = [edit(COMPLETE, jobid="3000000000"), edit(COMPLETE, jobid="3000000001")]
    assert writer_rows(high) == 0 and rows(high).rows == 1


def test_our_writer_and_xdmod_rules_agree_on_a_real_staged_day(tmp_path):
    manifest, staged = staged_day(tmp_path, RECORDED)
    assert expected_job_rows(staged, START, END) == Expected(manifest["counts"]["xdmod_rows"], {})
    assert manifest["counts"]["xdmod_rows"] == 9


def test_our_writer_and_xdmod_rules_agree_on_a_synthetic_day(tmp_path):
    from xdmod_usage.synthetic import synthetic_sacct_lines

    lines = [line.rstrip(b"\n") for line in synthetic_sacct_lines(WINDOW, 20_000)]
    manifest, staged = staged_day(tmp_path, lines)
    assert expected_job_rows(staged, START, END) == Expected(manifest["counts"]["xdmod_rows"], {})
    # The raw pull has malformed lines (quarantined by the writer): XDMoD would roll it all back.
    raw = rows(lines)
    assert raw.rows == 0 and raw.not_held["file_rolled_back"] == manifest["counts"]["xdmod_rows"]


# --- XDMoD's OpenStack rules --------------------------------------------------------------------

INSTANCE = "6c1f3a52-0000-4000-8000-000000000001"


def event(
    event_type: str = "compute.instance.exists", generated: str = "2026-11-20T10:59:59.000000", **changes
) -> dict:
    """An event as our OpenStack writer stages it (typed as XDMoD's schema wants)."""
    base = {
        "event_type": event_type,
        "generated": generated,
        "instance_id": INSTANCE,
        "resource_id": INSTANCE,
        "project_id": "p1",
        "tenant_id": "p1",
        "project_name": "proj",
        "user_id": "u1",
        "user_name": "alice",
        "instance_type": "m1.small",
        "vcpus": 2,
        "memory_mb": 2048,
        "root_gb": 20,
        "disk_gb": "20",
        "ephemeral_gb": "0",
        "state": "active",
        "service": "compute",
        "host": "compute1",
    }
    return {**base, **changes}


@pytest.mark.parametrize(
    ("events", "held", "not_held"),
    [
        ([event()], 1, {}),
        # staging_event.json: NOT (state != 'active' AND event_type = 'compute.instance.exists').
        ([event(state="stopped")], 0, {"exists_not_active": 1}),
        # ... and NULL logic: a heartbeat without state is not selected either.
        ([{k: v for k, v in event().items() if k != "state"}], 0, {"exists_without_state": 1}),
        # Other events keep any state (the power_off is 'stopped').
        ([event("compute.instance.power_off.end", state="stopped")], 1, {}),
        # INNER JOIN openstack_event_map (etl_data.d/cloud_openstack/openstack_event_map.json).
        ([event("compute.instance.reboot.end")], 0, {"unknown_event_type": 1}),
        # The tables' collation is case-insensitive: the join still matches.
        ([event("COMPUTE.INSTANCE.CREATE.END")], 1, {}),
        # cloud_common/event.json PRIMARY KEY (resource_id, instance_id, event_time_ts, event_type_id,
        # host_id), ON DUPLICATE KEY UPDATE: same instance, time, type and host is one row ...
        ([event(), event(request_id="req-2", vcpus=4)], 1, {"duplicate_key": 1}),
        # ... another host, a microsecond later, or another type are others.
        (
            [
                event(),
                event(host="compute2"),
                event(generated="2026-11-20T10:59:59.000001"),
                event("compute.instance.power_on.end"),
            ],
            4,
            {},
        ),
        # event_time_ts in [start, end): the next day's midnight is out, this day's is in.
        (
            [
                event(generated="2026-11-21T00:00:00.000000"),
                event(generated="2026-11-19T23:59:59.999999"),
                event(generated="2026-11-20T00:00:00.000000"),
            ],
            1,
            {"outside_window": 2},
        ),
        # event.schema.json checked by json-schema 5.2.13 with coercion: integers may be numeric
        # strings, strings may not be numbers (JsonFile.php drops the record).
        ([event(vcpus="4")], 1, {}),
        ([event(disk_gb=20)], 0, {"schema_invalid": 1}),
        ([event(host=None)], 0, {"schema_invalid": 1}),
        ([event(user_name=None)], 1, {}),
        (["not an event"], 0, {"not_an_object": 1}),
        # jq's `.record_type += ...` appends to one already there: "ACCOUNTING" + "ADMINISTRATIVE"
        # is no record type, and the INNER JOIN on record_type drops it.
        ([event(record_type="ACCOUNTING")], 0, {"unknown_record_type": 1}),
    ],
)
def test_openstack_rules(events, held, not_held):
    assert expected_cloud_events(events, START, END) == Expected(held, not_held)


def test_window_bounds_must_be_aware():
    with pytest.raises(ValueError, match="time-zone aware"):
        expected_job_rows([COMPLETE], START.replace(tzinfo=None), END)


# --- the queries and the verdict on a real MariaDB ---------------------------------------------


@pytest.fixture
def xdmod(mariadb_pair):
    """Fresh stand-ins for XDMoD's modw and modw_cloud on the scratch server, with four resources."""
    conn = mariadb_pair["scratch"].connect()
    cursor = conn.cursor()
    for name in (MODW, MODW_CLOUD):
        cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
    apply_schema_subset(cursor, modw=MODW, modw_cloud=MODW_CLOUD)
    apply_schema_subset(cursor, modw=MODW, modw_cloud=MODW_CLOUD)  # idempotent
    cursor.execute(f"USE `{MODW}`")  # the loaders' temporary tables live here
    cursor.executemany(
        "INSERT INTO xu_rec_modw.resourcefact (id, name, code) VALUES (%s, %s, %s)",
        [(rid, f"Resource {code}", code) for code, rid in RESOURCES.items()],
    )
    yield cursor
    for name in (MODW, MODW_CLOUD):
        cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
    conn.close()


def held(cursor, realm: str, code: str, day: dt.date = DAY) -> int:
    window = UsageWindow.for_day(day)
    return count_held(cursor, realm, code, window.start, window.end, modw=MODW, modw_cloud=MODW_CLOUD)


def by_day(cursor, realm: str, code: str, first: dt.date, last: dt.date) -> dict[dt.date, int]:
    return count_held_by_day(cursor, realm, code, first, last, modw=MODW, modw_cloud=MODW_CLOUD)


ENDED_STATES = {
    b"BOOT_FAIL",
    b"CANCELLED",
    b"COMPLETED",
    b"FAILED",
    b"NODE_FAIL",
    b"PREEMPTED",
    b"TIMEOUT",
    b"OUT_OF_MEMORY",
    b"DEADLINE",
    b"REVOKED",
}


def load_jobs_like_xdmod(cursor, code: str, lines: list[bytes], time_zone: str = "-07:00") -> None:
    """XDMoD's path for a shredded Slurm file, in miniature, on MariaDB with sql_mode '' (as XDMoD runs).

    Slurm.php skips (steps, end Unknown, None assigned, not ended) and array expansion; one INSERT
    per task into a table with shredded_job_slurm's NOT NULL columns and UNIQUE KEY, a failing
    insert (SQLSTATE 23000: duplicate or NULL) skipped as Shredder.php does; then the staging filter
    (start and end > 0), hpcdb_jobs' uk_jobs with ON DUPLICATE KEY UPDATE, and job-records-job-tasks'
    nodecount <> 0 into job_tasks, end_day_id computed in the session's time zone as XDMoD does
    (here not UTC, to show the queries do not depend on it). No fixJobTimes: times are taken as is.
    """
    resource_id, origin = RESOURCES[code], next(ORIGINS)
    cursor.execute("SET SESSION sql_mode = '', time_zone = %s", (time_zone,))
    cursor.execute("DROP TEMPORARY TABLE IF EXISTS shredded, hpcdb")
    cursor.execute(
        "CREATE TEMPORARY TABLE shredded (id bigint unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY, "
        "job_id int(10) unsigned NOT NULL, job_array_index int(10) NOT NULL DEFAULT -1, "
        "submit_time int(10) unsigned NOT NULL, start_time int(10) unsigned NOT NULL, "
        "end_time int(10) unsigned NOT NULL, nnodes int(10) unsigned NOT NULL, "
        "UNIQUE KEY job (job_id, job_array_index, submit_time, end_time))"
    )

    def unix(text: bytes) -> int | None:
        try:
            moment = dt.datetime.strptime(text.decode(), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.UTC)
        except ValueError:
            return None
        return int(moment.timestamp())

    for line in lines:
        f = line.rstrip(b"\r\n").split(b"|", 25)
        if b"." in f[0] or f[13] == b"Unknown" or f[24] == b"None assigned" or f[16].split()[0] not in ENDED_STATES:
            continue
        job, _, array = f[0].partition(b"_")
        indexes: list[bytes | int] = [-1]
        if array:
            indexes = []
            for part in array.strip(b"[]").split(b","):
                low, _, high = part.partition(b"-")
                indexes += range(int(low), int(high or low) + 1)
        for index in indexes:
            with contextlib.suppress(MySQLdb.IntegrityError):  # 1062 duplicate or 1048 NULL: SQLSTATE 23000
                cursor.execute(
                    "INSERT INTO shredded (job_id, job_array_index, submit_time, start_time, end_time, nnodes) "
                    "VALUES (%s, %s, %s, %s, %s, %s)",
                    (job, index, unix(f[10]), unix(f[12]), unix(f[13]), f[17]),
                )
    cursor.execute(
        "CREATE TEMPORARY TABLE hpcdb (job_id int(11) NOT NULL PRIMARY KEY, local_jobid int(11) NOT NULL, "
        "local_job_array_index int(11) NOT NULL, submit_time int(10) unsigned NOT NULL, "
        "start_time int(10) unsigned NOT NULL, end_time int(10) unsigned NOT NULL, nodecount int(11) NOT NULL, "
        "UNIQUE KEY uk_jobs (local_jobid, local_job_array_index, submit_time))"
    )
    cursor.execute(
        "INSERT INTO hpcdb SELECT id, job_id, job_array_index, submit_time, start_time, end_time, nnodes "
        "FROM shredded WHERE start_time > 0 AND end_time > 0 ORDER BY id "
        "ON DUPLICATE KEY UPDATE job_id = VALUES(job_id), start_time = VALUES(start_time), "
        "end_time = VALUES(end_time), nodecount = VALUES(nodecount)"
    )
    cursor.execute(
        "INSERT INTO xu_rec_modw.job_tasks (job_record_id, job_id_origin_id, creation_time, local_jobid, "
        "local_job_array_index, local_job_id_raw, resource_id, systemaccount_id, person_id, person_organization_id, "
        "person_nsfstatuscode_id, job_task_type_id, submit_time_ts, start_time_ts, end_time_ts, start_day_id, "
        "end_day_id, eligible_day_id, node_count, wallduration, waitduration, cpu_time, gpu_time, completed) "
        "SELECT %s + job_id, %s + job_id, NOW(), local_jobid, local_job_array_index, local_jobid, %s, 1, 1, 1, 0, 1, "
        "submit_time, start_time, end_time, "
        "YEAR(FROM_UNIXTIME(start_time)) * 100000 + DAYOFYEAR(FROM_UNIXTIME(start_time)), "
        "YEAR(FROM_UNIXTIME(end_time)) * 100000 + DAYOFYEAR(FROM_UNIXTIME(end_time)), 0, nodecount, "
        "end_time - start_time, start_time - submit_time, 0, 0, 1 "
        "FROM hpcdb WHERE nodecount <> 0 AND end_time > 0 ORDER BY job_id",
        (origin, origin, resource_id),  # hpcdb ids are one sequence across resources in XDMoD
    )
    cursor.execute("SET SESSION time_zone = '+00:00'")


def copy_job_row(cursor, code: str, new_code: str | None = None, shift_days: int = 0) -> None:
    """Duplicate one held row of the resource-day (for another resource or day): what a double count looks like."""
    origin = next(ORIGINS)
    cursor.execute(
        "INSERT INTO xu_rec_modw.job_tasks (job_record_id, job_id_origin_id, creation_time, local_jobid, "
        "local_job_array_index, local_job_id_raw, resource_id, systemaccount_id, person_id, person_organization_id, "
        "person_nsfstatuscode_id, job_task_type_id, submit_time_ts, start_time_ts, end_time_ts, start_day_id, "
        "end_day_id, eligible_day_id, node_count, wallduration, waitduration, cpu_time, gpu_time, completed) "
        "SELECT job_record_id + %s, job_id_origin_id + %s, creation_time, local_jobid, local_job_array_index, "
        "local_job_id_raw, %s, systemaccount_id, person_id, person_organization_id, person_nsfstatuscode_id, "
        "job_task_type_id, submit_time_ts, start_time_ts, end_time_ts + %s, start_day_id, "
        "end_day_id + %s, eligible_day_id, node_count, wallduration, waitduration, cpu_time, gpu_time, completed "
        "FROM xu_rec_modw.job_tasks WHERE resource_id = %s ORDER BY job_id LIMIT 1",
        (origin, origin, RESOURCES[new_code or code], 86400 * shift_days, shift_days, RESOURCES[code]),
    )


def test_a_staged_day_loaded_like_xdmod_reconciles(xdmod, tmp_path):
    manifest, staged = staged_day(tmp_path, RECORDED)
    load_jobs_like_xdmod(xdmod, "hpc1", staged)
    expected = expected_job_rows(staged, START, END)
    result = reconcile(
        xdmod, "job", "hpc1", START, END, expected, manifest["counts"]["xdmod_rows"], modw=MODW, modw_cloud=MODW_CLOUD
    )
    assert result == Reconciliation("job", "hpc1", "2026-11-20", 9, 9, 9, {})
    assert result.ok
    assert result.message() == (
        "hpc1 2026-11-20: XDMoD holds 9 job rows, expected 9 from the staged file (our writer claimed 9): match"
    )
    assert result.as_dict()["ok"] is True


def test_mariadb_agrees_with_the_rules_on_the_edge_cases(xdmod):
    # The rules' edge cases through the stand-in loader: MariaDB's own keys, conversions and NULL
    # errors decide what is held, and must give the number the rules predict.
    lines = [
        *RECORDED,
        COMPLETE,  # duplicate line
        edit(COMPLETE, jobid="1001+0"),
        edit(COMPLETE, jobid="1001+1"),  # het ids stored as 1001
        edit(recorded(b"xu-fail"), jobid="4", end="2026-11-20T23:59:59"),  # same job and submit, a later end
        edit(COMPLETE, jobid="20", nnodes="0"),  # no nodes
        edit(COMPLETE, jobid="21", submit="Unknown"),  # NULL submit
        edit(COMPLETE, jobid="22_[1,1-3]"),  # index 1 twice
        edit(COMPLETE, jobid="3000000000"),
        edit(COMPLETE, jobid="3000000001"),  # clipped to 2^31 - 1
    ]
    load_jobs_like_xdmod(xdmod, "hpc1", lines)
    expected = expected_job_rows([line + b"\n" for line in lines], START, END)
    assert expected.rows == held(xdmod, "job", "hpc1") == 9 + 1 + 3 + 1
    assert expected.not_held == {
        "duplicate_key": 3,
        "merged_same_submit": 2,
        "none_assigned": 1,
        "null_time": 1,
        "outside_window": 1,
        "zero_nodes": 1,
    }


def test_a_deleted_row_is_missing(xdmod, tmp_path):
    manifest, staged = staged_day(tmp_path, RECORDED)
    load_jobs_like_xdmod(xdmod, "hpc1", staged)
    xdmod.execute("UPDATE xu_rec_modw.job_tasks SET is_deleted = 1 ORDER BY job_id LIMIT 1")
    result = reconcile(
        xdmod,
        "job",
        "hpc1",
        START,
        END,
        expected_job_rows(staged, START, END),
        manifest["counts"]["xdmod_rows"],
        modw=MODW,
        modw_cloud=MODW_CLOUD,
    )
    assert not result.ok
    assert (result.held, result.expected) == (8, 9)
    assert result.message() == (
        "hpc1 2026-11-20: XDMoD holds 8 job rows, expected 9 from the staged file (our writer claimed 9): 1 missing"
    )
    xdmod.execute("DELETE FROM xu_rec_modw.job_tasks WHERE is_deleted = 1")
    assert held(xdmod, "job", "hpc1") == 8


def test_copies_on_another_day_or_resource_do_not_disturb_the_check(xdmod, tmp_path):
    _manifest, staged = staged_day(tmp_path, RECORDED)
    load_jobs_like_xdmod(xdmod, "hpc1", staged)
    copy_job_row(xdmod, "hpc1", shift_days=1)
    copy_job_row(xdmod, "hpc1", shift_days=-1)
    copy_job_row(xdmod, "hpc1", new_code="hpc2")
    expected = expected_job_rows(staged, START, END)
    assert reconcile(xdmod, "job", "hpc1", START, END, expected, 9, modw=MODW, modw_cloud=MODW_CLOUD).ok
    assert held(xdmod, "job", "hpc1", DAY + dt.timedelta(days=1)) == 1
    assert held(xdmod, "job", "hpc1", DAY - dt.timedelta(days=1)) == 1
    assert held(xdmod, "job", "hpc2") == 1


def test_an_extra_row_is_double_counting(xdmod, tmp_path):
    _manifest, staged = staged_day(tmp_path, RECORDED)
    load_jobs_like_xdmod(xdmod, "hpc1", staged)
    copy_job_row(xdmod, "hpc1")  # the same job again, same day and resource
    result = reconcile(
        xdmod, "job", "hpc1", START, END, expected_job_rows(staged, START, END), 9, modw=MODW, modw_cloud=MODW_CLOUD
    )
    assert not result.ok
    assert result.message() == (
        "hpc1 2026-11-20: XDMoD holds 10 job rows, expected 9 from the staged file "
        "(our writer claimed 9): 1 extra (double counting)"
    )


def test_a_writer_claim_that_differs_is_reported_but_xdmod_matching_the_rules_passes(xdmod, tmp_path):
    _manifest, staged = staged_day(tmp_path, RECORDED)
    load_jobs_like_xdmod(xdmod, "hpc1", staged)
    result = reconcile(
        xdmod, "job", "hpc1", START, END, expected_job_rows(staged, START, END), 10, modw=MODW, modw_cloud=MODW_CLOUD
    )
    assert result.ok and not result.writer_agrees and result.held == result.expected == 9
    assert "our writer's count differs from XDMoD's rules by +1" in result.message()


def test_each_resource_counts_only_its_own_rows(xdmod, tmp_path):
    _manifest, staged = staged_day(tmp_path, RECORDED)
    load_jobs_like_xdmod(xdmod, "hpc1", staged)
    load_jobs_like_xdmod(xdmod, "hpc2", staged[:3])
    assert (held(xdmod, "job", "hpc1"), held(xdmod, "job", "hpc2"), held(xdmod, "job", "cloud1")) == (9, 3, 0)
    assert held(xdmod, "job", "no-such-resource") == 0


def test_counts_by_utc_day_over_a_range(xdmod):
    # The raw recording (not the staged day): the midnight job ended 2026-11-21T00:00:45 UTC, which
    # is 2026-11-20 in the loader's -07:00 session (end_day_id): by-day counts follow UTC.
    load_jobs_like_xdmod(xdmod, "hpc1", RECORDED)
    load_jobs_like_xdmod(xdmod, "hpc2", RECORDED)
    first, last = DAY - dt.timedelta(days=1), DAY + dt.timedelta(days=2)
    days = [first + dt.timedelta(days=n) for n in range(4)]
    assert by_day(xdmod, "job", "hpc1", first, last) == dict(zip(days, [0, 9, 1, 0], strict=True))
    assert by_day(xdmod, "job", "hpc1", DAY, DAY) == {DAY: 9}
    assert held(xdmod, "job", "hpc1", DAY + dt.timedelta(days=1)) == 1
    xdmod.execute("SET SESSION time_zone = '+09:00'")  # the reading session's zone does not matter either
    assert by_day(xdmod, "job", "hpc1", first, last) == dict(zip(days, [0, 9, 1, 0], strict=True))
    with pytest.raises(ValueError, match="before"):
        by_day(xdmod, "job", "hpc1", last, first)


# --- cloud events on MariaDB --------------------------------------------------------------------

EVENT_TYPE_IDS = {
    "compute.instance.create.end": 2,
    "compute.instance.power_off.end": 45,
    "compute.instance.power_on.end": 59,
    "compute.instance.exists": 16,
    "compute.instance.delete.end": 6,
}  # from openstack_event_map.json, kept here


def load_events_like_xdmod(cursor, code: str, events: list[dict]) -> None:
    """XDMoD's cloud path in miniature: instance and host rows from the events' ids (staging_event.json
    joins), the event map INNER JOIN, inactive heartbeats dropped, event_time_ts converted by MariaDB
    as staging_event.json does, and cloud_common/event.json's primary key with ON DUPLICATE KEY UPDATE.
    """
    resource_id = RESOURCES[code]
    cursor.execute("DROP TEMPORARY TABLE IF EXISTS instance, host")
    cursor.execute(
        "CREATE TEMPORARY TABLE instance (instance_id int NOT NULL AUTO_INCREMENT UNIQUE, "
        "provider_identifier varchar(256) NOT NULL PRIMARY KEY) AUTO_INCREMENT = 2"
    )
    cursor.execute(
        "CREATE TEMPORARY TABLE host (host_id int NOT NULL AUTO_INCREMENT UNIQUE, "
        "hostname varchar(64) NOT NULL PRIMARY KEY) AUTO_INCREMENT = 2"
    )
    for record in events:
        type_id = EVENT_TYPE_IDS.get(record["event_type"])
        if type_id is None or (type_id == 16 and record.get("state") != "active"):
            continue
        cursor.execute("INSERT IGNORE INTO instance (provider_identifier) VALUES (%s)", (record["instance_id"],))
        cursor.execute("INSERT IGNORE INTO host (hostname) VALUES (%s)", (record["host"],))
        cursor.execute(
            "INSERT INTO xu_rec_modw_cloud.event (resource_id, instance_id, event_time_ts, event_type_id, "
            "record_type_id, host_id) SELECT %s, i.instance_id, "
            "UNIX_TIMESTAMP(CONVERT_TZ(%s, '+00:00', @@session.time_zone)), %s, %s, h.host_id "
            "FROM instance AS i JOIN host AS h ON h.hostname = %s WHERE i.provider_identifier = %s "
            "ON DUPLICATE KEY UPDATE record_type_id = VALUES(record_type_id)",
            (
                resource_id,
                record["generated"],
                type_id,
                2 if type_id == 16 else 1,
                record["host"],
                record["instance_id"],
            ),
        )


def cloud_day() -> list[dict]:
    """A VM's day: created at 09:10, a heartbeat each hour it ran, stopped at 12:30, one heartbeat
    repeated (same key), one stopped heartbeat, one event of the next day, one of another VM."""
    events = [event("compute.instance.create.end", "2026-11-20T09:10:00.250000", state="active")]
    events += [event(generated=f"2026-11-20T{hour:02d}:59:59.000000") for hour in (9, 10, 11)]
    events += [
        event("compute.instance.power_off.end", "2026-11-20T12:30:00.000000", state="stopped"),
        event(generated="2026-11-20T12:29:59.000000"),
        event(generated="2026-11-20T12:29:59.000000"),
        event(generated="2026-11-20T13:59:59.000000", state="stopped"),
        event("compute.instance.power_on.end", "2026-11-21T08:00:00.000000"),
        event(generated="2026-11-20T10:59:59.000000", instance_id="6c1f3a52-0000-4000-8000-000000000002"),
    ]
    return events


def test_cloud_events_loaded_like_xdmod_reconcile(xdmod):
    events = cloud_day()
    expected = expected_cloud_events(events, START, END)
    assert expected == Expected(7, {"duplicate_key": 1, "exists_not_active": 1, "outside_window": 1})
    load_events_like_xdmod(xdmod, "cloud1", events)
    load_events_like_xdmod(xdmod, "cloud2", events[:2])
    result = reconcile(xdmod, "cloud", "cloud1", START, END, expected, 7, modw=MODW, modw_cloud=MODW_CLOUD)
    assert result.ok, result.message()
    assert result.message() == (
        "cloud1 2026-11-20: XDMoD holds 7 cloud events, expected 7 from the staged file (our writer claimed 7): match"
    )
    assert held(xdmod, "cloud", "cloud2") == 2
    first, last = DAY - dt.timedelta(days=1), DAY + dt.timedelta(days=1)
    days = [first + dt.timedelta(days=n) for n in range(3)]
    assert by_day(xdmod, "cloud", "cloud1", first, last) == dict(zip(days, [0, 7, 1], strict=True))

    xdmod.execute("DELETE FROM xu_rec_modw_cloud.event WHERE resource_id = 3 ORDER BY event_time_ts LIMIT 1")
    missing = reconcile(xdmod, "cloud", "cloud1", START, END, expected, None, modw=MODW, modw_cloud=MODW_CLOUD)
    assert not missing.ok
    assert (
        missing.message() == "cloud1 2026-11-20: XDMoD holds 6 cloud events, expected 7 from the staged file: 1 missing"
    )
    xdmod.execute(
        "INSERT INTO xu_rec_modw_cloud.event (resource_id, instance_id, event_time_ts, event_type_id, host_id) "
        "VALUES (3, 99, 1795176000.5, 16, 1), (3, 99, 1795176001.5, 16, 1)"
    )
    extra = reconcile(xdmod, "cloud", "cloud1", START, END, expected, None, modw=MODW, modw_cloud=MODW_CLOUD)
    assert "1 extra (double counting)" in extra.message()


def test_realm_is_checked(xdmod):
    with pytest.raises(ValueError, match="realm"):
        count_held(xdmod, "storage", "hpc1", START, END, modw=MODW, modw_cloud=MODW_CLOUD)  # type: ignore[arg-type]
