"""Coverage index: one small object per resource saying, per UTC day, how far the day got.

Why an index: the coverage view shows resources x days (20 x 400 = 8,000 cells); reading 8,000
manifests per page load is 8,000 GETs on S3. Every manifest write (DayStage.publish / annotate)
records the day's summary here instead, so a page reads one index per resource plus the few
entries written in the last minutes.

Layout under the staging root::

    _coverage/<resource>/index.json                 the compacted index (day -> summary)
    _coverage/<resource>/pending/<day>~<ns>.json    one entry per manifest write, merged into the index

Why pending entries: daily runs of one resource run in parallel (max_active_runs), reloads and
reconciliations annotate days too, and an object store has no lock. A writer puts its entry
(a new object, so writers never overwrite each other), then compacts: merges pending entries
into the index by write time and removes only entries the index holds that are older than
PENDING_KEEP. Two compactions racing can leave a stale index for a moment, but the entry the
loser dropped is still pending, so readers (who merge pending entries too) and the next
compaction see it. Nothing in the index is needed to stage or ingest: ``rebuild`` makes it anew
from the manifests, the source of truth.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .staging import Store

INDEX_ROOT = "_coverage"
FORMAT = "xdmod-usage-coverage/1"
PENDING_KEEP_NS = 10 * 60 * 10**9  # far longer than a compaction's read-to-write span
# The furthest a day got, in order; "mismatch" is a reconciliation that failed.
STATES = ("missing", "staged", "ingested", "reconciled", "mismatch")
# Which task's log explains a day in each state.
TASK_OF_STATE = {"staged": "stage", "ingested": "xdmod_ingest", "reconciled": "reconcile", "mismatch": "reconcile"}


def summarize(manifest: dict[str, Any], run: dict[str, str] | None = None, now_ns: int | None = None) -> dict[str, Any]:
    """One day's cell: its state, counts and the runs behind it, from its manifest."""
    counts = manifest.get("counts", {})
    quarantined = counts.get("quarantined", {}) or {}
    ingest = manifest.get("xdmod_ingest") or {}
    check = manifest.get("reconciliation") or {}
    state = "staged"
    if ingest and not ingest.get("dry_run"):
        state = "ingested"
    if check.get("status") == "ok":
        state = "reconciled"
    elif check.get("status") == "mismatch":
        state = "mismatch"
    return {
        "state": state,
        "version": manifest.get("version"),
        "read": counts.get("read"),
        "staged": counts.get("staged"),
        "quarantined": sum(quarantined.values()),
        "quarantine_reasons": dict(sorted(quarantined.items())),
        "dry_run": bool(ingest.get("dry_run")),
        "ingest_run": ingest.get("run_id"),
        "reconciliation": {key: check[key] for key in ("status", "expected", "held", "message") if key in check},
        "run": run or {},
        "written_ns": now_ns if now_ns is not None else time.time_ns(),
    }


def current_run() -> dict[str, str]:
    """The Airflow run writing the manifest (the task runner exports it), for the view's links."""
    dag_id, run_id = os.environ.get("AIRFLOW_CTX_DAG_ID"), os.environ.get("AIRFLOW_CTX_DAG_RUN_ID")
    return {"dag_id": dag_id, "run_id": run_id} if dag_id and run_id else {}


def _prefix(resource: str) -> str:
    return f"{INDEX_ROOT}/{resource}"


def _pending_name(day: str, written_ns: int) -> str:
    return f"{day}~{written_ns:020d}.json"


def _parse_pending(name: str) -> tuple[str, int] | None:
    stem, _, ext = name.rpartition(".")
    day, sep, ns = stem.partition("~")
    if ext != "json" or not sep or not ns.isdigit():
        return None
    return day, int(ns)


def _encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _read_index(store: Store, resource: str) -> dict[str, Any]:
    rel = f"{_prefix(resource)}/index.json"
    try:  # one request, not exists() and then a read
        body = json.loads(store.read_bytes(rel))
    except FileNotFoundError:
        return {}
    if body.get("format") != FORMAT:
        raise ValueError(f"{store.url(rel)}: not a coverage index ({body.get('format')!r})")
    return body["days"]


