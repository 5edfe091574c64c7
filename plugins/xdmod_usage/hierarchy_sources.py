"""The hierarchy's sources: each turns what one system says into attributions (project -> PI,
organization, title) and people (username -> first, last names).

Why fetch and read apart: every answer a source gave is archived with the run (raw.hierarchy.json.gz),
and reading works on that answer alone, so a run can be explained, and tested, without the system.
Every project a source cannot attribute is listed with the reason (``skipped``), never dropped
silently. Core library: no Airflow; the task code hands in clients built from Airflow connections.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .config import (
    ColdFrontHierarchySource,
    OpenShiftHierarchySource,
    OpenShiftSource,
    OpenStackHierarchySource,
    Resource,
    format_errors,
)
from .hierarchy_build import Attribution, Person


class HierarchySourceError(ValueError):
    """A source's data cannot be read at all (a mapping file with a mistake): names the place and why."""


@dataclass
class SourceResult:
    """What one source said: attributions, people, what it could not use (with why), and its raw answer."""

    name: str
    attributions: list[Attribution] = field(default_factory=list)
    people: list[Person] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    raw: Any = None

    def summary(self) -> dict[str, Any]:
        return {"attributions": len(self.attributions), "people": len(self.people), "skipped": self.skipped}


# --- the site's mapping file ------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _MappedPerson(_Strict):
    first: str = ""
    last: str = ""


class _MappedProject(_Strict):
    pi: str | None = None
    organization: str | None = None
    title: str | None = None
    cloud_resources: list[str] = Field(default_factory=list)


class MappingFile(_Strict):
    """organizations: {abbrev: name}; people: {username: {first, last}}; projects: {group: {pi,
    organization, title, cloud_resources}}. The project key is the group name the usage rows carry."""

    organizations: dict[str, str] = Field(default_factory=dict)
    people: dict[str, _MappedPerson] = Field(default_factory=dict)
    projects: dict[str, _MappedProject] = Field(default_factory=dict)


