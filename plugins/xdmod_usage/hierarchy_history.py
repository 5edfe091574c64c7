"""History of XDMoD's hierarchy files: record a snapshot's changes, regenerate the files of any instant.

Why: XDMoD keeps no history of its organization -> PI -> project hierarchy; an import re-labels
all of history once data is re-ingested. Keeping every row of the four CSV files XDMoD imports
(`xdmod-import-csv -t hierarchy | group-to-hierarchy | names | cloud-project-to-pi`) with the
interval it was valid in lets an operator regenerate, byte for byte, the files in force at any
past instant, and shows who changed what when. A run records only changes (DDL:
include/sql/hierarchy_history.sql). Core library: no Airflow.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterable
from typing import Any

from .config import SQL_DIR

CSV_WIDTH = {"hierarchy": 3, "group-to-hierarchy": 2, "names": 3, "cloud-project-to-pi": 3}
CSV_FILES = tuple(CSV_WIDTH)  # also the order XDMoD must import them in: units before the groups mapped to them
# Column widths in XDMoD's tables (mod_hpcdb.hpcdb_fields_of_science abbrev 100 / description 255,
# hpcdb_people first/last_name 100): with XDMoD's sql_mode '' a longer value is cut silently, and two
# abbreviations cut to one would merge units.
FIELD_LIMITS = {"hierarchy": (100, 255, 100), "group-to-hierarchy": (255, 100), "names": (255, 100, 100),
                "cloud-project-to-pi": (255, 255, 64)}  # fmt: skip
SCHEMA_SQL = SQL_DIR / "hierarchy_history.sql"

Row = tuple[str, ...]


class HierarchyError(ValueError):
    """A snapshot XDMoD could not import (or that would import wrongly); says which row and why."""


def entry_key(csv_file: str, row: Row) -> str:
    """A row's identity within its file: what a later row for the same thing replaces."""
    if csv_file == "cloud-project-to-pi":  # pi,project_name,resource_name: one PI per project and resource
        return f"{row[2]}\x1f{row[1]}"
    return row[0]  # hierarchy: abbrev; group-to-hierarchy: group name; names: user name


def validate(snapshot: dict[str, list[Row]]) -> None:
    """Widths, keys, duplicates, parents that exist, no cycles, groups mapped to known units."""
    for csv_file, rows in snapshot.items():
        if csv_file not in CSV_WIDTH:
            raise HierarchyError(f"unknown hierarchy file {csv_file!r}; expected one of {', '.join(CSV_FILES)}")
        seen: dict[str, Row] = {}
        for row in rows:
            if len(row) != CSV_WIDTH[csv_file] or not all(isinstance(field, str) for field in row):
                raise HierarchyError(f"{csv_file}: {row!r} is not {CSV_WIDTH[csv_file]} text fields")
            key = entry_key(csv_file, row)
            if not row[0] or (csv_file == "cloud-project-to-pi" and not (row[1] and row[2])):
                raise HierarchyError(f"{csv_file}: {row!r} has an empty key field")
            _check_fields(csv_file, row)
            if key in seen and seen[key] != row:
                raise HierarchyError(f"{csv_file}: two rows for {key!r}: {seen[key]!r} and {row!r}")
            seen[key] = row
        if csv_file in ("group-to-hierarchy", "names"):
            # xdmod-import-csv looks people and groups up lower-cased: 'Smith' and 'smith' are one.
            folded: dict[str, str] = {}
            for row in rows:
                other = folded.setdefault(row[0].lower(), row[0])
                if other != row[0]:
                    raise HierarchyError(f"{csv_file}: {other!r} and {row[0]!r} differ only in case; "
                                         "XDMoD matches them case-insensitively and would merge them")  # fmt: skip
    units = {row[0]: row[2] for row in snapshot.get("hierarchy", [])}
    for abbrev, parent in units.items():
        if parent and parent not in units:
            raise HierarchyError(f"hierarchy: {abbrev!r} has parent {parent!r}, which is not in the file")
        path, node = [abbrev], parent
        while node:
            if node in path:
                raise HierarchyError(f"hierarchy: cycle {' -> '.join([*path, node])}")
            path.append(node)
            node = units.get(node, "")
    if units:
        for group, unit in snapshot.get("group-to-hierarchy", []):
            if unit not in units:
                raise HierarchyError(f"group-to-hierarchy: group {group!r} maps to {unit!r}, not in the hierarchy")


def _check_fields(csv_file: str, row: Row) -> None:
    """What XDMoD's importer cannot take back as written: over-long values, line breaks, and a backslash
    in a quoted field (PHP's fgetcsv treats it as an escape character, so `"a\\",b` reads wrongly)."""
    for field, limit in zip(row, FIELD_LIMITS[csv_file], strict=True):
        if len(field) > limit:
            raise HierarchyError(f"{csv_file}: {field[:40]!r}... is {len(field)} characters, XDMoD keeps {limit}")
        if "\n" in field or "\r" in field:
            raise HierarchyError(f"{csv_file}: {row!r} has a line break in a field")
        if "\\" in field and any(char in field for char in ',"'):
            raise HierarchyError(f"{csv_file}: {field!r} has a backslash in a quoted field, which XDMoD's CSV "
                                 "reader (PHP fgetcsv) takes as an escape character")  # fmt: skip


def _depth(units: dict[str, str], abbrev: str) -> int:
    depth, node = 0, units.get(abbrev, "")
    while node:
        depth, node = depth + 1, units.get(node, "")
    return depth


