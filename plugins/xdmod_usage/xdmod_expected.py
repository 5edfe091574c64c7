"""What XDMoD's database will hold for a staged file, from XDMoD's own rules: the reconciliation's yardstick.

Why a second implementation: the daily proof compares what XDMoD holds with what it SHOULD hold.
If "should" came from our writers (``slurm_format``, ``openstack_events``) a bug in them would
agree with itself. So this module reads only the staged file XDMoD was given and applies the
rules as XDMoD's source (ubccr/xdmod, PHP 7.4 and MariaDB in ``sql_mode=''``) implements them,
step by step along the path a row takes. It imports none of our writer modules (a test checks).

Jobs (``xdmod-shredder -f slurm`` then ``xdmod-ingestor``), one staged line at a time:

1. ``classes/OpenXdmod/Shredder.php`` ``shredFile``: ``rtrim``, control characters removed, blank
   lines skipped; any exception rolls back the whole file (XDMoD then holds nothing of it).
2. ``classes/OpenXdmod/Shredder/Slurm.php`` ``shredLine``: ``explode('|', line, 26)``, fewer than
   26 fields throws; job steps (``.`` in the id), end ``Unknown``, node list ``None assigned``, a
   state whose first word is not an ended state: skipped. Times ``Y-m-d?H:i:s`` in UTC (anything
   else NULL), elapsed ``[[D-]H:]M:S[.frac]``. Arrays: ``N_M`` or ``N_[list]`` expanded, an
   underscore first or last or any other array part throws.
3. ``Shredder.php`` ``checkJobData``/``fixJobTimes``: a missing or zero start, end or wall time is
   derived from the two others (an unparseable end becomes start + elapsed).
4. ``mod_shredder.shredded_job_slurm`` (``etl_sql.d/jobs/shredder/job-slurm.sql``): NULL in the
   NOT NULL submit/start/end/elapsed columns fails with SQLSTATE 23000, which ``shredFile``
   swallows as a "duplicate"; UNIQUE KEY (cluster, job_id, job_array_index, submit_time, end_time)
   drops true duplicates. Values are converted as MariaDB does without strict mode (``1001+0``
   becomes 1001, out-of-range numbers are clipped).
5. ``etl_action_defs.d/jobs/staging/job.json``: only ``start_time > 0 AND end_time > 0``.
6. ``mod_hpcdb.hpcdb_jobs`` (``etl_tables.d/jobs/hpcdb/jobs.json``): UNIQUE KEY (resource_id,
   local_jobid, local_job_array_index, submit_time) WITHOUT end_time, loaded by ``INSERT ... ON
   DUPLICATE KEY UPDATE`` (``classes/ETL/Ingestor/pdoIngestor.php``): two shredded rows of one job
   id, index and submit time become ONE row, the last one's values win. ``local_jobid`` is a
   signed int(11): ids above 2,147,483,647 are clipped to it (and merge).
7. ``etl_action_defs.d/jobs/xdw/job-records-job-tasks.json``: ``nodecount <> 0 AND end_time > 0``
   into ``modw.job_tasks``, one row per job or array task.

Only what one file can tell is modelled: a duplicate of a row shredded on another day, and the
dimension joins of step 7 (XDMoD builds them from the same jobs), are outside it. The host filter
(``xdmod-shredder -H``) is not used by our runners.

Cloud events (``xdmod-shredder -f openstack``, ``xdmod-ingestor --datatype=openstack``):

1. ``etl.d/jobs_cloud_openstack.json``: jq adds ``record_type`` (``+=``: ADMINISTRATIVE for
   ``compute.instance.exists``, else ACCOUNTING) to every record; each record is checked against
   ``etl_schemas.d/cloud_openstack/event.schema.json`` by justinrainbow/json-schema 5.2.13 with
   type coercion (``classes/ETL/DataEndpoint/JsonFile.php``): an invalid record is dropped.
2. ``etl_action_defs.d/cloud_openstack/staging_event.json``: INNER JOIN on
   ``openstack_event_map`` (``etl_data.d/cloud_openstack/openstack_event_map.json``) and on
   ``record_type``; ``NOT (state != 'active' AND event_type = 'compute.instance.exists')`` drops
   heartbeats that are not active, and those without a state (SQL NULL logic). String comparisons
   follow the tables' case-insensitive, trailing-space-insensitive collation.
3. ``etl_tables.d/cloud_common/event.json``: PRIMARY KEY (resource_id, instance_id, event_time_ts,
   event_type_id, host_id), loaded with ON DUPLICATE KEY UPDATE: one row per key. instance_id is
   the ``instance`` row of ``instance_id`` (1 when absent), host_id the ``host`` row of ``host``
   (1 when absent), event_time_ts ``generated`` to the microsecond (``raw_event.json``: char(26)).
   The time conversion assumes XDMoD's database session time zone has no DST change in the window
   (``UNIX_TIMESTAMP(CONVERT_TZ(...))`` is not one-to-one in a repeated hour): run it in UTC.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

__all__ = ["Expected", "expected_cloud_events", "expected_job_rows"]


@dataclass(frozen=True)
class Expected:
    """Rows XDMoD holds for the window, and what of the file it will not hold there, by reason.

    Job reasons are counted in lines (``blank_line``, ``job_step``, ``end_unknown``,
    ``none_assigned``, ``not_ended``, ``unknown_state``, ``rejected_*``) or in rows after array
    expansion (``null_time``, ``duplicate_key``, ``zero_time``, ``merged_same_submit``,
    ``zero_nodes``, ``outside_window``, ``file_rolled_back``). Any ``rejected_*`` line makes XDMoD
    roll the whole file back: ``rows`` is then 0 and ``file_rolled_back`` the rows it would have held.
    """

    rows: int
    not_held: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "not_held": dict(sorted(self.not_held.items()))}


def _epoch(moment: dt.datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"window bounds must be time-zone aware (UTC), got {moment!r}")
    return int(moment.timestamp())


def _epoch_us(moment: dt.datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"window bounds must be time-zone aware (UTC), got {moment!r}")
    delta = moment.astimezone(dt.UTC) - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


# --- jobs: values as PHP 7.4 and MariaDB (sql_mode '') see them ------------------------------

N_FIELDS = 26  # count(Slurm::$columnNames)
F_JOBID, F_SUBMIT, F_START, F_END, F_ELAPSED, F_STATE, F_NNODES, F_NODELIST = 0, 10, 12, 13, 14, 16, 17, 24
ENDED = frozenset(
    b"BOOT_FAIL CANCELLED COMPLETED FAILED NODE_FAIL PREEMPTED TIMEOUT OUT_OF_MEMORY DEADLINE REVOKED".split()
)
NOT_ENDED = frozenset(b"PENDING RUNNING REQUEUED RESIZING SUSPENDED".split())
UINT32_MAX = 2**32 - 1
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
# Slurm's own ceiling for an array (MaxArraySize): a longer range is treated as a file XDMoD cannot shred.
MAX_ARRAY_TASKS = 4_000_001
_NO_ARRAY = (-1,)

_RTRIM = b" \t\n\r\x00\x0b"  # PHP rtrim()'s default characters
_CONTROL = bytes(range(0x20)) + b"\x7f"  # Shredder::shredFile: preg_replace('/[\x00-\x1F\x7F]/', '')
_STRICT_TIME = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
# DateTime::createFromFormat('Y-m-d?H:i:s'): Y up to 4 digits, m d H up to 2, i s exactly 2, '?' any
# byte, numbers read greedily (possessive), nothing after.
_PHP_TIME = re.compile(rb"(\d{1,4}+)-(\d{1,2}+)-(\d{1,2}+).(\d{1,2}+):(\d\d):(\d\d)", re.DOTALL)
_ELAPSED = re.compile(rb"(?:(?:(\d+)-)?(\d+):)?(\d+):(\d+)(?:\.\d+)?")  # Slurm::parseTimeField
_MYSQL_NUMBER = re.compile(rb"[ \t\n\r\v\f]*([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?")
_PHP_NUMERIC = re.compile(rb"[ \t\n\r\v\f]*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_PHP_LEADING = re.compile(rb"[ \t\n\r\v\f]*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)")
# Caches of validated sacct time parts (b"YYYY-MM-DD" -> its midnight, b"HH:MM:SS" -> seconds), bounded.
_DAY_SECONDS: dict[bytes, int] = {}
_HMS_SECONDS: dict[bytes, int] = {}
_CACHE_LIMIT = 400_000


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01, overflowing like timelib (month 13 is next January, day 0 the month's eve)."""
    year += (month - 1) // 12
    month = (month - 1) % 12 + 1
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468 + day - 1


