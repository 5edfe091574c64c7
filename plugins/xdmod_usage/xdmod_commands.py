"""XDMoD's own commands as argv lists, built in one place.

Why argv lists: values from config and data (resource codes, file names, timestamps) are never
parsed by a shell. Why here: every runner (dry-run, Kubernetes pod, SSH) must run the same words,
and the flags carry traps (``xdmod-ingestor`` with no task flag re-aggregates every realm from
scratch; ``--aggregate`` takes its value only with ``=``).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Literal

SHREDDER = "xdmod-shredder"
INGESTOR = "xdmod-ingestor"
IMPORT_CSV = "xdmod-import-csv"
ADMIN = "xdmod-admin"

Realm = Literal["job", "cloud", "storage"]
CsvType = Literal["hierarchy", "group-to-hierarchy", "names", "cloud-project-to-pi"]
CloudFormat = Literal["openstack", "cloudresourcespecs"]
_DB_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


@dataclass(frozen=True)
class XdmodInput:
    """A staged file the runner must place at ``name`` in the XDMoD side's input directory."""

    name: str
    url: str
    sha256: str


@dataclass(frozen=True)
class XdmodCommand:
    """One XDMoD command: its argv and the staged files it reads."""

    step: str
    argv: tuple[str, ...]
    inputs: tuple[XdmodInput, ...] = field(default=())


def shred_slurm(resource: str, input_dir: str, staged: XdmodInput) -> XdmodCommand:
    return XdmodCommand(
        "shred", (SHREDDER, "-r", resource, "-f", "slurm", "-i", f"{input_dir}/{staged.name}"), (staged,)
    )


def _placed(subdir: str, staged: tuple[XdmodInput, ...]) -> tuple[XdmodInput, ...]:
    if "/" in subdir or subdir in ("", ".", ".."):
        raise ValueError(f"subdir must be one directory name, got {subdir!r}")
    return tuple(XdmodInput(f"{subdir}/{item.name}", item.url, item.sha256) for item in staged)


def shred_cloud(resource: str, fmt: CloudFormat, input_dir: str, subdir: str, staged: XdmodInput) -> XdmodCommand:
    """Cloud formats are shredded by directory (``-i`` is refused): the day's file goes into its
    own ``subdir`` so ``-d`` never re-reads other days."""
    placed = _placed(subdir, (staged,))
    return XdmodCommand("shred", (SHREDDER, "-r", resource, "-f", fmt, "-d", f"{input_dir}/{subdir}"), placed)


def shred_slurm_days(resource: str, input_dir: str, subdir: str, staged: list[XdmodInput]) -> XdmodCommand:
    """Many days' Slurm-format files in one shred (a reload): XDMoD reads a directory's files in name
    order (scandir), and day files are named by date, so days are shredded in order."""
    placed = _placed(subdir, tuple(sorted(staged, key=lambda item: item.name)))
    return XdmodCommand("shred", (SHREDDER, "-r", resource, "-f", "slurm", "-d", f"{input_dir}/{subdir}"), placed)


def ingest_datatype(datatype: Literal["openstack"]) -> XdmodCommand:
    """Ingest one cloud format's shredded events (and hypervisor facts) into the cloud realm."""
    return XdmodCommand("ingest", (INGESTOR, f"--datatype={datatype}"))


def ingest() -> XdmodCommand:
    """Ingest only: never the bare ``xdmod-ingestor``, which re-aggregates everything."""
    return XdmodCommand("ingest", (INGESTOR, "--ingest"))


def aggregate(realm: Realm, last_modified_start: str) -> XdmodCommand:
    """Aggregate one realm for rows modified since a timestamp taken on XDMoD's DB server."""
    if not _DB_TIMESTAMP.fullmatch(last_modified_start):
        raise ValueError(f"last-modified timestamp must be 'YYYY-MM-DD HH:MM:SS', got {last_modified_start!r}")
    return XdmodCommand(
        "aggregate", (INGESTOR, f"--aggregate={realm}", "--last-modified-start-date", last_modified_start)
    )


def import_csv(csv_type: CsvType, input_dir: str, staged: XdmodInput) -> XdmodCommand:
    return XdmodCommand("import-csv", (IMPORT_CSV, "-t", csv_type, "-i", f"{input_dir}/{staged.name}"), (staged,))


def reingest(start: dt.date, end: dt.date) -> XdmodCommand:
    """Re-ingest (and so re-aggregate) every realm's data of a date range: what XDMoD's docs require
    after a hierarchy or names import, which applies to already-ingested data only then."""
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    return XdmodCommand("reingest", (INGESTOR, "--start-date", start.isoformat(), "--end-date", end.isoformat()))


def delete_resource_jobs(resource: str) -> XdmodCommand:
    """XDMoD 11.5+: remove one resource's jobs from the shredder, HPcDB and warehouse tables.
    ``--force`` answers the confirmation prompt, which would otherwise wait for a terminal forever."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", resource):
        raise ValueError(f"not a resource code: {resource!r}")
    return XdmodCommand("delete-jobs", (ADMIN, "--jobs", f"--delete={resource}", "--force"))


def truncate_jobs() -> XdmodCommand:
    """XDMoD 11.0: the only way to remove jobs is all of them, for every resource."""
    return XdmodCommand("truncate-jobs", (ADMIN, "--jobs", "--truncate", "--force"))
