"""Reading what the hierarchy's sources answer: ColdFront (its answer recorded from the real instance, which
test_coldfront.py re-checks against the live service), the site's mapping file. The OpenShift and Keystone
sources are read from the real Prometheus and Keystone in test_hierarchy_dag.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import COLDFRONT_SEED
from xdmod_usage.config import ColdFrontHierarchySource
from xdmod_usage.hierarchy_sources import HierarchySourceError, read_coldfront, read_mapping_file

ROOT = Path(__file__).resolve().parent.parent
RECORDED = json.loads((ROOT / "tests" / "data" / "coldfront-1.1.10-api.json").read_text())["answer"]
SOURCE = ColdFrontHierarchySource.model_validate({
    "type": "coldfront", "conn_id": "coldfront", "resources": {
        "OpenShift Prod": {"xdmod_resource": "ocp_prod", "group_attribute": "Allocated Project ID"},
        "OpenStack Cloud": {"xdmod_resource": "cloud_openstack", "group_attribute": "Allocated Project Name",
                            "cloud": True},
        "HPC Cluster": {"xdmod_resource": "hpc1", "group_attribute": "slurm_account_name"}}})  # fmt: skip


def expected_from_seed(source: ColdFrontHierarchySource) -> tuple[set, set]:
    """What ColdFront holds, from the seed loaded into it: one attribution per allocation that names its group."""
    projects = {project["title"]: project for project in COLDFRONT_SEED["projects"]}
    found, skipped = set(), set()
    for allocation in COLDFRONT_SEED["allocations"]:
        target = source.resources[allocation["resource"]]
        project = projects[allocation["project"]]
        group = allocation.get("attributes", {}).get(target.group_attribute)
        if group is None:
            skipped.add(allocation["project"])
            continue
        found.add((group, project["pi"], project["attributes"]["Institution"], project["title"],
                   target.xdmod_resource if target.cloud else None))  # fmt: skip
    return found, skipped


def test_coldfront_allocations_name_the_groups_and_their_projects_give_pi_institution_title():
    result = read_coldfront(RECORDED, SOURCE)
    got = {(a.project, a.pi, a.organization, a.title, a.cloud_resource) for a in result.attributions}
    want, unprovisioned = expected_from_seed(SOURCE)
    assert got == want
    assert {item["project"] for item in result.skipped} == unprovisioned  # the pending allocation: no group yet
    assert all("no 'Allocated Project ID' attribute yet" in item["reason"] for item in result.skipped)
    names = {(p.username, p.first, p.last) for p in result.people}
    assert {(u["username"], u["first_name"], u["last_name"]) for u in COLDFRONT_SEED["users"]} <= names


def test_coldfront_status_filter_and_unmapped_resources():
    only_active = SOURCE.model_copy(update={"allocation_statuses": ["Active"]})
    result = read_coldfront(RECORDED, only_active)
    assert "seismic_legacy" not in {a.project for a in result.attributions}
    assert any("status 'Expired' not in allocation_statuses" in item["reason"] for item in result.skipped)
    hpc_only = SOURCE.model_copy(update={"resources": {"HPC Cluster": SOURCE.resources["HPC Cluster"]}})
    assert {a.project for a in read_coldfront(RECORDED, hpc_only).attributions} == {
        "arctic_mb", "climate_ens", "seismic_legacy"}  # fmt: skip


def test_mapping_file_mistakes_name_the_file_and_key(tmp_path):
    good = read_mapping_file(str(ROOT / "include" / "hierarchy-mapping.example.yaml"))
    assert {a.project for a in good.attributions} == {"smith_lab", "li-genomics"}
    assert [a.cloud_resource for a in good.attributions if a.cloud_resource] == ["cloud_openstack"]
    bad = tmp_path / "map.yaml"
    bad.write_text("projects:\n  p1: {pi: x, organisation: eng}\n")
    with pytest.raises(HierarchySourceError, match=r"map.yaml: projects.p1.organisation: unknown key"):
        read_mapping_file(str(bad))
    bad.write_text("organizations: {eng: Engineering}\nprojects:\n  p1: {pi: x, organization: med}\n")
    assert read_mapping_file(str(bad)).skipped == [{"project": "p1", "reason": "organization 'med' is not under "
                                                    "organizations"}]  # fmt: skip
    with pytest.raises(HierarchySourceError, match="cannot read"):
        read_mapping_file(str(tmp_path / "missing.yaml"))
