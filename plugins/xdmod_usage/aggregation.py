"""Which ingests an aggregation run must cover, and from which timestamp.

Why: XDMoD should aggregate a realm once after the day's ingests, not after each. The source DAGs'
ingest tasks record an asset event per realm and resource carrying the timestamp taken on XDMoD's
database server before their shred; the aggregation DAG of the realm runs on any of them and
aggregates from the earliest timestamp among the ingests not yet covered. It covers the ingests it
triggered on and those that finished while it waited (listed when its aggregation starts), and
records which it covered; a later run triggered by those finds nothing left and skips. An ingest
is covered only by an aggregation that started after the ingest finished, with a timestamp no later
than the ingest's, so nothing ingested is ever left out. Core library: no Airflow.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from .config import Resource

Realm = Literal["job", "cloud"]
REALM_OF_KIND: dict[str, Realm] = {"slurm": "job", "openshift": "job", "openstack": "cloud"}
REALM_DAG_NAME = {"job": "jobs", "cloud": "cloud"}
# Previous aggregations read back to find what they covered.
HISTORY_LIMIT = 50


def ingest_asset_name(realm: Realm, resource: str) -> str:
    """The asset a resource's ingest task updates (one per realm and resource)."""
    return f"xdmod-ingest.{realm}.{resource}"


def aggregated_asset_name(realm: Realm) -> str:
    """The asset an aggregation updates: its events say which ingests it covered."""
    return f"xdmod-aggregated.{realm}"


def ingest_extra(ingest_id: str, resource: Resource, day: str, last_modified_start: str, dry_run: bool,
                 **more: Any) -> dict[str, Any]:  # fmt: skip
    """What an ingest task attaches to its asset event (read back by IngestEvent.from_event)."""
    return {"ingest_id": ingest_id, "resource": resource.name, "xdmod_resource": resource.xdmod_resource,
            "realm": REALM_OF_KIND[resource.kind], "day": day, "last_modified_start": last_modified_start,
            "dry_run": dry_run, **more}  # fmt: skip


def ingest_note(extra: dict[str, Any], run_id: str | None) -> dict[str, Any]:
    """What the day's manifest records of the ingest (DayStage.annotate "xdmod_ingest")."""
    note = {"run_id": run_id, "dry_run": extra["dry_run"], "last_modified_start": extra["last_modified_start"]}
    return {**note, "reload": True} if extra.get("reload") else note


@dataclass(frozen=True)
class IngestEvent:
    """One ingest as its asset event describes it (``extra`` written by the ingest task)."""

    ingest_id: str
    resource: str
    day: str
    last_modified_start: str  # 'YYYY-MM-DD HH:MM:SS' on XDMoD's database server
    dry_run: bool
    timestamp: dt.datetime  # when Airflow recorded it (after the ingest finished)

    @classmethod
    def from_event(cls, extra: dict[str, Any], timestamp: dt.datetime) -> IngestEvent | None:
        """None for an event that is not an ingest of this package (e.g. created by hand in the UI)."""
        try:
            return cls(str(extra["ingest_id"]), str(extra["resource"]), str(extra["day"]),
                       str(extra["last_modified_start"]), bool(extra.get("dry_run", False)), timestamp)  # fmt: skip
        except KeyError:
            return None

    def as_dict(self) -> dict[str, Any]:
        return {"ingest_id": self.ingest_id, "resource": self.resource, "day": self.day,
                "last_modified_start": self.last_modified_start, "dry_run": self.dry_run}  # fmt: skip


@dataclass(frozen=True)
class AggregationPlan:
    """What one aggregation run does: aggregate from ``last_modified_start`` (None: nothing to do)."""

    last_modified_start: str | None
    aggregate: list[IngestEvent]  # the ingests whose rows this run aggregates
    covered: list[str]  # ingest ids recorded as done once the run succeeds
    already_covered: int
    dry_run: bool

    def as_dict(self) -> dict[str, Any]:
        return {"last_modified_start": self.last_modified_start, "dry_run": self.dry_run,
                "ingests": [event.as_dict() for event in self.aggregate], "covered": self.covered,
                "already_covered": self.already_covered}  # fmt: skip


def covered_ids(previous: Iterable[dict[str, Any]]) -> set[str]:
    """Ingest ids earlier aggregations covered (from their events' extra)."""
    return {str(ingest_id) for extra in previous for ingest_id in extra.get("covered", [])}


def plan(events: Iterable[IngestEvent], previous: Iterable[dict[str, Any]], dry_run: bool) -> AggregationPlan:
    """The run's plan from every ingest event it knows of and the earlier aggregations' records.

    A real run aggregates the real ingests not yet covered, from the earliest of their timestamps,
    and covers every pending ingest. A dry run (nothing reaches XDMoD) shows the command for all
    pending ingests but covers only dry-run ingests: real ones stay pending for a real aggregation.
    """
    done = covered_ids(previous)
    unique = {event.ingest_id: event for event in sorted(events, key=lambda e: (e.timestamp, e.ingest_id))}
    pending = [event for ingest_id, event in unique.items() if ingest_id not in done]
    already = len(unique) - len(pending)
    if dry_run:
        chosen = pending
        covered = [event.ingest_id for event in pending if event.dry_run]
    else:
        chosen = [event for event in pending if not event.dry_run]
        covered = [event.ingest_id for event in pending]
    start = min((event.last_modified_start for event in chosen), default=None)
    return AggregationPlan(start, chosen, sorted(covered), already, dry_run)