def php_time(text: bytes) -> int | None:
    """Slurm::parseDateTime: Unix seconds, or None (NULL) when createFromFormat fails."""
    if len(text) == 19 and text[10] == 0x54:  # sacct's form: two dictionary look-ups
        day, hms = _DAY_SECONDS.get(text[:10]), _HMS_SECONDS.get(text[11:])
        if day is not None and hms is not None:
            return day + hms
        if _STRICT_TIME.fullmatch(text):
            day = _days_from_civil(int(text[:4]), int(text[5:7]), int(text[8:10])) * 86_400
            hms = int(text[11:13]) * 3600 + int(text[14:16]) * 60 + int(text[17:19])
            if len(_DAY_SECONDS) < _CACHE_LIMIT:
                _DAY_SECONDS[text[:10]] = day
            if len(_HMS_SECONDS) < _CACHE_LIMIT:
                _HMS_SECONDS[text[11:]] = hms
            return day + hms
    match = _PHP_TIME.fullmatch(text)
    if not match:
        return None
    y, mo, d, h, mi, s = (int(part) for part in match.groups())
    return _days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s


def php_elapsed(text: bytes) -> int | None:
    """Slurm::parseTimeField: seconds, or None for '', UNLIMITED and anything else."""
    if len(text) == 8:
        seconds = _HMS_SECONDS.get(text)  # HH:MM:SS, validated when it was cached
        if seconds is not None:
            return seconds
    match = _ELAPSED.fullmatch(text)
    if not match:
        return None
    days, hours, minutes, seconds = (int(part) if part else 0 for part in match.groups())
    total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    if len(text) == 8 and days == 0 and text[2] == text[5] == 0x3A and len(_HMS_SECONDS) < _CACHE_LIMIT:
        _HMS_SECONDS[text] = total
    return total


