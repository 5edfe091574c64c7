"""A synthetic OpenShift cluster-day as OpenMetrics (for promtool backfill), with the exact usage it implies.

Why: an OpenShift collector is only as good as its handling of what the cluster's Prometheus really holds
(three scheduler replicas exposing every pod request, duplicate kube-state-metrics series, pending pods with
no node, ephemeral-storage under unit="bytes", restarts under one name, GPU type changes, an outage...).
This module writes such a day and computes the expected usage from the very sample ranges it writes, so a
collector run against a real Prometheus filled with the file can be checked to the core-second.

Samples run from 2 h before the day's start to 1 h after its end (pods crossing midnight exist), on a grid
``day_start - 2h + offset + k * interval`` (offset not 0, so no sample sits on a window edge), except for
one outage hour (default 13:00-14:00 UTC) where no series has any sample. Timestamps are in seconds.

Truth rules (see `Truth`): one scheduler replica, only samples with day_start <= ts < day_end, only samples
of bound pods (with a node), no ephemeral-storage, each sample standing for exactly one interval of its value.

With ``ksm=True`` (``--ksm``) the kube-state-metrics families a cluster without the scheduler metric is billed
from are appended (see `_write_ksm_pods`): per-container requests (each pod split into "main" and "sidecar"),
pod phase and pod info. They keep a completed pod's requests for 30 minutes after it ends (phase Succeeded),
as kube-state-metrics does while the pod object exists. The truth does not change: charging the samples
whose phase is Running gives exactly the scheduler-metric truth. Without ``ksm`` the output is unchanged.

Stdlib only (importable without Airflow); memory stays small: one series' text at a time is built.
    python -m xdmod_usage.openshift_synthetic --day 2026-11-20 --pods 2000 --seed 1 --out day.om --truth t.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import random
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TextIO

SCHEDULER_INSTANCES = ("10.0.0.1:10259", "10.0.0.2:10259", "10.0.0.3:10259")  # OpenShift runs 3 kube-schedulers
KSM_INSTANCES = ("10.128.2.14:8443", "10.131.0.9:8443")  # two kube-state-metrics: every KSM series twice
MARGIN_BEFORE = 2 * 3600
MARGIN_AFTER = 3600
DAY_SECONDS = 86_400

CPU = "cpu"
MEMORY = "memory"
GPU = "nvidia.com/gpu"
EPHEMERAL = "ephemeral-storage"
MIG_PREFIX = "nvidia.com/mig-"
MIG_1G = MIG_PREFIX + "1g.5gb"
MIG_3G = MIG_PREFIX + "3g.20gb"
UNITS = {CPU: "cores", MEMORY: "bytes", EPHEMERAL: "bytes"}  # GPUs and MIG slices carry no unit label
A100 = "NVIDIA-A100-SXM4-40GB"
V100 = "Tesla-V100-PCIE-32GB"
NO_GPU_TYPE = ""  # gpu_seconds key for a GPU node without a product label (PromQL sees a missing label as "")

REQUEST_METRIC = "kube_pod_resource_request"
UNSCHEDULABLE_METRIC = "kube_pod_status_unschedulable"
NODE_LABELS_METRIC = "kube_node_labels"
NS_ANNOTATIONS_METRIC = "kube_namespace_annotations"
NS_LABELS_METRIC = "kube_namespace_labels"
# kube-state-metrics pod families (ksm=True only)
CONTAINER_REQUESTS_METRIC = "kube_pod_container_resource_requests"
PHASE_METRIC = "kube_pod_status_phase"
POD_INFO_METRIC = "kube_pod_info"
PHASES = ("Pending", "Running", "Succeeded")
KSM_UNITS = {CPU: "core", MEMORY: "byte", EPHEMERAL: "byte"}  # any other (extended) resource: "integer"
MAIN, SIDECAR = "main", "sidecar"
SUCCEEDED_KEPT = 30 * 60  # seconds a completed pod object (and its KSM series) is kept after it ends

GiB = 1 << 30
MiB = 1 << 20
SIDECAR_REQUESTS = {CPU: 100, MEMORY: 128 * MiB}  # taken from the pod's request only when it asks for more


# ---------------------------------------------------------------------------------------------- truth types


class Run(NamedTuple):
    """Contiguous in-day samples of one pod with one node and the same requests (cpu in cores)."""

    first_ts: int
    last_ts: int
    node: str
    requests: dict[str, float | int]


@dataclass
class Usage:
    """Charged usage; cpu kept in exact millicore-seconds, the float core-seconds derived from it."""

    samples: int = 0
    cpu_millicore_seconds: int = 0
    memory_byte_seconds: int = 0
    gpu_seconds: dict[str, int] = field(default_factory=dict)  # by node gpu product, NO_GPU_TYPE if unlabelled
    mig_seconds: dict[str, int] = field(default_factory=dict)  # by MIG profile, e.g. "1g.5gb"

    @property
    def cpu_core_seconds(self) -> float:
        return self.cpu_millicore_seconds / 1000

    def add(self, other: Usage) -> None:
        self.samples += other.samples
        self.cpu_millicore_seconds += other.cpu_millicore_seconds
        self.memory_byte_seconds += other.memory_byte_seconds
        for mine, theirs in ((self.gpu_seconds, other.gpu_seconds), (self.mig_seconds, other.mig_seconds)):
            for key, value in theirs.items():
                mine[key] = mine.get(key, 0) + value

    def as_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "cpu_core_seconds": self.cpu_core_seconds,
            "cpu_millicore_seconds": self.cpu_millicore_seconds,
            "memory_byte_seconds": self.memory_byte_seconds,
            "gpu_seconds": dict(sorted(self.gpu_seconds.items())),
            "mig_seconds": dict(sorted(self.mig_seconds.items())),
        }


@dataclass
class PodTruth(Usage):
    """One (namespace, pod) name: all its incarnations on any node, in-day and bound only."""

    namespace: str = ""
    pod: str = ""
    runs: list[Run] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "pod": self.pod, **super().as_dict(), "runs": [list(r) for r in self.runs]}


@dataclass
class Truth:
    """What a correct collector must find for the day. Keys of `pods` are "namespace/pod"; a pod is listed
    only if it has at least one bound sample in the day. `cases` maps a scenario name to its "ns/pod" keys
    (pending or unschedulable ones are not in `pods`, by design)."""

    day: str
    day_start: int
    day_end: int
    interval: int
    offset: int
    seed: int
    pods_requested: int
    first_ts: int = 0
    last_ts: int = 0
    outage: tuple[int, int] = (0, 0)  # [start, end) in seconds: no sample of any series
    scheduler_instances: tuple[str, ...] = SCHEDULER_INSTANCES
    ksm_instances: tuple[str, ...] = KSM_INSTANCES
    nodes: dict[str, dict[str, str]] = field(default_factory=dict)  # node -> label_* written on kube_node_labels
    namespace_meta: dict[str, dict[str, str]] = field(default_factory=dict)  # ns -> annotation_*/label_* written
    pods: dict[str, PodTruth] = field(default_factory=dict)
    namespaces: dict[str, Usage] = field(default_factory=dict)
    total: Usage = field(default_factory=Usage)
    cases: dict[str, list[str]] = field(default_factory=dict)
    sample_lines: int = 0  # sample lines written, all replicas and families
    sample_lines_by_family: dict[str, int] = field(default_factory=dict)
    series_by_family: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (what --truth writes): runs as [first_ts, last_ts, node, requests] lists."""
        return {
            "day": self.day,
            "day_start": self.day_start,
            "day_end": self.day_end,
            "interval": self.interval,
            "offset": self.offset,
            "seed": self.seed,
            "pods_requested": self.pods_requested,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "outage": {"start": self.outage[0], "end": self.outage[1]},
            "scheduler_instances": list(self.scheduler_instances),
            "ksm_instances": list(self.ksm_instances),
            "nodes": self.nodes,
            "namespace_meta": self.namespace_meta,
            "total": self.total.as_dict(),
            "namespaces": {ns: u.as_dict() for ns, u in sorted(self.namespaces.items())},
            "pods": {key: p.as_dict() for key, p in sorted(self.pods.items())},
            "cases": self.cases,
            "sample_lines": self.sample_lines,
            "sample_lines_by_family": self.sample_lines_by_family,
            "series_by_family": self.series_by_family,
        }


