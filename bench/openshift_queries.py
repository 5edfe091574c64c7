"""Benchmark: one OpenShift day from a real Prometheus, our window-count queries vs the old 15/1-minute sampling.

For each pod count, a synthetic day (``xdmod_usage.openshift_synthetic.write_day``, exact truth) is backfilled
into a private Prometheus 2.42 (``scripts/services/prometheus.sh``), then each method runs in a fresh process
(best of ``--runs``; peak RSS per method):

* ``ours``: ``DayQueries(...).fetch(api)`` then ``openshift_rows.sacct_lines`` (default source and policy:
  15-minute resolution, millicores); usage per row is ncpus/1000 x (end-start), alloctres mem x (end-start).
* ``old-900s`` / ``old-60s``: the scripts we replace (NERC openshift-usage-scripts): one ``query_range`` per
  resource of the raw ``kube_pod_resource_request{resource="...", node!=""}`` from 00:00:00 to 23:59:59 (as
  they asked: 96 / 1,440 points), then per (namespace, pod) and resource each distinct timestamp (the three
  scheduler replicas deduplicated by timestamp, max value) counts ``step`` seconds of its value.

Accuracy is measured against the generator's truth per namespace and per pod (CPU core-seconds and memory
byte-seconds). Prints markdown tables and writes JSON to ``--out``. Needs root (the service script).

``--diagnose`` also times each planned query alone, per-minute forms of ``presence``, and the plan run 1, 2
and PARALLEL_QUERIES at a time (where our time goes; none of it is in the measured runs).

    .venv/bin/python bench/openshift_queries.py [--pods 2000 10000] [--runs 3] [--diagnose] [--keep]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "plugins"))
SCRIPT = ROOT / "scripts" / "services" / "prometheus.sh"
METHODS = ("ours", "old-900s", "old-60s")
OLD_RESOURCES = ("cpu", "memory", "nvidia.com/gpu")
SHORT_SECONDS = 900  # a "short" pod has less than 15 minutes of samples in the day
POD_TOLERANCE = 0.01
TARGETS = {"namespace_error_max": 0.001, "short_pods_lost": 0, "peak_rss_mb_at_10000": 500}

Usage = list[float]  # [cpu core-seconds, memory byte-seconds, GPU-seconds]


# ---------------------------------------------------------------------------------------------- children


class TimedApi:
    """Wraps PrometheusApi: seconds, samples and series of each call by query text (calls may overlap)."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self.calls: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()

    def _timed(self, kind: str, promql: str, call: Any, *args: Any) -> dict[str, Any]:
        from xdmod_usage.prometheus_api import count_samples

        started = time.perf_counter()
        data = call(promql, *args)
        seconds = time.perf_counter() - started
        samples = count_samples(data["resultType"], data["result"])
        record = {"kind": kind, "seconds": seconds, "samples": samples, "series": len(data["result"])}
        with self.lock:
            self.calls[promql] = record
        return data

    def query(self, promql: str, at: float) -> dict[str, Any]:
        return self._timed("instant", promql, self.api.query, at)

    def query_range(self, promql: str, start: float, end: float, step: float) -> dict[str, Any]:
        return self._timed("range", promql, self.api.query_range, start, end, step)


def run_ours(url: str, day: dt.date) -> tuple[dict[str, Usage], dict[str, Any]]:
    """DayQueries.fetch + sacct_lines, then usage per pod from the rows."""
    from xdmod_usage.config import OpenShiftSource
    from xdmod_usage.openshift_queries import DayQueries
    from xdmod_usage.openshift_rows import sacct_lines
    from xdmod_usage.prometheus_api import PrometheusApi
    from xdmod_usage.slurm_format import SACCT_FIELDS
    from xdmod_usage.window import UsageWindow

    started = time.perf_counter()
    source = OpenShiftSource.model_validate({"prometheus_conn_id": "bench"})
    window = UsageWindow.for_day(day)
    policy = source.policy_for(day)
    api = PrometheusApi(url)
    timed = TimedApi(api)
    archive = DayQueries(source, policy, window, api.major_version()).fetch(timed)
    fetched = time.perf_counter()
    lines, counts = sacct_lines(
        archive,
        xdmod_resource="bench",
        policy=policy,
        product_label=source.gpu_product_label,
        mapping={},
        max_hole_seconds=source.max_hole.total_seconds(),
    )
    seconds = time.perf_counter() - started
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    field = {name: SACCT_FIELDS.index(name) for name in ("partition", "jobname", "start", "end", "ncpus", "alloctres")}
    usage: dict[str, Usage] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for line in lines:
        row = line.decode().split("|")
        span = (
            dt.datetime.fromisoformat(row[field["end"]]) - dt.datetime.fromisoformat(row[field["start"]])
        ).total_seconds()
        tres = dict(item.split("=", 1) for item in row[field["alloctres"]].split(","))
        mine = usage[f"{row[field['partition']]}/{row[field['jobname']]}"]
        mine[0] += int(row[field["ncpus"]]) / 1000 * span
        mine[1] += int(tres["mem"].rstrip("M")) * 1048576 * span
        mine[2] += sum(int(v) for k, v in tres.items() if k.startswith("gres/gpu")) * span
    per_query = [{"name": name, "step": answer.get("step"), **timed.calls[answer["query"]]}
                 for name, answer in archive["answers"].items()]  # fmt: skip
    info = {
        "seconds": seconds,
        "fetch_seconds": fetched - started,
        "rows_seconds": seconds - (fetched - started),
        "peak_rss_mb": rss_mb,
        "stats": api.stats.as_dict(),
        "per_query": per_query,
        "rows": counts.rows,
        "row_counts": {k: v for k, v in counts.as_dict().items() if k != "unattributed_namespaces"},
        "archive_bytes": len(json.dumps(archive, sort_keys=True, separators=(",", ":"))),
    }
    return usage, info


