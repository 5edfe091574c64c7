"""Benchmark: each DAG file's parse time in a fresh process (target <= 0.3 s per file).

Reports, per file in dags/, the DagBag's own parse duration (what the DAG processor pays per
parse, Airflow already imported) and the whole cold process (interpreter + Airflow import + parse),
best of N runs each, with the example site config.

    .venv/bin/python bench/parse_time.py [--runs 5] [--config include/site-config.example.yaml]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHILD = """
import json, sys, time
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
assert not bag.import_errors, bag.import_errors
print(json.dumps({"file_seconds": bag.dagbag_stats[0].duration.total_seconds(), "dags": len(bag.dag_ids)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--config", default=str(ROOT / "include" / "site-config.example.yaml"))
    parser.add_argument("--resources", type=int, default=1, help="replicate the example resource N times")
    args = parser.parse_args()
    if args.resources > 1:
        import tempfile

        import yaml

        data = yaml.safe_load(Path(args.config).read_text())
        template = data["resources"][0]
        data["resources"] = [{**template, "name": f"{template['name']}-{i}"} for i in range(args.resources)]
        handle = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)  # noqa: SIM115
        yaml.safe_dump(data, handle, default_flow_style=False)
        handle.close()
        args.config = handle.name
    env = {**os.environ, "XDMOD_USAGE_CONFIG": args.config, "PYTHONPATH": str(ROOT / "plugins"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}  # fmt: skip
    report = {}
    for path in sorted((ROOT / "dags").glob("*.py")):
        file_times, process_times = [], []
        for _ in range(args.runs):
            started = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", CHILD, str(path)], env=env, check=True,
                                 capture_output=True, text=True).stdout  # fmt: skip
            process_times.append(time.perf_counter() - started)
            result = json.loads(out.strip().splitlines()[-1])
            file_times.append(result["file_seconds"])
        report[path.name] = {
            "dags": result["dags"],
            "parse_seconds_best": round(min(file_times), 3),
            "parse_seconds_worst": round(max(file_times), 3),
            "cold_process_seconds_best": round(min(process_times), 2),
            "target_parse_seconds": 0.3,
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
