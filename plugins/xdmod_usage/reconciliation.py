"""The daily proof that XDMoD holds what was staged: count XDMoD's rows, compare with the expected.

Why: a shred that half-failed, an ingest that dropped rows, a rerun that double counted, all look
like success to Airflow. After the aggregation, the count of the resource-day's rows in XDMoD's
database (``include/sql/reconcile_*.sql``) is compared with what XDMoD should hold from the staged
file, computed independently of our writers by ``xdmod_expected``. The writer's own claim (the
manifest's count) is carried for information and must agree too. Core library: no Airflow.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from .config import SQL_DIR
from .xdmod_expected import Expected

Realm = Literal["job", "cloud"]
ONE_DAY = dt.timedelta(days=1)
EPOCH = dt.date(1970, 1, 1)
SCHEMA_SUBSET_SQL = SQL_DIR / "xdmod_schema_subset.sql"
_QUERIES = {
    ("job", False): "reconcile_jobs.sql",
    ("job", True): "reconcile_jobs_by_day.sql",
    ("cloud", False): "reconcile_cloud.sql",
    ("cloud", True): "reconcile_cloud_by_day.sql",
}
_NOUNS = {"job": "job rows", "cloud": "cloud events"}
_IDENTIFIER = re.compile(r"^[A-Za-z0-9_]{1,64}$")


def _sql(name: str, modw: str, modw_cloud: str) -> str:
    """A SQL file with XDMoD's database names put in (tests and the demo use scratch names)."""
    for schema in (modw, modw_cloud):
        if not _IDENTIFIER.match(schema):
            raise ValueError(f"not a database name: {schema!r}")
    text = (SQL_DIR / name).read_text(encoding="utf-8")
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return body.replace("${modw_cloud}", modw_cloud).replace("${modw}", modw).strip()


def _seconds(moment: dt.datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"window bounds must be time-zone aware (UTC), got {moment!r}")
    if moment.timestamp() != int(moment.timestamp()):
        raise ValueError(f"window bounds are whole seconds, got {moment!r}")
    return int(moment.timestamp())


def _realm(realm: str) -> Realm:
    if realm not in _NOUNS:
        raise ValueError(f"realm must be 'job' or 'cloud', got {realm!r}")
    return realm  # type: ignore[return-value]


def count_held(
    cursor: Any,
    realm: Realm,
    xdmod_resource: str,
    start: dt.datetime,
    end: dt.datetime,
    *,
    modw: str = "modw",
    modw_cloud: str = "modw_cloud",
) -> int:
    """Rows XDMoD holds for the resource (its resources.json code) in [start, end)."""
    sql = _sql(_QUERIES[(_realm(realm), False)], modw, modw_cloud)
    cursor.execute(sql, (xdmod_resource, _seconds(start), _seconds(end)))
    return int(cursor.fetchone()[0])


def count_held_by_day(
    cursor: Any,
    realm: Realm,
    xdmod_resource: str,
    first_day: dt.date,
    last_day: dt.date,
    *,
    modw: str = "modw",
    modw_cloud: str = "modw_cloud",
) -> dict[dt.date, int]:
    """Rows XDMoD holds per UTC day from first_day to last_day inclusive; a day without rows is 0."""
    if last_day < first_day:
        raise ValueError(f"last_day {last_day} is before first_day {first_day}")
    start = dt.datetime.combine(first_day, dt.time(), dt.UTC)
    end = dt.datetime.combine(last_day + ONE_DAY, dt.time(), dt.UTC)
    sql = _sql(_QUERIES[(_realm(realm), True)], modw, modw_cloud)
    cursor.execute(sql, (xdmod_resource, _seconds(start), _seconds(end)))
    counts = {first_day + dt.timedelta(days=n): 0 for n in range((last_day - first_day).days + 1)}
    for utc_day, held in cursor.fetchall():
        counts[EPOCH + dt.timedelta(days=int(utc_day))] = int(held)
    return counts


