"""Check sacct lines against the rules of XDMoD's Slurm shredder before XDMoD sees them.

Why: XDMoD shreds a file in one transaction. One line it cannot parse (fewer than 26 fields, an
id like ``1001+0`` or ``_5``) rolls back the whole file, and a line with an unparseable submit
time is dropped silently as a "duplicate". So every line is sorted here into exactly one of:
staged (XDMoD will load it), skipped (XDMoD would ignore it anyway: steps, running jobs),
outside the window (ended on another day), or quarantined (XDMoD would choke or lose it),
each with a reason and a count. Works on bytes end to end: sacct output is not always UTF-8,
and staged lines must be byte-identical across reruns.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .progress import Progress
from .window import UsageWindow

# XDMoD's field list, in XDMoD's order (OpenXdmod\Shredder\Slurm::$fieldNames).
SACCT_FIELDS: tuple[str, ...] = (
    "jobid", "jobidraw", "cluster", "partition", "qos", "account", "group", "gid", "user", "uid",
    "submit", "eligible", "start", "end", "elapsed", "exitcode", "state", "nnodes", "ncpus",
    "reqcpus", "reqmem", "reqtres", "alloctres", "timelimit", "nodelist", "jobname",
)  # fmt: skip
N_FIELDS = len(SACCT_FIELDS)
(JOBID, JOBIDRAW, SUBMIT, START, END, ELAPSED, STATE, NNODES, NODELIST) = (
    SACCT_FIELDS.index(name)
    for name in ("jobid", "jobidraw", "submit", "start", "end", "elapsed", "state", "nnodes", "nodelist")
)

ENDED_STATES = frozenset(
    b"BOOT_FAIL CANCELLED COMPLETED FAILED NODE_FAIL PREEMPTED TIMEOUT OUT_OF_MEMORY DEADLINE REVOKED".split()
)
NOT_ENDED_STATES = frozenset(b"PENDING RUNNING REQUEUED RESIZING SUSPENDED".split())

INT32_MAX = 2_147_483_647

_TIME = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
_ELAPSED = re.compile(rb"(?:(?:\d+-)?\d+:)?\d+:\d+(?:\.\d+)?")
_ARRAY_ONE = re.compile(rb"(\d+)_(\d+)")
_ARRAY_SET = re.compile(rb"(\d+)_\[(\d+(?:-\d+)?(?:,\d+(?:-\d+)?)*)\]")

_CHUNK_LINES = 8192


@dataclass
class SacctCounts:
    """What happened to every line read; the manifest records these."""

    read: int = 0
    staged: int = 0
    xdmod_rows: int = 0
    outside_window: int = 0
    het_ids_rewritten: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    quarantined: Counter[str] = field(default_factory=Counter)

    @property
    def quarantined_total(self) -> int:
        return sum(self.quarantined.values())

    def as_dict(self) -> dict[str, object]:
        return {
            "read": self.read,
            "staged": self.staged,
            "xdmod_rows": self.xdmod_rows,
            "outside_window": self.outside_window,
            "het_ids_rewritten": self.het_ids_rewritten,
            "skipped": dict(sorted(self.skipped.items())),
            "quarantined": dict(sorted(self.quarantined.items())),
        }


def _warehouse_id(text: bytes) -> bool:
    """An id XDMoD keeps apart from others all the way to its warehouse: the shredder takes unsigned 32-bit
    ids, but mod_hpcdb.hpcdb_jobs and modw.job_tasks store local_jobid / local_job_id_raw as signed int(11),
    where a larger id is clipped to 2147483647 (sql_mode '') and merges with every other such job."""
    return text.isdigit() and (len(text) < 10 or (len(text) == 10 and int(text) <= INT32_MAX))


def xdmod_rows_for_jobid(jobid: bytes) -> int | None:
    """Rows XDMoD makes from this job id (arrays expand), or None if XDMoD would throw on it."""
    if _warehouse_id(jobid):
        return 1
    match = _ARRAY_ONE.fullmatch(jobid)
    if match:
        return 1 if _warehouse_id(match.group(1)) and int(match.group(2)) <= INT32_MAX else None
    match = _ARRAY_SET.fullmatch(jobid)
    if not match or not _warehouse_id(match.group(1)):
        return None
    rows = 0
    for part in match.group(2).split(b","):
        low, _, high = part.partition(b"-")
        first, last = int(low), int(high or low)
        if max(first, last) > INT32_MAX:
            return None
        rows += abs(last - first) + 1
    return rows


def classify_fields(fields: list[bytes], window_start: bytes, window_end: bytes) -> tuple[str, str]:
    """Sort one split line; returns (outcome, reason) with outcome in staged/skipped/outside/quarantined.

    Checks run in XDMoD's own order so a line is counted under the reason XDMoD would act on.
    """
    if len(fields) < N_FIELDS:
        return "quarantined", f"field_count: {len(fields)} of {N_FIELDS} fields (XDMoD would reject the whole file)"
    jobid = fields[JOBID]
    if b"." in jobid:
        return "skipped", "job_step"
    end = fields[END]
    if end == b"Unknown":
        return "skipped", "end_unknown"
    if fields[NODELIST] == b"None assigned":
        return "skipped", "none_assigned"
    state = fields[STATE].split(b" ", 1)[0].upper()
    if state not in ENDED_STATES:
        if state in NOT_ENDED_STATES:
            return "skipped", "not_ended"
        return "skipped", "unknown_state"
    if not _TIME.fullmatch(end):
        return "quarantined", "bad_end_time: end is not YYYY-MM-DDTHH:MM:SS (XDMoD cannot store the job)"
    if not (window_start <= end < window_end):
        return "outside", ""
    if fields[NNODES] == b"0":  # shredded, but XDMoD's job_tasks keeps only nodecount <> 0
        return "skipped", "no_nodes"
    if b"+" in jobid:
        if not _warehouse_id(fields[JOBIDRAW]):
            return "quarantined", "bad_het_job_id: a '+' job id without a JobIDRaw XDMoD can keep (0..2147483647)"
        return "staged", "het_rewritten"
    if xdmod_rows_for_jobid(jobid) is None:
        return "quarantined", (
            "bad_job_id: not an id 0..2147483647 (XDMoD's warehouse clips larger ones and "
            "merges them) or array form N_M / N_[a,b-c]"
        )
    if not _warehouse_id(fields[JOBIDRAW]):
        return "quarantined", "bad_job_id_raw: JobIDRaw is not an integer 0..2147483647 (XDMoD's warehouse limit)"
    if not _TIME.fullmatch(fields[SUBMIT]):
        return "quarantined", "bad_submit_time: XDMoD would drop the job silently (submit_time NOT NULL)"
    if not _TIME.fullmatch(fields[START]) and not _ELAPSED.fullmatch(fields[ELAPSED]):
        return "quarantined", "bad_start_time: neither start nor elapsed parse (XDMoD cannot derive the start)"
    return "staged", ""


class _ChunkWriter:
    """Collect lines and write them in chunks: per-line write calls dominate the cost otherwise."""

    def __init__(self, write: Callable[[bytes], object]) -> None:
        self._write = write
        self._lines: list[bytes] = []

    def add(self, line: bytes) -> None:
        self._lines.append(line)
        if len(self._lines) >= _CHUNK_LINES:
            self.flush()

    def flush(self) -> None:
        if self._lines:
            self._lines.append(b"")
            self._write(b"\n".join(self._lines))
            self._lines.clear()


def check_sacct_lines(
    lines: Iterable[bytes],
    window: UsageWindow,
    write_staged: Callable[[bytes], object],
    write_quarantine: Callable[[bytes], object],
    progress: Progress | None = None,
) -> SacctCounts:
    """Stream sacct output through XDMoD's rules; write staged lines and quarantine records.

    Staged lines keep sacct's bytes and order (het ids rewritten to JobIDRaw), one per line with
    a final newline. Quarantine records are JSON lines naming the raw line number and the reason.
    ``progress`` is told the lines read (one integer comparison per line between its checks).
    """
    start_b, end_b = (bound.encode() for bound in window.sacct_bounds())
    counts = SacctCounts()
    staged = _ChunkWriter(write_staged)
    quarantine = _ChunkWriter(write_quarantine)
    report_at = 1 if progress is not None else -1
    for number, raw in enumerate(lines, 1):
        if number == report_at:
            report_at = progress.update(number)  # type: ignore[union-attr]
        line = raw.rstrip(b"\r\n")
        counts.read += 1
        if not line.strip():
            counts.skipped["blank_line"] += 1
            continue
        fields = line.split(b"|", N_FIELDS - 1)
        outcome, reason = classify_fields(fields, start_b, end_b)
        if outcome == "staged":
            if reason == "het_rewritten":
                counts.het_ids_rewritten += 1
                line = fields[JOBIDRAW] + line[len(fields[JOBID]) :]
                counts.xdmod_rows += 1
            else:
                counts.xdmod_rows += 1 if fields[JOBID].isdigit() else xdmod_rows_for_jobid(fields[JOBID]) or 0
            counts.staged += 1
            staged.add(line)
        elif outcome == "outside":
            counts.outside_window += 1
        elif outcome == "skipped":
            counts.skipped[reason] += 1
        else:
            counts.quarantined[reason.split(":", 1)[0]] += 1
            record = {"line": number, "reason": reason, "text": line.decode("utf-8", "backslashreplace")}
            quarantine.add(json.dumps(record, ensure_ascii=False, sort_keys=True).encode())
    staged.flush()
    quarantine.flush()
    if progress is not None:
        progress.update(counts.read)
    return counts
