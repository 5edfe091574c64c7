"""Benchmark: the coverage view at 20 resources x 400 days, on local staging and on S3 staging.

Seeds 8,000 staged days: one day is staged by the real Slurm pipeline (synthetic sacct lines), its
manifest is written for every resource-day with a mix of states (downstream notes from the real
note builders), then ``coverage.rebuild`` indexes each resource (timed). Then, per store:

1. ``coverage.record`` on a 400-day index (what each manifest write now costs on top), best of 20;
2. ``coverage_view.grid`` in process for 20 x 400 (best of 5, and peak Python heap by tracemalloc);
3. a real ``airflow api-server`` with the plugin (tests/test_coverage_view.api_server): the
   authenticated ``/xdmod-coverage/api/grid?days=400`` over HTTP (best of 5, bytes), and the page
   in Debian's headless Chromium until the grid is drawn (navigation to rendered, best of 3).

S3 is moto's server on 127.0.0.1 (started here, stopped by PID); a real S3 adds its round trip per
request: a page load makes 2 requests per resource (index GET + pending LIST), 8 in parallel.

    .venv/bin/python bench/coverage.py [--resources 20] [--days 400] [--json bench/results-coverage.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
import tracemalloc
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT / "tests")]
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="xu-bench-cov-home-"))
CONN = "staging_s3"


def seed(store, resources: int, days: int, today: dt.date) -> tuple[float, list[str]]:
    """Write resources x days manifests (a real staged day's, re-dated) and rebuild each index."""
    from xdmod_usage import coverage
    from xdmod_usage.aggregation import ingest_note
    from xdmod_usage.reconciliation import Reconciliation, checked_note
    from xdmod_usage.slurm_pipeline import SlurmDay, stage_slurm_day
    from xdmod_usage.staging import Store
    from xdmod_usage.synthetic import synthetic_sacct_lines
    from xdmod_usage.window import UsageWindow

    first = today - dt.timedelta(days=days)
    window = UsageWindow.for_day(first)
    lines = b"".join(synthetic_sacct_lines(window, 2000))
    scratch = Store.from_path(Path(tempfile.mkdtemp(prefix="xu-bench-cov-")))
    base = stage_slurm_day(scratch, SlurmDay("r00", "r00", "synth", window), lambda out: out.write(lines),
                           {"type": "bench"}, max_quarantine_share=1.0).manifest  # fmt: skip
    names = [f"r{n:02d}" for n in range(resources)]
    for name in names:
        for n in range(days):
            day = (first + dt.timedelta(days=n)).isoformat()
            if n % 37 == 5:
                continue  # missing days
            manifest = {**base, "resource": name}
            if n % 5:  # ingested and reconciled, every 23rd a mismatch
                manifest["xdmod_ingest"] = ingest_note({"dry_run": False, "last_modified_start": f"{day} 01:00:00"},
                                                       f"scheduled__{day}T00:00:00+00:00")  # fmt: skip
                rows = base["counts"]["xdmod_rows"]
                verdict = Reconciliation("job", name, day, rows, rows - (n % 23 == 0), rows)
                manifest["reconciliation"] = checked_note(verdict, f"scheduled__{day}T00:00:00+00:00")
            store.put_bytes(f"{name}/{day}/manifest.json", json.dumps(manifest).encode())
    started = time.perf_counter()
    for name in names:
        coverage.rebuild(store, name)
    return time.perf_counter() - started, names


def best(fn, runs: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return min(times), result


def site_yaml(root: str, conn_id: str | None, names: list[str], days: int, today: dt.date) -> str:
    start = today - dt.timedelta(days=days)
    conn = f", conn_id: {conn_id}" if conn_id else ""
    lines = [f'staging: {{root: "{root}"{conn}}}', "xdmod: {runner: dry_run}", "resources:"]
    lines += [f'  - {{name: {n}, kind: slurm, xdmod_resource: {n}, start_date: "{start}", source: {{cluster: {n}}}}}'
              for n in names]  # fmt: skip
    return "\n".join(lines) + "\n"


def measure(label: str, store, root: str, conn_id: str | None, extra_env: dict, args, today) -> dict:
    from test_coverage_view import api_server, chromium
    from xdmod_usage import coverage
    from xdmod_usage.config import parse_site_config
    from xdmod_usage.coverage_view import grid

    rebuild_s, names = seed(store, args.resources, args.days, today)
    manifest = json.loads(store.read_bytes(f"{names[0]}/{(today - dt.timedelta(days=2)).isoformat()}/manifest.json"))
    record_s, _ = best(lambda: coverage.record(store, names[0], (today - dt.timedelta(days=2)).isoformat(),
                                               manifest, {}), 20)  # fmt: skip
    site_text = site_yaml(root, conn_id, names, args.days, today)
    site = parse_site_config(site_text, "bench.yaml")
    grid_s, data = best(lambda: grid(site, lambda r: store, today, args.days), 5)
    tracemalloc.start()
    grid(site, lambda r: store, today, args.days)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    cells = sum(1 for r in data["resources"] for c in r["cells"] if c)
    out = {"store": label, "resources": args.resources, "days": args.days, "cells": cells,
           "rebuild_all_s": round(rebuild_s, 3), "record_on_400_day_index_ms": round(record_s * 1000, 1),
           "grid_in_process_ms": round(grid_s * 1000, 1), "grid_peak_heap_mb": round(peak / 2**20, 1)}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="xu-bench-cov-api-") as tmp, \
            api_server(Path(tmp), site_text, extra_env) as api:  # fmt: skip
        grid_url = f"{api.url}/xdmod-coverage/api/grid?days={args.days}"
        bearer = {"Authorization": f"Bearer {api.tokens['admin']}"}
        request = urllib.request.Request(grid_url, headers=bearer)  # noqa: S310 - loopback only

        def fetch() -> bytes:
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - loopback only
                return response.read()

        http_s, body = best(fetch, 5)
        driver = chromium()
        try:
            from selenium.webdriver.support.ui import WebDriverWait

            driver.get(f"{api.url}/api/v2/version")
            driver.add_cookie({"name": "_token", "value": api.tokens["admin"], "path": "/"})
            loads = []
            for _ in range(3):
                started = time.perf_counter()
                driver.get(f"{api.url}/xdmod-coverage/?days={args.days}")
                WebDriverWait(driver, 60).until(
                    lambda d: d.find_element("tag name", "body").get_attribute("data-ready")
                )
                loads.append(time.perf_counter() - started)
                drawn = len(driver.find_elements("css selector", "td.c:not(.nd)"))
            render_ms = int(driver.find_element("tag name", "body").get_attribute("data-render-ms"))
        finally:
            driver.quit()
    out.update({"http_grid_ms": round(http_s * 1000, 1), "http_grid_kb": round(len(body) / 1024),
                "page_load_s": round(min(loads), 2), "page_loads_s": [round(x, 2) for x in loads],
                "page_fetch_and_render_ms": render_ms, "cells_drawn": drawn})  # fmt: skip
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resources", type=int, default=20)
    parser.add_argument("--days", type=int, default=400)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    today = dt.datetime.now(dt.UTC).date()
    from xdmod_usage.staging import Store

    results = []
    with tempfile.TemporaryDirectory(prefix="xu-bench-cov-file-") as tmp:
        root = Path(tmp) / "staging"
        results.append(measure("file", Store.from_path(root), f"file://{root}", None, {}, args, today))
    from conftest import moto_server

    with moto_server(Path(tempfile.mkdtemp(prefix="xu-bench-moto-")) / "moto.log") as endpoint:
        import boto3
        from airflow.sdk import ObjectStoragePath

        conn = json.dumps({"conn_type": "aws", "login": "bench", "password": "bench",
                           "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"}})  # fmt: skip
        os.environ[f"AIRFLOW_CONN_{CONN.upper()}"] = conn
        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="bench", aws_secret_access_key="bench",
                     region_name="us-east-1").create_bucket(Bucket="bench")  # fmt: skip
        store = Store.from_path(ObjectStoragePath("s3://bench/staging", conn_id=CONN))
        results.append(measure("s3", store, "s3://bench/staging", CONN, {f"AIRFLOW_CONN_{CONN.upper()}": conn},
                               args, today))  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