def mysql_int(text: bytes, low: int, high: int) -> int:
    """A string stored into an integer column with sql_mode '': leading number, rounded, clipped."""
    if text.isdigit():
        value = int(text)
    else:
        match = _MYSQL_NUMBER.match(text)
        sign, whole, fraction, exponent = match.groups() if match else (b"", b"", None, None)
        if not whole and not fraction:
            return max(low, min(high, 0))
        number = f"{sign.decode()}{whole.decode() or '0'}.{(fraction or b'0').decode()}e{(exponent or b'0').decode()}"
        try:
            value = int(Decimal(number).to_integral_value(rounding=ROUND_HALF_UP))
        except (InvalidOperation, OverflowError):
            value = high if sign != b"-" else low
    return max(low, min(high, value))


def _php_range(first: bytes, last: bytes) -> list[bytes | int | float]:
    """PHP 7.4 range() of two strings, as Slurm::parseJobArrayIndexes calls it."""

    def leading(text: bytes) -> int | float:  # zval_get_long / zval_get_double on a string
        match = _PHP_LEADING.match(text)
        return float(match.group(1)) if match else 0

    if first and last:
        kinds = []
        for text in (first, last):
            numeric = _PHP_NUMERIC.fullmatch(text) is not None
            kinds.append(None if not numeric else ("float" if b"." in text or b"e" in text.lower() else "int"))
        if "float" in kinds:
            low, high = float(leading(first)), float(leading(last))
            count = int(abs(high - low)) + 1
            if count > MAX_ARRAY_TASKS:
                raise _Rejected("rejected_job_id")
            step = 1.0 if high >= low else -1.0
            return [low + i * step for i in range(count)]
        if "int" not in kinds:  # two non-numeric strings: a range of single characters
            a, b = first[0], last[0]
            step = 1 if b >= a else -1
            return [bytes([c]) for c in range(a, b + step, step)]
    low, high = int(leading(first) if first else 0), int(leading(last) if last else 0)
    if abs(high - low) + 1 > MAX_ARRAY_TASKS:
        raise _Rejected("rejected_job_id")
    step = 1 if high >= low else -1
    return list(range(low, high + step, step))