def run_old(url: str, day: dt.date, step: int) -> tuple[dict[str, Usage], dict[str, Any]]:
    """The old scripts: query_range of the raw request per resource at ``step``; each point counts ``step`` s."""
    from xdmod_usage.prometheus_api import PrometheusApi

    started = time.perf_counter()
    api = PrometheusApi(url)
    timed = TimedApi(api)
    day_start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()
    usage: dict[str, Usage] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for index, name in enumerate(OLD_RESOURCES):
        query = f'kube_pod_resource_request{{resource="{name}", node!=""}}'
        data = timed.query_range(query, day_start, day_start + 86399, step)
        points: dict[str, dict[float, float]] = defaultdict(dict)
        for series in data["result"]:
            mine = points[f"{series['metric'].get('namespace', '')}/{series['metric'].get('pod', '')}"]
            for ts, text in series["values"]:
                value = float(text)
                if value > mine.get(ts, -1.0):
                    mine[ts] = value
        del data
        for pod, by_ts in points.items():
            usage[pod][index] += sum(by_ts.values()) * step
        del points
    seconds = time.perf_counter() - started
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    per_query = [
        {"name": name, "step": step, **call} for name, call in zip(OLD_RESOURCES, timed.calls.values(), strict=True)
    ]
    info = {"seconds": seconds, "peak_rss_mb": rss_mb, "stats": api.stats.as_dict(), "per_query": per_query}
    return usage, info


def child(method: str, url: str, day: str) -> None:
    """Runs in a fresh interpreter so its peak RSS is the method's alone; prints JSON."""
    when = dt.date.fromisoformat(day)
    usage, info = run_ours(url, when) if method == "ours" else run_old(url, when, int(method[4:-1]))
    print(json.dumps({"method": method, **info, "usage": usage}))


# ---------------------------------------------------------------------------------------------- parent


