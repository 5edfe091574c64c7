"""MySQL/MariaDB access for backups: one endpoint description, a 0600 defaults file for the clients.

Why a defaults file: mysqldump and mysql take the password from `--defaults-extra-file`, never from
argv (visible in `ps`) or the environment (visible in /proc). The file lives only while the command
runs. The core library stays free of Airflow: the Airflow connection is turned into an endpoint by
the task code.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SYSTEM_SCHEMAS = frozenset({"mysql", "information_schema", "performance_schema", "sys"})


@dataclass(frozen=True)
class DbEndpoint:
    """Where a server is and who to log in as. ``repr`` never shows the password."""

    host: str
    port: int
    user: str
    password: str = ""
    socket: str | None = None

    def __repr__(self) -> str:
        where = self.socket or f"{self.host}:{self.port}"
        return f"DbEndpoint({self.user}@{where})"

    @property
    def label(self) -> str:
        """host:port for logs, lineage namespaces and manifests."""
        return f"{self.host}:{self.port}"

    def connect(self, **options: Any) -> Any:
        """A MySQLdb connection in utf8mb4 with autocommit (callers open transactions explicitly)."""
        import MySQLdb

        args: dict[str, Any] = {"user": self.user, "passwd": self.password, "charset": "utf8mb4", "autocommit": True}
        if self.socket:
            args["unix_socket"] = self.socket
        else:
            args.update(host=self.host, port=self.port)
        return MySQLdb.connect(**args, **options)


def _option_value(value: str) -> str:
    """Quote for a MySQL option file: double quotes, backslash escapes (read back verbatim)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


@contextlib.contextmanager
def defaults_file(endpoint: DbEndpoint, directory: str | None = None) -> Iterator[Path]:
    """A [client] option file with the credentials, mode 0600, removed when the block ends."""
    fd, name = tempfile.mkstemp(prefix="xu-my-", suffix=".cnf", dir=directory)
    path = Path(name)
    try:
        os.fchmod(fd, 0o600)
        lines = ["[client]", f"user={_option_value(endpoint.user)}", f"password={_option_value(endpoint.password)}"]
        if endpoint.socket:
            lines.append(f"socket={_option_value(endpoint.socket)}")
        else:
            lines += [f"host={_option_value(endpoint.host)}", f"port={endpoint.port}", "protocol=TCP"]
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def quote_ident(name: str) -> str:
    """A backquoted identifier (backquotes doubled), for names that come from the server."""
    return "`" + name.replace("`", "``") + "`"


def quote_string(value: str) -> str:
    """A single-quoted SQL string literal for SHOW ... FOR 'user'@'host' (which takes no placeholders)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