def _as_index(value: bytes | int | float) -> int:
    """An array index into shredded_job_slurm.job_array_index, a signed int(10)."""
    if isinstance(value, bytes):
        return mysql_int(value, INT32_MIN, INT32_MAX)
    if isinstance(value, float):
        value = int(Decimal(value).to_integral_value(rounding=ROUND_HALF_UP))
    return max(INT32_MIN, min(INT32_MAX, value))


class _Rejected(Exception):
    """XDMoD's shredder throws on this line: the whole file is rolled back."""


def job_tasks_of(jobid: bytes) -> tuple[int, list[int]]:
    """(job id, array indexes) as the shredder stores them; -1 is a job without array. Raises _Rejected."""
    underscore = jobid.find(b"_")
    if underscore < 0:
        return mysql_int(jobid, 0, UINT32_MAX), [-1]
    if underscore == 0 or underscore == len(jobid) - 1:
        raise _Rejected("rejected_job_id")
    base, part = jobid[:underscore], jobid[underscore + 1 :]
    job_id = mysql_int(base, 0, UINT32_MAX)
    if part.isdigit():
        return job_id, [_as_index(part)]
    if not (part.startswith(b"[") and part.endswith(b"]") and len(part) >= 2):
        raise _Rejected("rejected_job_id")
    indexes: list[int] = []
    for item in part[1:-1].split(b","):
        if b"-" in item:
            first, last = item.split(b"-", 1)
            indexes.extend(_as_index(value) for value in _php_range(first, last))
        else:
            indexes.append(_as_index(item))
        if len(indexes) > MAX_ARRAY_TASKS:
            raise _Rejected("rejected_job_id")
    return job_id, indexes


def fix_job_times(start: int | None, end: int | None, wall: int | None) -> tuple[int | None, int | None, int | None]:
    """Shredder::checkJobTimes + fixJobTimes: derive one missing or zero time from the two others."""
    if start is not None and end is not None and wall is not None and start != 0 and end != 0 and start <= end:
        return start, end, wall
    if (not start) + (not end) + (wall is None) > 1:  # PHP: null == 0
        return start, end, wall
    s, e = start or 0, end or 0
    if wall is None:
        wall = max(e - s, 0)
    if s == 0:
        s = e - wall
    if e == 0:
        e = s + wall
    if s > e:
        s = e - wall
    return s, e, wall


def _clip_u32(value: int) -> int:
    return 0 if value < 0 else min(value, UINT32_MAX)


