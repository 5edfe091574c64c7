"""Put raw source archives from the backup store back into staging, for days whose staging is gone.

Used by replay-from-archive.md ("The staged day itself is gone"). A replay (Param source=archive) reads
the raw archive named by the day's manifest.json; when the day's directory is lost, this copies the
raw archive of each missing day from the newest verified backup (backup.archive: copy) into
``<staging root>/<resource>/<day>/v-restored/`` and writes a minimal manifest naming it (hash checked).
The replay then rebuilds the day (same bytes as first staged) and replaces both. Days that still have
a manifest are never touched.

    PYTHONPATH=plugins python scripts/put_back_raw_archives.py \
        --backup-root file:///var/lib/xdmod-usage/backups \
        --staging-root file:///var/lib/xdmod-usage/staging --resource hpc1 [--day 2026-10-03 ...] [--dry-run]

s3:// roots take their credentials from the usual AWS environment/config files. Exit status 1 when
nothing could be put back.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from typing import Any

from xdmod_usage.backup_catalog import list_backups, read_manifest
from xdmod_usage.staging import MANIFEST, Store

VERSION = "v-restored"
CHUNK = 1 << 20


def newest_archive_list(backups: Store) -> tuple[str, list[dict[str, Any]]]:
    """The newest verified backup's id and its list of raw archive copies."""
    verified = [info for info in list_backups(backups) if info.status == "verified"]
    if not verified:
        raise SystemExit(f"no verified backup in {backups.url('backups')}")
    ident = verified[-1].id
    archive = read_manifest(backups, ident).get("archive") or {}
    if archive.get("mode") != "copy":
        raise SystemExit(f"backup {ident} holds no copies of raw archives (backup.archive is {archive.get('mode')!r})")
    return ident, archive["files"]


def put_back(backups: Store, staging: Store, item: dict[str, Any], ident: str) -> None:
    """Copy one raw archive into the day's directory (sha256 checked), then write the manifest naming it."""
    rel = f"{item['resource']}/{item['day']}"
    digest = hashlib.sha256()
    with backups.open_read(item["path"]) as source, staging.open_write(f"{rel}/{VERSION}/{item['name']}") as out:
        for chunk in iter(lambda: source.read(CHUNK), b""):
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != item["sha256"]:
        staging.remove_tree(f"{rel}/{VERSION}")
        raise SystemExit(
            f"{backups.url(item['path'])}: sha256 {digest.hexdigest()} != {item['sha256']}; nothing written"
        )
    manifest = {
        "format": "xdmod-usage-staging/1",
        "resource": item["resource"],
        "restored_raw_archive": {"backup_id": ident, "from": backups.url(item["path"])},
        "counts": {"read": 0, "staged": 0},
        "files": {
            item["name"]: {"path": f"{VERSION}/{item['name']}", "sha256": item["sha256"], "bytes": item["bytes"]}
        },
    }
    staging.put_bytes(f"{rel}/{MANIFEST}", (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Put raw archives from the newest verified backup back into staging.")
    parser.add_argument("--backup-root", required=True, help="backup.store.root, e.g. s3://bucket/backups")
    parser.add_argument("--staging-root", required=True, help="the resource's staging root")
    parser.add_argument("--resource", required=True, help="resource name (resources[].name)")
    parser.add_argument("--day", action="append", default=[], help="only this UTC day (repeatable)")
    parser.add_argument("--dry-run", action="store_true", help="only list what would be put back")
    args = parser.parse_args(argv)
    backups, staging = Store.from_path(args.backup_root), Store.from_path(args.staging_root)
    ident, files = newest_archive_list(backups)
    chosen = [item for item in files if item["resource"] == args.resource and (not args.day or item["day"] in args.day)]
    done = []
    for item in sorted(chosen, key=lambda entry: entry["day"]):
        if staging.exists(f"{item['resource']}/{item['day']}/{MANIFEST}"):
            print(f"{item['day']}: staged, left alone (replay it with source=archive)")
            continue
        if not args.dry_run:
            put_back(backups, staging, item, ident)
        print(f"{item['day']}: {'would put back' if args.dry_run else 'put back'} {item['name']} from backup {ident}")
        done.append(item["day"])
    missing = sorted(set(args.day) - {item["day"] for item in chosen})
    for day in missing:
        print(f"{day}: no raw archive of {args.resource} in backup {ident}")
    if done:
        print(f"now replay {done[0]} .. {done[-1]} with source=archive (replay-from-archive.md)")
    return 0 if done else 1


if __name__ == "__main__":
    sys.exit(main())