def service(action: str, *args: str, env: dict[str, str]) -> str:
    """scripts/services/prometheus.sh ACTION; returns its stdout (fails loudly with its stderr)."""
    done = subprocess.run([str(SCRIPT), action, *args], env={**os.environ, **env}, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"prometheus.sh {action} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def truth_figures(truth: Any) -> dict[str, Any]:
    """The truth reduced to what accuracy needs: per pod [cpu, memory, GPU-equivalent] and samples."""
    from xdmod_usage.config import OpenShiftPolicy
    from xdmod_usage.openshift_rows import mig_share

    policy = OpenShiftPolicy(effective=dt.date(1970, 1, 1))

    def gpu(usage: Any) -> float:
        return sum(usage.gpu_seconds.values()) + sum(s * mig_share(p, policy) for p, s in usage.mig_seconds.items())

    pods = {key: [p.cpu_core_seconds, float(p.memory_byte_seconds), gpu(p)] for key, p in truth.pods.items()}
    return {
        "pods": pods,
        "samples": {key: p.samples for key, p in truth.pods.items()},
        "interval": truth.interval,
        "total": [truth.total.cpu_core_seconds, float(truth.total.memory_byte_seconds), gpu(truth.total)],
        "whole_gpu_seconds": sum(truth.total.gpu_seconds.values()),
    }


def _rel(got: float, want: float) -> float:
    return (got - want) / want if want else (0.0 if not got else float("inf"))


def accuracy(truth: dict[str, Any], got: dict[str, Usage]) -> dict[str, Any]:
    """Per-namespace and per-pod relative errors of CPU and memory, pods billed zero, totals."""
    namespaces: dict[str, dict[str, list[float]]] = defaultdict(lambda: {"truth": [0.0, 0.0], "got": [0.0, 0.0]})
    for source, figures in (("truth", truth["pods"]), ("got", got)):
        for key, usage in figures.items():
            totals = namespaces[key.split("/", 1)[0]][source]
            totals[0] += usage[0]
            totals[1] += usage[1]
    ns_errors = {
        ns: [abs(_rel(v["got"][i], v["truth"][i])) for i in (0, 1)] for ns, v in namespaces.items() if any(v["truth"])
    }
    pod_errors: dict[str, list[float]] = {}
    zero, zero_short, short = [], [], 0
    limit = SHORT_SECONDS / truth["interval"]
    for key, want in truth["pods"].items():
        mine = got.get(key, [0.0, 0.0, 0.0])
        pod_errors[key] = [_rel(mine[i], want[i]) for i in (0, 1)]
        is_short = truth["samples"][key] < limit
        short += is_short
        if (want[0] > 0 or want[1] > 0) and not mine[0] and not mine[1]:
            zero.append(key)
            if is_short:
                zero_short.append(key)
    extra = sorted(set(got) - set(truth["pods"]))
    worst = max(pod_errors, key=lambda k: max(abs(e) for e in pod_errors[k]))
    total = [sum(u[i] for u in got.values()) for i in (0, 1, 2)]
    return {
        "namespaces": len(ns_errors),
        "namespaces_not_in_truth": len(namespaces) - len(ns_errors),
        "ns_cpu_error_max": max(e[0] for e in ns_errors.values()),
        "ns_cpu_error_mean": sum(e[0] for e in ns_errors.values()) / len(ns_errors),
        "ns_memory_error_max": max(e[1] for e in ns_errors.values()),
        "ns_memory_error_mean": sum(e[1] for e in ns_errors.values()) / len(ns_errors),
        "ns_worst": max(ns_errors, key=lambda ns: max(ns_errors[ns])),
        "pods_truth": len(truth["pods"]),
        "pod_cpu_error_max": max(abs(e[0]) for e in pod_errors.values()),
        "pod_memory_error_max": max(abs(e[1]) for e in pod_errors.values()),
        "pod_worst": {"pod": worst, "cpu_error": pod_errors[worst][0], "memory_error": pod_errors[worst][1]},
        "pods_off_over_1pct": sum(max(abs(e[0]), abs(e[1])) > POD_TOLERANCE for e in pod_errors.values()),
        "pods_billed_zero": len(zero),
        "pods_billed_zero_pct": 100 * len(zero) / len(truth["pods"]),
        "short_pods": short,
        "short_pods_billed_zero": len(zero_short),
        "pods_billed_zero_examples": zero[:5],
        "pods_not_in_truth": len(extra),
        "total_cpu_error": _rel(total[0], truth["total"][0]),
        "total_memory_error": _rel(total[1], truth["total"][1]),
        "total_gpu_seconds": total[2],
        "total_gpu_error_vs_equivalent": _rel(total[2], truth["total"][2]),
    }


def measure(method: str, url: str, day: str, runs: int) -> list[dict[str, Any]]:
    """``runs`` fresh child processes of one method."""
    results = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, __file__, "--child", method, url, day], check=True, capture_output=True, text=True
        ).stdout
        results.append(json.loads(out))
    return results


