"""Corrections by reload: how a policy change or a fixed bug reaches days XDMoD already holds without
double counting.

XDMoD never deletes rows by itself, and its duplicate key includes job ids and times: re-shredding a day
whose rows changed adds them beside the old ones. So a reload deletes the resource's jobs in XDMoD
(XDMoD 11.5: ``xdmod-admin --jobs --delete``, every job of that resource, whatever the date; 11.0: only
``--jobs --truncate`` exists, every job of every resource, so every job resource is reloaded), rebuilds
every archived day from its raw archive with today's code and policies, and shreds them all again in
day order. Nothing is deleted before every day of every resource in scope has a complete manifest and
its raw archive. Core library: no Airflow.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from .config import Resource, SiteConfig
from .freshness import check_files
from .progress import EVERY
from .staging import DayStage, Store
from .window import UsageWindow
from .xdmod_commands import XdmodCommand, XdmodInput, delete_resource_jobs, shred_slurm_days, truncate_jobs

JOB_KINDS = ("slurm", "openshift")
RAW_NAMES = {"slurm": "raw.sacct.gz", "openshift": "raw.openshift.json.gz"}


class ReloadRefusedError(ValueError):
    """The reload cannot start: nothing was deleted. The message says what to fix."""


@dataclass(frozen=True)
class ReloadDay:
    """One staged day as the reload shreds it."""

    resource: str
    day: str
    name: str
    path: str  # within the day's directory (v-<hash>/<name>)
    url: str
    sha256: str
    xdmod_rows: int
    version: str

    def as_input(self) -> XdmodInput:
        return XdmodInput(self.name, self.url, self.sha256)


def scope(site: SiteConfig, resource_name: str) -> list[Resource]:
    """The resources a reload of ``resource_name`` deletes and reloads (all job resources on XDMoD 11.0)."""
    try:
        resource = site.resource(resource_name)
    except KeyError as exc:
        raise ReloadRefusedError(str(exc.args[0])) from None
    if resource.kind not in JOB_KINDS:
        raise ReloadRefusedError(
            f"{resource_name} is an {resource.kind} resource: XDMoD has no way to delete one cloud resource's "
            "events, so only job resources (slurm, openshift) can be reloaded"
        )
    if xdmod_version(site, resource_name) == "11.0":
        return [r for r in site.resources if r.kind in JOB_KINDS]
    return [resource]


def xdmod_version(site: SiteConfig, resource_name: str) -> str:
    """The XDMoD release line of the XDMoD the resource feeds (its xdmod settings, or the site's)."""
    return site.xdmod_for(site.resource(resource_name)).version


def confirmation_for(site: SiteConfig, resource_name: str) -> str:
    """What the operator types to confirm: the resource name, or that every job resource goes (11.0)."""
    return "all job resources" if xdmod_version(site, resource_name) == "11.0" else resource_name


def days_of(resource: Resource, today: dt.date) -> list[dt.date]:
    """Every day the resource has accounted: start_date to its end_date or yesterday."""
    last = today - dt.timedelta(days=1)
    if resource.end_date is not None:
        last = min(last, resource.end_date)
    count = (last - resource.start_date).days + 1
    return [resource.start_date + dt.timedelta(days=n) for n in range(max(count, 0))]


def _reload_day(stage: DayStage, resource: Resource, day: dt.date, manifest: dict[str, Any]) -> ReloadDay:
    entry = manifest["files"][manifest["staged_name"]]
    return ReloadDay(resource.name, day.isoformat(), manifest["staged_name"], entry["path"], stage.url_of(entry),
                     entry["sha256"], int(manifest["counts"]["xdmod_rows"]), manifest["version"])  # fmt: skip


def check_day_whole(store: Store, resource: Resource, day: dt.date) -> tuple[ReloadDay | None, str | None]:
    """The day as the reload shreds it, or why it cannot be rebuilt: committed whole (manifest, files with
    their sizes) and holding its raw archive. One manifest read."""
    stage = DayStage(store, resource.name, day.isoformat())
    try:
        manifest = stage.read_manifest()
    except (OSError, ValueError) as exc:
        return None, f"unreadable manifest.json: {exc}"
    problem = "no staged day (no manifest)" if manifest is None else check_files(stage, manifest)
    if problem is None and RAW_NAMES[resource.kind] not in manifest["files"]:
        problem = f"no raw archive {RAW_NAMES[resource.kind]} to rebuild the day from"
    return (None, problem) if problem else (_reload_day(stage, resource, day, manifest), None)


def staged_day(store: Store, resource: Resource, day: dt.date) -> ReloadDay:
    stage = DayStage(store, resource.name, day.isoformat())
    manifest = stage.read_manifest()
    if manifest is None:
        raise ReloadRefusedError(f"{stage.manifest_url}: not staged")
    return _reload_day(stage, resource, day, manifest)


def replay_day(store: Store, resource: Resource, day: dt.date, *, max_quarantine_share: float,
               spool_dir: str | None, progress_every: float = EVERY) -> ReloadDay:  # fmt: skip
    """Rebuild the day from its raw archive with today's code and the policy in force for that day."""
    from .openshift_pipeline import stage_openshift_day
    from .slurm_pipeline import SlurmDay, stage_slurm_day

    window = UsageWindow.for_day(day)
    previous = DayStage(store, resource.name, day.isoformat()).read_manifest() or {}
    info = {key: value for key, value in previous.get("source", {}).items() if key != "replayed_from_archive"}
    options = {"max_quarantine_share": max_quarantine_share, "spool_dir": spool_dir,
               "progress_every": progress_every}  # fmt: skip
    if resource.kind == "slurm":
        slurm_day = SlurmDay(resource.name, resource.xdmod_resource, resource.slurm_source().cluster, window)
        result = stage_slurm_day(store, slurm_day, None, info, **options)
    else:
        info = {key: value for key, value in info.items() if key not in ("type", "policy", "queries")}
        result = stage_openshift_day(store, resource.name, resource.xdmod_resource, resource.openshift_source(),
                                     window, None, source_info=info, **options)  # fmt: skip
    return _reload_day(DayStage(store, resource.name, day.isoformat()), resource, day, result.manifest)


def month_subdir(resource: Resource, month: str) -> str:
    return f"reload-{resource.xdmod_resource}-{month}"


def shred_commands(resource: Resource, input_dir: str, days: list[ReloadDay]) -> list[XdmodCommand]:
    """One shred per month of days with rows, oldest first (each pod fetches at most 31 files)."""
    months: dict[str, list[ReloadDay]] = {}
    for item in sorted(days, key=lambda d: d.day):
        if item.xdmod_rows:
            months.setdefault(item.day[:7], []).append(item)
    return [shred_slurm_days(resource.xdmod_resource, input_dir, month_subdir(resource, month),
                             [item.as_input() for item in items]) for month, items in months.items()]  # fmt: skip


def delete_command(site: SiteConfig, resource_name: str) -> XdmodCommand:
    if xdmod_version(site, resource_name) == "11.0":
        return truncate_jobs()
    return delete_resource_jobs(site.resource(resource_name).xdmod_resource)


def plan(
    site: SiteConfig, resource_name: str, store_for: Callable[[Resource], Store], today: dt.date
) -> dict[str, Any]:
    """What a reload would do, checked: resources, days, rows per resource, the XDMoD commands in order.

    Raises ReloadRefusedError (nothing deleted) when any day is incomplete or lacks its raw archive.
    """
    resources = scope(site, resource_name)
    input_dir = site.xdmod_for(site.resource(resource_name)).input_dir
    problems: list[dict[str, str]] = []
    per_resource: dict[str, Any] = {}
    for resource in resources:
        days, staged = days_of(resource, today), []
        store = store_for(resource)
        for day in days:
            item, problem = check_day_whole(store, resource, day)
            if problem:
                problems.append({"resource": resource.name, "day": day.isoformat(), "problem": problem})
            else:
                staged.append(item)
        first, last = (str(days[0]), str(days[-1])) if days else (None, None)
        per_resource[resource.name] = {"xdmod_resource": resource.xdmod_resource, "first_day": first,
                                       "last_day": last, "days": len(days),
                                       "xdmod_rows": sum(item.xdmod_rows for item in staged),
                                       "shreds": len(shred_commands(resource, input_dir, staged))}  # fmt: skip
    if problems:
        shown = "; ".join(f"{p['resource']} {p['day']}: {p['problem']}" for p in problems[:20])
        more = f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""
        raise ReloadRefusedError(f"{len(problems)} day(s) cannot be rebuilt, so nothing was deleted: {shown}{more}. "
                                 "Restage or restore those days first (README: Corrections by reload).")  # fmt: skip
    delete = list(delete_command(site, resource_name).argv)
    return {"resources": per_resource, "xdmod_version": xdmod_version(site, resource_name), "delete": delete,
            "confirm": confirmation_for(site, resource_name)}  # fmt: skip


def days_as_dicts(days: list[ReloadDay]) -> list[dict[str, Any]]:
    return [asdict(item) for item in days]