def expected_job_rows(lines: Iterable[bytes], window_start: dt.datetime, window_end: dt.datetime) -> Expected:
    """Rows of ``modw.job_tasks`` with end_time_ts in [window_start, window_end) for this staged file.

    Streams: memory grows with the distinct (job id, array index, submit time) keys only.
    """
    start_ts, end_ts = _epoch(window_start), _epoch(window_end)
    skipped: Counter[str] = Counter()
    # (job id, submit) for jobs without array, (job id, index, submit) for array tasks, packed in one
    # int -> end << 2 | reached hpcdb << 1 | nodecount != 0 of the key's last row; a list [ends seen,
    # last packed value] once a second end time shows up for the key (rare).
    jobs: dict[int, int | list[Any]] = {}
    tasks: dict[int, int | list[Any]] = {}
    overflow: dict[tuple[int, int], int] = {}  # hpcdb key of ids clipped to INT32_MAX -> last packed
    overflow_seen: set[tuple[int, int, int, int]] = set()
    control, rtrim, ended, time_of, elapsed_of = _CONTROL, _RTRIM, ENDED, php_time, php_elapsed
    # Field numbers as literals (F_* above): globals cost a look-up each, on every line.
    for raw in lines:
        line = raw.rstrip(rtrim).translate(None, control)
        if not line:
            skipped["blank_line"] += 1
            continue
        fields = line.split(b"|", 25)
        if len(fields) != 26:
            skipped["rejected_field_count"] += 1
            continue
        jobid = fields[0]
        if b"." in jobid:
            skipped["job_step"] += 1
            continue
        if fields[13] == b"Unknown":
            skipped["end_unknown"] += 1
            continue
        if fields[24] == b"None assigned":
            skipped["none_assigned"] += 1
            continue
        state = fields[16].upper().split(b" ", 1)[0]
        if state not in ended:
            skipped["not_ended" if state in NOT_ENDED else "unknown_state"] += 1
            continue
        try:
            if jobid.isdigit() and len(jobid) < 10:
                job_id, indexes = int(jobid), _NO_ARRAY
            else:
                job_id, indexes = job_tasks_of(jobid)
        except _Rejected as rejected:
            skipped[str(rejected)] += 1
            continue
        submit, start, end = time_of(fields[10]), time_of(fields[12]), time_of(fields[13])
        wall = elapsed_of(fields[14])
        if not (start and end and wall is not None and start <= end):
            start, end, wall = fix_job_times(start, end, wall)
        if submit is None or start is None or end is None or wall is None:
            skipped["null_time"] += len(indexes)  # NOT NULL column: SQLSTATE 23000, skipped as a duplicate
            continue
        if not (0 <= submit <= UINT32_MAX and 0 <= start <= UINT32_MAX and 0 <= end <= UINT32_MAX):
            submit, start, end = _clip_u32(submit), _clip_u32(start), _clip_u32(end)
        nnodes = fields[17]
        nodes_ok = int(nnodes.lstrip(b"0") != b"") if nnodes.isdigit() else int(mysql_int(nnodes, 0, UINT32_MAX) != 0)
        forwarded = int(start > 0 and end > 0)  # staging_job: start_time > 0 AND end_time > 0
        packed = end << 2 | forwarded << 1 | nodes_ok
        for index in indexes:
            if job_id >= INT32_MAX:  # hpcdb_jobs.local_jobid is int(11): clipped, so keyed apart
                shred_key = (job_id, index, submit, end)
                if shred_key in overflow_seen:
                    skipped["duplicate_key"] += 1
                    continue
                overflow_seen.add(shred_key)
                if not forwarded:
                    skipped["zero_time"] += 1
                    continue
                if (index, submit) in overflow:
                    skipped["merged_same_submit"] += 1
                overflow[(index, submit)] = packed
                continue
            if index == -1:
                table, key = jobs, job_id << 32 | submit
            else:
                table, key = tasks, (job_id << 32 | index & 0xFFFFFFFF) << 32 | submit
            known = table.get(key)
            if known is None:
                table[key] = packed
                continue
            if isinstance(known, int):
                if known >> 2 == end:
                    skipped["duplicate_key"] += 1
                    continue
                known = table[key] = [{known >> 2}, known]
            ends, last = known
            if end in ends:
                skipped["duplicate_key"] += 1
                continue
            ends.add(end)
            if not forwarded:  # shredded but never reaches hpcdb: the earlier row stays
                skipped["zero_time"] += 1
                continue
            # ON DUPLICATE KEY UPDATE: the later row replaces the earlier one (if that reached hpcdb).
            skipped["merged_same_submit" if last >> 1 & 1 else "zero_time"] += 1
            known[1] = packed
    rows = 0
    for value in itertools.chain(jobs.values(), tasks.values(), overflow.values()):
        packed = value if isinstance(value, int) else value[1]
        if not packed >> 1 & 1:
            skipped["zero_time"] += 1
        elif not packed & 1:
            skipped["zero_nodes"] += 1  # job-records-job-tasks.json: nodecount <> 0
        elif start_ts <= packed >> 2 < end_ts:
            rows += 1
        else:
            skipped["outside_window"] += 1
    if skipped["rejected_field_count"] or skipped["rejected_job_id"]:
        skipped["file_rolled_back"] += rows
        rows = 0
    return Expected(rows, {reason: count for reason, count in sorted(skipped.items()) if count})