# ---------------------------------------------------------------------------------------------- cluster model


@dataclass
class _Segment:
    """A stretch of a pod's life with one node (None: pending) and fixed requests, in seconds [start, end)."""

    node: str | None
    start: int
    end: int
    requests: dict[str, int]  # cpu in millicores, memory/ephemeral in bytes, GPUs and MIG slices as counts


@dataclass
class _Pod:
    namespace: str
    name: str
    uid: str
    segments: list[_Segment]  # time order, non-overlapping
    unschedulable: list[tuple[int, int]] = field(default_factory=list)  # seconds [start, end) with status=1


class _Grid:
    """The scrape grid: index k is timestamp t0 + k * interval; the outage is cut out of every series."""

    def __init__(self, day_start: int, interval: int, offset: int, outage: tuple[int, int]) -> None:
        self.interval = interval
        self.t0 = day_start - MARGIN_BEFORE + offset
        self.n = math.ceil((day_start + DAY_SECONDS + MARGIN_AFTER - self.t0) / interval)
        self.ts = [str(self.t0 + k * interval) for k in range(self.n)]
        self.day = (self.index(day_start), self.index(day_start + DAY_SECONDS))
        self.outage = (self.index(outage[0]), self.index(outage[1]))

    def index(self, ts: int) -> int:
        """First grid index whose timestamp is >= ts, clamped to the grid."""
        return min(max(-((self.t0 - ts) // self.interval), 0), self.n)

    def written(self, start: int, end: int) -> list[tuple[int, int]]:
        """Index ranges [a, b) actually written for a stretch of seconds [start, end): outage removed."""
        a, b = self.index(start), self.index(end)
        oa, ob = self.outage
        return [(x, y) for x, y in ((a, min(b, oa)), (max(a, ob), b)) if x < y]

    def timestamp(self, k: int) -> int:
        return self.t0 + k * self.interval


def _q(value: str) -> str:
    """OpenMetrics label value escaping."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: Iterable[tuple[str, str | None]]) -> str:
    """Label set text; None or empty values are omitted, as Prometheus treats an empty label as absent."""
    return ",".join(f'{k}="{_q(v)}"' for k, v in pairs if v)


def _fmt_value(resource: str, value: int) -> str:
    if resource == CPU:
        return str(value // 1000) if value % 1000 == 0 else repr(value / 1000)
    return str(value)


def _truth_value(resource: str, value: int) -> float | int:
    return value / 1000 if resource == CPU else value


class _Cluster:
    """Nodes, namespaces and pods of the day, deterministic from the seed."""

    def __init__(self, day_start: int, pods: int, seed: int) -> None:
        self.rng = random.Random(seed)  # noqa: S311 - synthetic data, not secrets
        self.day_start = day_start
        self.nodes: dict[str, dict[str, str]] = {}
        self.namespaces: dict[str, dict[str, str]] = {}
        self.pods: list[_Pod] = []
        self.cases: dict[str, list[str]] = {}
        self._make_nodes(pods)
        self._make_namespaces(pods)
        self._make_cases()
        self._make_bulk(pods)

    # -- nodes and namespaces

    def _make_nodes(self, pods: int) -> None:
        def add(name: str, product: str | None, gpu: bool) -> None:
            labels = {"label_kubernetes_io_hostname": name, "label_node_role_kubernetes_io_worker": "true"}
            if gpu:
                labels["label_nvidia_com_gpu_present"] = "true"
            if product:
                labels["label_nvidia_com_gpu_product"] = product
            self.nodes[name] = labels

        self.workers = [f"wrk-{i:03d}" for i in range(max(3, pods // 30))]
        for name in self.workers:
            add(name, None, False)
        self.a100 = [f"gpu-a100-{i:03d}" for i in range(max(1, pods // 500))]
        self.v100 = [f"gpu-v100-{i:03d}" for i in range(max(1, pods // 1000))]
        for name in self.a100:
            add(name, A100, True)
        for name in self.v100:
            add(name, V100, True)
        self.gpu_nolabel = "gpu-nolabel-000"  # GPU node whose product label is missing: the fallback-type case
        add(self.gpu_nolabel, None, True)
        self.mig = "gpu-mig-000"  # A100 partitioned in MIG slices (mixed strategy)
        add(self.mig, A100, True)
        self.nodes[self.mig]["label_nvidia_com_mig_strategy"] = "mixed"

    def _make_namespaces(self, pods: int) -> None:
        """Bulk namespaces: 7 in 10 attributed (cf_pi, cf_project_id), 2 in 10 only openshift.io/requester,
        1 in 10 nothing. Every namespace has the label kubernetes.io/metadata.name."""
        self.ns_a, self.ns_b = "case-a", "case-b"
        self.ns_unattributed, self.ns_bare = "case-unattributed", "case-bare"
        self._namespace(self.ns_a, pi="alice@example.edu", project="9001", requester="alice")
        self._namespace(self.ns_b, pi="bob@example.edu", project="9002", requester=None)
        self._namespace(self.ns_unattributed, pi=None, project=None, requester="carol")
        self._namespace(self.ns_bare, pi=None, project=None, requester=None)
        words = ("astro", "genomics", "nlp", "climate", "robotics", "vision", "chem", "econ", "neuro", "fluids")
        self.bulk_namespaces = []
        for i in range(max(6, pods // 40)):
            name = f"{words[i % len(words)]}-{i:03d}"
            kind = i % 10
            if kind < 7:
                self._namespace(name, pi=f"pi{i:03d}@example.edu", project=str(1000 + i), requester=f"user{i:03d}")
            elif kind < 9:
                self._namespace(name, pi=None, project=None, requester=f"user{i:03d}")
            else:
                self._namespace(name, pi=None, project=None, requester=None)
            self.bulk_namespaces.append(name)

    def _namespace(self, name: str, pi: str | None, project: str | None, requester: str | None) -> None:
        meta = {"label_kubernetes_io_metadata_name": name}
        if pi:
            meta["annotation_cf_pi"] = pi
        if project:
            meta["annotation_cf_project_id"] = project
        if requester:
            meta["annotation_openshift_io_requester"] = requester
        self.namespaces[name] = meta

    # -- pods

    def _uid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _pod(
        self, case: str | None, namespace: str, name: str, *segments: _Segment, unsched: Iterable[tuple[int, int]] = ()
    ) -> _Pod:
        pod = _Pod(namespace, name, self._uid(), list(segments), list(unsched))
        self.pods.append(pod)
        if case:
            self.cases.setdefault(case, []).append(f"{namespace}/{name}")
        return pod

    def _seg(self, node: str | None, start_h: float, end_h: float, **requests: int) -> _Segment:
        """A segment from day-relative hours (may be negative or past 24); resource names via _RES keys."""
        return _Segment(
            node,
            self.day_start + round(start_h * 3600),
            self.day_start + round(end_h * 3600),
            {_RES[k]: v for k, v in requests.items()},
        )

    def _make_cases(self) -> None:
        """The named scenarios, always present, at fixed day-relative times (hours)."""
        s, w, a, b = self._seg, self.workers, self.ns_a, self.ns_b
        self._pod("mid_hour", a, "mid-hour", s(w[0], 10 + 17 / 60 + 20 / 3600, 10 + 44 / 60 + 50 / 3600,
                                                cpu=1000, mem=2 * GiB, eph=GiB))  # fmt: skip
        self._pod("across_previous_midnight", a, "over-prev-midnight", s(w[1], -1.5, 0.75, cpu=2000, mem=4 * GiB))
        self._pod("across_next_midnight", a, "over-next-midnight", s(w[2], 23 + 1 / 6, 24 + 2 / 3, cpu=500, mem=GiB))
        self._pod("whole_range", a, "always-on", s(w[0], -30, 50, cpu=250, mem=512 * MiB, eph=10 * GiB))
        self._pod("restarted", a, "restarted", s(w[1], 3, 4, cpu=1000, mem=2 * GiB),
                  s(w[2], 4 + 2 / 3, 6, cpu=1000, mem=2 * GiB))  # fmt: skip
        self._pod("same_name_two_namespaces", a, "twin", s(w[0], 6, 9.5, cpu=1000, mem=2 * GiB))
        self._pod("same_name_two_namespaces", b, "twin", s(w[1], 6, 9.5, cpu=2000, mem=8 * GiB, eph=GiB))
        self._pod("cpu_change", a, "cpu-change", s(w[2], 7, 8, cpu=500, mem=2 * GiB),
                  s(w[2], 8, 9.25, cpu=1500, mem=2 * GiB))  # fmt: skip
        self._pod("memory_change", b, "mem-change", s(w[0], 15, 16, cpu=1000, mem=4 * GiB),
                  s(w[0], 16, 17.5, cpu=1000, mem=12 * GiB))  # fmt: skip
        self._pod("gpu_type_change", a, "gpu-retype", s(self.a100[0], 5, 7, cpu=4000, mem=32 * GiB, gpu=2),
                  s(self.v100[0], 7.5, 9, cpu=4000, mem=32 * GiB, gpu=2))  # fmt: skip
        self._pod("gpu_unlabelled_node", b, "gpu-nolabel",
                  s(self.gpu_nolabel, 9, 12, cpu=8000, mem=64 * GiB, gpu=1))  # fmt: skip
        self._pod("mig", a, "mig-user", s(self.mig, 10, 16, cpu=2000, mem=16 * GiB, mig1=2, mig3=1))
        self._pod("pending", self.ns_unattributed, "pending-forever", s(None, -3, 26, cpu=1000, mem=GiB))
        self._pod("unschedulable", self.ns_unattributed, "unschedulable", s(None, 2, 20, cpu=64000, mem=512 * GiB),
                  unsched=[(self.day_start + 2 * 3600, self.day_start + 20 * 3600)])  # fmt: skip
        self._pod("pending_then_bound", a, "pending-then-bound", s(None, 11, 11 + 1 / 3, cpu=3000, mem=6 * GiB),
                  s(w[2], 11 + 1 / 3, 12.5, cpu=3000, mem=6 * GiB),
                  unsched=[(self.day_start + 11 * 3600, self.day_start + 11 * 3600 + 1200)])  # fmt: skip
        self._pod("outage_crossing", b, "through-outage", s(w[1], 12, 15.5, cpu=1000, mem=GiB))
        self._pod("unattributed_namespace", self.ns_unattributed, "worker", s(w[0], 1, 5, cpu=500, mem=GiB))
        self._pod("bare_namespace", self.ns_bare, "one-minute", s(w[1], 18 + 1 / 12, 18 + 1 / 12 + 1 / 60,
                                                                   cpu=100, mem=128 * MiB))  # fmt: skip

    def _make_bulk(self, count: int) -> None:
        """Random pods: ~20 % short (1-14 min), the rest long (15 min-12 h, or all day); a few restart on
        another node, some use GPUs or MIG slices, some stay pending (half of those unschedulable)."""
        rng = self.rng
        lo, hi = self.day_start - MARGIN_BEFORE, self.day_start + DAY_SECONDS + MARGIN_AFTER
        apps = ("web", "train", "notebook", "etl", "api", "worker", "batch", "infer")
        weights = [1 / (i + 1) for i in range(len(self.bulk_namespaces))]
        for i in range(count):
            ns = rng.choices(self.bulk_namespaces, weights)[0]
            name = f"{rng.choice(apps)}-{i:05x}-{rng.getrandbits(20):05x}"
            roll = rng.random()
            if roll < 0.20:
                dur = rng.randint(60, 14 * 60)
                start = rng.randrange(lo, hi - dur)
            elif roll < 0.32:
                start, dur = lo - rng.randrange(3600, DAY_SECONDS), 3 * DAY_SECONDS
            else:  # may start before the margin, but always reaches into it
                dur = rng.randrange(900, 12 * 3600)
                start = rng.randrange(max(lo - 6 * 3600, lo - dur + 60), hi - 60)
            end = start + dur
            req = {CPU: rng.choice((100, 250, 500, 1000, 2000, 4000, 8000)),
                   MEMORY: rng.choice((256, 512, 1024, 2048, 4096, 8192, 16384)) * MiB}  # fmt: skip
            if rng.random() < 0.6:
                req[EPHEMERAL] = rng.choice((1, 2, 5, 10)) * GiB
            kind = rng.random()
            if kind < 0.03:  # pending: no node, never charged; half of them unschedulable
                start = rng.randrange(lo, hi - 600)
                end = start + rng.randrange(600, 3 * 3600)
                unsched = [(start, end)] if rng.random() < 0.5 else []
                self._pod(None, ns, name, _Segment(None, start, end, req), unsched=unsched)
                continue
            if kind < 0.07:
                node = rng.choice(self.a100 + self.v100 + [self.gpu_nolabel])
                req[GPU] = rng.choice((1, 1, 2, 4))
            elif kind < 0.085:
                node = self.mig
                req[rng.choice((MIG_1G, MIG_1G, MIG_3G))] = rng.choice((1, 1, 2))
            else:
                node = rng.choice(self.workers)
            if kind > 0.97 and dur > 1800:  # restarted under the same name on another worker after a gap
                mid, gap = start + dur // 2, rng.randrange(600, 3600)
                other = rng.choice([n for n in self.workers if n != node])
                self._pod(None, ns, name, _Segment(node, start, mid, req), _Segment(other, mid + gap, end + gap, req))
            else:
                self._pod(None, ns, name, _Segment(node, start, end, req))


_RES = {"cpu": CPU, "mem": MEMORY, "eph": EPHEMERAL, "gpu": GPU, "mig1": MIG_1G, "mig3": MIG_3G}


# ---------------------------------------------------------------------------------------------- writer


class _Writer:
    """Streams families one after another; counts sample lines and series per family."""

    def __init__(self, out: TextIO, truth: Truth) -> None:
        self.out = out
        self.truth = truth

    def family(self, name: str) -> None:
        self.out.write(f"# TYPE {name} gauge\n")
        self.truth.sample_lines_by_family.setdefault(name, 0)
        self.truth.series_by_family.setdefault(name, 0)

    def series(self, name: str, label_text: str, body: list[str]) -> None:
        """One series: body holds "value timestamp" strings in time order."""
        if not body:
            return
        prefix = f"{name}{{{label_text}}} "
        self.out.write(prefix)
        self.out.write(("\n" + prefix).join(body))
        self.out.write("\n")
        self.truth.sample_lines_by_family[name] += len(body)
        self.truth.series_by_family[name] += 1
        self.truth.sample_lines += len(body)


def _day_bounds(day: dt.date | str) -> tuple[str, int]:
    if isinstance(day, str):
        day = dt.date.fromisoformat(day)
    start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    return day.isoformat(), int(start.timestamp())


def generate_day(
    out: TextIO,
    day: dt.date | str,
    pods: int,
    seed: int,
    interval: int = 30,
    offset: int = 7,
    outage_hour: int = 13,
    ksm: bool = False,
) -> Truth:
    """Write the day's OpenMetrics text to `out` and return the usage it implies (see module doc).
    `ksm` appends the kube-state-metrics pod families (same truth, more sample lines)."""
    if interval < 1 or not 0 <= offset < interval:
        raise ValueError("interval must be >= 1 s and 0 <= offset < interval")
    if not 0 <= outage_hour < 24:
        raise ValueError("outage_hour must be 0-23")
    day_text, day_start = _day_bounds(day)
    outage = (day_start + outage_hour * 3600, day_start + (outage_hour + 1) * 3600)
    grid = _Grid(day_start, interval, offset, outage)
    cluster = _Cluster(day_start, pods, seed)
    truth = Truth(
        day=day_text, day_start=day_start, day_end=day_start + DAY_SECONDS, interval=interval, offset=offset,
        seed=seed, pods_requested=pods, first_ts=grid.timestamp(0), last_ts=grid.timestamp(grid.n - 1),
        outage=outage, nodes=cluster.nodes, namespace_meta=cluster.namespaces, cases=cluster.cases,
    )  # fmt: skip
    w = _Writer(out, truth)

    w.family(REQUEST_METRIC)
    ephemeral: set[str] = set()
    for pod in cluster.pods:
        if EPHEMERAL in _write_pod_requests(w, grid, pod):
            ephemeral.add(f"{pod.namespace}/{pod.name}")
        _account_pod(truth, grid, cluster, pod)
    truth.cases["ephemeral_storage"] = sorted(ephemeral)  # pods with ephemeral-storage samples in the file

    w.family(UNSCHEDULABLE_METRIC)
    for pod in cluster.pods:
        body = [f"1 {grid.ts[k]}" for s, e in pod.unschedulable for a, b in grid.written(s, e) for k in range(a, b)]
        for inst in KSM_INSTANCES:
            labels = _labels((("namespace", pod.namespace), ("pod", pod.name), ("uid", pod.uid),
                              ("instance", inst), ("job", "kube-state-metrics")))  # fmt: skip
            w.series(UNSCHEDULABLE_METRIC, labels, body)

    always = [f"1 {grid.ts[k]}" for a, b in grid.written(grid.t0, grid.timestamp(grid.n)) for k in range(a, b)]
    w.family(NODE_LABELS_METRIC)
    for node, node_labels in cluster.nodes.items():
        for inst in KSM_INSTANCES:
            pairs = [("node", node), *sorted(node_labels.items()), ("instance", inst), ("job", "kube-state-metrics")]
            w.series(NODE_LABELS_METRIC, _labels(pairs), always)
    for metric, prefix in ((NS_ANNOTATIONS_METRIC, "annotation_"), (NS_LABELS_METRIC, "label_")):
        w.family(metric)
        for ns, meta in cluster.namespaces.items():
            mine = sorted((k, v) for k, v in meta.items() if k.startswith(prefix))
            for inst in KSM_INSTANCES:
                pairs = [("namespace", ns), *mine, ("instance", inst), ("job", "kube-state-metrics")]
                w.series(metric, _labels(pairs), always)
    if ksm:
        _write_ksm_pods(w, grid, cluster.pods)
    out.write("# EOF\n")

    for pod_truth in truth.pods.values():
        truth.namespaces.setdefault(pod_truth.namespace, Usage()).add(pod_truth)
        truth.total.add(pod_truth)
    return truth


def _write_pod_requests(w: _Writer, grid: _Grid, pod: _Pod) -> set[str]:
    """All request series of one pod: one per (node, resource), each written once per scheduler replica.
    Returns the resources that got samples."""
    written: set[str] = set()
    by_series: dict[tuple[str | None, str], list[_Segment]] = {}
    for seg in pod.segments:
        for resource in seg.requests:
            by_series.setdefault((seg.node, resource), []).append(seg)
    for (node, resource), segs in by_series.items():
        body: list[str] = []
        for seg in segs:
            value = _fmt_value(resource, seg.requests[resource]) + " "
            for a, b in grid.written(seg.start, seg.end):
                body.extend([value + t for t in grid.ts[a:b]])
        pairs = [("namespace", pod.namespace), ("pod", pod.name), ("node", node), ("resource", resource),
                 ("unit", UNITS.get(resource)), ("scheduler", "default-scheduler")]  # fmt: skip
        for inst in SCHEDULER_INSTANCES:
            w.series(REQUEST_METRIC, _labels([*pairs, ("instance", inst), ("job", "scheduler")]), body)
        if body:
            written.add(resource)
    return written


class _Stretch(NamedTuple):
    """A stretch of a pod object's existence as kube-state-metrics sees it, in seconds [start, end)."""

    start: int
    end: int
    node: str | None
    phase: str
    requests: dict[str, int]


def _ksm_stretches(pod: _Pod) -> list[_Stretch]:
    """The pod's segments in time order, each bound segment that ends (not followed at once by another
    segment: a request change) followed by SUCCEEDED_KEPT seconds of phase Succeeded on the same node with the
    same requests, cut where the next incarnation of the name begins. A pending segment that ends is a
    deleted pod (it never ran, so it cannot succeed): no tail."""
    out: list[_Stretch] = []
    for i, seg in enumerate(pod.segments):
        out.append(_Stretch(seg.start, seg.end, seg.node, "Running" if seg.node else "Pending", seg.requests))
        following = pod.segments[i + 1].start if i + 1 < len(pod.segments) else None
        if seg.node is not None and following != seg.end:
            end = seg.end + SUCCEEDED_KEPT if following is None else min(seg.end + SUCCEEDED_KEPT, following)
            out.append(_Stretch(seg.end, end, seg.node, "Succeeded", seg.requests))
    return out


def _containers(requests: dict[str, int]) -> dict[str, dict[str, int]]:
    """A pod's requests split over "main" and "sidecar": the sidecar takes SIDECAR_REQUESTS of each resource
    the pod asks more of (nothing else), main the rest, so per resource the containers add up to the pod."""
    main, sidecar = dict(requests), {}
    for resource, value in SIDECAR_REQUESTS.items():
        if requests.get(resource, 0) > value:
            sidecar[resource] = value
            main[resource] -= value
    return {MAIN: main, SIDECAR: sidecar}


def _write_ksm_pods(w: _Writer, grid: _Grid, pods: list[_Pod]) -> None:
    """kube_pod_container_resource_requests, kube_pod_status_phase and kube_pod_info of every pod, each
    series written once per kube-state-metrics instance, sampled on the grid over the pod's existence."""
    stretches = [_ksm_stretches(pod) for pod in pods]
    ksm = [("instance", inst) for inst in KSM_INSTANCES]

    def emit(name: str, pairs: list[tuple[str, str | None]], body: list[str]) -> None:
        for inst in ksm:
            w.series(name, _labels([*pairs, inst, ("job", "kube-state-metrics")]), body)

    w.family(CONTAINER_REQUESTS_METRIC)
    for pod, mine in zip(pods, stretches, strict=True):
        bodies: dict[tuple[str | None, str, str], list[str]] = {}  # (node, container, resource) -> samples
        for st in mine:
            ranges = grid.written(st.start, st.end)
            for container, requests in _containers(st.requests).items():
                for resource, value in requests.items():
                    text = _fmt_value(resource, value) + " "
                    body = bodies.setdefault((st.node, container, resource), [])
                    body.extend([text + grid.ts[k] for a, b in ranges for k in range(a, b)])
        for (node, container, resource), body in bodies.items():
            pairs = [("namespace", pod.namespace), ("pod", pod.name), ("uid", pod.uid), ("container", container),
                     ("node", node), ("resource", resource), ("unit", KSM_UNITS.get(resource, "integer"))]  # fmt: skip
            emit(CONTAINER_REQUESTS_METRIC, pairs, body)

    w.family(PHASE_METRIC)
    for pod, mine in zip(pods, stretches, strict=True):
        for phase in PHASES:
            body = [("1 " if st.phase == phase else "0 ") + grid.ts[k]
                    for st in mine for a, b in grid.written(st.start, st.end) for k in range(a, b)]  # fmt: skip
            pairs = [("namespace", pod.namespace), ("pod", pod.name), ("uid", pod.uid), ("phase", phase)]
            emit(PHASE_METRIC, pairs, body)

    w.family(POD_INFO_METRIC)
    for pod, mine in zip(pods, stretches, strict=True):
        by_node: dict[str | None, list[str]] = {}
        for st in mine:
            by_node.setdefault(st.node, []).extend(
                ["1 " + grid.ts[k] for a, b in grid.written(st.start, st.end) for k in range(a, b)]
            )
        for node, body in by_node.items():
            emit(POD_INFO_METRIC, [("namespace", pod.namespace), ("pod", pod.name), ("uid", pod.uid),
                                   ("node", node)], body)  # fmt: skip


def _account_pod(truth: Truth, grid: _Grid, cluster: _Cluster, pod: _Pod) -> None:
    """Usage from the same index ranges the writer wrote, clipped to the day; bound segments only."""
    da, db = grid.day
    stats = PodTruth(namespace=pod.namespace, pod=pod.name)
    last: tuple[int, str, dict[str, float | int]] | None = None  # (end index, node, requests) of the last run
    for seg in pod.segments:
        if seg.node is None:
            continue
        charged = {r: _truth_value(r, v) for r, v in seg.requests.items() if r != EPHEMERAL}
        gpu_type = cluster.nodes[seg.node].get("label_nvidia_com_gpu_product", NO_GPU_TYPE)
        for a, b in grid.written(seg.start, seg.end):
            a, b = max(a, da), min(b, db)
            if a >= b:
                continue
            n = b - a
            secs = n * grid.interval
            stats.samples += n
            stats.cpu_millicore_seconds += secs * seg.requests.get(CPU, 0)
            stats.memory_byte_seconds += secs * seg.requests.get(MEMORY, 0)
            for resource, value in seg.requests.items():
                if resource == GPU:
                    stats.gpu_seconds[gpu_type] = stats.gpu_seconds.get(gpu_type, 0) + secs * value
                elif resource.startswith(MIG_PREFIX):
                    profile = resource.removeprefix(MIG_PREFIX)
                    stats.mig_seconds[profile] = stats.mig_seconds.get(profile, 0) + secs * value
            if last is not None and last[0] == a and last[1] == seg.node and last[2] == charged:
                stats.runs[-1] = stats.runs[-1]._replace(last_ts=grid.timestamp(b - 1))
            else:
                stats.runs.append(Run(grid.timestamp(a), grid.timestamp(b - 1), seg.node, charged))
            last = (b, seg.node, charged)
    if stats.samples:
        key = f"{pod.namespace}/{pod.name}"
        if key in truth.pods:
            raise AssertionError(f"duplicate pod {key}")  # generator bug: names must be unique per namespace
        truth.pods[key] = stats


def write_day(
    path: str | Path,
    day: dt.date | str,
    pods: int,
    seed: int,
    interval: int = 30,
    offset: int = 7,
    outage_hour: int = 13,
    ksm: bool = False,
) -> Truth:
    """`generate_day` into a file (ASCII, LF line ends, 1 MiB buffer)."""
    with open(path, "w", encoding="ascii", newline="\n", buffering=1 << 20) as out:
        return generate_day(out, day, pods, seed, interval=interval, offset=offset, outage_hour=outage_hour, ksm=ksm)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--day", required=True, help="UTC day, YYYY-MM-DD")
    parser.add_argument("--pods", type=int, default=2000, help="random pods besides the named cases")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--interval", type=int, default=30, help="scrape interval in seconds")
    parser.add_argument("--offset", type=int, default=7, help="seconds past the grid (0 <= offset < interval)")
    parser.add_argument("--outage-hour", type=int, default=13, help="UTC hour with no samples at all")
    parser.add_argument(
        "--ksm",
        action="store_true",
        help="also write the kube-state-metrics pod families (container requests, phase, info)",
    )
    parser.add_argument("--out", required=True, type=Path, help="OpenMetrics file to write")
    parser.add_argument("--truth", type=Path, help="write the expected usage as JSON here")
    args = parser.parse_args(argv)
    t0 = time.monotonic()
    truth = write_day(
        args.out, args.day, args.pods, args.seed, args.interval, args.offset, args.outage_hour, ksm=args.ksm
    )
    elapsed = time.monotonic() - t0
    if args.truth:
        args.truth.write_text(json.dumps(truth.as_dict(), indent=1) + "\n")
    summary = {
        "out": str(args.out), "bytes": args.out.stat().st_size, "sample_lines": truth.sample_lines,
        "pods_charged": len(truth.pods), "seconds": round(elapsed, 1),
    }  # fmt: skip
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
