"""Task bodies of the xdmod_hierarchy DAG: ask every source, record the changes, stage the files; import
into XDMoD only the files whose bytes XDMoD has not imported; then re-ingest, as XDMoD requires.

A source that cannot be read fails the run before anything is recorded: a partial snapshot would close
every row of the missing source in the history and reopen them the next day. The run's instant is the
snapshot's time (UTC), so the history stays in order whatever a manual run's logical date is.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from typing import Any

from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from .config import (
    ColdFrontHierarchySource,
    FileHierarchySource,
    OpenShiftHierarchySource,
    OpenStackHierarchySource,
    SiteConfig,
)
from .hierarchy_sources import SourceResult

log = logging.getLogger(__name__)


def history_connection(site: SiteConfig) -> contextlib.AbstractContextManager[Any]:
    """A MySQLdb connection to the history database (the connection's schema)."""
    from .airflow_tasks import mysql_connection

    assert site.hierarchy is not None
    return mysql_connection(site.hierarchy.db_conn_id)


def coldfront_api(source: ColdFrontHierarchySource) -> Any:
    """A ColdFrontApi from an HTTP connection: host = base URL, password = API token, extra ``verify``."""
    from airflow.sdk import BaseHook

    from .airflow_tasks import http_base_url, tls_verify
    from .coldfront_api import ColdFrontApi

    conn = BaseHook.get_connection(source.conn_id)
    verify = tls_verify(conn.extra_dejson.get("verify", True))
    timeout = source.timeout.total_seconds()
    return ColdFrontApi(
        http_base_url(conn), conn.password or "", verify=verify, timeout=timeout, retries=source.retries
    )


def read_source(site: SiteConfig, source: Any, now: dt.datetime) -> SourceResult:
    """Ask one configured source (through its Airflow connection) and read its answer."""
    from . import hierarchy_sources as sources
    from .airflow_tasks import openstack_api, prometheus_api

    if isinstance(source, FileHierarchySource):
        return sources.read_mapping_file(source.path)
    if isinstance(source, ColdFrontHierarchySource):
        return sources.read_coldfront(coldfront_api(source).fetch_all(), source)
    resource = site.resource(source.resource)
    if isinstance(source, OpenShiftHierarchySource):
        api = prometheus_api(resource.openshift_source().prometheus_conn_id)
        queries = sources.openshift_queries(source, resource, now.date())
        answers = {name: api.query(query, now.timestamp())["result"] for name, query in queries.items()}
        return sources.read_openshift(answers, source, resource, now.date())
    if isinstance(source, OpenStackHierarchySource):
        return sources.read_openstack(openstack_api(resource.openstack_source()).projects(), source, resource)
    raise AssertionError(f"unknown hierarchy source {source!r}")


def snapshot(site: SiteConfig, context: dict[str, Any]) -> dict[str, Any]:
    """Record and stage the present hierarchy, or (Param ``as_of``) regenerate the files of a past instant."""
    from . import lineage
    from .airflow_tasks import store_at
    from .hierarchy_history import HierarchyError
    from .hierarchy_pipeline import parse_instant, regenerate, take_snapshot
    from .hierarchy_sources import HierarchySourceError

    assert site.hierarchy is not None
    params = context.get("params") or {}
    store = store_at(site.staging)
    as_of = str(params.get("as_of") or "").strip()
    with history_connection(site) as conn:
        if as_of:
            try:
                instant = parse_instant(as_of)
            except ValueError as exc:
                raise AirflowFailException(str(exc)) from None
            staged = regenerate(store, conn, instant)
            log.info("regenerated the files in force at %s: %s", instant.isoformat(), staged["manifest_url"])
            for name, entry in staged["files"].items():
                log.info("  %-20s %5d rows  sha256 %s  %s", name, entry["rows"], entry["sha256"], entry["url"])
            regenerated = {**staged, "mode": "regenerated"}
            lineage.hierarchy_snapshot(context, site, regenerated, None)
            return regenerated
        now = dt.datetime.now(dt.UTC)
        try:
            results = [read_source(site, source, now) for source in site.hierarchy.sources]
        except HierarchySourceError as exc:
            raise AirflowFailException(str(exc)) from None
        for result in results:
            log.info("source %s: %s", result.name, {k: v for k, v in result.summary().items() if k != "skipped"})
            for skipped in result.skipped:
                log.warning("source %s skipped %s: %s", result.name, skipped["project"], skipped["reason"])
        try:
            every = site.tasks_for(site.hierarchy).progress_interval.total_seconds()
            staged = take_snapshot(store, conn, site.hierarchy, results, now, every)
        except HierarchyError as exc:
            raise AirflowFailException(f"the sources give a hierarchy XDMoD cannot import: {exc}") from None
    report = staged["report"]
    for conflict in report["conflicts"]:
        log.warning("conflict: %s", conflict)
    for item in report["quarantined"]:
        log.warning("quarantined project %s (%s): %s", item["project"], item["source"], item["reason"])
    log.info("history changes as of %s: %s; staged %s", staged["as_of"], staged["changes"], staged["manifest_url"])
    taken = {**staged, "mode": "snapshot"}
    lineage.hierarchy_snapshot(context, site, taken, now)
    return taken


def import_files(site: SiteConfig, context: dict[str, Any], staged: dict[str, Any]) -> dict[str, Any]:
    """Import, in XDMoD's order, the staged files XDMoD has not imported with these bytes."""
    from .airflow_tasks import run_xdmod_command, site_target
    from .hierarchy_history import last_imported, record_import
    from .hierarchy_pipeline import files_to_import
    from .lineage import hierarchy_imported
    from .xdmod_commands import XdmodInput, import_csv

    params = context.get("params") or {}
    if staged["mode"] == "regenerated" and not params.get("import_files"):
        raise AirflowSkipException("regenerated files are only staged; trigger with import_files=true to import "
                                   "them into XDMoD (a rollback of the hierarchy)")  # fmt: skip
    target = site_target(site, "hierarchy")
    with history_connection(site) as conn:
        todo = files_to_import(staged, last_imported(conn))
        if not todo:
            raise AirflowSkipException("XDMoD already imported these exact files: nothing to import")
        done = []
        for csv_file in todo:
            entry = staged["files"][csv_file]
            command = import_csv(
                csv_file, target.xdmod.input_dir, XdmodInput(entry["name"], entry["url"], entry["sha256"])
            )
            result = run_xdmod_command(target, context, command)
            if not result["dry_run"]:
                record_import(conn, csv_file, entry["sha256"], dt.datetime.fromisoformat(staged["as_of"]),
                              dt.datetime.now(dt.UTC))  # fmt: skip
                hierarchy_imported(context, site)
            done.append({"csv_file": csv_file, "rows": entry["rows"], "sha256": entry["sha256"], **result})
    return {"imported": done, "dry_run": all(item["dry_run"] for item in done)}


def reingest(site: SiteConfig, context: dict[str, Any], imported: dict[str, Any]) -> dict[str, Any]:
    """Re-ingest every day the hierarchy applies to, in chunks (XDMoD relabels data only on re-ingest)."""
    from .airflow_tasks import run_xdmod_command, site_target
    from .hierarchy_pipeline import reingest_ranges
    from .xdmod_commands import reingest as reingest_command

    ranges = reingest_ranges(site, dt.datetime.now(dt.UTC).date())
    target = site_target(site, "hierarchy")
    log.info("re-ingesting %d range(s) from %s to %s after importing %s", len(ranges), ranges[0][0], ranges[-1][1],
             ", ".join(item["csv_file"] for item in imported["imported"]))  # fmt: skip
    results = [run_xdmod_command(target, context, reingest_command(start, end), dry_run=imported["dry_run"])
               for start, end in ranges]  # fmt: skip
    return {"ranges": [[start.isoformat(), end.isoformat()] for start, end in ranges],
            "dry_run": all(result["dry_run"] for result in results)}  # fmt: skip
