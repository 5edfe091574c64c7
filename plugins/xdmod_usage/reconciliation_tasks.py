"""Airflow side of the daily reconciliation: after XDMoD ingested a resource-day, count what XDMoD's
database holds for it and compare with what XDMoD's own rules say it should hold for the staged file.

A mismatch fails the task (so the failure alert carries both numbers) and is recorded in the day's
manifest; so is a pass. In a dry run XDMoD ingested nothing: the expectation is computed and
recorded as not checked.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from .aggregation import REALM_OF_KIND
from .config import Resource, SiteConfig

log = logging.getLogger(__name__)


def _read_file(manifest: dict[str, Any], realm: str) -> dict[str, Any]:
    """The staged file the expectation is computed from: the rows (jobs) or the events (cloud)."""
    return manifest["files"][manifest["staged_name"] if realm == "job" else manifest["xdmod_inputs"]["events"]]


def _expected(stage: Any, manifest: dict[str, Any], realm: str, window: Any) -> tuple[Any, int | None]:
    from .xdmod_expected import expected_cloud_events, expected_job_rows

    if realm == "job":
        with stage.open_entry(manifest["files"][manifest["staged_name"]]) as handle:
            return expected_job_rows(handle, window.start, window.end), manifest["counts"].get("xdmod_rows")
    events_name = manifest["xdmod_inputs"]["events"]
    with stage.open_entry(manifest["files"][events_name]) as handle:
        events = json.load(handle)
    return expected_cloud_events(events, window.start, window.end), manifest["counts"].get("staged")


def reconcile_day(site: SiteConfig, resource: Resource, context: dict[str, Any], staged: dict[str, Any]) -> dict:
    """Compare XDMoD's rows for the resource-day with the independent expectation; fail on a mismatch."""
    from .airflow_tasks import staging_store, window_from_context, xdmod_dry_run
    from .staging import DayStage, StagingError

    window = window_from_context(context)
    realm = REALM_OF_KIND[resource.kind]
    stage = DayStage(staging_store(site, resource), resource.name, window.day.isoformat())
    manifest = stage.read_manifest()
    if manifest is None or manifest.get("version") != staged["version"]:
        raise AirflowFailException(f"{stage.manifest_url}: the day was restaged since this run staged version "
                                   f"{staged['version']}: rerun the whole run")  # fmt: skip
    expected, claim = _expected(stage, manifest, realm, window)
    xdmod = site.xdmod_for(resource)
    from . import lineage

    read = [stage.url_of(_read_file(manifest, realm))]
    dag_run = context.get("dag_run")
    run_id = getattr(dag_run, "run_id", None)
    if xdmod_dry_run(xdmod, context):
        from .reconciliation import unchecked_note

        note = unchecked_note(expected, claim, run_id)
        log.info("DRY RUN reconciliation of %s %s: XDMoD should hold %d %s rows (our writer claims %s); "
                 "include/sql/reconcile_%s.sql would count them on connection %r", resource.xdmod_resource,
                 window.day, expected.rows, realm, claim, realm, xdmod.db_conn_id)  # fmt: skip
        stage.annotate(staged["version"], "reconciliation", note)
        lineage.reconciled(context, xdmod, realm, False, [stage.manifest_url], read)
        return note

    from .airflow_tasks import mysql_connection
    from .reconciliation import checked_note, reconcile

    with mysql_connection(xdmod.db_conn_id) as conn:
        result = reconcile(conn.cursor(), realm, resource.xdmod_resource, window.start, window.end, expected, claim)
    note = checked_note(result, run_id)
    try:
        stage.annotate(staged["version"], "reconciliation", note)
    except StagingError as exc:
        raise AirflowFailException(str(exc)) from None
    lineage.reconciled(context, xdmod, realm, True, [stage.manifest_url], read)
    log.info("reconciliation: %s", result.message())
    if not result.writer_agrees:
        log.warning("our writer's count differs from XDMoD's rules (XDMoD's data are as they should be): %s",
                    result.message())  # fmt: skip
    if not result.ok:
        raise AirflowFailException(f"reconciliation failed: {result.message()}")
    return note