def read_mapping_file(path: str) -> SourceResult:
    """The site's YAML mapping file; a mistake names the file, the key and the reason."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        data = yaml.safe_load(text) or {}
        mapping = MappingFile.model_validate(data)
    except OSError as exc:
        raise HierarchySourceError(f"{path}: cannot read the hierarchy mapping file: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise HierarchySourceError(f"{path}: not valid YAML: {exc}") from None
    except ValidationError as exc:
        raise HierarchySourceError(f"{path}: {format_errors(exc)}") from None
    result = SourceResult(f"file:{path}", raw=data)
    for project, item in sorted(mapping.projects.items()):
        if item.organization and item.organization not in mapping.organizations:
            result.skipped.append({"project": project, "reason": f"organization {item.organization!r} is not "
                                   "under organizations"})  # fmt: skip
            continue
        organization_name = mapping.organizations.get(item.organization or "")
        base = {"source": result.name, "project": project, "pi": item.pi, "organization": item.organization,
                "organization_name": organization_name, "title": item.title}  # fmt: skip
        result.attributions.append(Attribution(**base))
        result.attributions += [Attribution(**base, cloud_resource=resource) for resource in item.cloud_resources]
    result.people = [Person(result.name, name, person.first, person.last)
                     for name, person in sorted(mapping.people.items())]  # fmt: skip
    return result


# --- ColdFront ----------------------------------------------------------------------------------------


def _attributes(items: list[dict[str, Any]] | None, type_key: str) -> dict[str, str]:
    return {str(item.get(type_key)): str(item.get("value") or "") for item in items or []}


def read_coldfront(answer: dict[str, Any], source: ColdFrontHierarchySource) -> SourceResult:
    """ColdFront's /api/projects, /api/allocations and /api/users answers (``ColdFrontApi.fetch_all``).

    Each allocation on a configured resource gives one attribution: the group is its ``group_attribute``
    (what the resource's usage rows carry), the PI and title are its project's. Allocations are joined to
    projects by id (the allocation list names projects by title, which ColdFront does not keep unique).
    """
    result = SourceResult("coldfront", raw=answer)
    project_of: dict[int, dict[str, Any]] = {}
    for project in answer.get("projects", []):
        for allocation in project.get("allocations") or []:
            project_of[allocation["id"]] = project
    for allocation in sorted(answer.get("allocations", []), key=lambda item: item["id"]):
        label = f"allocation {allocation['id']}"
        names = [part.strip() for part in str(allocation.get("resource") or "").split(",")]
        mapped = [(name, source.resources[name]) for name in names if name in source.resources]
        if not mapped:
            continue  # a resource XDMoD does not account
        if source.allocation_statuses is not None and allocation.get("status") not in source.allocation_statuses:
            result.skipped.append({"project": str(allocation.get("project")), "reason": f"{label}: status "
                                   f"{allocation.get('status')!r} not in allocation_statuses"})  # fmt: skip
            continue
        project = project_of.get(allocation["id"])
        if project is None:
            result.skipped.append({"project": str(allocation.get("project")),
                                   "reason": f"{label}: not listed under any project"})  # fmt: skip
            continue
        attributes = _attributes(allocation.get("allocation_attributes"), "allocation_attribute_type")
        project_attributes = _attributes(project.get("project_attributes"), "proj_attr_type")
        organization = project_attributes.get(source.organization_attribute or "") or None
        for resource_name, target in mapped:
            group = attributes.get(target.group_attribute) if target.group_attribute else project.get("title")
            if not group:
                result.skipped.append({"project": str(project.get("title")), "reason": f"{label} on "
                                       f"{resource_name}: no {target.group_attribute!r} attribute yet"})  # fmt: skip
                continue
            result.attributions.append(Attribution(
                source="coldfront", project=group, pi=project.get("pi") or None, organization=organization,
                organization_name=organization, title=project.get("title"),
                cloud_resource=target.xdmod_resource if target.cloud else None))  # fmt: skip
    for user in sorted(answer.get("users", []), key=lambda item: item.get("username", "")):
        if user.get("first_name") or user.get("last_name"):
            result.people.append(Person("coldfront", user["username"], user.get("first_name") or "",
                                        user.get("last_name") or ""))  # fmt: skip
    return result


# --- OpenShift namespaces (Prometheus) ---------------------------------------------------------------


def openshift_queries(source: OpenShiftHierarchySource, resource: Resource, day: dt.date) -> dict[str, str]:
    """The two instant queries that read namespace annotations and labels, with every key the
    attribution may use (the resource's policy keys plus organization and title keys)."""
    from .openshift_queries import label_name

    policy = resource.openshift_source().policy_for(day)
    keys = sorted({*policy.pi_keys, *policy.project_keys, *policy.user_keys, *source.organization_keys,
                   *source.title_keys})  # fmt: skip
    window = f"{int(source.lookback.total_seconds())}s"
    queries = {}
    for name, prefix, metric in (("ns_annotations", "annotation", "kube_namespace_annotations"),
                                 ("ns_labels", "label", "kube_namespace_labels")):  # fmt: skip
        labels = ", ".join(sorted({label_name(prefix, key) for key in keys}))
        queries[name] = f"max by (namespace, {labels}) (max_over_time({metric}[{window}]))"
    return queries


def read_openshift(answers: dict[str, Any], source: OpenShiftHierarchySource, resource: Resource,
                   day: dt.date) -> SourceResult:  # fmt: skip
    """Namespaces attributed exactly as the resource's usage rows are (its policy in force on ``day``,
    its mapping file), so the project names here are the ones XDMoD sees in the rows."""
    from .openshift_rows import first_value, load_mapping, namespace_metadata, owner_of

    settings: OpenShiftSource = resource.openshift_source()
    policy = settings.policy_for(day)
    mapping = load_mapping(policy.mapping_file)
    metadata = namespace_metadata({"answers": {name: {"data": {"result": answers.get(name, [])}}
                                               for name in ("ns_annotations", "ns_labels")}})  # fmt: skip
    result = SourceResult(f"openshift:{resource.name}", raw=answers)

    for namespace in sorted(set(metadata) | set(mapping)):
        if not namespace:
            continue
        meta = metadata.get(namespace, {})
        owner = owner_of(namespace, meta, mapping, policy)
        if not owner.attributed:
            keys = f"{', '.join(policy.pi_keys)} / {', '.join(policy.project_keys)}"
            result.skipped.append({"project": namespace, "reason": f"no PI/project annotation or label ({keys})"})
            continue
        organization = first_value(meta, source.organization_keys)
        result.attributions.append(Attribution(
            source=result.name, project=owner.project, pi=owner.pi, organization=organization,
            title=first_value(meta, source.title_keys)))  # fmt: skip
    return result


# --- OpenStack projects (Keystone) ---------------------------------------------------------------------


def read_openstack(answer: dict[str, Any], source: OpenStackHierarchySource, resource: Resource) -> SourceResult:
    """Keystone's project list (``OpenStackApi.projects``): the PI and organization from the projects'
    properties; each project is also a cloud-project-to-pi row for the resource. The project name is
    what XDMoD's cloud events carry."""
    result = SourceResult(f"openstack:{resource.name}", raw=answer)
    if answer.get("truncated"):
        result.skipped.append({"project": "*", "reason": "Keystone truncated the project list (list_limit): "
                               "raise [DEFAULT] list_limit or [resource] list_limit"})  # fmt: skip

    def first(project: dict[str, Any], keys: list[str]) -> str | None:
        return next((str(project[key]) for key in keys if project.get(key)), None)

    for project in answer.get("projects", []):
        name = project.get("name") or ""
        if project.get("is_domain"):
            continue
        pi = first(project, source.pi_keys)
        if not pi:
            result.skipped.append({"project": name, "reason": f"no {' or '.join(source.pi_keys)} property"})
            continue
        organization = first(project, source.organization_keys)
        title = (project.get("description") if source.title == "description" else None) or name
        result.attributions.append(Attribution(
            source=result.name, project=name, pi=pi, organization=organization, title=title,
            cloud_resource=resource.xdmod_resource))  # fmt: skip
    return result
