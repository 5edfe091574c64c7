"""Load a backup into a server, and check it against the snapshot it was taken from.

Verification and restore are the same operation with different targets: verification loads every
database into scratch names on a scratch server (`xuv_<db>`), compares row counts and CHECKSUM
TABLE with the values read in the dump's snapshot, and only then writes the manifest that marks
the backup usable. A restore loads into the real names on the target and reports the same
comparison. Every stored byte is re-hashed in the pass that loads it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from .backup_catalog import prefix, read_json, read_manifest, write_json
from .backup_dump import inventory, table_facts
from .backup_streams import READ_CHUNK, HashMismatchError, open_object, rehash
from .mysql_client import DbEndpoint, defaults_file, quote_ident
from .staging import Store

log = logging.getLogger(__name__)
SCRATCH_PREFIX = "xuv_"


class VerificationError(RuntimeError):
    """The backup does not restore to what was dumped; the message lists each difference.

    ``retryable``: the check itself could not run (e.g. the scratch server was unreachable);
    differences and hash mismatches are not retryable.
    """

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class RestoreRefusedError(RuntimeError):
    """The restore would overwrite data, or was not confirmed; nothing was changed."""


def mysql_argv(mysql: str, cnf: str, database: str | None = None) -> list[str]:
    argv = [mysql, f"--defaults-extra-file={cnf}", "--default-character-set=utf8mb4", "--binary-mode",
            "--max-allowed-packet=1073741824", "--batch"]  # fmt: skip
    return [*argv, f"--database={database}"] if database else argv


def load_object(
    store: Store, entry: dict[str, Any], key: bytes | None, endpoint: DbEndpoint, database: str | None, mysql: str
) -> None:
    """Stream one stored SQL object into `mysql`; a hash mismatch or a SQL error fails with its cause."""
    with defaults_file(endpoint) as cnf, tempfile.TemporaryFile() as output:
        proc = subprocess.Popen(mysql_argv(mysql, str(cnf), database), stdin=subprocess.PIPE, stdout=output,
                                stderr=subprocess.STDOUT)  # fmt: skip
        try:
            with open_object(store, entry, key) as plain:
                for chunk in iter(lambda: plain.read(READ_CHUNK), b""):
                    proc.stdin.write(chunk)  # type: ignore[union-attr]
            proc.stdin.close()  # type: ignore[union-attr]
        except BrokenPipeError:
            pass  # mysql stopped reading: its exit status and message say why
        except HashMismatchError:
            _stop(proc)
            raise
        except Exception as exc:
            _stop(proc)
            rehash(store, entry)  # corrupt bytes show up as a hash mismatch first
            raise RuntimeError(f"reading {store.url(entry['path'])} failed: {exc}") from exc
        status = proc.wait()
        if status != 0:
            output.seek(0)
            tail = output.read()[-3000:].decode("utf-8", "replace").strip()
            raise RuntimeError(f"mysql exited {status} loading {entry['path']} into {database or '(server)'}: {tail}")


def _stop(proc: subprocess.Popen) -> None:
    with contextlib.suppress(Exception):
        proc.kill()
    proc.wait()


def compare_database(cursor: Any, loaded_as: str, expected: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """Differences between a loaded database and the snapshot's facts, and the counts checked."""
    problems: list[str] = []
    seen = inventory(cursor, [loaded_as])[loaded_as]
    for kind in ("views", "routines", "events", "triggers"):
        if seen[kind] != expected[kind]:
            problems.append(f"{kind}: {seen[kind]} restored, {expected[kind]} in the snapshot")
    missing = sorted(set(expected["tables"]) - set(seen["tables"]))
    extra = sorted(set(seen["tables"]) - set(expected["tables"]))
    if missing:
        problems.append(f"tables missing after restore: {', '.join(missing)}")
    if extra:
        problems.append(f"tables not in the snapshot: {', '.join(extra)}")
    rows = skipped = 0
    for table, want in sorted(expected["tables"].items()):
        if table in missing:
            continue
        got = table_facts(cursor, loaded_as, table)
        rows += got["rows"]
        if want.get("changed_during_dump"):
            skipped += 1  # non-transactional and written during the dump: no snapshot to compare with
            continue
        for fact in ("rows", "checksum"):
            if got[fact] != want[fact]:
                problems.append(f"{table}: {fact} {got[fact]} restored, {want[fact]} in the snapshot")
    return problems, {"tables": len(expected["tables"]), "rows": rows, "not_comparable": skipped}


