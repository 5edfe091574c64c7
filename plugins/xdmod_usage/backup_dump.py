"""Dump XDMoD's databases: one mysqldump, one snapshot, one stored file per database, facts to verify.

Why one mysqldump for all databases: `--single-transaction` gives one consistent snapshot per
mysqldump process, so one process gives XDMoD's databases as of one instant (modw and
modw_aggregates agree with each other). Its output is split per database on the fly at the
`-- Current Database:` comments, dropping the CREATE DATABASE/USE lines so a file can be loaded
into a database of any name (the verification loads into scratch names).

Why the lock dance: verification compares a restore with row counts and CHECKSUM TABLE "as of the
snapshot", which needs a second connection with the very same snapshot, while applications keep
writing. So a control connection write-locks the tables being dumped, mysqldump starts (its
transaction begins, then it waits on the first table's lock, which we see in the process list),
a snapshot connection starts its own transaction, the non-transactional tables are checksummed,
and the locks go. Writers wait for well under a second; no commit can land between the two
snapshots. Counts and checksums are then read in the snapshot connection after the dump.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, Any

from .mysql_client import SYSTEM_SCHEMAS, DbEndpoint, defaults_file, quote_ident, quote_string
from .progress import EVERY, Progress

log = logging.getLogger(__name__)

MARKER = b"-- Current Database: "
TRANSACTIONAL = frozenset({"innodb", "xtradb", "aria_transactional"})
# mysqldump's data query (MariaDB and MySQL): how its connection is told apart in the process list.
DUMP_QUERY = "SELECT /*!40001 SQL_NO_CACHE */"
_WAITING = "Waiting for table metadata lock"


class BackupError(RuntimeError):
    """The backup cannot be made as configured (missing database, dump failure, ...)."""


@dataclass(frozen=True)
class DumpOptions:
    """How the dump is made (from the site config)."""

    databases: list[str]
    patterns: list[str] = field(default_factory=list)
    optional: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    mysqldump: str = "mysqldump"
    lock_timeout: float = 30.0
    start_timeout: float = 60.0


def select_databases(cursor: Any, options: DumpOptions) -> tuple[list[str], list[str]]:
    """The databases to dump (required, then matches of the patterns, then optional ones present).

    A required database that is absent fails; an absent optional one is only noted.
    """
    cursor.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA")
    present = {row[0] for row in cursor.fetchall()} - SYSTEM_SCHEMAS
    missing = [name for name in options.databases if name not in present]
    if missing:
        raise BackupError(f"database(s) {', '.join(missing)} not found on the server (backup.databases)")
    chosen = list(options.databases)
    for pattern in options.patterns:
        cursor.execute(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE %s ORDER BY SCHEMA_NAME",
            (pattern,),
        )
        chosen += [row[0] for row in cursor.fetchall() if row[0] not in SYSTEM_SCHEMAS]
    chosen += [name for name in options.optional if name in present]
    absent_optional = [name for name in options.optional if name not in present]
    return list(dict.fromkeys(chosen)), absent_optional


def inventory(cursor: Any, databases: list[str]) -> dict[str, dict[str, Any]]:
    """Per database: charset, collation, base tables with engines, and counts of views/routines/events/triggers."""
    marks = ", ".join(["%s"] * len(databases))
    result: dict[str, dict[str, Any]] = {
        name: {"tables": {}, "views": 0, "routines": 0, "events": 0, "triggers": 0} for name in databases
    }
    cursor.execute(
        "SELECT SCHEMA_NAME, DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA "  # noqa: S608 - placeholders only
        f"WHERE SCHEMA_NAME IN ({marks})",
        databases,
    )
    for name, charset, collation in cursor.fetchall():
        result[name].update(charset=charset, collation=collation)
    cursor.execute(
        "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE, ENGINE FROM information_schema.TABLES "  # noqa: S608 - placeholders only
        f"WHERE TABLE_SCHEMA IN ({marks}) ORDER BY TABLE_SCHEMA, TABLE_NAME",
        databases,
    )
    for schema, table, kind, engine in cursor.fetchall():
        if kind == "VIEW":
            result[schema]["views"] += 1
        elif kind in ("BASE TABLE", "SYSTEM VERSIONED"):
            result[schema]["tables"][table] = {"engine": engine or ""}
    for key, sql in (
        ("routines", "SELECT ROUTINE_SCHEMA, COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA IN"),
        ("events", "SELECT EVENT_SCHEMA, COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA IN"),
        ("triggers", "SELECT TRIGGER_SCHEMA, COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA IN"),
    ):
        cursor.execute(f"{sql} ({marks}) GROUP BY 1", databases)
        for schema, count in cursor.fetchall():
            result[schema][key] = int(count)
    return result


def table_facts(cursor: Any, database: str, table: str) -> dict[str, int]:
    """Row count and CHECKSUM TABLE, read in whatever snapshot the cursor's transaction has."""
    name = f"{quote_ident(database)}.{quote_ident(table)}"
    cursor.execute(f"SELECT COUNT(*) FROM {name}")  # noqa: S608 - quoted identifiers
    rows = int(cursor.fetchone()[0])
    cursor.execute(f"CHECKSUM TABLE {name}")
    checksum = cursor.fetchone()[1]
    return {"rows": rows, "checksum": None if checksum is None else int(checksum)}