@dataclass(frozen=True)
class Reconciliation:
    """One resource-window's verdict: what XDMoD holds against what it should hold."""

    realm: Realm
    xdmod_resource: str
    day: str  # ISO date of the window start
    expected: int
    held: int
    writer_claim: int | None = None
    not_held: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """XDMoD holds exactly what XDMoD's rules say it should hold for the staged file: nothing lost, nothing
        counted twice. Our writer's own count is a separate fact (``writer_agrees``): when it differs, XDMoD's
        data are still right (e.g. a duplicate line our writer counts and XDMoD merges), so it is reported, not
        alerted on."""
        return self.held == self.expected

    @property
    def writer_agrees(self) -> bool:
        return self.writer_claim is None or self.writer_claim == self.expected

    def as_dict(self) -> dict[str, Any]:
        return {
            "realm": self.realm,
            "xdmod_resource": self.xdmod_resource,
            "day": self.day,
            "expected": self.expected,
            "held": self.held,
            "writer_claim": self.writer_claim,
            "not_held": dict(sorted(self.not_held.items())),
            "ok": self.ok,
            "writer_agrees": self.writer_agrees,
            "message": self.message(),
        }

    def message(self) -> str:
        """One line for an operator's alert, with both numbers and what the difference means."""
        text = (
            f"{self.xdmod_resource} {self.day}: XDMoD holds {self.held} {_NOUNS[self.realm]}, "
            f"expected {self.expected} from the staged file"
        )
        if self.writer_claim is not None:
            text += f" (our writer claimed {self.writer_claim})"
        if self.held < self.expected:
            text += f": {self.expected - self.held} missing"
        elif self.held > self.expected:
            text += f": {self.held - self.expected} extra (double counting)"
        else:
            text += ": match"
        if self.writer_claim is not None and self.writer_claim != self.expected:
            text += (
                f"; our writer's count differs from XDMoD's rules by {self.writer_claim - self.expected:+d}"
                " (a writer bug or a rule it does not model)"
            )
        if self.not_held.get("file_rolled_back"):
            text += "; XDMoD rejects the whole file (see rejected_* in not_held)"
        return text


def reconcile(
    cursor: Any,
    realm: Realm,
    xdmod_resource: str,
    window_start: dt.datetime,
    window_end: dt.datetime,
    expected: Expected,
    writer_claim: int | None,
    *,
    modw: str = "modw",
    modw_cloud: str = "modw_cloud",
) -> Reconciliation:
    """Count what XDMoD holds for the window and set it against ``expected`` (from the staged file)."""
    held = count_held(cursor, realm, xdmod_resource, window_start, window_end, modw=modw, modw_cloud=modw_cloud)
    day = window_start.astimezone(dt.UTC).date().isoformat()
    return Reconciliation(realm, xdmod_resource, day, expected.rows, held, writer_claim, dict(expected.not_held))


def checked_note(result: Reconciliation, run_id: str | None, ok: bool | None = None) -> dict[str, Any]:
    """What a day's manifest records of a reconciliation (``ok``: the caller's verdict, default ``result.ok``)."""
    passed = result.ok if ok is None else ok
    return {**result.as_dict(), "status": "ok" if passed else "mismatch", "run_id": run_id}


def unchecked_note(expected: Expected, writer_claim: int | None, run_id: str | None) -> dict[str, Any]:
    """What a day's manifest records when XDMoD ingested nothing (a dry run): what it should hold."""
    return {"status": "not_checked", "reason": "dry run: XDMoD ingested nothing", "expected": expected.rows,
            "writer_claim": writer_claim, "not_held": dict(expected.not_held), "run_id": run_id}  # fmt: skip


def apply_schema_subset(cursor: Any, *, modw: str = "modw", modw_cloud: str = "modw_cloud") -> None:
    """Create the stand-in XDMoD tables (include/sql/xdmod_schema_subset.sql) for tests and the demo."""
    for statement in _sql(SCHEMA_SUBSET_SQL.name, modw, modw_cloud).split(";"):
        if statement.strip():
            cursor.execute(statement)