def bench_pods(args: argparse.Namespace, pods: int, env: dict[str, str], url: str) -> dict[str, Any]:
    """Generate, load and measure one day of ``pods`` pods."""
    from xdmod_usage.openshift_synthetic import write_day

    path = args.scratch / f"openshift-{args.day}-{pods}.om"
    t0 = time.perf_counter()
    truth_full = write_day(path, args.day, pods, args.seed, interval=args.interval)
    generated = time.perf_counter() - t0
    if args.keep:
        (args.scratch / f"truth-{args.day}-{pods}.json").write_text(json.dumps(truth_full.as_dict()) + "\n")
    truth = truth_figures(truth_full)
    day_info = {"pods_requested": pods, "pods_charged": len(truth_full.pods), "namespaces": len(truth_full.namespaces),
                "sample_lines": truth_full.sample_lines, "file_mb": round(path.stat().st_size / 1e6),
                "generate_seconds": round(generated, 1)}  # fmt: skip
    del truth_full
    print(f"[{pods}] generated {day_info}", flush=True)

    service("reset", env=env)
    t0 = time.perf_counter()
    loaded = service("load", str(path), env=env)
    day_info["load_seconds"] = round(time.perf_counter() - t0, 1)
    day_info["promtool_peak_rss_mb_so_far"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
    print(f"[{pods}] {loaded.strip()}", flush=True)
    service("start", env=env)
    if not args.keep:
        path.unlink()

    runs: dict[str, list[dict[str, Any]]] = {method: [] for method in METHODS}
    for _ in range(args.runs):  # round robin: every method sees the same cache state
        for method in METHODS:
            runs[method] += measure(method, url, args.day, 1)
            print(f"[{pods}] {method}: {runs[method][-1]['seconds']:.2f} s", flush=True)
    methods = {}
    for method, results in runs.items():
        best = min(results, key=lambda r: r["seconds"])
        methods[method] = {
            "seconds_best": round(best["seconds"], 3),
            "seconds_all": [round(r["seconds"], 3) for r in results],
            "peak_rss_mb": round(max(r["peak_rss_mb"] for r in results), 1),
            "queries": best["stats"]["queries"],
            "samples": best["stats"]["samples"],
            "query_seconds": best["stats"]["seconds"],
            "per_query": [{**q, "seconds": round(q["seconds"], 3)} for q in best["per_query"]],
            **{
                k: round(best[k], 3) if isinstance(best[k], float) else best[k]
                for k in ("fetch_seconds", "rows_seconds", "rows", "row_counts", "archive_bytes")
                if k in best
            },
            "accuracy": accuracy(truth, best["usage"]),
        }
    base = methods["old-900s"]
    for figures in methods.values():
        figures["vs_old_900s"] = {"samples": round(figures["samples"] / base["samples"], 3),
                                  "seconds": round(figures["seconds_best"] / base["seconds_best"], 3)}  # fmt: skip
    found = {"day": day_info, "truth_total": truth["total"], "truth_whole_gpu_seconds": truth["whole_gpu_seconds"],
             "methods": methods}  # fmt: skip
    if args.diagnose:
        found["diagnose_seconds_best"] = diagnose(url, args.day, args.runs)
        print(f"[{pods}] diagnose {found['diagnose_seconds_best']}", flush=True)
    return found


def diagnose(url: str, day: str, runs: int) -> dict[str, Any]:
    """Where our query time goes: each plan() query alone, per-minute presence forms, the plan N at a time."""
    from concurrent.futures import ThreadPoolExecutor

    from xdmod_usage import openshift_queries
    from xdmod_usage.config import OpenShiftSource
    from xdmod_usage.prometheus_api import PrometheusApi
    from xdmod_usage.window import UsageWindow

    when = dt.date.fromisoformat(day)
    source = OpenShiftSource.model_validate({"prometheus_conn_id": "bench"})
    major = PrometheusApi(url).major_version()
    queries = openshift_queries.DayQueries(source, source.policy_for(when), UsageWindow.for_day(when), major)
    plan = queries.plan()
    minute = "59999ms" if (major or 2) < 3 else "60000ms"
    cpu = 'kube_pod_resource_request{resource="cpu", node!=""}'
    per_minute = {**plan["presence"], "start": queries.window.start.timestamp() + 59.999, "step": 60}
    variants = {
        **{f"{name} (as planned)": spec for name, spec in plan.items()},
        "presence, all request resources, 60 s windows": {
            **per_minute, "query": f"count(count_over_time({queries.request}[{minute}]))"},
        "presence, CPU requests, 60 s windows": {**per_minute, "query": f"count(count_over_time({cpu}[{minute}]))"},
    }  # fmt: skip

    def once(spec: dict[str, Any]) -> float:
        started = time.perf_counter()
        queries.run(PrometheusApi(url), {"q": spec})
        return time.perf_counter() - started

    def whole_plan(workers: int) -> float:
        started = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(once, plan.values()))
        return time.perf_counter() - started

    found = {name: round(min(once(spec) for _ in range(runs)), 3) for name, spec in variants.items()}
    parallel = getattr(openshift_queries, "PARALLEL_QUERIES", 1)
    for workers in sorted({1, 2, parallel}):
        found[f"all plan() queries, {workers} at a time"] = round(min(whole_plan(workers) for _ in range(runs)), 3)
    return found


