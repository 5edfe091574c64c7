"""XDMoD command lines, exactly as XDMoD documents them."""

import pytest

from xdmod_usage.xdmod_commands import (
    XdmodInput,
    aggregate,
    import_csv,
    ingest,
    ingest_datatype,
    shred_cloud,
    shred_slurm,
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
