"""One hierarchy run: merge the sources, record the changes in the history, stage the four files XDMoD
imports (and the sources' raw answers), decide which files XDMoD must import and which dates to re-ingest.

Why the files come from the history, not from the merge: the staged files are then byte for byte what a
regeneration for the same instant gives, so a file in staging is always reproducible. Staging layout::

    <root>/_hierarchy/<YYYY-MM-DD>/manifest.json            the day's latest run
    <root>/_hierarchy/as-of-<YYYYMMDDTHHMMSSZ>/manifest.json  a regeneration for a past instant

(resource names cannot start with "_", so no resource collides). Core library: no Airflow.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from . import __version__
from .config import HierarchyConfig, SiteConfig
from .hierarchy_build import build_snapshot
from .hierarchy_history import CSV_FILES, apply_schema, files_as_of, record
from .hierarchy_sources import SourceResult
from .progress import EVERY, heartbeat
from .staging import DayStage, HashingWriter, Store, gzip_file

log = logging.getLogger(__name__)
PREFIX = "_hierarchy"
RAW_NAME = "raw.hierarchy.json.gz"
FILE_NAMES = {csv_file: f"{csv_file}.csv" for csv_file in CSV_FILES}


def _stamp(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def _publish(store: Store, label: str, files: dict[str, bytes], manifest: dict[str, Any], raw: Any) -> dict[str, Any]:
    stage = DayStage(store, PREFIX, label)
    with tempfile.TemporaryDirectory(prefix="xdmod-hierarchy-") as tmp:
        spooled = []
        for csv_file, data in files.items():
            writer = HashingWriter(Path(tmp) / FILE_NAMES[csv_file])
            writer.write(data)
            spooled.append(writer.finish(FILE_NAMES[csv_file]))
        if raw is not None:
            raw_path = Path(tmp) / "raw.json"
            raw_path.write_text(json.dumps(raw, sort_keys=True, ensure_ascii=False, default=str), encoding="utf-8")
            spooled.append(gzip_file(raw_path, Path(tmp) / RAW_NAME, RAW_NAME))
        committed = stage.publish(spooled, manifest)
    base = stage.manifest_url.rsplit("/", 1)[0]
    staged = {}
    for csv_file, data in files.items():
        entry = committed["files"][FILE_NAMES[csv_file]]
        staged[csv_file] = {**entry, "name": FILE_NAMES[csv_file], "url": f"{base}/{entry['path']}",
                            "rows": data.count(b"\n")}  # fmt: skip
    return {"manifest_url": stage.manifest_url, "as_of": manifest["as_of"], "files": staged,
            "changes": manifest.get("changes"), "report": manifest.get("report")}  # fmt: skip


def take_snapshot(
    store: Store,
    conn: Any,
    config: HierarchyConfig,
    results: list[SourceResult],
    at: dt.datetime,
    progress_every: float = EVERY,
) -> dict[str, Any]:
    """Merge the sources (in priority order), record only the changes as of ``at``, and stage the files
    of that instant. Returns what the import task needs (files with URL, sha256, rows). Logs progress
    (projects placed) and a heartbeat while the history is written, every ``progress_every`` seconds."""
    attributions = [item for result in results for item in result.attributions]
    people = [person for result in results for person in result.people]
    snapshot, report = build_snapshot(attributions, people, config, progress_every)
    with heartbeat("hierarchy history (recording the changes, reading the files)", log, progress_every):
        apply_schema(conn)
        changes = record(conn, snapshot, at)
        files = files_as_of(conn, at)
    manifest = {
        "format": "xdmod-usage-hierarchy/1",
        "package_version": __version__,
        "as_of": at.astimezone(dt.UTC).isoformat(),
        "levels": list(config.levels),
        "group_field": config.group_field,
        "changes": changes,
        "report": report.as_dict(),
        "sources": {result.name: result.summary() for result in results},
        "regenerated": False,
    }
    return _publish(store, at.astimezone(dt.UTC).date().isoformat(), files, manifest,
                    {result.name: result.raw for result in results})  # fmt: skip


def regenerate(store: Store, conn: Any, as_of: dt.datetime) -> dict[str, Any]:
    """Stage the files that were in force at ``as_of`` (from the history alone; no source is asked)."""
    apply_schema(conn)
    files = files_as_of(conn, as_of)
    manifest = {"format": "xdmod-usage-hierarchy/1", "package_version": __version__,
                "as_of": as_of.astimezone(dt.UTC).isoformat(), "regenerated": True}  # fmt: skip
    return _publish(store, f"as-of-{_stamp(as_of)}", files, manifest, None)


def files_to_import(staged: dict[str, Any], last_imported: dict[str, str]) -> list[str]:
    """The staged files whose bytes XDMoD has not imported yet, in XDMoD's order (units before groups).
    An empty file is never imported: it would change nothing in XDMoD (imports never delete)."""
    files = staged["files"]
    return [name for name in CSV_FILES if files[name]["rows"] and files[name]["sha256"] != last_imported.get(name)]


def reingest_ranges(site: SiteConfig, today: dt.date) -> list[tuple[dt.date, dt.date]]:
    """The date ranges to re-ingest after an import, oldest first, ``reingest_chunk_days`` each: every day
    since the earliest resource start (XDMoD applies a hierarchy to re-ingested data only), or the last
    ``reingest_days``."""
    config = site.hierarchy
    assert config is not None
    first = min(resource.start_date for resource in site.resources)
    if config.reingest_days is not None:
        first = max(first, today - dt.timedelta(days=config.reingest_days - 1))
    ranges, start = [], first
    while start <= today:
        end = min(today, start + dt.timedelta(days=config.reingest_chunk_days - 1))
        ranges.append((start, end))
        start = end + dt.timedelta(days=1)
    return ranges


def parse_instant(text: str) -> dt.datetime:
    """A Param's instant: `2026-11-01` (that day's end, UTC: the files in force all day) or an ISO time."""
    text = text.strip()
    try:
        if len(text) == 10:
            return dt.datetime.combine(dt.date.fromisoformat(text), dt.time(23, 59, 59), tzinfo=dt.UTC)
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"as_of must be a date (2026-11-01) or an ISO time (2026-11-01T12:00:00Z), got {text!r}"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
