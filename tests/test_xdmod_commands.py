"""XDMoD command lines, exactly as XDMoD documents them."""

import datetime as dt

import pytest

from xdmod_usage.xdmod_commands import (
    XdmodInput,
    aggregate,
    delete_resource_jobs,
    import_csv,
    ingest,
    ingest_datatype,
    reingest,
    shred_cloud,
    shred_slurm,
    shred_slurm_days,
    truncate_jobs,
)

STAGED = XdmodInput("slurm-hpc1-2026-11-20.log", "file:///s/hpc1/2026-11-20/v-1/x.log", "ab" * 32)


def test_shred_ingest_aggregate_argv():
    assert shred_slurm("hpc1", "/in", STAGED).argv == (
        "xdmod-shredder", "-r", "hpc1", "-f", "slurm", "-i", "/in/slurm-hpc1-2026-11-20.log",
    )  # fmt: skip
    assert shred_slurm("hpc1", "/in", STAGED).inputs == (STAGED,)
    assert ingest().argv == ("xdmod-ingestor", "--ingest")
    assert aggregate("job", "2026-11-21 00:31:07").argv == (
        "xdmod-ingestor", "--aggregate=job", "--last-modified-start-date", "2026-11-21 00:31:07",
    )  # fmt: skip
    assert import_csv("hierarchy", "/in", STAGED).argv[:3] == ("xdmod-import-csv", "-t", "hierarchy")


@pytest.mark.parametrize("bad", ["2026-11-21", "2026-11-21T00:31:07", "now", "2026-11-21 00:31:07; rm -rf /"])
def test_aggregate_refuses_anything_but_a_db_timestamp(bad):
    with pytest.raises(ValueError, match="YYYY-MM-DD HH:MM:SS"):
        aggregate("job", bad)


def test_resource_with_shell_characters_stays_one_argument():
    argv = shred_slurm("a b;c", "/in", STAGED).argv
    assert argv[2] == "a b;c"


EVENTS = XdmodInput("2026-11-20T00:00:00_2026-11-20T23:59:59.json", "file:///s/cloud/2026-11-20/v-1/e.json", "cd" * 32)


def test_cloud_shred_reads_the_days_own_directory_and_ingests_by_datatype():
    command = shred_cloud("cloud_openstack", "openstack", "/in", "openstack-cloud_openstack-2026-11-20", EVENTS)
    assert command.argv == (
        "xdmod-shredder", "-r", "cloud_openstack", "-f", "openstack", "-d", "/in/openstack-cloud_openstack-2026-11-20",
    )  # fmt: skip
    (placed,) = command.inputs
    assert placed.name == "openstack-cloud_openstack-2026-11-20/2026-11-20T00:00:00_2026-11-20T23:59:59.json"
    assert (placed.url, placed.sha256) == (EVENTS.url, EVENTS.sha256)
    specs = shred_cloud("cloud_openstack", "cloudresourcespecs", "/in", "d", EVENTS)
    assert specs.argv[3:5] == ("-f", "cloudresourcespecs")
    assert ingest_datatype("openstack").argv == ("xdmod-ingestor", "--datatype=openstack")
    assert aggregate("cloud", "2026-11-21 00:31:07").argv[1] == "--aggregate=cloud"


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "/abs"])
def test_cloud_subdir_must_be_one_directory_name(bad):
    with pytest.raises(ValueError, match="one directory name"):
        shred_cloud("r", "openstack", "/in", bad, EVENTS)


def test_hierarchy_import_and_reingest_of_a_range():
    item = XdmodInput("group-to-hierarchy.csv", "file:///s/_hierarchy/2026-12-01/v-1/g.csv", "ef" * 32)
    assert import_csv("group-to-hierarchy", "/in", item).argv == (
        "xdmod-import-csv", "-t", "group-to-hierarchy", "-i", "/in/group-to-hierarchy.csv",
    )  # fmt: skip
    assert reingest(dt.date(2026, 1, 1), dt.date(2026, 1, 31)).argv == (
        "xdmod-ingestor", "--start-date", "2026-01-01", "--end-date", "2026-01-31",
    )  # fmt: skip
    with pytest.raises(ValueError, match="before start"):
        reingest(dt.date(2026, 2, 1), dt.date(2026, 1, 31))


def test_reload_commands_delete_or_truncate_without_a_prompt_and_shred_days_in_order():
    # xdmod-admin asks "(yes/no)" on a terminal unless --force: in a pod that question never ends.
    assert delete_resource_jobs("hpc1").argv == ("xdmod-admin", "--jobs", "--delete=hpc1", "--force")
    assert truncate_jobs().argv == ("xdmod-admin", "--jobs", "--truncate", "--force")
    with pytest.raises(ValueError, match="not a resource code"):
        delete_resource_jobs("hpc1 --truncate")
    days = [XdmodInput(f"slurm-hpc1-2026-11-{d:02d}.log", f"file:///s/{d}", f"{d:064x}") for d in (3, 1, 2)]
    command = shred_slurm_days("hpc1", "/in", "reload-hpc1-2026-11", days)
    assert command.argv == ("xdmod-shredder", "-r", "hpc1", "-f", "slurm", "-d", "/in/reload-hpc1-2026-11")
    assert [item.name for item in command.inputs] == [f"reload-hpc1-2026-11/slurm-hpc1-2026-11-0{d}.log"
                                                      for d in (1, 2, 3)]  # fmt: skip
