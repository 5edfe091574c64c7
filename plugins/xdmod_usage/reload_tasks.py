"""Task bodies of the manual xdmod_reload DAG (see reload.py for why a reload is done this way).

Every step refuses rather than guesses: the plan fails before anything is deleted when a day cannot be
rebuilt, when XDMoD holds jobs of the resource from before its start_date (an earlier collector's,
which a reload would delete and never bring back) unless allowed, and when the confirmation does not
match. ``list_only`` (the default) stops after the plan.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from .config import Resource, SiteConfig
from .progress import Progress
from .reload import ReloadDay, ReloadRefusedError

log = logging.getLogger(__name__)
ALIAS = "xdmod-reload-ingest"


def _params(context: dict[str, Any]) -> dict[str, Any]:
    return context.get("params") or {}


def _xdmod_dry(site: SiteConfig, resource: Resource, context: dict[str, Any]) -> bool:
    from .airflow_tasks import xdmod_dry_run

    return xdmod_dry_run(site.xdmod_for(resource), context)


def _rows_before_start(site: SiteConfig, resources: list[Resource]) -> dict[str, int]:
    """Jobs XDMoD holds for each resource that ended before its start_date: no archive of ours has them."""
    from .airflow_tasks import mysql_connection
    from .reconciliation import count_held

    found = {}
    for resource in resources:
        start = dt.datetime.combine(resource.start_date, dt.time(0), tzinfo=dt.UTC)
        with mysql_connection(site.xdmod_for(resource).db_conn_id) as conn:
            found[resource.name] = count_held(conn.cursor(), "job", resource.xdmod_resource,
                                              dt.datetime(1970, 1, 1, tzinfo=dt.UTC), start)  # fmt: skip
    return found


def plan(site: SiteConfig, context: dict[str, Any]) -> dict[str, Any]:
    """Check and list what the reload does; refuse (nothing deleted) on any doubt."""
    from . import reload
    from .airflow_tasks import staging_store

    params = _params(context)
    name = str(params.get("resource") or "")
    try:
        planned = reload.plan(site, name, lambda r: staging_store(site, r), dt.datetime.now(dt.UTC).date())
    except ReloadRefusedError as exc:
        raise AirflowFailException(str(exc)) from None
    resources = reload.scope(site, name)
    log.info("reload plan (XDMoD %s): delete with %s", planned["xdmod_version"], " ".join(planned["delete"]))
    for resource_name, f in planned["resources"].items():
        log.info("  %s (%s): %d days %s .. %s, %d XDMoD rows, %d shred command(s) by month, then ingest; the "
                 "aggregation DAG aggregates on the ingest event", resource_name, f["xdmod_resource"], f["days"],
                 f["first_day"], f["last_day"], f["xdmod_rows"], f["shreds"])  # fmt: skip
    if params.get("list_only", True):
        log.info("list only: nothing restaged or deleted. To reload, trigger with list_only=false and confirm=%r",
                 planned["confirm"])  # fmt: skip
        return {**planned, "list_only": True}
    if str(params.get("confirm") or "") != planned["confirm"]:
        raise AirflowFailException(f"confirm must be {planned['confirm']!r} to delete and reload; got "
                                   f"{params.get('confirm')!r}. Nothing was deleted.")  # fmt: skip
    if not _xdmod_dry(site, site.resource(name), context) and not params.get("allow_loss_before_start"):
        older = {key: value for key, value in _rows_before_start(site, resources).items() if value}
        if older:
            raise AirflowFailException(
                f"XDMoD holds jobs that ended before these resources' start_date: {older}. A reload deletes them "
                "and cannot bring them back (no archive of ours has them). Set start_date earlier and stage "
                "those days, or trigger with allow_loss_before_start=true. Nothing was deleted."
            )
    return {**planned, "list_only": False}


def restage(site: SiteConfig, context: dict[str, Any], planned: dict[str, Any]) -> dict[str, Any]:
    """Rebuild every day from its raw archive (Param ``restage``), in order; list the files to shred."""
    from . import lineage, reload
    from .airflow_tasks import staging_store

    if planned["list_only"]:
        raise AirflowSkipException("list_only: the plan is in the plan task's log; nothing was changed")
    params = _params(context)
    today = dt.datetime.now(dt.UTC).date()
    out: dict[str, list[dict[str, Any]]] = {}
    changed = 0
    for resource in reload.scope(site, str(params["resource"])):
        store, days = staging_store(site, resource), []
        spool = site.staging_for(resource).spool_dir
        every = site.tasks_for(resource).progress_interval.total_seconds()
        wanted = reload.days_of(resource, today)
        progress = Progress(f"reload {resource.name}: restage", len(wanted), log, every, unit="days")
        for day in wanted:
            before = reload.staged_day(store, resource, day)
            if params.get("restage", True):
                archives = lineage.archive_before(store, resource, day.isoformat())
                try:
                    item = reload.replay_day(store, resource, day, spool_dir=spool, progress_every=every,
                                             max_quarantine_share=resource.max_quarantine_share)  # fmt: skip
                except Exception as exc:  # a day over its quarantine limit, an unreadable archive...
                    raise AirflowFailException(f"{resource.name} {day}: cannot rebuild the day from its raw "
                                               f"archive: {exc}. Nothing was deleted yet.") from exc  # fmt: skip
                lineage.restaged(context, archives, store, resource, day.isoformat())
                if item.sha256 != before.sha256:
                    changed += 1
                    log.info("%s %s: rebuilt, %d -> %d XDMoD rows", resource.name, day, before.xdmod_rows,
                             item.xdmod_rows)  # fmt: skip
            else:
                item = before
            days.append(item)
            progress.add()
        progress.done()
        out[resource.name] = reload.days_as_dicts(days)
    log.info("%d day(s) changed by the rebuild", changed)
    return {"days": out, "changed": changed}


def delete_jobs(site: SiteConfig, context: dict[str, Any]) -> dict[str, Any]:
    from .airflow_tasks import run_xdmod, target_of
    from .reload import delete_command

    name = str(_params(context)["resource"])
    log.warning("deleting XDMoD's jobs: %s", " ".join(delete_command(site, name).argv))
    return run_xdmod(target_of(site, site.resource(name)), context, lambda _d: delete_command(site, name))


def _days(restaged: dict[str, Any], resource: Resource) -> list[ReloadDay]:
    return [ReloadDay(**item) for item in restaged["days"][resource.name]]


def shred(site: SiteConfig, context: dict[str, Any], restaged: dict[str, Any]) -> dict[str, Any]:
    """Every day of every resource in scope, a month per command, oldest first."""
    from .airflow_tasks import run_xdmod_command, target_of
    from .reload import scope, shred_commands

    name = str(_params(context)["resource"])
    target = target_of(site, site.resource(name))
    results = []
    for resource in scope(site, name):
        for command in shred_commands(resource, target.xdmod.input_dir, _days(restaged, resource)):
            log.info("shredding %s: %d day file(s) in %s", resource.name, len(command.inputs), command.argv[-1])
            results.append(run_xdmod_command(target, context, command))
    return {"shreds": len(results), "dry_run": all(result["dry_run"] for result in results)}


def ingest(site: SiteConfig, context: dict[str, Any], restaged: dict[str, Any], timestamp: str) -> dict[str, Any]:
    """xdmod-ingestor --ingest; one ingest event per reloaded resource (its realm's aggregation DAG then
    aggregates from the pre-delete timestamp); each day's manifest notes the ingest."""
    from airflow.sdk import Asset

    from .aggregation import ingest_asset_name, ingest_extra, ingest_note
    from .airflow_tasks import run_xdmod, staging_store, target_of
    from .lineage import manifest_note
    from .reload import scope
    from .staging import DayStage
    from .xdmod_commands import ingest as ingest_command

    name = str(_params(context)["resource"])
    result = run_xdmod(target_of(site, site.resource(name)), context, lambda _d: ingest_command())
    run_id = getattr(context.get("dag_run"), "run_id", None)
    try_number = getattr(context.get("ti"), "try_number", None)
    for resource in scope(site, name):
        days = _days(restaged, resource)
        extra = ingest_extra(f"xdmod_reload/{run_id}/{try_number}/{resource.name}", resource,
                             f"{days[0].day}..{days[-1].day}" if days else "", timestamp, result["dry_run"],
                             reload=True)  # fmt: skip
        context["outlet_events"][_alias()].add(Asset(name=ingest_asset_name("job", resource.name)), extra=extra)
        store = staging_store(site, resource)
        for item in days:
            DayStage(store, resource.name, item.day).annotate(item.version, "xdmod_ingest", ingest_note(extra, run_id))
        manifest_note(context, [DayStage(store, resource.name, item.day).manifest_url for item in days])
    return result


