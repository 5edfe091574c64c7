#!/usr/bin/env python3
"""Submit a mixed Slurm workload to the test cluster and record what was submitted.

Run as root after ``scripts/services/slurm.sh start``::

    python3 scripts/slurm_workload.py --out /tmp/workload.json [--state-dir .services]

Jobs are submitted as the ordinary users alice (account physics) and bob (chemistry) via
``runuser -u USER -- sbatch --parsable``. The script waits until every job has left the queue
and its accounting record is final in slurmdbd, then writes a JSON file describing what the
workload SUBMITTED and how each job is EXPECTED to end. The expectations come from the
workload itself, never from sacct, so tests can compare them with what sacct/XDMoD report.

Workload: a job that completes, one that fails (exit 3), one cancelled while running, one
cancelled while pending (begin time 1 h ahead), a 4-task array, one with --mem=200M, one whose name contains
a pipe and non-ASCII characters, and -- only with the fake clock of slurm.sh
(XU_SLURM_FAKE_NOW) and a fake UTC midnight close enough -- a job started ~30 s before
that midnight that ends ~45 s after it (spans_midnight: true). The midnight is computed from
XU_SLURM_FAKE_OFFSET_SECONDS in <state-dir>/slurm/env.sh. Standard library only.
"""

import argparse
import datetime
import json
import math
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ACTIVE_STATES = {
    "PENDING",
    "RUNNING",
    "REQUEUED",
    "SUSPENDED",
    "CONFIGURING",
    "COMPLETING",
    "RESIZING",
    "SIGNALING",
    "STAGE_OUT",
    "RESV_DEL_HOLD",
    "REQUEUE_FED",
    "REQUEUE_HOLD",
    "SPECIAL_EXIT",
    "STOPPED",
}
DAY = 86400


def log(msg):
    print(f"[workload] {msg}", file=sys.stderr, flush=True)


def die(msg):
    log("ERROR: " + msg)
    sys.exit(1)


def iso(ts):
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: UP017 (any python3)


def read_env_file(path):
    """Parse the `export NAME=VALUE` lines written by scripts/services/*.sh."""
    env = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line.startswith("export ") or "=" not in line:
            continue
        name, _, value = line[len("export ") :].partition("=")
        parts = shlex.split(value)
        env[name.strip()] = parts[0] if parts else ""
    return env


