"""The synthetic OpenShift day (xdmod_usage.openshift_synthetic): its file format, its truth, and what a real
Prometheus 2.42 makes of it after a promtool backfill.

The truth is checked two independent ways: by re-parsing the written OpenMetrics text here (no shared code
with the generator) and by querying the real Prometheus filled with it (fixture `prometheus_site`). The optional
kube-state-metrics pod families (``ksm=True``) are checked the same two ways (fixture `prometheus_ksm_site`):
charging their Running-phase samples must give the very same truth.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import sys
import urllib.parse
import urllib.request
from collections import defaultdict
from pathlib import Path

import pytest

from xdmod_usage.openshift_synthetic import (
    A100,
    KSM_INSTANCES,
    NO_GPU_TYPE,
    SCHEDULER_INSTANCES,
    V100,
    Truth,
    generate_day,
)

ROOT = Path(__file__).resolve().parent.parent
REPLICA = SCHEDULER_INSTANCES[0]
KSM = KSM_INSTANCES[0]
SCHEDULER_FAMILIES = ["kube_pod_resource_request", "kube_pod_status_unschedulable", "kube_node_labels",
                      "kube_namespace_annotations", "kube_namespace_labels"]  # fmt: skip
KSM_POD_FAMILIES = ["kube_pod_container_resource_requests", "kube_pod_status_phase", "kube_pod_info"]
KEPT_AFTER_COMPLETION = 30 * 60  # seconds kube-state-metrics keeps a completed pod's series (phase Succeeded)
LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\} (\S+) (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
NOT_CHARGED = "ephemeral-storage"


def small_day(pods: int = 8, seed: int = 3, **kwargs) -> tuple[str, Truth]:
    out = io.StringIO()
    truth = generate_day(out, "2026-11-20", pods, seed, **kwargs)
    return out.getvalue(), truth


# ---------------------------------------------------------------------------------------- the file itself


def parse(text: str) -> tuple[dict[str, list], dict[tuple, list[tuple[int, float]]]]:
    """Check the OpenMetrics layout rules and return (family -> series keys, series key -> samples)."""
    assert "\r" not in text and text.isascii()
    assert text.endswith("\n# EOF\n")
    families: dict[str, list] = {}
    series: dict[tuple, list[tuple[int, float]]] = {}
    family = current = None
    for line in text.splitlines()[:-1]:
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind == "gauge" and name not in families, f"family {name} declared twice"
            families[name], family, current = [], name, None
            continue
        m = LINE.match(line)
        assert m, line
        name, label_text, value, ts = m.groups()
        assert name == family, f"{name} outside its family block"
        labels = tuple(LABEL.findall(label_text))
        assert ",".join(f'{k}="{v}"' for k, v in labels) == label_text
        assert all(v for _, v in labels), f"empty label value in {line}"
        key = (name, frozenset(labels))
        if key != current:
            assert key not in series, f"series not contiguous: {line}"
            series[key], current = [], key
            families[name].append(key)
        assert re.fullmatch(r"\d+", ts), f"timestamp not in integer seconds: {line}"
        samples = series[key]
        assert not samples or int(ts) > samples[-1][0], f"out of order: {line}"
        samples.append((int(ts), float(value)))
    return families, series


def gpu_products(series: dict[tuple, list[tuple[int, float]]]) -> dict[str, str]:
    products = {}
    for (name, labels), _ in series.items():
        if name == "kube_node_labels":
            d = dict(labels)
            products[d["node"]] = d.get("label_nvidia_com_gpu_product", NO_GPU_TYPE)
    return products


def recompute(series: dict[tuple, list[tuple[int, float]]], truth: Truth) -> dict[str, dict]:
    """The truth rules applied to parsed samples: one replica, bound pods, in-day, no ephemeral-storage."""
    per_ts: dict[str, dict[int, tuple[str, dict]]] = defaultdict(dict)
    for (name, labels), samples in series.items():
        d = dict(labels)
        if name != "kube_pod_resource_request" or d["instance"] != REPLICA or "node" not in d:
            continue
        if d["resource"] == NOT_CHARGED:
            continue
        key = f"{d['namespace']}/{d['pod']}"
        for ts, value in samples:
            if truth.day_start <= ts < truth.day_end:
                node, req = per_ts[key].setdefault(ts, (d["node"], {}))
                assert node == d["node"], f"{key} on two nodes at {ts}"
                req[d["resource"]] = value
    return usage_of(per_ts, gpu_products(series), truth.interval)


def recompute_ksm(series: dict[tuple, list[tuple[int, float]]], truth: Truth) -> dict[str, dict]:
    """The same rules from the kube-state-metrics families alone: one instance, in-day samples whose pod phase
    is Running, container requests summed per pod, no ephemeral-storage (unit="byte" like memory)."""
    running: dict[tuple, set[int]] = defaultdict(set)
    for (name, labels), samples in series.items():
        d = dict(labels)
        if name == "kube_pod_status_phase" and d["instance"] == KSM and d["phase"] == "Running":
            running[(d["namespace"], d["pod"], d["uid"])].update(ts for ts, value in samples if value == 1)
    per_ts: dict[str, dict[int, tuple[str, dict]]] = defaultdict(dict)
    for (name, labels), samples in series.items():
        d = dict(labels)
        if name != "kube_pod_container_resource_requests" or d["instance"] != KSM or d["resource"] == NOT_CHARGED:
            continue
        key, when = f"{d['namespace']}/{d['pod']}", running[(d["namespace"], d["pod"], d["uid"])]
        for ts, value in samples:
            if ts in when and truth.day_start <= ts < truth.day_end:
                node, req = per_ts[key].setdefault(ts, (d["node"], {}))
                assert node == d["node"], f"{key} on two nodes at {ts}"
                req[d["resource"]] = req.get(d["resource"], 0) + value
    return usage_of(per_ts, gpu_products(series), truth.interval)


def usage_of(per_ts: dict[str, dict[int, tuple[str, dict]]], products: dict[str, str], step: int) -> dict[str, dict]:
    """Per pod: each sample (node, requests) charged for one interval, runs as in `Truth`."""
    pods = {}
    for key, by_ts in per_ts.items():
        cpu_ms = mem = 0
        gpu: dict[str, int] = defaultdict(int)
        mig: dict[str, int] = defaultdict(int)
        runs: list[list] = []
        for ts in sorted(by_ts):
            node, req = by_ts[ts]
            cpu_ms += round(req.get("cpu", 0) * 1000) * step
            mem += int(req.get("memory", 0)) * step
            for res, value in req.items():
                if res == "nvidia.com/gpu":
                    gpu[products[node]] += int(value) * step
                elif res.startswith("nvidia.com/mig-"):
                    mig[res.removeprefix("nvidia.com/mig-")] += int(value) * step
            if runs and runs[-1][1] == ts - step and runs[-1][2] == node and runs[-1][3] == req:
                runs[-1][1] = ts
            else:
                runs.append([ts, ts, node, req])
        pods[key] = {"samples": len(by_ts), "cpu_millicore_seconds": cpu_ms, "memory_byte_seconds": mem,
                     "gpu_seconds": dict(gpu), "mig_seconds": dict(mig), "runs": runs}  # fmt: skip
    return pods


@pytest.mark.parametrize(
    ("interval", "offset", "outage_hour", "ksm"), [(30, 7, 13, False), (60, 13, 2, False), (30, 7, 13, True)]
)
def test_file_layout_and_truth_recomputed_from_the_text(interval, offset, outage_hour, ksm):
    text, truth = small_day(interval=interval, offset=offset, outage_hour=outage_hour, ksm=ksm)
    families, series = parse(text)
    assert list(families) == SCHEDULER_FAMILIES + (KSM_POD_FAMILIES if ksm else [])
    all_samples = [ts for samples in series.values() for ts, _ in samples]
    assert len(all_samples) == truth.sample_lines
    assert {f: sum(len(series[k]) for k in keys) for f, keys in families.items()} == truth.sample_lines_by_family
    assert {f: len(keys) for f, keys in families.items()} == truth.series_by_family
    assert min(all_samples) == truth.first_ts == truth.day_start - 7200 + offset
    assert max(all_samples) <= truth.last_ts < truth.day_end + 3600
    assert all((ts - truth.first_ts) % interval == 0 for ts in all_samples)
    assert not [ts for ts in all_samples if truth.outage[0] <= ts < truth.outage[1]]

    # Three scheduler replicas with identical samples; every kube-state-metrics series twice.
    replicas: dict[frozenset, dict[str, list]] = defaultdict(dict)
    for (name, labels), samples in series.items():
        d = dict(labels)
        replicas[(name, frozenset((k, v) for k, v in labels if k != "instance"))][d["instance"]] = samples
        assert d["job"] == ("scheduler" if name == "kube_pod_resource_request" else "kube-state-metrics")
    for (name, _), by_instance in replicas.items():
        want = SCHEDULER_INSTANCES if name == "kube_pod_resource_request" else KSM_INSTANCES
        assert sorted(by_instance) == sorted(want)
        assert all(s == by_instance[want[0]] for s in by_instance.values())

    # Units exactly as the scheduler exposes them (GPU and MIG without a unit label).
    for name, labels in series:
        d = dict(labels)
        if name == "kube_pod_resource_request":
            assert d.get("unit") == {"cpu": "cores", "memory": "bytes", "ephemeral-storage": "bytes"}.get(d["resource"])

    got = recompute(series, truth)
    assert_same_as_truth(got, truth)


def test_same_seed_same_bytes_and_other_seed_differs():
    text1, truth1 = small_day(seed=11)
    text2, truth2 = small_day(seed=11)
    text3, _ = small_day(seed=12)
    assert hashlib.sha256(text1.encode()).digest() == hashlib.sha256(text2.encode()).digest()
    assert json.dumps(truth1.as_dict()) == json.dumps(truth2.as_dict())
    assert text1 != text3


def test_command_line_writes_the_same_file_and_truth(tmp_path):
    out, truth_file = tmp_path / "day.om", tmp_path / "truth.json"
    proc = subprocess.run(
        [sys.executable, "-m", "xdmod_usage.openshift_synthetic", "--day", "2026-11-20", "--pods", "8", "--seed", "3",
         "--out", str(out), "--truth", str(truth_file)],
        cwd=ROOT / "plugins", capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    text, truth = small_day(pods=8, seed=3)
    assert out.read_text() == text
    assert json.loads(truth_file.read_text()) == json.loads(json.dumps(truth.as_dict()))
    assert json.loads(proc.stdout)["sample_lines"] == truth.sample_lines


def test_named_cases_are_there_with_their_shapes():
    _, truth = small_day(pods=0)
    pods, cases, step = truth.pods, truth.cases, truth.interval

    def one(case):
        (key,) = cases[case]
        return key

    (run,) = pods[one("mid_hour")].runs
    assert run.first_ts % 3600 and truth.day_start < run.first_ts < run.last_ts < truth.day_end
    assert pods[one("across_previous_midnight")].runs[0].first_ts == truth.day_start + truth.offset
    assert pods[one("across_next_midnight")].runs[-1].last_ts == truth.day_end - step + truth.offset
    first, second = pods[one("restarted")].runs
    assert first.node != second.node and second.first_ts - first.last_ts >= 40 * 60
    assert {k.split("/")[0] for k in cases["same_name_two_namespaces"]} == {"case-a", "case-b"}
    assert len({k.split("/")[1] for k in cases["same_name_two_namespaces"]}) == 1
    a, b = (pods[k] for k in cases["same_name_two_namespaces"])
    assert a.runs[0].requests["cpu"] != b.runs[0].requests["cpu"]
    first, second = pods[one("cpu_change")].runs
    assert (first.node, first.requests["cpu"], second.requests["cpu"]) == (second.node, 0.5, 1.5)
    assert second.first_ts - first.last_ts == step  # no gap
    first, second = pods[one("memory_change")].runs
    assert first.requests["memory"] < second.requests["memory"] and second.first_ts - first.last_ts == step
    assert set(pods[one("gpu_type_change")].gpu_seconds) == {A100, V100}
    assert set(pods[one("gpu_unlabelled_node")].gpu_seconds) == {NO_GPU_TYPE}
    assert set(pods[one("mig")].mig_seconds) == {"1g.5gb", "3g.20gb"}
    for case in ("pending", "unschedulable"):
        assert one(case) not in pods
    (run,) = pods[one("pending_then_bound")].runs
    assert run.first_ts > truth.day_start + 11 * 3600
    assert len(pods[one("outage_crossing")].runs) == 2  # the outage cuts the run
    assert pods[one("bare_namespace")].samples == 2
    assert len(cases["ephemeral_storage"]) >= 3
    assert truth.namespace_meta["case-unattributed"].get("annotation_openshift_io_requester")
    assert "annotation_cf_pi" not in truth.namespace_meta["case-unattributed"]
    assert set(truth.namespace_meta["case-bare"]) == {"label_kubernetes_io_metadata_name"}
    assert truth.total.samples == sum(p.samples for p in pods.values())


# ---------------------------------------------------------------------------------------- kube-state-metrics


@pytest.fixture(scope="module")
def ksm_day():
    """A small day with the kube-state-metrics pod families; seed 12 has a pod restarted 20 min after it
    completed, inside the file (its Succeeded tail is cut by the next incarnation)."""
    text, truth = small_day(pods=8, seed=12, ksm=True)
    families, series = parse(text)
    return text, truth, families, series


def test_ksm_is_opt_in_and_appends_only_its_families(ksm_day):
    text, truth, families, _ = ksm_day
    default, default_truth = small_day(pods=8, seed=12)
    assert small_day(pods=8, seed=12, ksm=False)[0] == default
    assert list(families) == SCHEDULER_FAMILIES + KSM_POD_FAMILIES
    assert text.startswith(default.removesuffix("# EOF\n"))  # the default file, then the new families
    accounting = {"sample_lines", "sample_lines_by_family", "series_by_family"}
    got, want = truth.as_dict(), default_truth.as_dict()
    for field_name in got.keys() - accounting:
        assert got[field_name] == want[field_name], field_name
    assert got.keys() == want.keys()
    for field_name in ("sample_lines_by_family", "series_by_family"):
        assert {f: n for f, n in got[field_name].items() if f not in KSM_POD_FAMILIES} == want[field_name]
    assert got["sample_lines"] == want["sample_lines"] + sum(got["sample_lines_by_family"][f] for f in KSM_POD_FAMILIES)


def test_ksm_running_phase_charges_exactly_the_truth(ksm_day):
    _, truth, _, series = ksm_day
    got = recompute_ksm(series, truth)
    assert_same_as_truth(got, truth)


def test_ksm_container_labels_units_and_split(ksm_day):
    _, _, families, series = ksm_day
    units = {"cpu": "core", "memory": "byte", "ephemeral-storage": "byte"}
    sidecar_parts = set()
    for key in families["kube_pod_container_resource_requests"]:
        d = dict(key[1])
        assert set(d) - {"node"} == {"namespace", "pod", "uid", "container", "resource", "unit", "instance", "job"}
        assert d["unit"] == units.get(d["resource"], "integer")
        if d["container"] == "sidecar":
            sidecar_parts |= {(d["resource"], value) for _, value in series[key]}
        else:
            assert d["container"] == "main"
    assert sidecar_parts == {("cpu", 0.1), ("memory", 128 * 2**20)}
    main_resources = {dict(k[1])["resource"] for k in families["kube_pod_container_resource_requests"]}
    assert {"nvidia.com/gpu", "nvidia.com/mig-1g.5gb", "nvidia.com/mig-3g.20gb", "ephemeral-storage"} < main_resources
    for key in families["kube_pod_status_phase"]:
        assert set(dict(key[1])) == {"namespace", "pod", "uid", "phase", "instance", "job"}
    for key in families["kube_pod_info"]:
        assert set(dict(key[1])) - {"node"} == {"namespace", "pod", "uid", "instance", "job"}


def pod_views(series: dict[tuple, list[tuple[int, float]]]) -> dict[str, dict]:
    """Per "ns/pod", one scheduler replica and one KSM instance: ts -> what each family says."""
    views: dict[str, dict] = defaultdict(lambda: defaultdict(dict))
    for (name, labels), samples in series.items():
        d = dict(labels)
        if d["instance"] not in (REPLICA, KSM) or name not in ("kube_pod_resource_request", *KSM_POD_FAMILIES):
            continue
        view, node = views[f"{d['namespace']}/{d['pod']}"], d.get("node")
        if "uid" in d:
            view["uids"][d["uid"]] = True
        for ts, value in samples:
            if name == "kube_pod_resource_request":  # ts -> (node, {resource: value})
                assert view["scheduler"].setdefault(ts, (node, {}))[0] == node
                view["scheduler"][ts][1][d["resource"]] = value
            elif name == "kube_pod_status_phase":  # ts -> {phase: value}
                view["phase"].setdefault(ts, {})[d["phase"]] = value
            elif name == "kube_pod_info":  # ts -> node
                assert ts not in view["info"], "two kube_pod_info series at once"
                view["info"][ts] = node
            else:  # ts -> (node, {resource: summed over containers})
                assert view["containers"].setdefault(ts, (node, {}))[0] == node
                summed = view["containers"][ts][1]
                summed[d["resource"]] = summed.get(d["resource"], 0) + value
    return views


def test_ksm_phase_info_and_requests_follow_the_scheduler_samples(ksm_day):
    """Running exactly where the scheduler has a bound sample, Pending where it has a node-less one, then up to
    30 min of Succeeded (same node, same requests) after each completion; container requests add up to the
    pod's request at every sample; kube_pod_info and the requests cover the pod's whole existence."""
    _, truth, _, series = ksm_day
    step, views = truth.interval, pod_views(series)
    tails: dict[str, list[list[int]]] = defaultdict(list)  # pod -> [first, last] ts of each Succeeded stretch
    for key, view in views.items():
        assert len(view["uids"]) == 1, key
        phases = view["phase"]
        assert all(sorted(p.items()) in ([("Pending", 1), ("Running", 0), ("Succeeded", 0)],
                                         [("Pending", 0), ("Running", 1), ("Succeeded", 0)],
                                         [("Pending", 0), ("Running", 0), ("Succeeded", 1)])
                   for p in phases.values()), key  # fmt: skip
        current = {ts: next(ph for ph, value in p.items() if value == 1) for ts, p in phases.items()}
        scheduler = view["scheduler"]
        assert {ts for ts, ph in current.items() if ph == "Running"} == {ts for ts, s in scheduler.items() if s[0]}
        assert {ts for ts, ph in current.items() if ph == "Pending"} == {ts for ts, s in scheduler.items() if not s[0]}
        assert sorted(view["info"]) == sorted(view["containers"]) == sorted(current), key
        last = None  # the scheduler's latest sample
        for ts in sorted(current):
            node, requests = view["containers"][ts]
            assert view["info"][ts] == node, (key, ts)
            if current[ts] == "Succeeded":
                assert ts not in scheduler and (last is None or last[0] is not None), (key, ts)
                if last is not None:
                    assert (node, requests) == last, (key, ts)
                if tails[key] and tails[key][-1][1] == ts - step:
                    tails[key][-1][1] = ts
                else:
                    tails[key].append([ts, ts])
            else:
                assert (node, requests) == scheduler[ts], (key, ts)
                last = scheduler[ts]
    for key, stretches in tails.items():
        for first, last_ts in stretches:
            assert (last_ts - first) // step + 1 <= KEPT_AFTER_COMPLETION // step, key
    one = {case: keys[0] for case, keys in truth.cases.items()}
    ended = truth.pods[one["mid_hour"]].runs[-1].last_ts
    assert tails[one["mid_hour"]] == [[ended + step, ended + KEPT_AFTER_COMPLETION]]  # all 30 min, no outage there
    assert tails[one["across_next_midnight"]][-1][1] == truth.last_ts  # the tail is cut at the file's end
    assert len(tails[one["restarted"]]) == 2  # both incarnations complete
    assert len(tails[one["cpu_change"]]) == 1  # a request change is no completion
    assert one["pending"] not in tails and one["unschedulable"] not in tails  # a pod that never ran cannot succeed
    cut = [k for k, v in views.items() for a, b in tails[k]
           if current_after(v, b + step) == "Running" and b - a < KEPT_AFTER_COMPLETION - step]  # fmt: skip
    assert cut, "no Succeeded tail cut short by the pod's next incarnation"


def current_after(view: dict, ts: int) -> str | None:
    phases = view["phase"].get(ts)
    return next(ph for ph, value in phases.items() if value == 1) if phases else None


def test_command_line_ksm_flag(tmp_path):
    out = tmp_path / "day.om"
    subprocess.run(
        [sys.executable, "-m", "xdmod_usage.openshift_synthetic", "--day", "2026-11-20", "--pods", "2", "--seed", "4",
         "--ksm", "--out", str(out)],
        cwd=ROOT / "plugins", capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert out.read_text() == small_day(pods=2, seed=4, ksm=True)[0]


# ---------------------------------------------------------------------------------------- real Prometheus


def query(base_url: str, promql: str, at: float) -> list[dict]:
    url = f"{base_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql, "time": f"{at:.3f}"})
    with urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310 - loopback only
        body = json.load(resp)
    assert body["status"] == "success", body
    return body["data"]["result"]


def per_pod(result: list[dict]) -> dict[str, float]:
    """Sum a result by namespace/pod (a restarted pod has one series per node)."""
    out: dict[str, float] = defaultdict(float)
    for r in result:
        out[f"{r['metric']['namespace']}/{r['metric']['pod']}"] += float(r["value"][1])
    return dict(out)


DAY_RANGE = "86399999ms"  # evaluated at day_end - 1 ms: the closed range [day_start, day_end - 1 ms]


def whole_file(truth: dict) -> str:
    """A range that, evaluated at last_ts, reaches back to first_ts (Prometheus ranges are closed)."""
    return f"[{(truth['last_ts'] - truth['first_ts']) * 1000}ms]"


def test_backfill_is_queryable_with_three_replicas(prometheus_site):
    base, truth, _day = prometheus_site
    noon = truth["day_start"] + 12 * 3600
    by_instance = query(base, "count by (instance) (kube_pod_resource_request)", noon)
    counts = {r["metric"]["instance"]: int(r["value"][1]) for r in by_instance}
    assert sorted(counts) == sorted(SCHEDULER_INSTANCES) and len(set(counts.values())) == 1
    spread = query(base, "max by (namespace, pod, node, resource) (kube_pod_resource_request)"
                         " - min by (namespace, pod, node, resource) (kube_pod_resource_request)", noon)  # fmt: skip
    assert spread and all(float(r["value"][1]) == 0 for r in spread)
    copies = query(base, "count by (namespace, pod, node, resource) (kube_pod_resource_request)", noon)
    assert {int(r["value"][1]) for r in copies} == {3}
    nodes = query(base, "count by (node) (kube_node_labels)", noon)
    assert {r["metric"]["node"]: int(r["value"][1]) for r in nodes} == dict.fromkeys(truth["nodes"], 2)


def test_no_sample_lost_in_the_backfill(prometheus_site):
    base, truth, _day = prometheus_site
    (total,) = query(base, f'sum(count_over_time({{__name__=~"kube_.+"}}{whole_file(truth)}))', truth["last_ts"])
    assert int(total["value"][1]) == truth["sample_lines"]


def test_sample_counts_per_pod_match_the_truth(prometheus_site):
    base, truth, _day = prometheus_site
    promql = f'count_over_time(kube_pod_resource_request{{resource="cpu",instance="{REPLICA}",node!=""}}[{DAY_RANGE}])'
    got = per_pod(query(base, promql, truth["day_end"] - 0.001))
    assert {k: int(v) for k, v in got.items()} == {k: p["samples"] for k, p in truth["pods"].items()}


def test_usage_from_prometheus_matches_the_truth(prometheus_site):
    base, truth, _day = prometheus_site
    at, step = truth["day_end"] - 0.001, truth["interval"]

    def summed(selector: str, by: str) -> list[dict]:
        sel = f'kube_pod_resource_request{{{selector},instance="{REPLICA}",node!=""}}'
        return query(base, f"sum by ({by}) (sum_over_time({sel}[{DAY_RANGE}]))", at)

    cpu = {r["metric"]["namespace"]: float(r["value"][1]) * step for r in summed('resource="cpu"', "namespace")}
    assert cpu.keys() == truth["namespaces"].keys()
    for ns, usage in truth["namespaces"].items():
        assert cpu[ns] == pytest.approx(usage["cpu_core_seconds"], rel=1e-12)
    mem = {r["metric"]["namespace"]: float(r["value"][1]) * step for r in summed('resource="memory"', "namespace")}
    for ns, usage in truth["namespaces"].items():
        assert mem[ns] == pytest.approx(usage["memory_byte_seconds"], rel=1e-12)
    gpu: dict[str, float] = defaultdict(float)
    for r in summed('resource="nvidia.com/gpu"', "node"):
        gpu[truth["nodes"][r["metric"]["node"]].get("label_nvidia_com_gpu_product", NO_GPU_TYPE)] += (
            float(r["value"][1]) * step
        )
    assert dict(gpu) == truth["total"]["gpu_seconds"]
    mig = {r["metric"]["resource"].removeprefix("nvidia.com/mig-"): float(r["value"][1]) * step
           for r in summed('resource=~"nvidia.com/mig-.+"', "resource")}  # fmt: skip
    assert mig == truth["total"]["mig_seconds"]
    # ephemeral-storage shares unit="bytes" with memory: counting by unit would inflate memory.
    by_unit = summed('unit="bytes"', "resource")
    assert {r["metric"]["resource"] for r in by_unit} == {"memory", "ephemeral-storage"}


def test_outage_hour_has_no_samples_at_all(prometheus_site):
    base, truth, _day = prometheus_site
    start, end = truth["outage"]["start"], truth["outage"]["end"]
    assert query(base, 'count(count_over_time({__name__=~"kube_.+"}[3599999ms]))', end - 0.001) == []
    (before,) = query(base, 'count(count_over_time({__name__=~"kube_.+"}[1m]))', start - 0.001)
    (after,) = query(base, 'count(count_over_time({__name__=~"kube_.+"}[1m]))', end + 60)
    assert int(before["value"][1]) > 0 and int(after["value"][1]) > 0


def test_pending_unschedulable_and_ephemeral_storage_exist(prometheus_site):
    base, truth, _day = prometheus_site
    whole = whole_file(truth)
    eph = query(base, f'count by (namespace, pod) (count_over_time(kube_pod_resource_request{{resource='
                      f'"ephemeral-storage",instance="{REPLICA}"}}{whole}))', truth["last_ts"])  # fmt: skip
    eph_pods = sorted(f"{r['metric']['namespace']}/{r['metric']['pod']}" for r in eph)
    assert eph_pods == truth["cases"]["ephemeral_storage"]
    pending = query(base, f'count by (namespace, pod) (count_over_time(kube_pod_resource_request{{node="",'
                          f'instance="{REPLICA}"}}{whole}))', truth["last_ts"])  # fmt: skip
    pending_pods = {f"{r['metric']['namespace']}/{r['metric']['pod']}" for r in pending}
    never_bound = truth["cases"]["pending"] + truth["cases"]["unschedulable"]
    assert set(never_bound + truth["cases"]["pending_then_bound"]) <= pending_pods
    assert not set(never_bound) & truth["pods"].keys()
    unsched = query(base, f"count by (namespace, pod) (count_over_time(kube_pod_status_unschedulable{whole}))",
                    truth["last_ts"])  # fmt: skip
    unsched_pods = {f"{r['metric']['namespace']}/{r['metric']['pod']}" for r in unsched}
    assert set(truth["cases"]["unschedulable"]) <= unsched_pods <= pending_pods


# ---------------------------------------------------------------------------------------- real Prometheus, KSM


def query_range(base_url: str, promql: str, start: float, end: float, step: int) -> list[dict]:
    params = {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": str(step)}
    url = f"{base_url}/api/v1/query_range?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310 - loopback only
        body = json.load(resp)
    assert body["status"] == "success", body
    return body["data"]["result"]


def raw_by_pod(base_url: str, selector: str, truth: dict) -> dict[str, dict[int, float]]:
    """Every stored sample of the selected series (one KSM instance), merged per "ns/pod" (ts -> value)."""
    out: dict[str, dict[int, float]] = defaultdict(dict)
    for r in query(base_url, f"{selector}{whole_file(truth)}", truth["last_ts"]):
        out[f"{r['metric']['namespace']}/{r['metric']['pod']}"].update((int(t), float(v)) for t, v in r["values"])
    return dict(out)


def test_ksm_backfill_no_sample_lost_and_two_instances(prometheus_ksm_site):
    """Counted per family: without its name a pending pod's kube_pod_info (no node) has the same labels as its
    kube_pod_status_unschedulable, so one count_over_time over all families is refused (422)."""
    base, truth, _day = prometheus_ksm_site
    assert list(truth["sample_lines_by_family"]) == SCHEDULER_FAMILIES + KSM_POD_FAMILIES
    for family, lines in truth["sample_lines_by_family"].items():
        got = query(base, f"sum by (instance) (count_over_time({family}{whole_file(truth)}))", truth["last_ts"])
        counts = {r["metric"]["instance"]: int(r["value"][1]) for r in got}
        assert sum(counts.values()) == lines, family
        if family in KSM_POD_FAMILIES:
            assert counts == dict.fromkeys(KSM_INSTANCES, lines // 2), family


def test_ksm_running_phase_sample_counts_match_the_truth(prometheus_ksm_site):
    base, truth, _day = prometheus_ksm_site
    promql = f'max by (namespace, pod) (sum_over_time(kube_pod_status_phase{{phase="Running"}}[{DAY_RANGE}]))'
    got = {k: int(v) for k, v in per_pod(query(base, promql, truth["day_end"] - 0.001)).items()}
    assert {k: v for k, v in got.items() if v} == {k: p["samples"] for k, p in truth["pods"].items()}
    assert got.keys() > truth["pods"].keys()  # pending pods and Succeeded tails only: Running 0 all day


def test_ksm_container_requests_add_up_to_the_pod_request(prometheus_ksm_site):
    base, truth, _day = prometheus_ksm_site
    at = truth["day_end"] - 0.001
    for resource in ("cpu", "memory"):
        promql = (f"sum by (namespace, pod) (max by (namespace, pod, container) (max_over_time("
                  f'kube_pod_container_resource_requests{{resource="{resource}"}}[{DAY_RANGE}])))')  # fmt: skip
        got = per_pod(query(base, promql, at))
        want = {k: max(run[3][resource] for run in p["runs"]) for k, p in truth["pods"].items()}
        assert {k: got[k] for k in want} == want, resource  # exact: 1.4 + 0.1 == 1.5 in float64 too


def test_completed_pods_keep_container_requests_past_their_last_running_sample(prometheus_ksm_site):
    """The kube-state-metrics trap: a completed pod's request series go on (phase Succeeded) for 30 minutes."""
    base, truth, _day = prometheus_ksm_site
    step = truth["interval"]
    phases = {ph: raw_by_pod(base, f'kube_pod_status_phase{{phase="{ph}",instance="{KSM}"}}', truth)
              for ph in ("Running", "Succeeded")}  # fmt: skip
    requests = raw_by_pod(base, f'kube_pod_container_resource_requests{{container="main",resource="cpu",'
                                f'instance="{KSM}"}}', truth)  # fmt: skip
    completed = 0
    for key, samples in phases["Succeeded"].items():
        succeeded = {ts for ts, value in samples.items() if value == 1}
        running = {ts for ts, value in phases["Running"][key].items() if value == 1}
        if not succeeded:
            continue
        assert succeeded <= requests[key].keys(), key
        assert len(succeeded) <= 2 * KEPT_AFTER_COMPLETION // step, key  # at most two incarnations in the file
        if running and max(succeeded) > max(running):  # the last incarnation completed inside the file
            assert max(requests[key]) == max(succeeded) > max(running), key
            completed += 1
    mid_hour = truth["cases"]["mid_hour"][0]
    last_running = truth["pods"][mid_hour]["runs"][-1][1]
    assert max(requests[mid_hour]) == last_running + KEPT_AFTER_COMPLETION
    assert completed >= 10