def _alias() -> Any:
    from airflow.sdk import AssetAlias

    return AssetAlias(ALIAS)


def reconcile(site: SiteConfig, context: dict[str, Any], restaged: dict[str, Any]) -> dict[str, Any]:
    """Per day: XDMoD's rows against XDMoD's rules applied to the staged file; a mismatch fails, naming days."""
    from .airflow_tasks import staging_store
    from .lineage import reconciled
    from .reconciliation import Reconciliation, checked_note, unchecked_note
    from .reload import scope
    from .staging import DayStage
    from .window import UsageWindow
    from .xdmod_expected import expected_job_rows

    name = str(_params(context)["resource"])
    run_id = getattr(context.get("dag_run"), "run_id", None)
    dry = _xdmod_dry(site, site.resource(name), context)
    mismatches, checked = [], 0
    for resource in scope(site, name):
        days = _days(restaged, resource)
        if not days:
            continue
        store = staging_store(site, resource)
        held: dict[dt.date, int] = {}
        if not dry:
            first, last = dt.date.fromisoformat(days[0].day), dt.date.fromisoformat(days[-1].day)
            held = _held_by_day(site, resource, first, last)
        progress = Progress(f"reload {resource.name}: reconcile", len(days), log,
                            site.tasks_for(resource).progress_interval.total_seconds(), unit="days")  # fmt: skip
        for item in days:
            day = dt.date.fromisoformat(item.day)
            window = UsageWindow.for_day(day)
            stage = DayStage(store, resource.name, item.day)
            with stage.open_entry({"path": item.path}) as handle:
                expected = expected_job_rows(handle, window.start, window.end)
            if dry:
                note = unchecked_note(expected, item.xdmod_rows, run_id)
            else:
                result = Reconciliation("job", resource.xdmod_resource, item.day, expected.rows, held.get(day, 0),
                                        item.xdmod_rows, dict(expected.not_held))  # fmt: skip
                # Every day was just rebuilt by today's writer: its count must agree with XDMoD's rules too.
                ok = result.ok and result.writer_agrees
                note = checked_note(result, run_id, ok)
                if not ok:
                    mismatches.append(result.message())
                checked += 1
            stage.annotate(item.version, "reconciliation", note)
            reconciled(context, site.xdmod_for(resource), "job", not dry, [stage.manifest_url], [item.url])
            progress.add()
        progress.done()
    if mismatches:
        shown = "; ".join(mismatches[:20])
        raise AirflowFailException(f"reload reconciliation: {len(mismatches)} day(s) differ: {shown}")
    return {"checked_days": checked, "dry_run": dry}


def _held_by_day(site: SiteConfig, resource: Resource, first: dt.date, last: dt.date) -> dict[dt.date, int]:
    from .airflow_tasks import mysql_connection
    from .reconciliation import count_held_by_day

    with mysql_connection(site.xdmod_for(resource).db_conn_id) as conn:
        return count_held_by_day(conn.cursor(), "job", resource.xdmod_resource, first, last)
