"""sacct's command line and the subprocess handling, without a cluster."""

from __future__ import annotations

import datetime as dt
import io
import os

import pytest

from xdmod_usage.sacct import SacctError, UnknownClusterError, ensure_cluster_known, run_local, sacct_argv, sacct_env
from xdmod_usage.window import UsageWindow


def test_argv_is_xdmods_helper_call():
    assert sacct_argv("hpc1", UsageWindow.for_day(dt.date(2026, 11, 20))) == [
        "sacct", "--allusers", "--parsable2", "--noheader", "--allocations", "--duplicates", "--clusters", "hpc1",
        "--format", "jobid,jobidraw,cluster,partition,qos,account,group,gid,user,uid,submit,eligible,start,end,"
        "elapsed,exitcode,state,nnodes,ncpus,reqcpus,reqmem,reqtres,alloctres,timelimit,nodelist,jobname",
        "--starttime", "2026-11-20T00:00:00", "--endtime", "2026-11-21T00:00:00",
    ]  # fmt: skip


def test_env_forces_utc_and_standard_time_format():
    assert sacct_env({"SLURM_CONF": "/etc/slurm/slurm.conf", "SLURM_TIME_FORMAT": "relative"}) == {
        "SLURM_CONF": "/etc/slurm/slurm.conf", "SLURM_TIME_FORMAT": "standard", "TZ": "UTC",
    }  # fmt: skip


def test_a_client_flooding_stderr_fails_cleanly_instead_of_hanging():
    """A real subprocess writing 1 MB to stderr: the pipe is drained, the error kept short."""
    argv = ["python3", "-c", "import sys; sys.stderr.write('x' * 1_000_000); print('1|2')"]
    with pytest.raises(SacctError) as info, open(os.devnull, "wb") as sink:
        run_local(argv, {}, sink, timeout=30)
    assert "exit status 0" in str(info.value) and len(str(info.value)) < 70_000


def test_stdout_streams_through_and_missing_binary_is_named():
    out = io.BytesIO()
    assert run_local(["printf", "a|b\\n"], {}, out) == 4 and out.getvalue() == b"a|b\n"
    with pytest.raises(SacctError, match="not found"):
        run_local(["/nonexistent/sacct"], {}, io.BytesIO())


def test_unknown_cluster_is_detected_from_sacctmgr_listing():
    ensure_cluster_known("hpc1", b"hpc1\n")
    with pytest.raises(UnknownClusterError, match="does not know cluster 'hpc'"):
        ensure_cluster_known("hpc", b"")
    with pytest.raises(UnknownClusterError):
        ensure_cluster_known("hpc", b"hpc1\n")