def _marker_name(line: bytes) -> str | None:
    text = line[len(MARKER) :].rstrip(b"\r\n")
    if len(text) < 2 or not (text.startswith(b"`") and text.endswith(b"`")):
        return None
    return text[1:-1].replace(b"``", b"`").decode("utf-8", "surrogateescape")


class DumpSplitter:
    """Routes mysqldump's output lines to one sink per database.

    The header (session settings) is copied to the head of every file; CREATE DATABASE and USE
    lines right after a marker are dropped. Databases must appear in the order they were asked
    for; a database may appear again only after all have started (mysqldump's final pass for
    views), so a marker-like line inside a routine body cannot reroute data.
    """

    def __init__(self, databases: list[str], open_sink: Callable[[str], Any]) -> None:
        self.expected = list(databases)
        self.open_sink = open_sink
        self.sinks: dict[str, Any] = {}
        self.header: list[bytes] = []
        self.current: Any = None
        self.preamble = False

    def feed(self, line: bytes) -> None:
        if line.startswith(MARKER):
            name = self._route(_marker_name(line))
            if name is not None:
                self.current, self.preamble = self.sinks[name], True
                self.current.write(line)
                return
        if self.current is None:
            self.header.append(line)
            return
        if self.preamble:
            if line.startswith((b"CREATE DATABASE ", b"USE ")):
                return
            if line.strip() and not line.startswith(b"--"):
                self.preamble = False
        self.current.write(line)

    def _route(self, name: str | None) -> str | None:
        if name is None or name not in self.expected:
            return None
        if name in self.sinks:
            return name if len(self.sinks) == len(self.expected) else None
        if self.expected[len(self.sinks)] != name:
            return None
        sink = self.open_sink(name)
        for line in self.header:
            sink.write(line)
        self.sinks[name] = sink
        return name

    def check_complete(self) -> None:
        missing = [name for name in self.expected if name not in self.sinks]
        if missing:
            raise BackupError(f"mysqldump's output has no section for {', '.join(missing)}")


def mysqldump_argv(mysqldump: str, cnf: str, databases: list[str]) -> list[str]:
    """The dump command: consistent snapshot, routines, events, triggers, BLOBs as hex, utf8mb4."""
    return [
        mysqldump,
        f"--defaults-extra-file={cnf}",  # must come first; holds the credentials
        "--single-transaction",
        "--quick",
        "--routines",
        "--events",
        "--triggers",
        "--hex-blob",
        "--default-character-set=utf8mb4",
        "--no-tablespaces",
        "--skip-dump-date",
        "--databases",
        *databases,
    ]


def _read_lines(stream: IO[bytes], splitter: DumpSplitter, failure: list[BaseException], progress: Progress) -> None:
    try:
        with progress:
            for line in stream:
                splitter.feed(line)
                progress.add(len(line))
    except BaseException as exc:  # handed to the main thread
        failure.append(exc)
        with contextlib.suppress(OSError):
            stream.close()


