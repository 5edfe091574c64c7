"""Benchmark: planning a reload of a resource with a long history (core library, local staging).

Stages N days (default 400) of a Slurm resource from synthetic sacct lines, then times what the reload's
`plan` task does before anything is deleted (every day's manifest read, every file's presence and size
checked, the raw archive required, rows summed, month shred commands built) and the rebuild of every day
from its raw archive (`restage`), with peak RSS.

    .venv/bin/python bench/reload_plan.py [--days 400] [--lines 2000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "plugins"))


def main() -> int:
    from xdmod_usage import reload
    from xdmod_usage.config import parse_site_config
    from xdmod_usage.slurm_pipeline import SlurmDay, stage_slurm_day
    from xdmod_usage.staging import Store
    from xdmod_usage.synthetic import synthetic_sacct_lines
    from xdmod_usage.window import UsageWindow

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=400)
    parser.add_argument("--lines", type=int, default=2000, help="sacct lines per day")
    args = parser.parse_args()
    first = dt.date(2025, 1, 1)
    today = first + dt.timedelta(days=args.days)
    site = parse_site_config(json.dumps({"resources": [{"name": "hpc1", "kind": "slurm", "xdmod_resource": "hpc1",
                                                          "start_date": first.isoformat(),
                                                          "source": {"cluster": "hpc1"}}]}))  # fmt: skip
    resource_ = site.resources[0]
    figures: dict[str, object] = {"days": args.days, "lines_per_day": args.lines}
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.from_path(Path(tmp))
        started = time.perf_counter()
        for n in range(args.days):
            window = UsageWindow.for_day(first + dt.timedelta(days=n))
            lines = b"".join(synthetic_sacct_lines(window, args.lines))
            stage_slurm_day(store, SlurmDay("hpc1", "hpc1", "hpc1", window), lambda out, data=lines: out.write(data),
                            {"type": "synthetic"}, max_quarantine_share=1.0)  # fmt: skip
        figures["stage_all_days_seconds"] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        planned = reload.plan(site, "hpc1", lambda _r: store, today)
        figures["plan_seconds"] = round(time.perf_counter() - started, 2)
        figures["plan"] = planned["resources"]["hpc1"]
        started = time.perf_counter()
        days = [reload.replay_day(store, resource_, day, max_quarantine_share=1.0, spool_dir=None)
                for day in reload.days_of(resource_, today)]  # fmt: skip
        figures["restage_all_days_seconds"] = round(time.perf_counter() - started, 1)
        figures["restage_per_day_ms"] = round(1000 * figures["restage_all_days_seconds"] / args.days, 1)
        figures["shred_commands"] = len(reload.shred_commands(resource_, "/in", days))
    figures["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
