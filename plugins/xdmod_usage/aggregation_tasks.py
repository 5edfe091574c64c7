"""Airflow side of the asset-driven aggregation: the ingest tasks' asset events, and the aggregation
task that reads them (see aggregation.py for the rules).

Task code cannot reach the metadata database in Airflow 3: events are written through the task's
``outlet_events`` and read through ``inlet_events`` / ``triggering_asset_events``, both served by
the Execution API.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from airflow.sdk.exceptions import AirflowSkipException

from .aggregation import HISTORY_LIMIT, IngestEvent, Realm, ingest_extra, ingest_note, plan
from .config import Resource, SiteConfig
from .xdmod_commands import aggregate

log = logging.getLogger(__name__)
# Events are listed back to this long before the last aggregation listed them: an event committed
# just after a listing with an earlier timestamp is still seen.
LISTING_MARGIN = dt.timedelta(days=1)
# With no earlier aggregation (the DAG's first run, or under `airflow dags test`), ingests this recent.
FIRST_LOOKBACK = dt.timedelta(days=7)


def record_ingest(
    site: SiteConfig,
    resource: Resource,
    context: dict[str, Any],
    asset: Any,
    staged: dict[str, Any],
    last_modified_start: str,
    result: dict[str, Any],
) -> dict[str, Any]:
    """Attach the ingest's facts to its asset event (the aggregation needs the pre-shred timestamp) and
    note the ingest in the day's manifest (what the day's state shows: staged, ingested, reconciled)."""
    from .airflow_tasks import staging_store, window_from_context
    from .staging import DayStage

    ti, dag_run = context.get("ti"), context.get("dag_run")
    run_id = getattr(dag_run, "run_id", None)
    ingest_id = f"{resource.dag_id}/{run_id}/{getattr(ti, 'try_number', None)}"
    day = window_from_context(context).day.isoformat()
    extra = ingest_extra(ingest_id, resource, day, last_modified_start, bool(result.get("dry_run")))
    context["outlet_events"][asset].extra = extra
    stage = DayStage(staging_store(site, resource), resource.name, day)
    stage.annotate(staged["version"], "xdmod_ingest", ingest_note(extra, run_id))
    from .lineage import manifest_note

    manifest_note(context, [stage.manifest_url])
    log.info("ingest event for %s: %s", asset.name, extra)
    return extra


def _events_of(accessor: Any) -> list[IngestEvent]:
    found = []
    for event in accessor:
        parsed = IngestEvent.from_event(dict(event.extra or {}), event.timestamp)
        if parsed is not None:
            found.append(parsed)
    return found


def aggregate_realm(
    site: SiteConfig, realm: Realm, context: dict[str, Any], ingest_assets: list[Any], aggregated_asset: Any
) -> dict[str, Any]:
    """Aggregate ``realm`` once for every ingest not yet covered, from the earliest of their timestamps."""
    from .airflow_tasks import run_xdmod_command, site_target, xdmod_dry_run

    inlet_events = context["inlet_events"]
    previous = list(inlet_events[aggregated_asset].ascending(False).limit(HISTORY_LIMIT))
    previous_extra = [dict(event.extra or {}) for event in previous]
    triggering = context.get("triggering_asset_events") or {}
    triggered = [event for asset in ingest_assets for event in _events_of(triggering.get(asset, []))]
    listed_at = dt.datetime.now(dt.UTC)
    if previous:
        since = max(dt.datetime.fromisoformat(extra["listed_at"]) for extra in previous_extra
                    if extra.get("listed_at")) - LISTING_MARGIN  # fmt: skip
    elif triggered:
        since = min(event.timestamp for event in triggered) - dt.timedelta(seconds=1)
    else:
        since = listed_at - FIRST_LOOKBACK
    listed = [event for asset in ingest_assets for event in _events_of(inlet_events[asset].after(since.isoformat()))]
    dry_run = xdmod_dry_run(site.xdmod, context)
    chosen = plan([*triggered, *listed], previous_extra, dry_run)
    log.info("aggregation plan for %s: %d ingest(s) to aggregate, %d already covered, from %s",
             realm, len(chosen.aggregate), chosen.already_covered, chosen.last_modified_start)  # fmt: skip
    for event in chosen.aggregate:
        log.info("  ingest %s: %s %s since %s", event.ingest_id, event.resource, event.day, event.last_modified_start)
    if chosen.last_modified_start is None:
        raise AirflowSkipException(f"every ingest since {since.isoformat()} is already aggregated "
                                   f"({chosen.already_covered} covered by earlier runs): nothing to do")  # fmt: skip
    result = run_xdmod_command(site_target(site, f"aggregate-{realm}"), context,
                               aggregate(realm, chosen.last_modified_start), dry_run=dry_run)  # fmt: skip
    context["outlet_events"][aggregated_asset].extra = {
        "covered": chosen.covered, "listed_at": listed_at.isoformat(), "last_modified_start":
        chosen.last_modified_start, "ingests": len(chosen.aggregate), "dry_run": result["dry_run"]}  # fmt: skip
    return {**result, "plan": chosen.as_dict()}