def _wait_for_dump_start(cursor: Any, proc: subprocess.Popen, after_id: int, timeout: float) -> bool:
    """True when mysqldump is inside its transaction, waiting on our lock; False when it has exited."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        cursor.execute(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE ID > %s AND ID <> CONNECTION_ID() "
            "AND STATE = %s AND INFO LIKE %s",
            (after_id, _WAITING, DUMP_QUERY.replace("%", r"\%") + "%"),
        )
        if cursor.fetchone():
            return True
        if time.monotonic() > deadline:
            raise BackupError(f"mysqldump did not reach the first table within {timeout:.0f} s")
        time.sleep(0.02)
    return False


def _binlog_position(cursor: Any) -> dict[str, Any]:
    position: dict[str, Any] = {}
    with contextlib.suppress(Exception):
        cursor.execute("SELECT @@GLOBAL.gtid_binlog_pos")
        position["gtid_binlog_pos"] = cursor.fetchone()[0] or None
    with contextlib.suppress(Exception):
        cursor.execute("SHOW MASTER STATUS")
        row = cursor.fetchone()
        if row:
            position.update(file=row[0], position=int(row[1]))
    return position


def dump_databases(
    endpoint: DbEndpoint, options: DumpOptions, open_sink: Callable[[str], Any], progress_every: float = EVERY
) -> dict[str, Any]:
    """Dump the selected databases through ``open_sink(name)`` sinks; return the facts of the snapshot.

    Sinks have write(bytes), close() -> entry and abort(exc). On any failure every sink is
    aborted (nothing is stored) and the error says what failed, with mysqldump's stderr.
    Logs the bytes dumped, then the tables counted, every ``progress_every`` seconds.
    """
    started = time.monotonic()
    control, snapshot = endpoint.connect(), endpoint.connect()
    try:
        ctl, snap = control.cursor(), snapshot.cursor()
        ctl.execute("SET SESSION lock_wait_timeout = %s", (max(1, int(options.lock_timeout)),))
        databases, absent = select_databases(ctl, options)
        if not databases:
            raise BackupError("no database selected: check backup.databases and backup.discover")
        facts = inventory(ctl, databases)
        ctl.execute("SELECT VERSION(), MAX(p.ID) FROM information_schema.PROCESSLIST p")
        version, after_id = ctl.fetchone()
        splitter = DumpSplitter(databases, open_sink)
        with defaults_file(endpoint) as cnf, tempfile.TemporaryFile() as stderr:
            dumped = Progress(f"backup dump {endpoint.label}", None, log, progress_every, unit="bytes")
            entries = _run_dump(ctl, snap, endpoint, options, databases, facts, splitter, str(cnf), stderr, after_id,
                                dumped)  # fmt: skip
        checked = Progress(f"backup counts and checksums {endpoint.label}",
                           sum(len(facts[name]["tables"]) for name in databases), log, progress_every,
                           unit="tables")  # fmt: skip
        for name in databases:
            facts[name]["file"] = entries[name]
            for table, info in facts[name]["tables"].items():
                if info["engine"].lower() in TRANSACTIONAL:
                    info.update(table_facts(snap, name, table))
                else:
                    after = table_facts(ctl, name, table)
                    info["changed_during_dump"] = after != {"rows": info["rows"], "checksum": info["checksum"]}
                checked.add()
        checked.done()
        snap.execute("COMMIT")
        users = user_statements(ctl, options.users) if options.users else None
        return {
            "server": {"endpoint": endpoint.label, "version": version, **facts.pop("_binlog", {})},
            "databases": facts,
            "absent_optional": absent,
            "users": users,
            "dump_seconds": round(time.monotonic() - started, 3),
        }
    finally:
        with contextlib.suppress(Exception):
            control.close()
        with contextlib.suppress(Exception):
            snapshot.close()


def _run_dump(
    ctl: Any,
    snap: Any,
    endpoint: DbEndpoint,
    options: DumpOptions,
    databases: list[str],
    facts: dict[str, Any],
    splitter: DumpSplitter,
    cnf: str,
    stderr: IO[bytes],
    after_id: int,
    progress: Progress,
) -> dict[str, dict[str, Any]]:
    tables = [(db, table) for db in databases for table in facts[db]["tables"]]
    failure: list[BaseException] = []
    proc: subprocess.Popen | None = None
    reader: threading.Thread | None = None
    locked = False
    try:
        if tables:
            ctl.execute("LOCK TABLES " + ", ".join(f"{quote_ident(d)}.{quote_ident(t)} WRITE" for d, t in tables))
            locked = True
        proc = subprocess.Popen(
            mysqldump_argv(options.mysqldump, cnf, databases), stdout=subprocess.PIPE, stderr=stderr,
            bufsize=1 << 20,
        )  # fmt: skip
        reader = threading.Thread(target=_read_lines, args=(proc.stdout, splitter, failure, progress), daemon=True)
        reader.start()
        if locked:
            _wait_for_dump_start(ctl, proc, after_id, options.start_timeout)
        snap.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        snap.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        facts["_binlog"] = _binlog_position(snap)
        for db, table in tables:
            info = facts[db]["tables"][table]
            if info["engine"].lower() not in TRANSACTIONAL:
                info.update(table_facts(ctl, db, table))  # under our lock: as of the snapshot
        if locked:
            ctl.execute("UNLOCK TABLES")
            locked = False
        status = proc.wait()
        reader.join()
        if failure:
            raise BackupError(f"writing the dump failed: {failure[0]}") from failure[0]
        if status != 0:
            stderr.seek(0)
            tail = stderr.read()[-4000:].decode("utf-8", "replace").strip()
            raise BackupError(f"mysqldump exited {status}: {tail or '(no message)'}")
        splitter.check_complete()
        return {name: splitter.sinks[name].close() for name in databases}
    except BaseException as exc:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        if reader is not None:
            reader.join(timeout=30)
        for sink in splitter.sinks.values():
            with contextlib.suppress(Exception):
                sink.abort(exc)
        raise
    finally:
        if locked:
            with contextlib.suppress(Exception):
                ctl.execute("UNLOCK TABLES")


def user_statements(cursor: Any, users: Iterable[str]) -> list[dict[str, Any]]:
    """CREATE USER and GRANT statements for every account (all hosts) of the named users.

    Password hashes are in the statements: they go only into the stored (optionally encrypted)
    users file, never into a log or the manifest.
    """
    names = list(users)
    marks = ", ".join(["%s"] * len(names))
    cursor.execute(f"SELECT User, Host FROM mysql.user WHERE User IN ({marks}) ORDER BY User, Host", names)  # noqa: S608
    accounts = []
    for user, host in cursor.fetchall():
        account = f"{quote_string(user)}@{quote_string(host)}"
        cursor.execute(f"SHOW CREATE USER {account}")
        create = cursor.fetchone()[0]
        cursor.execute(f"SHOW GRANTS FOR {account}")
        grants = [row[0] for row in cursor.fetchall()]
        accounts.append({"user": user, "host": host, "create": create, "grants": grants})
    found = {account["user"] for account in accounts}
    missing = [name for name in names if name not in found]
    if missing:
        raise BackupError(f"user(s) {', '.join(missing)} not found in mysql.user (backup.users)")
    return accounts


def users_sql(accounts: list[dict[str, Any]]) -> bytes:
    """A replayable script: create each account if absent, set its password and options, grant."""
    lines = ["-- XDMoD database accounts (xdmod-usage backup)", "SET SESSION sql_mode = '';"]
    for account in accounts:
        create = account["create"]
        lines.append(re.sub(r"^CREATE USER ", "CREATE USER IF NOT EXISTS ", create) + ";")
        lines.append(re.sub(r"^CREATE USER ", "ALTER USER ", create) + ";")
        lines += [grant + ";" for grant in account["grants"]]
    lines.append("FLUSH PRIVILEGES;")
    return ("\n".join(lines) + "\n").encode("utf-8")


def backup_id(now: dt.datetime) -> str:
    """Sortable, unique per attempt: the UTC start time to the second."""
    return now.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
