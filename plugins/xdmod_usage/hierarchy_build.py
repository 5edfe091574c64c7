"""Turn what the hierarchy sources say (who is PI of which project, in which organization, who is called
what) into the rows of XDMoD's four import files.

Why a separate step: every source (the site's mapping file, ColdFront, OpenShift namespaces, Keystone
projects) speaks of the same few facts. Merging them in one place, in the configured priority, makes
the result deterministic and lets every disagreement be reported instead of silently decided by
whichever source happened to run last. Core library: no Airflow, no network.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .config import HierarchyConfig
from .hierarchy_history import Row
from .progress import EVERY, Progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Attribution:
    """One project as a source describes it. ``project`` is the group name the usage rows carry (a Slurm
    account, an OpenShift namespace's project, an OpenStack project name)."""

    source: str
    project: str
    pi: str | None
    organization: str | None = None
    organization_name: str | None = None
    title: str | None = None
    cloud_resource: str | None = None  # an XDMoD cloud resource this project runs on: a cloud-project-to-pi row


@dataclass(frozen=True)
class Person:
    """A user's or PI's display name (XDMoD's names file: username, first, last)."""

    source: str
    username: str
    first: str
    last: str


@dataclass
class BuildReport:
    """What the merge decided, for the manifest and the task log: nothing is dropped without a line here."""

    projects: int = 0
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    quarantined: list[dict[str, str]] = field(default_factory=list)
    by_source: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"projects": self.projects, "conflicts": self.conflicts, "quarantined": self.quarantined,
                "by_source": dict(sorted(self.by_source.items()))}  # fmt: skip


Snapshot = dict[str, list[tuple[Row, str]]]
FIELDS = ("pi", "organization", "title")  # organization names are chosen per organization (build_snapshot)


def merge(attributions: Iterable[Attribution], report: BuildReport) -> dict[str, dict[str, Any]]:
    """One description per project: each field from the first source (in priority order) that has it.

    A later source giving a different non-empty value is a conflict: recorded, never applied.
    """
    by_project: dict[str, list[Attribution]] = {}
    for item in attributions:
        by_project.setdefault(item.project, []).append(item)
        report.by_source[item.source] = report.by_source.get(item.source, 0) + 1
    merged: dict[str, dict[str, Any]] = {}
    for project, items in sorted(by_project.items()):
        chosen: dict[str, Any] = {"project": project, "source": items[0].source}
        for name in FIELDS:
            kept = next(((getattr(i, name), i.source) for i in items if getattr(i, name)), (None, None))
            chosen[name] = kept[0]
            for item in items:
                value = getattr(item, name)
                if value and value != kept[0]:
                    report.conflicts.append({"project": project, "field": name, "kept": kept[0], "from": kept[1],
                                             "ignored": value, "ignored_from": item.source})  # fmt: skip
        chosen["cloud_resources"] = sorted({item.cloud_resource for item in items if item.cloud_resource})
        merged[project] = chosen
    report.projects = len(merged)
    return merged


def build_snapshot(
    attributions: Iterable[Attribution],
    people: Iterable[Person],
    config: HierarchyConfig,
    progress_every: float = EVERY,
) -> tuple[Snapshot, BuildReport]:
    """The four files' rows (each with the source it came from) for the configured levels and group field.

    A project that cannot be placed (no PI where the PI is a level or the group; a unit name used on two
    levels) is quarantined with the reason: its jobs stay on XDMoD's Unknown unit until it is fixed.
    Logs the projects placed every ``progress_every`` seconds.
    """
    report = BuildReport()
    attributions = list(attributions)
    projects = merge(attributions, report)
    # An organization's name: the first source (in priority order) that knows one, whichever project said it.
    org_names: dict[str, str] = {}
    for item in attributions:
        if item.organization and item.organization_name:
            org_names.setdefault(item.organization, item.organization_name)
    names: dict[str, tuple[Row, str]] = {}
    for person in people:  # first source wins, as for projects
        names.setdefault(person.username, ((person.username, person.first, person.last), person.source))

    units: dict[str, tuple[Row, str, str]] = {}  # abbrev -> (row, source, level)
    groups: dict[str, tuple[Row, str]] = {}
    cloud: dict[tuple[str, str], tuple[Row, str]] = {}
    needs_pi = "pi" in config.levels or config.group_field == "pi"
    progress = Progress("hierarchy build", len(projects), log, progress_every, unit="projects")
    for project, facts in projects.items():
        progress.add()
        source, pi = facts["source"], facts["pi"]
        if needs_pi and not pi:
            report.quarantined.append({"project": project, "source": source, "reason": "no PI in any source"})
            continue
        organization = facts["organization"] or config.default_organization
        default_name = config.default_organization_name if organization == config.default_organization else None
        labels = {
            "organization": (organization, org_names.get(organization) or default_name or organization),
            "pi": (pi or "", _display_name(pi or "", names)),
            "project": (project, facts["title"] or project),
        }
        rows, parent = [], ""
        for level in config.levels:
            abbrev, description = labels[level]
            rows.append((level, (abbrev, description, parent)))
            parent = abbrev
        clash, mine = None, {}
        for level, row in rows:
            known = units[row[0]][2] if row[0] in units else mine.setdefault(row[0], level)
            if known != level:
                clash = f"{row[0]!r} is a {known} and a {level}"
                break
        if clash:
            report.quarantined.append({"project": project, "source": source, "reason": f"unit name clash: {clash}"})
            continue
        for level, row in rows:
            known = units.setdefault(row[0], (row, source, level))
            if known[0] != row:  # e.g. a PI under two organizations: the first project (sorted) decides
                report.conflicts.append({"unit": row[0], "level": level, "kept": list(known[0]),
                                         "ignored": list(row), "ignored_from": source})  # fmt: skip
        group = project if config.group_field == "project" else str(pi)
        groups.setdefault(group, ((group, rows[-1][1][0]), source))
        for resource in facts["cloud_resources"]:
            if pi:
                cloud[(resource, project)] = ((pi, project, resource), source)

    progress.done()
    snapshot: Snapshot = {
        "hierarchy": sorted((row, source) for row, source, _level in units.values()),
        "group-to-hierarchy": sorted(groups.values()),
        "names": sorted(names.values()),
        "cloud-project-to-pi": sorted(cloud.values()),
    }
    return snapshot, report


def _display_name(username: str, names: dict[str, tuple[Row, str]]) -> str:
    if username in names:
        _, first, last = names[username][0]
        return " ".join(part for part in (first, last) if part) or username
    return username
