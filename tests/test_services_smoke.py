"""Smoke test of the real Slurm accounting run by scripts/services/slurm.sh.

Run it after ``sudo scripts/services/slurm.sh start`` (optionally after ``scripts/slurm_workload.py`` too).
It FAILS, never skips, when the services are not running. It calls sacct exactly as XDMoD's Slurm
shredder does and checks the shape of every line.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("XU_STATE_DIR", ROOT / ".services"))
ENV_FILE = STATE / "slurm" / "env.sh"
HINT = f"Start the test services first: sudo scripts/services/slurm.sh start (state dir {STATE})."

# The --format list of XDMoD's `xdmod-slurm-helper` (26 fields; jobname last).
XDMOD_FORMAT = (
    "jobid,jobidraw,cluster,partition,qos,account,group,gid,user,uid,submit,eligible,start,end,elapsed,"
    "exitcode,state,nnodes,ncpus,reqcpus,reqmem,reqtres,alloctres,timelimit,nodelist,jobname"
)
NFIELDS = len(XDMOD_FORMAT.split(","))
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$")

pytestmark = pytest.mark.slurm


def read_env_file(path: Path) -> dict[str, str]:
    """The `export NAME=VALUE` lines written by scripts/services/*.sh."""
    env = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line.startswith("export ") and "=" in line:
            name, _, value = line.removeprefix("export ").partition("=")
            parts = shlex.split(value)
            env[name.strip()] = parts[0] if parts else ""
    return env


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)


def slurm_env() -> dict[str, str]:
    """Client environment from env.sh; fails (in the test, so it is reported FAILED) if nothing runs."""
    if not ENV_FILE.is_file():
        pytest.fail(f"Slurm test services are not running: {ENV_FILE} does not exist. {HINT}")
    for tool in ("sacct", "scontrol", "sbatch", "squeue"):
        if shutil.which(tool) is None:
            pytest.fail(f"`{tool}` is not installed. {HINT}")
    env = {**os.environ, **read_env_file(ENV_FILE), "TZ": "UTC"}
    ping = run(["scontrol", "ping"], env)
    if "is UP" not in ping.stdout:
        first = (ping.stdout + ping.stderr).strip().splitlines()[:1]
        pytest.fail(f"Slurm test services are not running (scontrol ping: {' '.join(first)}). {HINT}")
    return env


def xdmod_sacct(env: dict[str, str]) -> list[str]:
    """sacct as XDMoD calls it, over a window around the daemons' (possibly fake) clock."""
    now = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=int(env.get("XU_SLURM_FAKE_OFFSET_SECONDS", "0") or 0))
    fmt = "%Y-%m-%dT%H:%M:%S"
    argv = [
        "sacct", "--allusers", "--parsable2", "--noheader", "--allocations", "--duplicates",
        "--clusters", env["XU_SLURM_CLUSTER"], "--format", XDMOD_FORMAT,
        "--starttime", (now - dt.timedelta(days=30)).strftime(fmt),
        "--endtime", (now + dt.timedelta(days=1)).strftime(fmt),
    ]  # fmt: skip
    proc = run(argv, env)
    if proc.returncode != 0:
        pytest.fail(f"sacct failed (exit {proc.returncode}): {proc.stderr.strip()}. Is slurmdbd up? {HINT}")
    return [line for line in proc.stdout.splitlines() if line]


def submit_one_job(env: dict[str, str]) -> str:
    """Make sure at least one finished job exists (fresh cluster, no workload run yet)."""
    proc = run(["sbatch", "--parsable", "--job-name=xu-smoke", "--chdir=/tmp", "--output=/dev/null",
                "--wrap", "true"], env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.strip().split(";")[0]
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        done = run(["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "state"], env).stdout.split()
        if done and done[0] not in ("PENDING", "RUNNING", "COMPLETING"):
            return job_id
        time.sleep(0.5)
    pytest.fail(f"smoke job {job_id} did not finish in accounting within 90 s")


def test_sacct_xdmod_format_lines_have_26_fields():
    env = slurm_env()
    lines = xdmod_sacct(env)
    if not lines:
        submit_one_job(env)
        lines = xdmod_sacct(env)
    assert lines, "sacct returned no job at all"
    for line in lines:
        fields = line.split("|")
        # jobname is the last field and may itself contain '|': only it can add fields.
        assert len(fields) >= NFIELDS, line
        fields = line.split("|", NFIELDS - 1)
        assert len(fields) == NFIELDS, line
        jobid, jobidraw, cluster = fields[0], fields[1], fields[2]
        assert re.fullmatch(r"\d+(_\d+|_\[[\d,\-%]+\])?", jobid), line
        assert jobidraw.isdigit(), line
        assert cluster == env["XU_SLURM_CLUSTER"], line
        assert TS.match(fields[10]), f"submit not a timestamp: {line}"
        assert fields[12] == "None" or TS.match(fields[12]), f"start: {line}"
