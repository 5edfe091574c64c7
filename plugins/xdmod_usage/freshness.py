"""Freshness watch: does every resource have a complete staged day for each of the last N days?

Why outside the usage DAGs: an import error, a paused DAG or a run that was never created fires no
Airflow callback and no deadline. This check looks at the staging store itself, so it notices any
day that did not land, whatever the reason. Runs as a DAG and as a command for cron:

    python -m xdmod_usage.freshness --config site.yaml [--days 7] [--json]   # exit 1 on gaps
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass

from .config import Resource, SiteConfig, load_for_command
from .staging import MANIFEST, DayStage, Store

UTC = dt.UTC


@dataclass(frozen=True)
class Gap:
    resource: str
    day: str
    problem: str


def due_days(resource: Resource, now: dt.datetime, days: int, grace: dt.timedelta) -> list[dt.date]:
    """Days whose run should be done by now: window ended + settle delay + grace, not before start."""
    days_due = []
    for back in range(1, days + 1):
        day = (now - dt.timedelta(days=back)).date()
        window_end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=UTC)
        if day >= resource.start_date and window_end + resource.settle_delay + grace <= now:
            days_due.append(day)
    return sorted(days_due)


def check_day(store: Store, resource: str, day: dt.date) -> str | None:
    """None if the day's manifest exists and every file it lists is there with its size."""
    stage = DayStage(store, resource, day.isoformat())
    try:
        manifest = stage.read_manifest()
    except (OSError, ValueError) as exc:
        return f"unreadable {MANIFEST}: {exc}"
    if manifest is None:
        return "no staged day (no manifest)"
    return check_files(stage, manifest)


def check_files(stage: DayStage, manifest: dict) -> str | None:
    """None if every file the committed manifest lists is there with its recorded size."""
    for name, entry in manifest.get("files", {}).items():
        rel = f"{stage.prefix}/{entry['path']}"
        if not stage.store.exists(rel):
            return f"{name} listed in the manifest is missing"
        size = stage.store.size(rel)
        if size != entry["bytes"]:
            return f"{name} has {size} bytes, the manifest says {entry['bytes']}"
    return None


def find_gaps(
    site: SiteConfig,
    store_for: Callable[[Resource], Store],
    now: dt.datetime,
    days: int,
    grace: dt.timedelta,
) -> list[Gap]:
    gaps = []
    for resource in site.resources:
        store = store_for(resource)
        for day in due_days(resource, now, days, grace):
            problem = check_day(store, resource.name, day)
            if problem:
                gaps.append(Gap(resource.name, day.isoformat(), problem))
    return gaps


def report(gaps: list[Gap], days: int) -> str:
    if not gaps:
        return f"all resources have complete staged days for the last {days} days"
    lines = [f"{len(gaps)} missing or incomplete staged day(s) in the last {days} days:"]
    lines += [f"  {gap.resource} {gap.day}: {gap.problem}" for gap in gaps]
    lines.append("Rerun or backfill those days (see README, Operations); check the DAGs for import errors.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check that every resource's recent days are staged.")
    parser.add_argument("--config", help="site config (default: $XDMOD_USAGE_CONFIG)")
    parser.add_argument("--days", type=int, default=None, help="how many past days to check")
    parser.add_argument("--json", action="store_true", help="print the gaps as JSON")
    args = parser.parse_args(argv)
    site = load_for_command(args.config)
    days = args.days or site.freshness.days

    def store_for(resource: Resource) -> Store:
        # Outside Airflow: credentials for s3:// come from the usual AWS environment/config files.
        return Store.from_path(site.staging_for(resource).root)

    gaps = find_gaps(site, store_for, dt.datetime.now(UTC), days, site.freshness.grace)
    print(json.dumps([asdict(g) for g in gaps], indent=2) if args.json else report(gaps, days))
    return 1 if gaps else 0


def summary_line(gaps: list[Gap]) -> str:
    """One line for alerts, which carry the error's last line."""
    shown = "; ".join(f"{g.resource} {g.day} ({g.problem})" for g in gaps[:10])
    more = f"; and {len(gaps) - 10} more" if len(gaps) > 10 else ""
    return f"stale staging: {len(gaps)} day(s) missing or incomplete: {shown}{more}"


if __name__ == "__main__":
    sys.exit(main())
