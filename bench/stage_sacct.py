"""Benchmark: check and stage N synthetic sacct lines with the core library (no Airflow imported).

Prints wall time and peak RSS of a fresh process doing the whole staging (pull from a file into
the spool, XDMoD-rule checks, staged + quarantine files, gzip raw archive, atomic publish), beside
a raw ``awk -F'|'`` pass that keeps the in-window lines of the same file.

    .venv/bin/python bench/stage_sacct.py [--lines 1000000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "plugins"))
DAY = dt.date(2026, 11, 20)


def generate(path: Path, lines: int) -> None:
    from xdmod_usage.synthetic import synthetic_sacct_lines
    from xdmod_usage.window import UsageWindow

    with open(path, "wb") as out:
        buf = []
        for line in synthetic_sacct_lines(UsageWindow.for_day(DAY), lines):
            buf.append(line)
            if len(buf) == 10000:
                out.write(b"".join(buf))
                buf.clear()
        out.write(b"".join(buf))


def child(source: str, staging: str) -> None:
    """Runs in a fresh interpreter so its peak RSS is the staging's alone."""
    from xdmod_usage.slurm_pipeline import SlurmDay, stage_slurm_day
    from xdmod_usage.staging import Store
    from xdmod_usage.window import UsageWindow

    def pull(out):
        with open(source, "rb") as handle:
            shutil.copyfileobj(handle, out, 1 << 20)

    day = SlurmDay("bench", "bench", "synth", UsageWindow.for_day(DAY))
    started = time.perf_counter()
    result = stage_slurm_day(Store.from_path(Path(staging)), day, pull, {"type": "file"}, max_quarantine_share=1.0)
    seconds = time.perf_counter() - started
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_rss_mb": rss_mb,
                "counts": result.manifest["counts"],
                "airflow_imported": any(m.split(".")[0] == "airflow" for m in sys.modules),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory(prefix="bench-sacct-") as tmp:
        source = Path(tmp) / "sacct.txt"
        t0 = time.perf_counter()
        generate(source, args.lines)
        print(
            f"generated {args.lines:,} lines, {source.stat().st_size / 1e6:.0f} MB in {time.perf_counter() - t0:.1f} s"
        )
        runs = []
        for _ in range(3):
            staging = Path(tmp) / "staging"
            shutil.rmtree(staging, ignore_errors=True)
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(source), str(staging)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            runs.append(json.loads(out))
        best = min(runs, key=lambda r: r["seconds"])
        start, end = DAY.strftime("%Y-%m-%dT00:00:00"), (DAY + dt.timedelta(days=1)).strftime("%Y-%m-%dT00:00:00")
        awk_times = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run(
                [
                    "awk",
                    "-F|",
                    "-v",
                    f"s={start}",
                    "-v",
                    f"e={end}",
                    "-v",
                    f"out={tmp}/awk.out",
                    "NF >= 26 && $14 >= s && $14 < e { print > out }",
                    str(source),
                ],
                check=True,
            )
            awk_times.append(time.perf_counter() - t0)
        awk_version = subprocess.run(["awk", "-W", "version"], capture_output=True, text=True).stdout.splitlines()
        report = {
            "lines": args.lines,
            "stage_seconds_best_of_3": round(best["seconds"], 2),
            "stage_seconds_all": [round(r["seconds"], 2) for r in runs],
            "stage_peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs), 1),
            "airflow_imported": best["airflow_imported"],
            "awk_seconds_best_of_3": round(min(awk_times), 2),
            "awk": awk_version[0] if awk_version else "awk",
            "counts": best["counts"],
            "targets": {"stage_seconds": 10, "peak_rss_mb": 150},
        }
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