class Workload:
    def __init__(self, args):
        self.args = args
        state_dir = Path(args.state_dir).resolve()
        env_file = state_dir / "slurm" / "env.sh"
        if not env_file.is_file():
            die(f"{env_file} not found: start the services first (sudo scripts/services/slurm.sh start)")
        self.senv = read_env_file(env_file)
        self.env = dict(os.environ)
        self.env.update(self.senv)
        self.env["TZ"] = "UTC"
        self.conf = self.senv["SLURM_CONF"]
        self.cluster = self.senv.get("XU_SLURM_CLUSTER", "democluster")
        self.offset = int(self.senv.get("XU_SLURM_FAKE_OFFSET_SECONDS", "0") or 0)
        self.fake_clock = self.senv.get("XU_SLURM_FAKE_CLOCK", "1" if self.offset else "0") == "1"
        self.jobs_dir = Path(self.senv.get("XU_SLURM_JOBS_DIR", str(state_dir / "slurm" / "jobs")))
        self.jobs = []

    # ------------------------------------------------------------ helpers
    def fake_now(self):
        return time.time() + self.offset

    def run(self, cmd, user=None, check=True):
        if user:
            cmd = ["runuser", "-u", user, "--", "env", "SLURM_CONF=" + self.conf, "TZ=UTC", *cmd]
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True, encoding="utf-8")
        if check and proc.returncode != 0:
            die(f"{' '.join(cmd)} failed (exit {proc.returncode}): {proc.stderr.strip()}")
        return proc

    def submit(
        self,
        name,
        user,
        account,
        command,
        expected_state,
        *,
        extra=(),
        time_limit=5,
        expected_exit_code="0:0",
        array=None,
        mem_mb=None,
        spans_midnight=False,
        phase="main",
    ):
        args = [
            "sbatch",
            "--parsable",
            "--job-name=" + name,
            "--account=" + account,
            "--partition=debug",
            "--chdir=" + str(self.jobs_dir),
            "--output=" + str(self.jobs_dir / ("%A_%a.out" if array else "%j.out")),
        ]
        if time_limit is not None:
            args.append(f"--time={time_limit}")
        if array:
            args.append(f"--array={array[0]}-{array[-1]}")
        if mem_mb is not None:
            args.append(f"--mem={mem_mb}M")
        args += [*extra, "--wrap", command]
        real = time.time()
        out = self.run(args, user=user).stdout.strip()
        job_id = int(out.split(";")[0])
        job = {
            "name": name,
            "job_id": job_id,
            "user": user,
            "account": account,
            "partition": "debug",
            "expected_state": expected_state,
            "expected_exit_code": expected_exit_code,
            "expected_started": True,
            "cancelled_while": None,
            "array_task_ids": list(array) if array else None,
            "mem_mb": mem_mb,
            "timelimit_minutes": time_limit,
            "spans_midnight": spans_midnight,
            "command": command,
            "phase": phase,
            "submitted_at": iso(real),
            "submitted_at_fake": iso(real + self.offset),
        }
        self.jobs.append(job)
        log(f"submitted {name} as {user}: job {job_id}")
        return job

    def state_of(self, job_id):
        proc = self.run(["squeue", "-h", "-j", str(job_id), "-o", "%T"], check=False)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    def wait_state(self, job_id, wanted, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.state_of(job_id) == wanted:
                return
            time.sleep(0.25)
        die(f"job {job_id} did not reach {wanted} within {timeout}s")

    def wait_gone(self, jobs, timeout):
        ids = {str(j["job_id"]) for j in jobs}
        deadline = time.time() + timeout
        while True:
            out = self.run(["squeue", "-h", "-a", "-o", "%F %A"]).stdout
            active = {tok for line in out.splitlines() for tok in line.split()} & ids
            if not active:
                return
            if time.time() > deadline:
                die(f"jobs still queued/running after {timeout}s: {' '.join(sorted(active))}")
            time.sleep(0.5)

    def wait_accounting(self, timeout=60):
        """Wait until slurmdbd holds a final record for every job (flush check only)."""
        want = set()
        for j in self.jobs:
            if j["array_task_ids"]:
                want |= {f"{j['job_id']}_{t}" for t in j["array_task_ids"]}
            else:
                want.add(str(j["job_id"]))
        ids = ",".join(str(j["job_id"]) for j in self.jobs)
        deadline = time.time() + timeout
        missing = want
        while time.time() < deadline:
            proc = self.run(
                ["sacct", "-n", "-X", "-P", "--allusers", "--clusters", self.cluster, "-j", ids, "-o", "jobid,state"],
                check=False,
            )
            final = set()
            for line in proc.stdout.splitlines():
                jobid, _, state = line.partition("|")
                if state.split(" ")[0] not in ACTIVE_STATES:
                    final.add(jobid)
            missing = want - final
            if not missing:
                return True
            time.sleep(0.5)
        log(f"WARNING: accounting not final after {timeout}s for: {' '.join(sorted(missing))}")
        return False

    def sleep_until_fake(self, target):
        delay = target - self.fake_now()
        if delay > 0:
            log(f"sleeping {delay:.0f}s (until fake {iso(target)})")
            time.sleep(delay)

    # ------------------------------------------------------------ phases
    def phase_main(self):
        """Short jobs; none may span a UTC midnight (checked)."""
        start_fake = self.fake_now()
        first = len(self.jobs)
        # Cancelled while running: start it first so it gets a CPU at once.
        j = self.submit("xu-cancel-running", "alice", "physics", "sleep 300", "CANCELLED", expected_exit_code=None)
        j["cancelled_while"] = "running"
        self.wait_state(j["job_id"], "RUNNING")
        time.sleep(2)
        self.run(["scancel", str(j["job_id"])], user="alice")
        # Cancelled while pending: begin time 1 h ahead. Not --hold: a held job never gets an
        # eligible time, and sacct with --starttime/--endtime (as XDMoD calls it) never lists it.
        # sbatch parses --begin itself (real clock), so pass an absolute fake-clock UTC time.
        begin = iso(self.fake_now() + 3600)
        j = self.submit(
            "xu-cancel-pending",
            "bob",
            "chemistry",
            "sleep 10",
            "CANCELLED",
            extra=["--begin=" + begin[:-1]],
            expected_exit_code=None,
        )
        j["cancelled_while"] = "pending"
        j["expected_started"] = False
        j["begin_fake"] = begin
        self.wait_state(j["job_id"], "PENDING")
        self.run(["scancel", str(j["job_id"])], user="bob")

        self.submit("xu-complete", "alice", "physics", "sleep 2", "COMPLETED")
        self.submit("xu-fail", "bob", "chemistry", "sleep 1; exit 3", "FAILED", expected_exit_code="3:0")
        self.submit("xu-array", "alice", "physics", "sleep 1", "COMPLETED", array=[1, 2, 3, 4])
        self.submit("xu-mem", "bob", "chemistry", "sleep 1", "COMPLETED", mem_mb=200, time_limit=None)
        self.submit("naïve|résumé ✓", "alice", "physics", "sleep 1", "COMPLETED")
        self.wait_gone(self.jobs[first:], self.args.timeout)
        end_fake = self.fake_now()
        if math.floor(start_fake / DAY) != math.floor(end_fake / DAY):
            die(
                f"a fake UTC midnight fell inside the short-job phase ({iso(start_fake)} .. {iso(end_fake)}):"
                " expectations would be wrong"
            )

    def phase_midnight(self, midnight):
        """One job started ~lead s before the fake UTC midnight, ending ~tail s after it."""
        until = midnight - self.fake_now()
        duration = math.ceil(until) + self.args.midnight_tail
        j = self.submit(
            "xu-midnight",
            "bob",
            "chemistry",
            f"sleep {duration}",
            "COMPLETED",
            time_limit=10,
            spans_midnight=True,
            phase="midnight",
        )
        j["planned_start_fake"] = iso(self.fake_now())
        j["planned_end_fake"] = iso(self.fake_now() + duration)
        return j

    def execute(self):
        a = self.args
        t0 = time.time()
        # Shared output dir of the test users' jobs (sticky, like /tmp).
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(str(self.jobs_dir), 0o1777)  # noqa: S103
        midnight = None
        note = "fake clock off"
        midnight_job = None
        if self.fake_clock:
            now = self.fake_now()
            nxt = (math.floor(now / DAY) + 1) * DAY
            until = nxt - now
            log(f"fake now {iso(now)}, next fake UTC midnight in {until:.0f}s")
            limit = a.max_midnight_wait + a.midnight_lead
            if until > limit:
                note = f"next fake midnight {until:.0f}s away (> {limit}s): no midnight job"
                self.phase_main()
            elif until >= a.midnight_lead + a.main_budget:
                self.phase_main()
                if nxt - self.fake_now() < a.min_lead:
                    note = "short jobs overran: midnight too close, no midnight job"
                else:
                    self.sleep_until_fake(nxt - a.midnight_lead)
                    midnight, note = nxt, "midnight job after the short jobs"
                    midnight_job = self.phase_midnight(nxt)
            elif until >= a.min_lead:
                midnight, note = nxt, "midnight job first, short jobs after midnight"
                midnight_job = self.phase_midnight(nxt)
                self.sleep_until_fake(nxt + 2)
                self.phase_main()
            else:
                note = f"fake midnight only {until:.0f}s away: no midnight job, short jobs after it"
                self.sleep_until_fake(nxt + 2)
                self.phase_main()
        else:
            self.phase_main()
        if midnight_job:
            remaining = midnight + a.midnight_tail - self.fake_now()
            self.wait_gone([midnight_job], int(remaining) + a.timeout)
        flushed = self.wait_accounting()
        t1 = time.time()
        first_submit = min(j["submitted_at"] for j in self.jobs)
        result = {
            "schema": 1,
            "cluster": self.cluster,
            "fake_clock": self.fake_clock,
            "fake_offset_seconds": self.offset,
            "submitted_at": first_submit,
            "submitted_at_fake": min(j["submitted_at_fake"] for j in self.jobs),
            "finished_at": iso(t1),
            "finished_at_fake": iso(t1 + self.offset),
            "midnight_fake": iso(midnight) if midnight else None,
            "midnight_note": note,
            "accounting_flushed": flushed,
            "wall_seconds": round(t1 - t0, 1),
            "jobs": self.jobs,
        }
        out = Path(a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(out)
        log(f"wrote {out} ({len(self.jobs)} jobs, {t1 - t0:.0f}s, {note})")
        return 0 if flushed else 1


def main(argv=None):
    default_state = os.environ.get("XU_STATE_DIR") or str(REPO / ".services")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--state-dir", default=default_state, help="services state dir [%(default)s]")
    p.add_argument("--out", help="JSON output path [<state-dir>/slurm/workload.json]")
    p.add_argument("--timeout", type=int, default=120, help="max seconds to wait for the short jobs")
    p.add_argument("--midnight-lead", type=int, default=30, help="start the midnight job this many s before it")
    p.add_argument("--midnight-tail", type=int, default=45, help="... and let it run this many s past it")
    p.add_argument(
        "--max-midnight-wait",
        type=int,
        default=120,
        help="longest wait (s) for the fake midnight before skipping the midnight job",
    )
    p.add_argument("--main-budget", type=int, default=45, help="seconds reserved for the short jobs")
    p.add_argument("--min-lead", type=int, default=8, help="minimum seconds before midnight to submit it")
    args = p.parse_args(argv)
    if args.out is None:
        args.out = str(Path(args.state_dir) / "slurm" / "workload.json")
    if os.geteuid() != 0:
        die("run as root (jobs are submitted as alice/bob via runuser)")
    return Workload(args).execute()


if __name__ == "__main__":
    sys.exit(main())
