"""XDMoD-like databases for the backup tests, demo and benchmark (no XDMoD install needed).

What makes a dump hard is all here: InnoDB and Aria tables, a table with BLOBs (every byte
value), non-ASCII and quote-laden text, a view, a stored procedure and function, a trigger and
an event (whose DEFINER the restore must carry), a table with a generated column. Row contents
are a pure function of the row number, so two runs build the same data.
"""

from __future__ import annotations

from typing import Any

from .mysql_client import DbEndpoint, quote_ident

DATABASES = ("moddb", "modw", "modw_aggregates", "mod_logger", "mod_hpcdb")

_SCHEMA = {
    "moddb": [
        """CREATE TABLE Users (id INT PRIMARY KEY AUTO_INCREMENT, username VARCHAR(64) NOT NULL,
           full_name VARCHAR(200) NOT NULL, created DATETIME NOT NULL, UNIQUE KEY (username))
           ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
        """CREATE TABLE UserAudit (id INT PRIMARY KEY AUTO_INCREMENT, user_id INT NOT NULL, note VARCHAR(200))
           ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
        """CREATE TRIGGER users_audit AFTER INSERT ON Users FOR EACH ROW
           INSERT INTO UserAudit (user_id, note) VALUES (NEW.id, CONCAT('created ', NEW.username))""",
        """CREATE VIEW UserNames AS SELECT id, username FROM Users""",
        """CREATE FUNCTION initials(name VARCHAR(200)) RETURNS VARCHAR(8) DETERMINISTIC
           RETURN CONCAT(LEFT(name, 1), '.')""",
        """CREATE EVENT purge_audit ON SCHEDULE EVERY 1 DAY DISABLE DO DELETE FROM UserAudit WHERE id < 0""",
    ],
    "modw": [
        """CREATE TABLE jobfact (job_id BIGINT PRIMARY KEY, resource_id INT NOT NULL, person_id INT NOT NULL,
           cpu_time DOUBLE NOT NULL, wallduration INT NOT NULL, jobname VARCHAR(255) NOT NULL,
           script MEDIUMBLOB, node_count INT NOT NULL,
           core_hours DOUBLE AS (cpu_time / 3600) PERSISTENT, KEY (resource_id))
           ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
        """CREATE TABLE resourcefact (id INT PRIMARY KEY, code VARCHAR(64) NOT NULL, description TEXT)
           ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
        """CREATE PROCEDURE jobs_of(IN rid INT) READS SQL DATA
           BEGIN
             -- a comment line inside a body
             SELECT COUNT(*) FROM jobfact WHERE resource_id = rid;
           END""",
    ],
    "modw_aggregates": [
        """CREATE TABLE jobfact_by_day (day_id INT NOT NULL, resource_id INT NOT NULL, job_count INT NOT NULL,
           cpu_hours DOUBLE NOT NULL, PRIMARY KEY (day_id, resource_id)) ENGINE=Aria TRANSACTIONAL=0""",
    ],
    "mod_logger": [
        """CREATE TABLE log_table (id INT PRIMARY KEY AUTO_INCREMENT, logtime DATETIME NOT NULL,
           ident VARCHAR(32) NOT NULL, message TEXT NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    ],
    "mod_hpcdb": [
        """CREATE TABLE hpcdb_people (person_id INT PRIMARY KEY, first_name VARCHAR(100), last_name VARCHAR(100))
           ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    ],
}

NAMES = ("Zoë Ångström", "José Müller", "李小龙", 'O\'Brien, "Bob"', "back\\slash", "emoji 🚀 user", "plain")


def _job_row(n: int) -> tuple[Any, ...]:
    script = bytes((n * 7 + i) % 256 for i in range(64 + n % 64))  # every byte value, NULs included
    name = f"{NAMES[n % len(NAMES)]} job {n}\nline two\t'quoted'"
    return (n, 1 + n % 3, 1 + n % 50, float(n % 997) * 3.5, n % 86400, name, script, 1 + n % 8)


def create_xdmod_like(endpoint: DbEndpoint, jobs: int = 2000, filler_mb: int = 0) -> None:
    """(Re)create the databases; ``filler_mb`` adds about that many MB of job rows (benchmark)."""
    conn = endpoint.connect()
    try:
        cursor = conn.cursor()
        cursor.execute("SET SESSION sql_mode = ''")
        for database, statements in _SCHEMA.items():
            cursor.execute(f"DROP DATABASE IF EXISTS {quote_ident(database)}")
            cursor.execute(f"CREATE DATABASE {quote_ident(database)} CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci")
            cursor.execute(f"USE {quote_ident(database)}")
            for statement in statements:
                cursor.execute(statement)
        cursor.execute("USE moddb")
        cursor.executemany(
            "INSERT INTO Users (username, full_name, created) VALUES (%s, %s, %s)",
            [(f"user{n}", NAMES[n % len(NAMES)], f"2026-01-{1 + n % 28:02d} 12:00:00") for n in range(200)],
        )
        cursor.execute("USE modw")
        cursor.executemany(
            "INSERT INTO resourcefact (id, code, description) VALUES (%s, %s, %s)",
            [(1, "hpc1", "Slurm cluster — ÅÄÖ"), (2, "ocp_prod", "OpenShift"), (3, "cloud", None)],
        )
        insert_jobs(cursor, 0, jobs)
        if filler_mb:
            add_filler(cursor, filler_mb)
        cursor.execute("USE modw_aggregates")
        cursor.execute(
            "INSERT INTO jobfact_by_day SELECT job_id DIV 100, resource_id, COUNT(*), SUM(cpu_time) / 3600 "
            "FROM modw.jobfact GROUP BY 1, 2"
        )
        cursor.execute("USE mod_hpcdb")
        cursor.executemany(
            "INSERT INTO hpcdb_people VALUES (%s, %s, %s)",
            [(n, NAMES[n % len(NAMES)].split()[0], f"Nachname{n}") for n in range(1, 51)],
        )
    finally:
        conn.close()


def insert_jobs(cursor: Any, first: int, count: int) -> None:
    rows = [_job_row(n) for n in range(first, first + count)]
    for start in range(0, len(rows), 1000):
        cursor.executemany(
            "INSERT INTO modw.jobfact (job_id, resource_id, person_id, cpu_time, wallduration, jobname, script, "
            "node_count) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            rows[start : start + 1000],
        )


def add_filler(cursor: Any, megabytes: int) -> None:
    """Bulk rows made on the server (MariaDB's sequence engine): ~1 KB each, in 100k-row statements."""
    cursor.execute("SELECT COALESCE(MAX(job_id), 0) + 1 FROM modw.jobfact")
    start = int(cursor.fetchone()[0])
    total = megabytes * 1000
    for offset in range(0, total, 100_000):
        first, last = start + offset, start + min(offset + 100_000, total) - 1
        sql = (
            "INSERT INTO modw.jobfact (job_id, resource_id, person_id, cpu_time, wallduration, jobname, script, "  # noqa: S608 - integers only
            "node_count) SELECT seq, 1 + seq % 3, 1 + seq % 50, (seq % 997) * 3.5, seq % 86400, "
            "CONCAT('bulk job ', seq, ' ', REPEAT(MD5(seq), 8)), UNHEX(REPEAT(SHA2(seq, 512), 6)), 1 + seq % 8 "
            f"FROM seq_{first}_to_{last}"
        )
        cursor.execute(sql)
