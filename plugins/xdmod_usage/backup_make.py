"""Make a backup in the store: databases and accounts, XDMoD's configuration, the raw source archive.

Each step writes objects under the backup's id and returns its facts; nothing here marks the
backup as usable (verification does, see backup_restore.verify_backup).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from .backup_catalog import prefix, suffix, write_json
from .backup_dump import DumpOptions, backup_id, dump_databases, users_sql
from .backup_streams import READ_CHUNK, ObjectSink
from .mysql_client import DbEndpoint
from .progress import EVERY, Progress
from .staging import MANIFEST, Store

log = logging.getLogger(__name__)


def make_backup(
    store: Store,
    endpoint: DbEndpoint,
    options: DumpOptions,
    level: int,
    key: bytes | None,
    now: dt.datetime | None = None,
    progress_every: float = EVERY,
) -> dict[str, Any]:
    """Dump the databases and accounts into a new backup; write its dump.json; return the facts."""
    now = now or dt.datetime.now(dt.UTC)
    while store.list_names(prefix(backup_id(now))):  # an earlier attempt in the same second: never mix
        now += dt.timedelta(seconds=1)
    ident = backup_id(now)
    ext = suffix(key is not None)

    def open_sink(name: str) -> ObjectSink:
        return ObjectSink(store, f"{prefix(ident)}/db/{name}.sql{ext}", level, key)

    facts = dump_databases(endpoint, options, open_sink, progress_every)
    accounts = facts.pop("users")
    if accounts is not None:
        sink = ObjectSink(store, f"{prefix(ident)}/users.sql{ext}", level, key)
        sink.write(users_sql(accounts))
        facts["users"] = {"file": sink.close(), "accounts": [f"{a['user']}@{a['host']}" for a in accounts]}
    facts.update(id=ident, taken_at=now.isoformat(), compression_level=level, encryption=_key_facts(key))
    write_json(store, f"{prefix(ident)}/dump.json", facts)
    log.info(
        "dumped %d databases (%d bytes stored) into %s in %.1f s",
        len(facts["databases"]),
        sum(db["file"]["bytes"] for db in facts["databases"].values()),
        store.url(prefix(ident)),
        facts["dump_seconds"],
    )
    return facts


def _key_facts(key: bytes | None) -> dict[str, str] | None:
    if key is None:
        return None
    from .backup_crypto import key_id

    return {"scheme": "XUENC1 (AES-256-GCM, STREAM)", "key_id": key_id(key)}


def backup_config_tree(store: Store, ident: str, path: str, level: int, key: bytes | None) -> dict[str, Any]:
    """A tar of the configuration directory (e.g. /etc/xdmod, or a mounted ConfigMap), streamed."""
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"backup.config.path {path!r} is not a directory on this worker")
    sink = ObjectSink(store, f"{prefix(ident)}/config.tar{suffix(key is not None)}", level, key)
    try:
        with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
            tar.add(root, arcname=root.name or "config", recursive=True)
    except BaseException as exc:
        sink.abort(exc)
        raise
    return {"source": f"path:{path}", **sink.close()}


def backup_config_stream(
    store: Store, ident: str, source: str, produce: Callable[[IO[bytes]], None], level: int, key: bytes | None
) -> dict[str, Any]:
    """A tar produced elsewhere (e.g. `tar -cf - xdmod` on the XDMoD host over SSH), streamed in."""
    sink = ObjectSink(store, f"{prefix(ident)}/config.tar{suffix(key is not None)}", level, key)
    try:
        produce(sink)  # type: ignore[arg-type]
    except BaseException as exc:
        sink.abort(exc)
        raise
    return {"source": source, **sink.close()}


def _copy_verified(source: Store, source_rel: str, target: Store, target_rel: str, entry: dict[str, Any]) -> None:
    digest = hashlib.sha256()
    with source.open_read(source_rel) as src, target.open_write(target_rel, mode=0o600) as out:
        for chunk in iter(lambda: src.read(READ_CHUNK), b""):
            digest.update(chunk)
            out.write(chunk)
        if digest.hexdigest() != entry["sha256"]:
            raise RuntimeError(f"{source.url(source_rel)}: sha256 {digest.hexdigest()} != manifest {entry['sha256']}")


def _staged_raw_files(staging: Store, resource: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(day, file name, manifest entry) of every raw source archive committed for a resource."""
    found = []
    for day in staging.list_names(resource):
        rel = f"{resource}/{day}/{MANIFEST}"
        if not staging.exists(rel):
            continue
        manifest = json.loads(staging.read_bytes(rel))
        for name, entry in sorted(manifest.get("files", {}).items()):
            if name.startswith("raw."):
                found.append((day, name, entry))
    return found


def archive_raw_sources(
    store: Store, staging: dict[str, Store], mode: str, progress_every: float = EVERY
) -> dict[str, Any]:
    """Copy (or re-hash in place) each resource's raw archives: once a source expires its data they are
    the only copy. Copies are content-addressed, so each week copies only what is new. Logs the bytes
    done (copied, re-hashed or found present) of all the archives every ``progress_every`` seconds."""
    summary: dict[str, Any] = {"mode": mode, "copied": 0, "present": 0, "bytes_copied": 0, "files": []}
    raw_files = {resource: _staged_raw_files(source, resource) for resource, source in sorted(staging.items())}
    total = sum(int(entry["bytes"]) for found in raw_files.values() for _day, _name, entry in found)
    progress = Progress(f"backup raw archives ({mode})", total, log, progress_every, unit="bytes")
    for resource, source in sorted(staging.items()):
        for day, name, entry in raw_files[resource]:
            source_rel = f"{resource}/{day}/{entry['path']}"
            item = {"resource": resource, "day": day, "name": name, "sha256": entry["sha256"], "bytes": entry["bytes"]}
            if mode == "verify":
                from .backup_streams import rehash

                rehash(source, {**entry, "path": source_rel})
                item["path"] = source.url(source_rel)
                summary["present"] += 1
            else:
                rel = f"archive/{resource}/{day}/{entry['sha256'][:16]}-{name}"
                if store.exists(rel) and store.size(rel) == entry["bytes"]:
                    summary["present"] += 1
                else:
                    _copy_verified(source, source_rel, store, rel, entry)
                    summary["copied"] += 1
                    summary["bytes_copied"] += entry["bytes"]
                    item["copied_now"] = True
                item["path"] = rel
            summary["files"].append(item)
            progress.add(int(entry["bytes"]))
    progress.done()
    return summary
