"""Synthetic sacct output for benchmarks and load tests: deterministic, with XDMoD's edge cases.

Not a stand-in for Slurm in tests of behaviour (those run a real Slurm); this only makes volume.
The mix per 1,000 lines: mostly ended jobs in the window, plus jobs that ended the day before,
running jobs, pending-cancelled jobs, array tasks and ranges, het components, pipes and
non-ASCII in names, and one malformed line.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator

from .window import UsageWindow

_FMT = "%Y-%m-%dT%H:%M:%S"
_STATES = ["COMPLETED"] * 14 + ["FAILED", "TIMEOUT", "OUT_OF_MEMORY", "CANCELLED by 1001", "NODE_FAIL"]


def _hms(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def synthetic_sacct_lines(window: UsageWindow, count: int, seed: int = 7, cluster: str = "synth") -> Iterator[bytes]:
    """Yield ``count`` sacct lines (with newline) for the window; same seed, same bytes."""
    rng = random.Random(seed)  # noqa: S311 - synthetic data, not secrets
    day_start = window.start.replace(tzinfo=None)
    for index in range(count):
        job = 1_000_000 + index
        kind = index % 1000
        end = day_start + dt.timedelta(seconds=rng.randrange(86_400))
        elapsed = rng.randrange(1, 36_000)
        start = end - dt.timedelta(seconds=elapsed)
        submit = start - dt.timedelta(seconds=rng.randrange(0, 3_600))
        state = _STATES[index % len(_STATES)]
        jobid, nodelist, end_text, name = str(job), f"c{rng.randrange(1, 512):03d}", end.strftime(_FMT), f"job{index}"
        if kind < 30:
            end_text = (day_start - dt.timedelta(seconds=rng.randrange(1, 3600))).strftime(_FMT)
        elif kind < 45:
            end_text, state = "Unknown", "RUNNING"
        elif kind < 55:
            nodelist, state = "None assigned", "CANCELLED by 1002"
        elif kind < 95:
            jobid = f"{job}_{kind}"
        elif kind < 97:
            jobid = f"{job}_[1,4-9]"
        elif kind < 99:
            jobid = f"{job}+{kind - 97}"
        elif kind == 999:
            yield b"malformed|line\n"
            continue
        if kind % 100 == 7:
            name = "naïve|résumé ✓"
        start_text = "None" if nodelist == "None assigned" else start.strftime(_FMT)
        cpus = rng.choice((1, 2, 4, 8, 16, 32))
        nodes = 1 if cpus < 32 else 2
        mem = cpus * 4
        tres = f"billing={cpus},cpu={cpus},mem={mem}G,node={nodes}"
        alloc = tres + (",gres/gpu=1" if index % 50 == 0 else "")
        fields = (
            jobid, str(job), cluster, "compute", "normal", f"acct{index % 97}", f"grp{index % 89}",
            str(5000 + index % 89), f"user{index % 997}", str(10000 + index % 997), submit.strftime(_FMT),
            submit.strftime(_FMT), start_text, end_text, _hms(elapsed),
            "0:0", state, str(nodes), str(cpus), str(cpus), f"{mem}G", tres, alloc, "1-00:00:00", nodelist, name,
        )  # fmt: skip
        yield ("|".join(fields) + "\n").encode()
