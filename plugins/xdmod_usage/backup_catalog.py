"""The backup store's layout, what state each backup is in, and which ones retention removes.

Layout under the backup root::

    backups/<id>/db/<database>.sql.gz[.aes]   one mysqldump section per database
    backups/<id>/users.sql.gz[.aes]           accounts and grants
    backups/<id>/config.tar.gz[.aes]          /etc/xdmod
    backups/<id>/dump.json                    facts of the snapshot (written by the dump)
    backups/<id>/manifest.json                the commit point: written only after verification
    backups/<id>/failed.json                  why verification failed
    archive/<resource>/<day>/<sha16>-<name>   raw source archives, content-addressed, shared

Why the manifest is the commit point: a backup that was never verified must never look like one
that can be restored; readers (restore, retention, operators) go by manifest.json alone.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, Literal

from .staging import Store

BACKUPS = "backups"
Status = Literal["verified", "failed", "unverified", "incomplete"]


class BackupNotFoundError(LookupError):
    """No verified backup with that id."""


def prefix(backup_id: str) -> str:
    return f"{BACKUPS}/{backup_id}"


def suffix(encrypted: bool) -> str:
    return ".gz.aes" if encrypted else ".gz"


def write_json(store: Store, rel: str, body: dict[str, Any]) -> None:
    store.put_bytes(rel, (json.dumps(body, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode())


def read_json(store: Store, rel: str) -> dict[str, Any] | None:
    return json.loads(store.read_bytes(rel)) if store.exists(rel) else None


@dataclass(frozen=True)
class BackupInfo:
    id: str
    taken_at: dt.datetime
    status: Status


def parse_id(backup_id: str) -> dt.datetime | None:
    try:
        return dt.datetime.strptime(backup_id, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def list_backups(store: Store) -> list[BackupInfo]:
    """Every backup directory, oldest first, with its state from the files present."""
    found = []
    for name in store.list_names(BACKUPS):
        taken = parse_id(name)
        if taken is None:
            continue
        files = set(store.list_names(prefix(name)))
        status: Status = (
            "verified" if "manifest.json" in files
            else "failed" if "failed.json" in files
            else "unverified" if "dump.json" in files
            else "incomplete"
        )  # fmt: skip
        found.append(BackupInfo(name, taken, status))
    return sorted(found, key=lambda info: info.taken_at)


def read_manifest(store: Store, backup_id: str) -> dict[str, Any]:
    """The manifest of a verified backup, or BackupNotFoundError listing what exists."""
    manifest = read_json(store, f"{prefix(backup_id)}/manifest.json")
    if manifest is None:
        verified = [info.id for info in list_backups(store) if info.status == "verified"]
        raise BackupNotFoundError(
            f"no verified backup {backup_id!r} in {store.url(BACKUPS)}; verified: {', '.join(verified) or 'none'}"
        )
    return manifest


@dataclass(frozen=True)
class RetentionPlan:
    keep: dict[str, str]  # id -> why
    delete: dict[str, str]  # id -> why


def plan_retention(backups: list[BackupInfo], weekly: int, monthly: int) -> RetentionPlan:
    """Keep the newest verified backup of each of the last ``weekly`` ISO weeks and ``monthly`` months.

    Nothing is deleted unless a verified backup exists, and nothing newer than the newest verified
    one is touched (it may be in progress). The newest verified backup is always kept; failed,
    unverified and incomplete attempts older than it are deleted.
    """
    verified = [info for info in backups if info.status == "verified"]
    if not verified:
        return RetentionPlan({info.id: "no verified backup exists yet" for info in backups}, {})
    newest = verified[-1]
    keep: dict[str, str] = {newest.id: "newest verified backup"}
    for label, span, key in (
        ("week", weekly, lambda t: tuple(t.isocalendar())[:2]),
        ("month", monthly, lambda t: (t.year, t.month)),
    ):
        newest_of: dict[Any, BackupInfo] = {}
        for info in verified:
            newest_of[key(info.taken_at)] = info  # ascending: the last one wins
        for period in sorted(newest_of, reverse=True)[:span]:
            keep.setdefault(newest_of[period].id, f"newest of its {label} {period}")
    delete: dict[str, str] = {}
    for info in backups:
        if info.id in keep:
            continue
        if info.taken_at > newest.taken_at:
            keep[info.id] = "newer than the newest verified backup (may be in progress)"
        elif info.status == "verified":
            delete[info.id] = "older than the retained weekly and monthly backups"
        else:
            delete[info.id] = f"{info.status} attempt, superseded by {newest.id}"
    return RetentionPlan(keep, delete)


def apply_retention(store: Store, weekly: int, monthly: int) -> RetentionPlan:
    """Plan on what the store holds now, then delete; the raw archive (archive/) is never touched."""
    plan = plan_retention(list_backups(store), weekly, monthly)
    for backup_id in plan.delete:
        store.remove_tree(prefix(backup_id))
    return plan
