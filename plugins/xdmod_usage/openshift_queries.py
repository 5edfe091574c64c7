"""The PromQL that reads one UTC day of OpenShift pod requests, designed for exactness and cost.

Why these queries (see README, "OpenShift"): the scripts we replace sampled the request series
with query_range at a 15-minute step and used Prometheus' 5-minute lookback, so short pods were
billed zero and long ones off by a lookback tail (which backfilled data does not even have). Here
every number is an aggregate of the raw samples inside a window, which does not depend on the
lookback at all:

* ``counts``: per pod (namespace, pod, node), per window of ``resolution``, how many samples the
  pod has: ``count_over_time`` over the window; one series per pod, not per resource.
* ``values``: per pod and resource, the request over the day (``max_over_time``), one point each.
* ``changed``: the few pod resources whose request changed during the day (``changes() > 0``);
  only for those, ``refine_min/max/sum`` give per-window values to split the window exactly.
* ``presence``: CPU request series with samples per window of max_hole / 2: holes in Prometheus' data.
* ``nodes`` / ``ns_annotations`` / ``ns_labels``: GPU product per node, attribution per namespace.

Three scheduler replicas expose every request (differing only by ``instance``): ``max by`` the
pod's identity collapses them without tripling usage. Windows are [T-R, T) in whole milliseconds:
evaluated at T-1ms with a range of R-1ms on Prometheus 2 (closed ranges) and R on Prometheus 3.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from .config import OpenShiftPolicy, OpenShiftSource
from .window import UsageWindow

REQUEST_METRIC = "kube_pod_resource_request"
KSM_REQUEST_METRIC = "kube_pod_container_resource_requests"
# Memory by resource name only: unit="bytes" would also match ephemeral-storage.
REQUEST_RESOURCES = r"cpu|memory|nvidia\\.com/gpu|nvidia\\.com/mig-.*"
REFINE_BATCH = 200
# Presence windows divide the day; the largest not above max_hole / 2 is used (a hole of max_hole
# then always covers a whole empty window). Per-minute windows cost ~5x more server time.
_DAY_DIVISORS = (60, 120, 180, 240, 300, 360, 600, 720, 900, 1200, 1800, 3600)


def presence_step(max_hole_seconds: float) -> int:
    return max([d for d in _DAY_DIVISORS if d <= max_hole_seconds / 2] or [60])


def label_name(prefix: str, key: str) -> str:
    """kube-state-metrics' label for a namespace annotation/label key (non-alphanumerics become '_')."""
    return f"{prefix}_{re.sub(r'[^a-zA-Z0-9_]', '_', key)}"


def _range(seconds: float, prom_major: int | None) -> str:
    """A range selector covering [T-r, T-1ms] when evaluated at T-1ms (see module docstring)."""
    millis = round(seconds * 1000)
    return f"{millis - 1}ms" if (prom_major or 2) < 3 else f"{millis}ms"


def _regex_alternation(names: Iterable[str]) -> str:
    return "|".join(re.escape(name).replace("\\", "\\\\") for name in sorted(names))


