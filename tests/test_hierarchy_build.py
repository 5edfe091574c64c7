"""Merging the hierarchy's sources into XDMoD's four files: priority, conflicts, quarantine, levels and
group field, and the CSV rules XDMoD's importer imposes. Pure: no service."""

from __future__ import annotations

import csv
import io

import pytest

from xdmod_usage.config import HierarchyConfig
from xdmod_usage.hierarchy_build import Attribution, Person, build_snapshot
from xdmod_usage.hierarchy_history import HierarchyError, csv_bytes, validate

FILE = {"type": "file", "path": "/etc/x.yaml"}


def config(**changes) -> HierarchyConfig:
    return HierarchyConfig.model_validate({"sources": [FILE], **changes})


def rows(snapshot, name):
    return [row for row, _source in snapshot[name]]


ATTRIBUTIONS = [
    Attribution("file", "smith_lab", "zsmith", "eng", "College of Engineering", "Smith Lab"),
    Attribution("coldfront", "smith_lab", "someone-else", "med", None, "Other title"),  # lower priority: conflicts
    Attribution("coldfront", "li-genomics", "jli", "med", "med", 'Li, Genomics "G"', "cloud_openstack"),
    Attribution("coldfront", "li-genomics", "jli", None, None, None),
    Attribution("openshift:ocp", "orphan-ns", None),
]
PEOPLE = [Person("file", "zsmith", "Zoë", "Smith, Jr."), Person("coldfront", "zsmith", "Z", "S"),
          Person("coldfront", "jli", "李", "小龙")]  # fmt: skip


def test_first_source_wins_and_every_disagreement_is_reported():
    snapshot, report = build_snapshot(ATTRIBUTIONS, PEOPLE, config())
    assert rows(snapshot, "hierarchy") == sorted([
        ("eng", "College of Engineering", ""), ("zsmith", "Zoë Smith, Jr.", "eng"),
        ("smith_lab", "Smith Lab", "zsmith"), ("med", "med", ""), ("jli", "李 小龙", "med"),
        ("li-genomics", 'Li, Genomics "G"', "jli"),
    ])  # fmt: skip
    assert rows(snapshot, "group-to-hierarchy") == [("li-genomics", "li-genomics"), ("smith_lab", "smith_lab")]
    assert rows(snapshot, "names") == [("jli", "李", "小龙"), ("zsmith", "Zoë", "Smith, Jr.")]
    assert rows(snapshot, "cloud-project-to-pi") == [("jli", "li-genomics", "cloud_openstack")]
    fields = {(c["project"], c["field"]): (c["kept"], c["ignored"]) for c in report.conflicts if "field" in c}
    assert fields == {("smith_lab", "pi"): ("zsmith", "someone-else"), ("smith_lab", "organization"): ("eng", "med"),
                      ("smith_lab", "title"): ("Smith Lab", "Other title")}  # fmt: skip
    assert report.quarantined == [{"project": "orphan-ns", "source": "openshift:ocp", "reason": "no PI in any source"}]
    assert report.by_source == {"file": 1, "coldfront": 3, "openshift:ocp": 1}
    validate({name: rows(snapshot, name) for name in snapshot})


def test_levels_and_group_field_choose_what_groups_map_to():
    snapshot, _ = build_snapshot(ATTRIBUTIONS[:1], PEOPLE, config(levels=["organization", "pi"], group_field="pi"))
    assert rows(snapshot, "hierarchy") == [("eng", "College of Engineering", ""), ("zsmith", "Zoë Smith, Jr.", "eng")]
    assert rows(snapshot, "group-to-hierarchy") == [("zsmith", "zsmith")]
    snapshot, _ = build_snapshot(ATTRIBUTIONS[:1], PEOPLE, config(levels=["organization"]))
    assert rows(snapshot, "group-to-hierarchy") == [("smith_lab", "eng")]
    # A project without an organization goes to the configured default unit; without a PI it can still be placed
    # when the PI is neither a level nor the group.
    snapshot, report = build_snapshot([Attribution("x", "p1", None)], [], config(levels=["organization", "project"]))
    assert rows(snapshot, "hierarchy") == [("p1", "p1", "unassigned"), ("unassigned", "Unassigned", "")]
    assert report.quarantined == []


def test_a_pi_group_cannot_map_to_one_of_its_projects():
    with pytest.raises(ValueError, match="a pi group cannot map to the bottom level 'project'"):
        config(group_field="pi")
    with pytest.raises(ValueError, match="top to bottom, each once"):
        config(levels=["project", "organization"])


def test_a_unit_name_on_two_levels_quarantines_the_project_instead_of_merging_units():
    clash = [Attribution("file", "eng", "zsmith", "eng", "Engineering"), *ATTRIBUTIONS[:1]]
    snapshot, report = build_snapshot(clash, PEOPLE, config())
    assert report.quarantined == [{"project": "eng", "source": "file", "reason": "unit name clash: 'eng' is a "
                                   "organization and a project"}]  # fmt: skip
    assert ("eng", "eng") not in rows(snapshot, "group-to-hierarchy")


def test_the_files_read_back_with_xdmods_csv_rules():
    snapshot, _ = build_snapshot(ATTRIBUTIONS, PEOPLE, config())
    data = csv_bytes("hierarchy", rows(snapshot, "hierarchy"))
    parsed = [tuple(row) for row in csv.reader(io.StringIO(data.decode()))]
    assert sorted(parsed) == sorted(rows(snapshot, "hierarchy"))
    assert [row[0] for row in parsed][:2] == ["eng", "med"]  # parents first
    assert b'"Li, Genomics ""G""",jli' in data and "Zoë Smith, Jr.".encode() in data


@pytest.mark.parametrize(
    ("snapshot", "message"),
    [
        ({"names": [("u", 'A\\"', "B")]}, "backslash in a quoted field"),
        ({"names": [("u", "A", "B\nC")]}, "line break"),
        ({"names": [("Smith", "A", "B"), ("smith", "C", "D")]}, "differ only in case"),
        ({"hierarchy": [("x" * 101, "X", "")]}, "is 101 characters, XDMoD keeps 100"),
    ],
)
def test_what_xdmods_importer_would_misread_is_refused(snapshot, message):
    with pytest.raises(HierarchyError, match=message):
        validate(snapshot)


def test_an_organization_is_named_by_the_first_source_that_knows_its_name():
    # "alpha" (Keystone: an organization key, no name) sorts first; the mapping file names the organization.
    attributions = [Attribution("file", "zeta", "zsmith", "eng", "College of Engineering"),
                    Attribution("openstack:cloud", "alpha", "zsmith", "eng")]  # fmt: skip
    snapshot, report = build_snapshot(attributions, PEOPLE, config())
    assert ("eng", "College of Engineering", "") in rows(snapshot, "hierarchy")
    assert not [c for c in report.conflicts if c.get("unit") == "eng"]
