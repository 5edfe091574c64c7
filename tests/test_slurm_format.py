"""XDMoD's Slurm shredder rules, on lines recorded from the real Slurm 22.05 of scripts/services.

The recording (tests/data/sacct-22.05-recorded.txt) is real sacct output of the test workload.
The edge cases XDMoD documents that a one-node test cluster cannot produce for an ended job (array
ranges, het ids, malformed ids) are made by editing one field of a recorded line.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

import pytest

from xdmod_usage.slurm_format import N_FIELDS, SACCT_FIELDS, check_sacct_lines, xdmod_rows_for_jobid
from xdmod_usage.window import UsageWindow

RECORDED = (Path(__file__).parent / "data" / "sacct-22.05-recorded.txt").read_bytes().splitlines()
DAY = dt.date(2026, 11, 20)  # the recorded short jobs ended then; the midnight job ended the next day
WINDOW = UsageWindow.for_day(DAY)


def recorded(name: bytes, state_prefix: bytes = b"") -> bytes:
    """The first recorded line with this job name (and state prefix)."""
    for line in RECORDED:
        fields = line.split(b"|", N_FIELDS - 1)
        if fields[-1] == name and fields[16].startswith(state_prefix):
            return line
    raise LookupError(name)


def edit(line: bytes, **changes: str | bytes) -> bytes:
    fields = line.split(b"|", N_FIELDS - 1)
    for name, value in changes.items():
        fields[SACCT_FIELDS.index(name)] = value.encode() if isinstance(value, str) else value
    return b"|".join(fields)


def check(lines: list[bytes]):
    staged, quarantine = io.BytesIO(), io.BytesIO()
    counts = check_sacct_lines([line + b"\n" for line in lines], WINDOW, staged.write, quarantine.write)
    records = [json.loads(q) for q in quarantine.getvalue().splitlines()]
    return counts, staged.getvalue().splitlines(), records


COMPLETE = recorded(b"xu-complete")


def test_recording_holds_the_real_cases():
    assert len(RECORDED) >= 10
    assert all(len(line.split(b"|", N_FIELDS - 1)) == N_FIELDS for line in RECORDED)
    assert recorded(b"xu-cancel-pending").split(b"|")[24] == b"None assigned"


def test_recorded_day_sorts_every_line_once():
    counts, staged, quarantined = check(RECORDED)
    assert counts.read == len(RECORDED)
    total = counts.staged + counts.outside_window + sum(counts.skipped.values()) + counts.quarantined_total
    assert total == counts.read
    assert quarantined == []
    assert counts.skipped == {"none_assigned": 1}  # the job cancelled while pending
    assert counts.outside_window == 1  # the job that ran across midnight ended the next day
    assert counts.staged == len(RECORDED) - 2
    assert all(len(line.split(b"|", N_FIELDS - 1)) == N_FIELDS for line in staged)


def test_cancelled_by_uid_counts_as_cancelled():
    line = recorded(b"xu-cancel-running")
    assert b"|CANCELLED by " in line
    counts, staged, _ = check([line])
    assert staged == [line] and counts.staged == 1


def test_pipes_and_non_ascii_in_job_name_pass_unchanged():
    line = recorded("naïve|résumé ✓".encode())
    _counts, staged, _ = check([line])
    assert staged == [line]
    # XDMoD splits with a limit of 26: the pipe stays inside the job name.
    assert line.split(b"|", N_FIELDS - 1)[-1] == "naïve|résumé ✓".encode()
    invalid_utf8 = edit(line, jobname=b"bad\xff\xfename")
    assert check([invalid_utf8])[1] == [invalid_utf8]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"end": "Unknown", "state": "RUNNING"}, "end_unknown"),
        ({"nodelist": "None assigned"}, "none_assigned"),
        ({"nnodes": "0"}, "no_nodes"),
        ({"jobid": "4.batch"}, "job_step"),
        ({"jobid": "4.extern"}, "job_step"),
        ({"state": "RUNNING"}, "not_ended"),
        ({"state": "PENDING"}, "not_ended"),
        ({"state": "REQUEUED"}, "not_ended"),
        ({"state": "SOMETHING_NEW"}, "unknown_state"),
    ],
)
def test_lines_xdmod_skips_are_counted_not_staged(changes, reason):
    counts, staged, _ = check([edit(COMPLETE, **changes)])
    assert staged == [] and counts.skipped == {reason: 1}


@pytest.mark.parametrize(
    ("jobid", "rows"),
    [("6_1", 1), ("12_[1,4-9]", 7), ("12_[2-5,17]", 5), ("12_[3]", 1), ("2147483647", 1), ("12_[9-7]", 3)],
)
def test_array_forms_xdmod_expands(jobid, rows):
    counts, _staged, _ = check([edit(COMPLETE, jobid=jobid)])
    assert counts.staged == 1 and counts.xdmod_rows == rows
    assert xdmod_rows_for_jobid(jobid.encode()) == rows


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"jobid": "_5"}, "bad_job_id"),
        ({"jobid": "5_"}, "bad_job_id"),
        ({"jobid": "12_[1-3%2]"}, "bad_job_id"),
        ({"jobid": "12_[1,"}, "bad_job_id"),
        ({"jobid": "4294967296"}, "bad_job_id"),
        ({"jobid": "2147483648"}, "bad_job_id"),  # fits the shredder, but the warehouse's int(11) clips it
        ({"jobid": "2147483648_1"}, "bad_job_id"),
        ({"jobidraw": "3000000000"}, "bad_job_id_raw"),
        ({"jobid": "abc"}, "bad_job_id"),
        ({"jobid": "12_3000000000"}, "bad_job_id"),
        ({"jobidraw": "x4"}, "bad_job_id_raw"),
        ({"jobid": "4+0", "jobidraw": "n/a"}, "bad_het_job_id"),
        ({"end": "2026-11-21"}, "bad_end_time"),
        ({"submit": "Unknown"}, "bad_submit_time"),
        ({"start": "None", "elapsed": "INVALID"}, "bad_start_time"),
    ],
)
def test_lines_xdmod_would_choke_on_are_quarantined_with_reason(changes, reason):
    bad = edit(COMPLETE, **changes)
    counts, staged, records = check([COMPLETE, bad, COMPLETE])
    assert staged == [COMPLETE, COMPLETE]  # the rest of the day is kept
    assert counts.quarantined == {reason: 1}
    assert records[0]["line"] == 2 and records[0]["reason"].startswith(reason)
    assert records[0]["text"] == bad.decode()


def test_short_line_is_quarantined_not_staged():
    short = b"|".join(COMPLETE.split(b"|")[:25])
    counts, staged, records = check([short, COMPLETE])
    assert staged == [COMPLETE]
    assert counts.quarantined == {"field_count": 1} and "25 of 26" in records[0]["reason"]


def test_het_component_ids_become_their_jobidraw():
    first = edit(COMPLETE, jobid="4+0", jobidraw="4")
    second = edit(COMPLETE, jobid="4+1", jobidraw="5")
    counts, staged, _ = check([first, second])
    assert [line.split(b"|")[:2] for line in staged] == [[b"4", b"4"], [b"5", b"5"]]
    assert staged[1].split(b"|")[2:] == second.split(b"|")[2:]
    assert counts.het_ids_rewritten == 2 and counts.xdmod_rows == 2


def test_window_keeps_jobs_by_end_time_half_open():
    at_start = edit(COMPLETE, end="2026-11-20T00:00:00")
    last_second = edit(COMPLETE, end="2026-11-20T23:59:59")
    at_end = edit(COMPLETE, end="2026-11-21T00:00:00")
    day_before = edit(COMPLETE, end="2026-11-19T23:59:59")
    counts, staged, _ = check([at_start, last_second, at_end, day_before])
    assert staged == [at_start, last_second]
    assert counts.outside_window == 2


def test_start_missing_but_elapsed_known_is_kept():
    line = edit(COMPLETE, start="None")
    assert check([line])[1] == [line]


def test_blank_lines_are_counted_and_never_staged():
    counts, staged, _ = check([b"", COMPLETE, b"   "])
    assert staged == [COMPLETE] and counts.skipped == {"blank_line": 2}