def _load_and_compare(
    store: Store, dump: dict[str, Any], names: dict[str, str], endpoint: DbEndpoint, key: bytes | None, mysql: str
) -> tuple[list[str], dict[str, Any]]:
    """Create and load each database under its target name, then compare; (problems, per-db counts)."""
    problems: list[str] = []
    checked: dict[str, Any] = {}
    conn = endpoint.connect()
    try:
        cursor = conn.cursor()
        for source, target in names.items():
            facts = dump["databases"][source]
            started = time.monotonic()
            charset, collation = (_word(facts[key]) for key in ("charset", "collation"))
            create = f"CREATE DATABASE IF NOT EXISTS {quote_ident(target)} CHARACTER SET {charset} COLLATE {collation}"
            cursor.execute(create)
            load_object(store, facts["file"], key, endpoint, target, mysql)
            found, counts = compare_database(cursor, target, facts)
            problems += [f"{source}: {problem}" for problem in found]
            checked[source] = {**counts, "loaded_as": target, "seconds": round(time.monotonic() - started, 3)}
            log.info("%s loaded as %s: %s", source, target, counts)
    finally:
        conn.close()
    return problems, checked


def _word(name: str) -> str:
    """A charset or collation name from the manifest, checked before it goes into DDL."""
    if not name.replace("_", "").isalnum():
        raise ValueError(f"unexpected charset/collation name {name!r} in the backup manifest")
    return name


def _drop(endpoint: DbEndpoint, names: list[str]) -> None:
    conn = endpoint.connect()
    try:
        for name in names:
            conn.cursor().execute(f"DROP DATABASE IF EXISTS {quote_ident(name)}")
    finally:
        conn.close()


def verify_backup(
    store: Store,
    ident: str,
    scratch: DbEndpoint,
    key: bytes | None,
    extra: dict[str, Any] | None = None,
    mysql: str = "mysql",
) -> dict[str, Any]:
    """Load the backup into the scratch server, compare, re-hash; write manifest.json only if all agree.

    On any difference writes failed.json (the reasons) and raises VerificationError. The scratch
    databases are dropped after a pass and kept after a failure, for inspection.
    """
    dump = read_json(store, f"{prefix(ident)}/dump.json")
    if dump is None:
        raise VerificationError(f"{store.url(prefix(ident))} has no dump.json: the dump did not complete")
    started = time.monotonic()
    names = {db: f"{SCRATCH_PREFIX}{db}"[:64] for db in dump["databases"]}
    _drop(scratch, list(names.values()))
    try:
        problems, checked = _load_and_compare(store, dump, names, scratch, key, mysql)
        for entry in _stored_objects({**dump, **(extra or {})}):
            rehash(store, entry)
        for item in (extra or {}).get("archive", {}).get("files", []):
            if item.get("copied_now"):  # copied by this backup: re-read; older copies: still there, same size
                rehash(store, {"path": item["path"], "sha256": item["sha256"], "bytes": item["bytes"]})
            elif not item["path"].startswith(("file://", "s3://")) and (
                not store.exists(item["path"]) or store.size(item["path"]) != item["bytes"]
            ):
                raise HashMismatchError(f"{store.url(item['path'])}: missing or not {item['bytes']} bytes")
        retryable = False
    except HashMismatchError as exc:
        problems, checked, retryable = [str(exc)], {}, False
    except Exception as exc:
        problems, checked, retryable = [f"{type(exc).__name__}: {exc}"], {}, True
    if problems:
        write_json(store, f"{prefix(ident)}/failed.json", {"id": ident, "problems": problems,
                                                            "at": dt.datetime.now(dt.UTC).isoformat()})  # fmt: skip
        raise VerificationError(
            f"backup {ident} failed verification on {scratch.label} (scratch databases kept: "
            f"{', '.join(names.values())}):\n" + "\n".join(problems),
            retryable,
        )
    _drop(scratch, list(names.values()))
    verification = {"scratch": scratch.label, "databases": checked, "seconds": round(time.monotonic() - started, 3),
                    "at": dt.datetime.now(dt.UTC).isoformat()}  # fmt: skip
    manifest = {**dump, **(extra or {}), "status": "verified", "verification": verification}
    write_json(store, f"{prefix(ident)}/manifest.json", manifest)
    return manifest