class DayQueries:
    """The day's queries for one source and policy; ``fetch`` runs them, the answers are the archive."""

    def __init__(
        self, source: OpenShiftSource, policy: OpenShiftPolicy, window: UsageWindow, prom_major: int | None
    ) -> None:
        self.source = source
        self.policy = policy
        self.window = window
        self.prom_major = prom_major
        self.step = policy.resolution.total_seconds()
        self.ksm = source.metric == "kube_state_metrics"
        self.metric = KSM_REQUEST_METRIC if self.ksm else REQUEST_METRIC
        self.request = f'{self.metric}{{resource=~"{REQUEST_RESOURCES}", node!=""}}'
        self.day_range = _range(86400, prom_major)
        self.at = window.end.timestamp() - 0.001

    def per_pod(self, inner: str) -> str:
        """Per (namespace, pod, node, resource): replicas collapse by max; KSM containers add up."""
        if self.ksm:
            by_container = f"max by (namespace, pod, node, container, resource) ({inner})"
            return f"sum by (namespace, pod, node, resource) ({by_container})"
        return f"max by (namespace, pod, node, resource) ({inner})"

    def _windowed(self, query: str, step: float) -> dict[str, Any]:
        start = self.window.start.timestamp()
        return {"range": True, "query": query, "start": start + step - 0.001, "end": self.at, "step": step}

    def attribution_labels(self, prefix: str) -> list[str]:
        keys = [*self.policy.pi_keys, *self.policy.project_keys, *self.policy.user_keys]
        return sorted({label_name(prefix, key) for key in keys})

    def plan(self) -> dict[str, dict[str, Any]]:
        """Every query of the day except the refinements, which depend on ``changed``."""
        day = self.day_range
        by_pod = "namespace, pod, node"
        ann, lab = self.attribution_labels("annotation"), self.attribution_labels("label")
        presence_every = presence_step(self.source.max_hole.total_seconds())
        window, gap = _range(self.step, self.prom_major), _range(presence_every, self.prom_major)
        plan: dict[str, dict[str, Any]] = {}
        if self.ksm:
            # kube-state-metrics keeps a completed pod's request series while the pod object exists:
            # samples are counted from the Running phase, the node per window from kube_pod_info.
            running = 'kube_pod_status_phase{phase="Running"}'
            plan["counts"] = self._windowed(f"max by (namespace, pod) (sum_over_time({running}[{window}]))", self.step)
            plan["pod_nodes"] = self._windowed(
                f'max by (namespace, pod, node) (count_over_time(kube_pod_info{{node!=""}}[{window}]))', self.step
            )
            presence = f"count(count_over_time({running}[{gap}]))"
        else:
            plan["counts"] = self._windowed(f"max by ({by_pod}) (count_over_time({self.request}[{window}]))", self.step)
            # Holes in the metric itself: CPU requests stand for it (every bound pod but BestEffort
            # ones has one), at half the cost of all resources.
            presence = f'count(count_over_time({self.metric}{{resource="cpu", node!=""}}[{gap}]))'
        plan["values"] = {"query": self.per_pod(f"max_over_time({self.request}[{day}])")}
        plan["changed"] = {"query": f"max by ({by_pod}, resource) (changes({self.request}[{day}])) > 0"}
        plan["presence"] = self._windowed(presence, presence_every)
        return {
            **plan,
            "nodes": {
                "query": f"max by (node, {self.source.gpu_product_label}) (max_over_time(kube_node_labels[{day}]))"
            },
            "ns_annotations": {
                "query": f"max by (namespace, {', '.join(ann)}) (max_over_time(kube_namespace_annotations[{day}]))"
            },
            "ns_labels": {
                "query": f"max by (namespace, {', '.join(lab)}) (max_over_time(kube_namespace_labels[{day}]))"
            },
        }

    def refinements(self, changed: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Per-window min/max/sum of the changed pods' requests, in batches that keep the regex small."""
        pods = sorted({(s["metric"].get("namespace", ""), s["metric"].get("pod", "")) for s in changed})
        plans: dict[str, dict[str, Any]] = {}
        window = _range(self.step, self.prom_major)
        for number, first in enumerate(range(0, len(pods), REFINE_BATCH)):
            batch = pods[first : first + REFINE_BATCH]
            selector = (
                f'{self.metric}{{resource=~"{REQUEST_RESOURCES}", node!="", '
                f'namespace=~"{_regex_alternation({ns for ns, _ in batch})}", '
                f'pod=~"{_regex_alternation({pod for _, pod in batch})}"}}'
            )
            for func in ("min", "max", "sum"):
                query = self.per_pod(f"{func}_over_time({selector}[{window}])")
                plans[f"refine_{func}_{number}"] = self._windowed(query, self.step)
        return plans

    def run(self, api: Any, plan: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """Run the queries side by side: each is one scan of the day on the server."""
        from concurrent.futures import ThreadPoolExecutor

        def one(spec: dict[str, Any]) -> dict[str, Any]:
            if spec.get("range"):
                data = api.query_range(spec["query"], spec["start"], spec["end"], spec["step"])
            else:
                data = api.query(spec["query"], spec.get("at", self.at))
            return {**spec, "at": spec.get("at", self.at), "data": data}

        with ThreadPoolExecutor(max_workers=self.source.parallel_queries) as pool:
            done = dict(zip(plan, pool.map(one, plan.values()), strict=True))
        return {name: done[name] for name in plan}

    def fetch(self, api: Any) -> dict[str, Any]:
        """Run the day's queries; returns the raw archive (queries and answers, replayable)."""
        answers = self.run(api, self.plan())
        answers.update(self.run(api, self.refinements(answers["changed"]["data"]["result"])))
        return {
            "format": "xdmod-usage-prometheus-day/1",
            "window": self.window.as_dict(),
            "prometheus_major": self.prom_major,
            "resolution_seconds": self.step,
            "scrape_interval_seconds": self.source.scrape_interval.total_seconds(),
            "answers": answers,
        }