# --- cloud events ----------------------------------------------------------------------------

EXISTS = "compute.instance.exists"
# etl_data.d/cloud_openstack/openstack_event_map.json: OpenStack event type -> XDMoD event_type_id.
EVENT_TYPE_IDS: dict[str, int] = {
    "unknown": -1, "compute.instance.create.start": 1, "compute.instance.create.end": 2,
    "compute.instance.shutdown.start": 3, "compute.instance.shutdown.end": 4, "compute.instance.delete.start": 5,
    "compute.instance.delete.end": 6, "compute.instance.volume.attach": 10, "volume.attach.end": 11,
    "compute.instance.volume.detach": 12, EXISTS: 16, "compute.instance.shelve_offload.end": 19,
    "volume.detach.start": 21, "volume.detach.end": 22, "volume.create.start": 23, "volume.create.end": 24,
    "volume.update.start": 25, "volume.update.end": 26, "volume.attach.start": 27, "volume.delete.start": 28,
    "volume.delete.end": 29, "volume_type.create": 30, "image.activate": 31, "image.create": 32,
    "image.delete": 33, "image.prepare": 34, "image.update": 35, "image.upload": 36, "snapshot.create.start": 37,
    "snapshot.create.end": 38, "snapshot.delete.start": 39, "snapshot.delete.end": 40,
    "compute.instance.create.error": 41, "compute.instance.finish_resize.start": 42,
    "compute.instance.finish_resize.end": 43, "compute.instance.power_off.start": 44,
    "compute.instance.power_off.end": 45, "compute.instance.rebuild.start": 46, "compute.instance.rebuild.end": 47,
    "compute.instance.resize.confirm.start": 48, "compute.instance.resize.confirm.end": 49,
    "compute.instance.resize.start": 50, "compute.instance.resize.end": 51, "compute.instance.resize.prep.start": 52,
    "compute.instance.resize.prep.end": 53, "compute.instance.shelve_offload.start": 64,
    "compute.instance.resume.start": 7, "compute.instance.resume.end": 8, "compute.instance.power_on.start": 58,
    "compute.instance.power_on.end": 59, "compute.instance.unshelve.end": 20, "compute.instance.unpause.end": 57,
    "compute.instance.unsuspend.end": 61, "compute.instance.suspend.end": 17, "compute.instance.pause.end": 55,
    "compute.instance.suspend.start": 62, "compute.instance.unsuspend.start": 60,
    "compute.instance.unpause.start": 56, "compute.instance.unshelve.start": 63, "compute.instance.pause.start": 54,
}  # fmt: skip
# etl_data.d/cloud_common/record_type.json, compared case-insensitively.
RECORD_TYPES = frozenset({"unknown", "accounting", "administrative", "derived"})
# etl_schemas.d/cloud_openstack/event.schema.json: property -> allowed JSON types.
SCHEMA_TYPES: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("disk_gb", "ephemeral_gb", "event_type", "generated", "host", "instance_id", "instance_type",
                     "launched_at", "message_id", "project_id", "project_name", "request_id", "resource_id",
                     "service", "state", "tenant_id", "user_id", "volume_id", "domain"), ("string",)),
    **dict.fromkeys(("instance_type_id", "memory_mb", "root_gb", "vcpus"), ("integer",)),
    "user_name": ("string", "null"),
}  # fmt: skip
_PHP_NUMERIC_STR = re.compile(r"[ \t\n\r\v\f]*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_MYSQL_DATETIME = re.compile(r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?")