def check_backup(store: Store, ident: str) -> dict[str, Any]:
    """Before a restore: the backup is verified and every stored object still has its hash."""
    manifest = read_manifest(store, ident)
    for entry in _stored_objects(manifest):
        rehash(store, entry)
    return manifest


def _stored_objects(facts: dict[str, Any]) -> list[dict[str, Any]]:
    """The entries (path, sha256, bytes) of a backup's own objects: databases, accounts, configuration."""
    entries = [db["file"] for db in facts["databases"].values()]
    if facts.get("users"):
        entries.append(facts["users"]["file"])
    if facts.get("config"):
        entries.append(facts["config"])
    return entries


def _non_empty(cursor: Any, names: list[str]) -> list[str]:
    busy = []
    for name in names:
        cursor.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s", (name,))
        if int(cursor.fetchone()[0]):
            busy.append(name)
    return busy


def restore_backup(
    store: Store,
    manifest: dict[str, Any],
    target: DbEndpoint,
    key: bytes | None,
    databases: list[str] | None = None,
    replace: bool = False,
    users: bool = True,
    config_dir: str | None = None,
    mysql: str = "mysql",
) -> dict[str, Any]:
    """Restore databases (real names), accounts and configuration; report the counts verified.

    Refuses (before changing anything) a target holding any of the databases with tables unless
    ``replace``; with ``replace`` those databases are dropped first.
    """
    chosen = databases or list(manifest["databases"])
    unknown = sorted(set(chosen) - set(manifest["databases"]))
    if unknown:
        raise RestoreRefusedError(f"not in backup {manifest['id']}: {', '.join(unknown)}")
    conn = target.connect()
    try:
        busy = _non_empty(conn.cursor(), chosen)
    finally:
        conn.close()
    if busy and not replace:
        raise RestoreRefusedError(
            f"target {target.label} already has tables in {', '.join(busy)}: set replace to overwrite them"
        )
    if config_dir:
        _check_config_target(config_dir, replace)
    _drop(target, chosen if replace else [])
    problems, checked = _load_and_compare(store, manifest, {db: db for db in chosen}, target, key, mysql)
    report: dict[str, Any] = {"backup": manifest["id"], "target": target.label, "databases": checked}
    if users and manifest.get("users"):
        load_object(store, manifest["users"]["file"], key, target, None, mysql)
        report["accounts"] = manifest["users"]["accounts"]
    if config_dir and manifest.get("config"):
        report["config"] = _restore_config(store, manifest["config"], key, config_dir)
    if problems:
        raise VerificationError(f"restored backup {manifest['id']} differs from its snapshot:\n" + "\n".join(problems))
    return report


def _check_config_target(config_dir: str, replace: bool) -> None:
    target = Path(config_dir)
    if target.exists() and any(target.iterdir()) and not replace:
        raise RestoreRefusedError(f"config directory {config_dir} is not empty: set replace to overwrite it")


def _restore_config(store: Store, entry: dict[str, Any], key: bytes | None, config_dir: str) -> dict[str, Any]:
    """Unpack into a sibling temp dir, then swap it in: the directory is never half-written."""
    target = Path(config_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        with open_object(store, entry, key) as plain, tarfile.open(fileobj=plain, mode="r|") as tar:
            tar.extractall(staging, filter="data")
        (top,) = list(staging.iterdir())
        files = sum(1 for path in top.rglob("*") if path.is_file())
        if target.exists():
            shutil.rmtree(target)
        top.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"directory": config_dir, "files": files}