def _pending(store: Store, resource: str) -> list[tuple[str, int, str]]:
    names = store.list_names(f"{_prefix(resource)}/pending")
    return [(*parsed, name) for name in names if (parsed := _parse_pending(name))]


def _merged(store: Store, resource: str) -> tuple[dict[str, dict[str, Any]], list[tuple[str, int, str]]]:
    """The index with the pending entries newer than its days merged in, and the pending entries listed."""
    days = _read_index(store, resource)
    pending = _pending(store, resource)
    for day, written_ns, name in pending:  # in write order: names sort by their zero-padded write time
        if written_ns > days.get(day, {}).get("written_ns", -1):
            days[day] = json.loads(store.read_bytes(f"{_prefix(resource)}/pending/{name}"))
    return days, pending


def read(store: Store, resource: str) -> dict[str, dict[str, Any]]:
    """Day -> summary of one resource: the index plus the entries not merged into it yet."""
    return _merged(store, resource)[0]


def compact(store: Store, resource: str, now_ns: int | None = None) -> dict[str, dict[str, Any]]:
    """Merge pending entries into the index; drop those the index holds and that are old enough."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    days, pending = _merged(store, resource)
    store.put_bytes(f"{_prefix(resource)}/index.json", _encode({"format": FORMAT, "resource": resource, "days": days}))
    for day, written_ns, name in pending:
        if now_ns - written_ns > PENDING_KEEP_NS and days.get(day, {}).get("written_ns", -1) >= written_ns:
            store.remove_tree(f"{_prefix(resource)}/pending/{name}")
    return days


def record(store: Store, resource: str, day: str, manifest: dict[str, Any], run: dict[str, str] | None = None) -> None:
    """Note a day's manifest as just written (DayStage calls this after every manifest write)."""
    entry = summarize(manifest, current_run() if run is None else run)
    store.put_bytes(f"{_prefix(resource)}/pending/{_pending_name(day, entry['written_ns'])}", _encode(entry))
    compact(store, resource)


def rebuild(store: Store, resource: str) -> int:
    """Make a resource's index anew from its manifests (after a restore of staging, or an upgrade).

    Returns the number of days indexed. Runs are unknown from manifests alone but for the ingest's.
    """
    days: dict[str, Any] = {}
    for day in store.list_names(resource):
        rel = f"{resource}/{day}/manifest.json"
        if _is_day(day) and store.exists(rel):
            manifest = json.loads(store.read_bytes(rel))
            days[day] = summarize(manifest, {}, now_ns=0)
    store.put_bytes(f"{_prefix(resource)}/index.json", _encode({"format": FORMAT, "resource": resource, "days": days}))
    for _, _, name in _pending(store, resource):
        store.remove_tree(f"{_prefix(resource)}/pending/{name}")
    return len(days)


def _is_day(name: str) -> bool:
    try:
        dt.date.fromisoformat(name)
    except ValueError:
        return False
    return len(name) == 10


def due_days(start: dt.date, end: dt.date | None, today: dt.date) -> Iterable[dt.date]:
    """The days a resource should have staged by ``today`` (UTC): start_date .. min(end_date, yesterday)."""
    last = today - dt.timedelta(days=1)
    if end is not None:
        last = min(last, end)
    day = start
    while day <= last:
        yield day
        day += dt.timedelta(days=1)


def main(argv: list[str] | None = None) -> int:
    """``python -m xdmod_usage.coverage rebuild [--resource NAME ...]``: reindex from the manifests."""
    import argparse

    from .airflow_tasks import staging_store
    from .config import load_for_command

    parser = argparse.ArgumentParser(prog="python -m xdmod_usage.coverage", description=main.__doc__)
    parser.add_argument("command", choices=["rebuild"])
    parser.add_argument("--resource", action="append", help="a resource name (default: every resource)")
    parser.add_argument("--config", help="site config (default: $XDMOD_USAGE_CONFIG)")
    args = parser.parse_args(argv)
    site = load_for_command(args.config)
    try:
        resources = [site.resource(name) for name in args.resource] if args.resource else site.resources
    except KeyError as exc:
        parser.error(exc.args[0])
    for resource in resources:
        count = rebuild(staging_store(site, resource), resource.name)
        print(f"{resource.name}: {count} days indexed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
