"""Benchmark: a large site's hierarchy through the core library on a real MariaDB (no Airflow imported).

A synthetic site (default 20,000 projects under 5,000 PIs in 50 organizations, 60,000 user names, 2,000
cloud projects) goes through what one xdmod_hierarchy run does: merge the sources and build the four
files, record the history (first run: every row), stage the files from the history. Then an unchanged
run (records nothing), a run with 1% of the projects changed, and a regeneration of the first run's
files. Each step's wall time, the rows written, and the process' peak RSS; the regenerated files are
checked byte for byte. MariaDB comes from scripts/services/mariadb.sh (own dir and port), stopped at the end.

    .venv/bin/python bench/hierarchy.py [--projects 20000] [--port 33316]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "plugins"))


def site(projects: int, change: int = 0):
    from xdmod_usage.hierarchy_build import Attribution, Person
    from xdmod_usage.hierarchy_sources import SourceResult

    pis = max(1, projects // 4)
    coldfront = SourceResult("coldfront")
    for n in range(projects):
        title = f'Project {n}, "phase {n % 7}" – ℵ{n % 13}' + (" (renamed)" if n < change else "")
        coldfront.attributions.append(Attribution("coldfront", f"proj{n:06d}", f"pi{n % pis:05d}", f"org{n % 50:02d}",
                                                  f"Organization {n % 50}", title,
                                                  "cloud" if n % 10 == 0 else None))  # fmt: skip
    coldfront.people = [Person("coldfront", f"user{n:06d}", f"Zoë {n}", f"Müller, {n % 97}") for n in range(60_000)]
    coldfront.people += [Person("coldfront", f"pi{n:05d}", "Principal", f"Investigator {n}") for n in range(pis)]
    return [coldfront]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--projects", type=int, default=20_000)
    parser.add_argument("--port", type=int, default=33316)
    args = parser.parse_args()
    env = {**os.environ, "XU_MARIADB_DIR": str(ROOT / ".services" / "bench-mariadb"), "XU_MARIADB_PORT": str(args.port)}
    script = str(ROOT / "scripts" / "services" / "mariadb.sh")
    subprocess.run([script, "start"], env=env, check=True, capture_output=True)
    try:
        return run(args)
    finally:
        subprocess.run([script, "stop"], env=env, check=True, capture_output=True)


def run(args) -> int:
    from xdmod_usage.config import HierarchyConfig
    from xdmod_usage.hierarchy_build import build_snapshot
    from xdmod_usage.hierarchy_pipeline import regenerate, take_snapshot
    from xdmod_usage.mysql_client import DbEndpoint
    from xdmod_usage.staging import Store

    config = HierarchyConfig.model_validate({"sources": [{"type": "file", "path": "/x.yaml"}]})
    conn = DbEndpoint("127.0.0.1", args.port, "xdmod", "xdmod-test-pw").connect()
    conn.cursor().execute("DROP DATABASE IF EXISTS xu_bench_hierarchy")
    conn.cursor().execute("CREATE DATABASE xu_bench_hierarchy")
    conn.select_db("xu_bench_hierarchy")
    figures: dict[str, object] = {"projects": args.projects}
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.from_path(Path(tmp))
        started = time.perf_counter()
        (source,) = site(args.projects)
        snapshot, _ = build_snapshot(source.attributions, source.people, config)
        figures["build_seconds"] = round(time.perf_counter() - started, 2)
        figures["rows"] = {name: len(rows) for name, rows in snapshot.items()}
        at = dt.datetime(2026, 11, 1, 6, tzinfo=dt.UTC)
        for label, change in (("first_run", 0), ("unchanged_run", 0), ("one_percent_changed", args.projects // 100)):
            started = time.perf_counter()
            staged = take_snapshot(store, conn, config, site(args.projects, change), at)
            figures[f"{label}_seconds"] = round(time.perf_counter() - started, 2)
            figures[f"{label}_changes"] = {k: v["opened"] + v["closed"] for k, v in staged["changes"].items()}
            if label == "first_run":
                first = {name: Path(entry["url"].removeprefix("file://")).read_bytes()
                         for name, entry in staged["files"].items()}  # fmt: skip
                first_at = at
            at += dt.timedelta(days=1)
        started = time.perf_counter()
        again = regenerate(store, conn, first_at)
        figures["regenerate_seconds"] = round(time.perf_counter() - started, 2)
        regenerated = {name: Path(e["url"].removeprefix("file://")).read_bytes() for name, e in again["files"].items()}
        figures["regenerated_byte_identical"] = regenerated == first
        figures["file_bytes"] = {name: len(data) for name, data in first.items()}
    figures["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    figures["airflow_imported"] = any(name.split(".")[0] == "airflow" for name in sys.modules)
    print(json.dumps(figures, indent=1))
    return 0 if figures["regenerated_byte_identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
