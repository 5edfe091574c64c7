"""Benchmark: what progress reporting costs in the loops it instruments (core library, no Airflow).

Prints, best of --runs each (runs alternate so machine noise hits both sides alike):

* ``progress.add()`` called once per item over --adds items (default 10 M) beside the same empty loop:
  extra seconds in all, nanoseconds per add, and how often the clock was read;
* the hot-loop form (``if n == next_at: next_at = progress.update(n)``) over the same items;
* ``check_sacct_lines`` over --lines synthetic sacct lines (in memory) without and with a Progress:
  the share the real hot loop pays.

    .venv/bin/python bench/progress.py [--adds 10000000] [--lines 1000000] [--runs 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "plugins"))
DAY = dt.date(2026, 11, 20)
log = logging.getLogger("bench.progress")
log.addHandler(logging.NullHandler())
log.propagate = False


def empty_loop(n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        pass
    return time.perf_counter() - started


CLOCK_READS = [0]


def counting_clock() -> float:
    CLOCK_READS[0] += 1
    return time.monotonic()


def add_loop(n: int) -> float:
    from xdmod_usage.progress import Progress

    CLOCK_READS[0] = 0
    progress = Progress("bench", n, log, clock=counting_clock)
    started = time.perf_counter()
    for _ in range(n):
        progress.add()
    seconds = time.perf_counter() - started
    assert progress.count == n
    return seconds


def update_loop(n: int) -> float:
    from xdmod_usage.progress import Progress

    progress = Progress("bench", n, log)
    next_at = 1
    started = time.perf_counter()
    for number in range(1, n + 1):
        if number == next_at:
            next_at = progress.update(number)
    return time.perf_counter() - started


def check_lines(lines: list[bytes], with_progress: bool) -> float:
    from xdmod_usage.progress import Progress
    from xdmod_usage.slurm_format import check_sacct_lines
    from xdmod_usage.window import UsageWindow

    progress = Progress("bench", None, log) if with_progress else None
    started = time.perf_counter()
    counts = check_sacct_lines(lines, UsageWindow.for_day(DAY), lambda _b: None, lambda _b: None, progress)
    seconds = time.perf_counter() - started
    assert counts.read == len(lines)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--adds", type=int, default=10_000_000)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    from xdmod_usage.synthetic import synthetic_sacct_lines
    from xdmod_usage.window import UsageWindow

    times: dict[str, list[float]] = {"empty": [], "add": [], "update": [], "lines_bare": [], "lines_progress": []}
    for _ in range(args.runs):
        times["empty"].append(empty_loop(args.adds))
        times["add"].append(add_loop(args.adds))
        times["update"].append(update_loop(args.adds))
    lines = list(synthetic_sacct_lines(UsageWindow.for_day(DAY), args.lines))
    for _ in range(args.runs):
        times["lines_bare"].append(check_lines(lines, False))
        times["lines_progress"].append(check_lines(lines, True))
    best = {name: min(values) for name, values in times.items()}
    report = {
        "adds": args.adds,
        "runs": args.runs,
        "empty_loop_seconds": round(best["empty"], 3),
        "add_loop_seconds": round(best["add"], 3),
        "add_extra_seconds": round(best["add"] - best["empty"], 3),
        "add_ns_per_call": round((best["add"] - best["empty"]) / args.adds * 1e9, 1),
        "add_clock_reads": CLOCK_READS[0],
        "update_form_extra_seconds": round(best["update"] - best["empty"], 3),
        "update_form_ns_per_item": round((best["update"] - best["empty"]) / args.adds * 1e9, 1),
        "check_sacct_lines": {
            "lines": args.lines,
            "without_progress_seconds": round(best["lines_bare"], 3),
            "with_progress_seconds": round(best["lines_progress"], 3),
            "overhead_percent": round((best["lines_progress"] / best["lines_bare"] - 1) * 100, 2),
            "all_without": [round(t, 3) for t in times["lines_bare"]],
            "all_with": [round(t, 3) for t in times["lines_progress"]],
        },
        "targets": {"add_extra_seconds_for_10M": 1.0, "check_overhead_percent": 3.0},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