def library_state() -> dict[str, Any]:
    """The library the children import: git HEAD, local changes and a hash of its files."""
    files = sorted((ROOT / "plugins" / "xdmod_usage").glob("*.py"))
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in files)).hexdigest()[:16]

    def git(*argv: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *argv], capture_output=True, text=True).stdout.strip()

    return {"head": git("rev-parse", "--short", "HEAD"), "local_changes": bool(git("status", "--porcelain", "plugins")),
            "sha256": digest}  # fmt: skip


def pct(value: float) -> str:
    return f"{100 * value:.3g}%" if abs(value) >= 1e-4 else f"{100 * value:.1e}%"


def table(results: dict[str, Any]) -> str:
    """Markdown: one row per (pods, method)."""
    head = ("| pods | method | wall s (best) | queries | samples | peak RSS MB | ns error max / mean | "
            "pod error max | pods off > 1% | billed zero (short) | total CPU error |")  # fmt: skip
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for pods, run in results["runs"].items():
        for method, m in run["methods"].items():
            a = m["accuracy"]
            ns_max = max(a["ns_cpu_error_max"], a["ns_memory_error_max"])
            ns_mean = max(a["ns_cpu_error_mean"], a["ns_memory_error_mean"])
            pod_max = max(a["pod_cpu_error_max"], a["pod_memory_error_max"])
            lines.append(
                f"| {int(pods):,} | {method} | {m['seconds_best']:.2f} | {m['queries']} | {m['samples']:,} | "
                f"{m['peak_rss_mb']:.0f} | {pct(ns_max)} / {pct(ns_mean)} | {pct(pod_max)} | "
                f"{a['pods_off_over_1pct']:,} | {a['pods_billed_zero']} ({a['short_pods_billed_zero']} of "
                f"{a['short_pods']} short), {a['pods_billed_zero_pct']:.1f}% | {pct(a['total_cpu_error'])} |"
            )
    return "\n".join(lines)


def query_table(results: dict[str, Any]) -> str:
    """Markdown: our queries by time (they overlap: DayQueries runs them side by side), per pod count."""
    lines = ["| pods | query | kind, step | seconds | samples | series |", "|---|---|---|---|---|---|"]
    for pods, run in results["runs"].items():
        for q in sorted(run["methods"]["ours"]["per_query"], key=lambda q: -q["seconds"]):
            kind = f"{q['kind']}, {q['step']:g} s" if q.get("step") else q["kind"]
            lines.append(f"| {int(pods):,} | {q['name']} | {kind} | {q['seconds']:.3f} | {q['samples']:,} | "
                         f"{q['series']:,} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, nargs="+", default=[2000, 10000])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--day", default="2026-11-20")
    parser.add_argument("--interval", type=int, default=30, help="scrape interval of the synthetic day, seconds")
    parser.add_argument("--runs", type=int, default=3, help="fresh processes per method; the best time is kept")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/xu-bench-ocp"))
    parser.add_argument("--port", default="29190")
    parser.add_argument("--keep", action="store_true", help="keep the scratch dir (day files, truth, TSDB)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results-openshift.json")
    parser.add_argument("--diagnose", action="store_true", help="also time each query alone and cheaper variants")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    if not re.fullmatch(r"\d+", args.port):
        parser.error("--port must be a number")
    args.scratch.mkdir(mode=0o755, parents=True, exist_ok=True)
    args.scratch.chmod(0o755)  # the prometheus user must reach the data dir inside
    env = {"XU_STATE_DIR": str(args.scratch / "state"), "XU_PROM_PORT": args.port}
    url = f"http://127.0.0.1:{args.port}"
    results: dict[str, Any] = {
        "day": args.day, "seed": args.seed, "interval": args.interval, "runs": {}, "targets": TARGETS,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "prometheus": subprocess.run(["prometheus", "--version"], capture_output=True, text=True).stdout.split("\n")[0],
    }  # fmt: skip
    results["library"] = library_state()
    try:
        for pods in args.pods:
            results["runs"][str(pods)] = bench_pods(args, pods, env, url)
            args.out.write_text(json.dumps(results, indent=1) + "\n")
    finally:
        service("stop", env=env)
        if not args.keep:
            shutil.rmtree(args.scratch, ignore_errors=True)
    if library_state()["sha256"] != results["library"]["sha256"]:
        results["library"]["changed_during_run"] = True
        args.out.write_text(json.dumps(results, indent=1) + "\n")
        print("WARNING: plugins/xdmod_usage changed during the run: the figures mix two versions", file=sys.stderr)
    print(table(results))
    print()
    print(query_table(results))
    print(f"\nJSON: {args.out}")


if __name__ == "__main__":
    main()