def _schema_valid(record: dict[str, Any]) -> bool:
    """justinrainbow/json-schema 5.2.13, CHECK_MODE_COERCE_TYPES: strings must be strings; integers
    may be numbers or numeric strings of integral value (no booleans)."""
    for name, types in SCHEMA_TYPES.items():
        if name not in record:
            continue
        value = record[name]
        if value is None:
            if "null" in types:
                continue
            return False
        if "string" in types:
            if not isinstance(value, str):
                return False
            continue
        if isinstance(value, bool):
            return False
        if isinstance(value, int):
            continue
        if isinstance(value, str) and _PHP_NUMERIC_STR.fullmatch(value):
            value = float(value)
        if not isinstance(value, float) or not value.is_integer() or abs(value) >= 2**63:
            return False
    return True


def _ci(text: Any) -> str | None:
    """A value as the tables' collation compares it: case and trailing spaces do not count."""
    return None if text is None else str(text).rstrip(" ").lower()


def mysql_event_time_us(generated: str) -> int | None:
    """raw event_time_utc char(26) -> event_time_ts (UTC session) in microseconds; None: NULL."""
    match = _MYSQL_DATETIME.match(generated[:26])
    if not match:
        return None
    y, mo, d, h, mi, s = (int(part) for part in match.groups()[:6])
    micros = int((match.group(7) or "").ljust(6, "0"))
    try:
        moment = dt.datetime(y, mo, d, h, mi, s, tzinfo=dt.UTC)
    except ValueError:
        return None
    return _epoch_us(moment) + micros


def expected_cloud_events(events: list[Any], window_start: dt.datetime, window_end: dt.datetime) -> Expected:
    """Rows of ``modw_cloud.event`` with event_time_ts in [window_start, window_end) for this events file."""
    start_us, end_us = _epoch_us(window_start), _epoch_us(window_end)
    dropped: Counter[str] = Counter()
    keys: set[tuple[str | None, int, int, str | None]] = set()
    type_ids = {_ci(name): type_id for name, type_id in EVENT_TYPE_IDS.items()}
    rows = 0
    for record in events:
        if not isinstance(record, dict):
            dropped["not_an_object"] += 1
            continue
        event_type = record.get("event_type")
        suffix = "ADMINISTRATIVE" if event_type == EXISTS else "ACCOUNTING"  # jq, exact comparison
        record_type = record.get("record_type")
        record_type = suffix if record_type is None else f"{record_type}{suffix}"
        if not _schema_valid(record):
            dropped["schema_invalid"] += 1
            continue
        type_id = type_ids.get(_ci(event_type))
        if type_id is None:
            dropped["unknown_event_type"] += 1  # INNER JOIN openstack_event_map
            continue
        if _ci(record_type) not in RECORD_TYPES:
            dropped["unknown_record_type"] += 1  # INNER JOIN record_type
            continue
        if _ci(event_type) == EXISTS:
            state = _ci(record.get("state"))
            if state is None:
                dropped["exists_without_state"] += 1  # NOT (NULL AND TRUE) is NULL: not selected
                continue
            if state != "active":
                dropped["exists_not_active"] += 1
                continue
        moment = mysql_event_time_us(record["generated"]) if isinstance(record.get("generated"), str) else None
        if moment is None:
            dropped["bad_time"] += 1  # NULL becomes 0.000000 in the NOT NULL column: never in a window
            continue
        instance, host = record.get("instance_id"), record.get("host")  # varchar(64) in openstack_raw_event
        key = (_ci(instance[:64]) if instance is not None else None, moment, type_id, _ci(host[:64]) if host else host)
        if key in keys:
            dropped["duplicate_key"] += 1
            continue
        keys.add(key)
        if start_us <= moment < end_us:
            rows += 1
        else:
            dropped["outside_window"] += 1
    return Expected(rows, {reason: count for reason, count in sorted(dropped.items()) if count})