def csv_bytes(csv_file: str, rows: Iterable[Row]) -> bytes:
    """The file as XDMoD imports it: no header, CSV quoting, LF line ends, a stable order.

    Hierarchy rows come parents first (by depth, then abbrev), so each parent exists when its
    children are read; the other files are sorted by their key.
    """
    rows = sorted(set(rows), key=lambda row: entry_key(csv_file, row))
    if csv_file == "hierarchy":
        units = {row[0]: row[2] for row in rows}
        rows.sort(key=lambda row: (_depth(units, row[0]), row[0]))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def apply_schema(conn: Any) -> None:
    """Create the history table and the current-state view (idempotent)."""
    text = "\n".join(line for line in SCHEMA_SQL.read_text().splitlines() if not line.lstrip().startswith("--"))
    cursor = conn.cursor()
    for statement in filter(None, (part.strip() for part in text.split(";"))):
        cursor.execute(statement)


def _naive_utc(at: dt.datetime) -> dt.datetime:
    if at.tzinfo is None:
        raise ValueError("history instants must be timezone-aware (UTC)")
    return at.astimezone(dt.UTC).replace(tzinfo=None)


def record(conn: Any, snapshot: dict[str, list[tuple[Row, str]]], at: dt.datetime) -> dict[str, dict[str, int]]:
    """Record a full snapshot (rows with their source) as of ``at``: only changes are written.

    A row whose fields changed is closed at ``at`` and reopened with the new fields; a row gone
    from the snapshot is closed; a new one opened. Files absent from ``snapshot`` are untouched.
    One transaction: a failure records nothing.
    """
    validate({name: [row for row, _source in rows] for name, rows in snapshot.items()})
    when = _naive_utc(at)
    counts: dict[str, dict[str, int]] = {}
    cursor = conn.cursor()
    cursor.execute("START TRANSACTION")
    try:
        for csv_file, rows in snapshot.items():
            cursor.execute(
                "SELECT id, entry_key, fields, valid_from FROM hierarchy_history "
                "WHERE csv_file = %s AND valid_to IS NULL FOR UPDATE",
                (csv_file,),
            )
            current = {key: (ident, tuple(json.loads(fields)), since)
                       for ident, key, fields, since in cursor.fetchall()}  # fmt: skip
            wanted = {entry_key(csv_file, row): (row, source) for row, source in rows}
            late = [since for _ident, _fields, since in current.values() if since >= when]
            if late:
                raise HierarchyError(f"{csv_file}: history already has changes at or after {at.isoformat()}")
            closed = [current[key][0] for key in current if key not in wanted or current[key][1] != wanted[key][0]]
            opened = [(key, row, source) for key, (row, source) in wanted.items()
                      if key not in current or current[key][1] != row]  # fmt: skip
            for ident in closed:
                cursor.execute("UPDATE hierarchy_history SET valid_to = %s WHERE id = %s", (when, ident))
            cursor.executemany(
                "INSERT INTO hierarchy_history (csv_file, entry_key, fields, source, valid_from) "
                "VALUES (%s, %s, %s, %s, %s)",
                [(csv_file, key, json.dumps(list(row), ensure_ascii=False), source, when)
                 for key, row, source in opened],
            )  # fmt: skip
            counts[csv_file] = {"opened": len(opened), "closed": len(closed),
                                "unchanged": len(wanted) - len(opened)}  # fmt: skip
        cursor.execute("COMMIT")
    except BaseException:
        cursor.execute("ROLLBACK")
        raise
    return counts


def rows_as_of(conn: Any, at: dt.datetime) -> dict[str, list[Row]]:
    """Every file's rows as they were at ``at`` (valid_from <= at < valid_to)."""
    when = _naive_utc(at)
    cursor = conn.cursor()
    cursor.execute(
        "SELECT csv_file, fields FROM hierarchy_history WHERE valid_from <= %s AND (valid_to IS NULL OR valid_to > %s)",
        (when, when),
    )
    found: dict[str, list[Row]] = {name: [] for name in CSV_FILES}
    for csv_file, fields in cursor.fetchall():
        found[csv_file].append(tuple(json.loads(fields)))
    return found


def files_as_of(conn: Any, at: dt.datetime) -> dict[str, bytes]:
    """The four CSV files in force at ``at``, as bytes (what a regeneration Param writes out)."""
    return {name: csv_bytes(name, rows) for name, rows in rows_as_of(conn, at).items()}


def last_imported(conn: Any) -> dict[str, str]:
    """sha256 of each file as XDMoD last imported it (a real import, never a dry run)."""
    cursor = conn.cursor()
    cursor.execute("SELECT csv_file, sha256 FROM hierarchy_import")
    return dict(cursor.fetchall())


def record_import(conn: Any, csv_file: str, sha256: str, as_of: dt.datetime, at: dt.datetime) -> None:
    """Remember that XDMoD imported ``csv_file`` with these bytes (files as of ``as_of``)."""
    cursor = conn.cursor()
    cursor.execute(
        "INSERT INTO hierarchy_import (csv_file, sha256, as_of, imported_at) VALUES (%s, %s, %s, %s) "
        "ON DUPLICATE KEY UPDATE sha256 = VALUES(sha256), as_of = VALUES(as_of), imported_at = VALUES(imported_at)",
        (csv_file, sha256, _naive_utc(as_of), _naive_utc(at)),
    )
    cursor.execute("COMMIT")