def test_ksm_charged_by_running_phase_equals_the_truth_and_naive_sum_overcharges(prometheus_ksm_site):
    """Evaluated at every grid point of the day, each selector seeing only the sample exactly there (a range
    one step short): container requests times the Running phase give the truth; without the phase the
    completed pods' lingering requests are charged too."""
    base, truth, _day = prometheus_ksm_site
    step, window = truth["interval"], f"[{truth['interval'] * 1000 - 1}ms]"
    start, end = truth["day_start"] + truth["offset"], truth["day_end"] - step + truth["offset"]
    requests = f'max_over_time(kube_pod_container_resource_requests{{resource="cpu",instance="{KSM}"}}{window})'
    running = f'max_over_time(kube_pod_status_phase{{phase="Running",instance="{KSM}"}}{window})'

    def by_namespace(promql: str) -> dict[str, float]:
        result = query_range(base, f"sum by (namespace) ({promql})", start, end, step)
        return {r["metric"]["namespace"]: sum(float(v) for _, v in r["values"]) * step for r in result}

    charged = by_namespace(f"{requests} * on (namespace, pod, uid) group_left () {running}")
    want = {ns: usage["cpu_core_seconds"] for ns, usage in truth["namespaces"].items()}
    assert {ns: v for ns, v in charged.items() if v} == pytest.approx(want, rel=1e-12)
    naive = by_namespace(requests)
    assert sum(naive.values()) > sum(want.values()) * 1.01
    assert all(naive[ns] >= want[ns] * (1 - 1e-12) for ns in want)


def assert_same_as_truth(got: dict, truth) -> None:
    """Usage recomputed from the written samples equals the generator's truth, pod by pod, field by field."""
    want = {k: p.as_dict() for k, p in truth.pods.items()}
    assert sorted(got) == sorted(want)
    for key, pod in got.items():
        for field_name, value in pod.items():
            expect = want[key][field_name]
            if field_name == "runs":
                expect = [[a, b, node, req] for a, b, node, req in expect]
            assert value == expect, (key, field_name)
