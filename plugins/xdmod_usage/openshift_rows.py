"""Turn one day's Prometheus answers (see openshift_queries) into XDMoD job rows in Slurm format.

Pure functions over the archived answers, so a day replays from the archive byte for byte.

* Segments: per pod (namespace, pod, node) a run of consecutive windows with samples; a window
  without samples ends the run (the pod stopped: it is not charged). A request change splits the
  run where it happened. A segment lasts exactly (its samples x scrape interval): each sample
  stands for one scrape interval, so usage is exact whatever the resolution.
* Times: a run starts where its first window's samples would start if they were packed at the end
  of that window; segments follow each other. Rows end before midnight (XDMoD days are [start, end)).
* Ids: unsigned 32-bit, ``(days since 2020-01-01) << 18 | slot``; the slot is a hash of the
  segment's identity (namespace, pod, node, start), probed forward in sorted identity order on
  collision. The same answers always give the same ids; two days never share one.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import itertools
import math
import re
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .config import OpenShiftPolicy
from .openshift_queries import label_name

ID_EPOCH = dt.date(2020, 1, 1)
SLOT_BITS = 18
GPU = "nvidia.com/gpu"
MIG_PREFIX = "nvidia.com/mig-"
_UNSAFE = re.compile(r"[|\x00-\x1f\x7f]")
_GRES_TYPE = re.compile(r"[^A-Za-z0-9_.-]")
_MIG_SLICES = re.compile(r"^(\d+)g\.")

PodKey = tuple[str, str, str]  # namespace, pod, node


class IdSpaceError(RuntimeError):
    """More segments in a day than the id scheme has slots for."""


@dataclass
class Segment:
    namespace: str
    pod: str
    node: str
    start: int  # Unix seconds
    seconds: int
    requests: dict[str, float]

    @property
    def end(self) -> int:
        return self.start + self.seconds


@dataclass
class RowCounts:
    """What the manifest records about the conversion."""

    pods: int = 0
    segments: int = 0
    rows: int = 0
    samples: int = 0
    zero_request_segments: int = 0
    changed_requests: int = 0
    unattributed_rows: int = 0
    untyped_gpu_rows: int = 0
    gpu_rounding_gpu_seconds: float = 0.0
    running_without_node_samples: int = 0
    unattributed_namespaces: list[str] = field(default_factory=list)
    holes: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "gpu_rounding_gpu_seconds": round(self.gpu_rounding_gpu_seconds, 3)}


def _result(archive: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return archive["answers"][name]["data"]["result"] if name in archive["answers"] else []


def _window_index(ts: float, start: float, step: float) -> int:
    return round((ts + 0.001 - start) / step) - 1


def _pod_key(metric: dict[str, str]) -> PodKey:
    return metric.get("namespace", ""), metric.get("pod", ""), metric.get("node", "")


def _split_window(count: int, low: float, high: float, total: float, previous: float | None) -> list[tuple[int, float]]:
    """The window's samples as (n, value) pieces from min/max/sum: exact for one change in the window."""
    if low == high:
        return [(count, high)]
    n_high = min(count, max(0, round((total - count * low) / (high - low))))
    pieces = [(count - n_high, low), (n_high, high)]
    if previous == high:
        pieces.reverse()
    return [(n, value) for n, value in pieces if n]


def _merge_pieces(per_resource: dict[str, list[tuple[int, float]]], count: int) -> list[tuple[int, dict[str, float]]]:
    """Cut the window where any resource's value changes."""
    cuts = {0, count}
    for pieces in per_resource.values():
        position = 0
        for n, _ in pieces:
            position += n
            cuts.add(position)
    bounds = sorted(cut for cut in cuts if 0 <= cut <= count)
    merged = []
    for low, high in itertools.pairwise(bounds):
        values = {}
        for resource, pieces in per_resource.items():
            position = 0
            for n, value in pieces:
                if position <= low < position + n:
                    values[resource] = value
                    break
                position += n
        merged.append((high - low, values))
    return merged


def build_segments(archive: dict[str, Any]) -> tuple[list[Segment], RowCounts]:
    """Segments of the day from the archived answers."""
    start = _parse_time(archive["window"]["start"])
    day_end = _parse_time(archive["window"]["end"])
    step = float(archive["resolution_seconds"])
    interval = int(archive["scrape_interval_seconds"])
    counts = RowCounts()

    values: dict[PodKey, dict[str, float]] = defaultdict(dict)
    for series in _result(archive, "values"):
        values[_pod_key(series["metric"])][series["metric"].get("resource", "")] = float(series["value"][1])
    changed = {(_pod_key(s["metric"]), s["metric"].get("resource", "")) for s in _result(archive, "changed")}
    counts.changed_requests = len(changed)
    refine: dict[str, dict[tuple[PodKey, str], dict[int, float]]] = {"min": {}, "max": {}, "sum": {}}
    for name in archive["answers"]:
        if name.startswith("refine_"):
            func = name.split("_")[1]
            for series in _result(archive, name):
                key = (_pod_key(series["metric"]), series["metric"].get("resource", ""))
                if key in changed:
                    by_window = refine[func].setdefault(key, {})
                    for ts, value in series["values"]:
                        by_window[_window_index(float(ts), start, step)] = float(value)

    segments: list[Segment] = []
    for key, windows in sorted(_window_counts(archive, start, step, counts).items()):
        counts.pods += 1
        counts.samples += sum(windows.values())
        for run in _runs(sorted(windows)):
            segments += _run_segments(key, run, windows, values.get(key, {}), changed, refine, start, step, interval)
    for segment in segments:
        if segment.end >= day_end:  # XDMoD's day is [start, end): keep the row inside it
            over = segment.end - (day_end - 1)
            shift = min(over, segment.start - start)
            segment.start -= shift
            segment.seconds -= over - shift
    counts.segments = len(segments)
    return segments, counts


def _window_counts(
    archive: dict[str, Any], start: float, step: float, counts: RowCounts
) -> dict[PodKey, dict[int, int]]:
    """Samples per pod and window. With kube-state-metrics the counts come per (namespace, pod) from
    the Running phase, and each window's node from kube_pod_info (the node with most samples)."""
    nodes: dict[tuple[str, str], dict[int, list[tuple[int, str]]]] = defaultdict(lambda: defaultdict(list))
    for series in _result(archive, "pod_nodes"):
        namespace, pod, node = _pod_key(series["metric"])
        for ts, n in series["values"]:
            nodes[(namespace, pod)][_window_index(float(ts), start, step)].append((int(float(n)), node))
    by_key: dict[PodKey, dict[int, int]] = defaultdict(dict)
    for series in _result(archive, "counts"):
        namespace, pod, node = _pod_key(series["metric"])
        for ts, value in series["values"]:
            window, n = _window_index(float(ts), start, step), int(float(value))
            if n <= 0:
                continue
            if "node" not in series["metric"]:
                candidates = nodes.get((namespace, pod), {}).get(window)
                if not candidates:  # Running without a known node: counted, not guessed
                    counts.running_without_node_samples += n
                    continue
                node = max(candidates)[1]
            by_key[(namespace, pod, node)][window] = n
    return by_key


def _runs(windows: list[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    for w in windows:
        if runs and w == runs[-1][-1] + 1:
            runs[-1].append(w)
        else:
            runs.append([w])
    return runs


def _run_segments(
    key: PodKey,
    run: list[int],
    windows: dict[int, int],
    day_values: dict[str, float],
    changed: set[tuple[PodKey, str]],
    refine: dict[str, dict[tuple[PodKey, str], dict[int, float]]],
    start: float,
    step: float,
    interval: int,
) -> list[Segment]:
    pieces: list[tuple[int, dict[str, float]]] = []
    previous: dict[str, float] = {}
    for w in run:
        count = windows[w]
        per_resource: dict[str, list[tuple[int, float]]] = {}
        for resource, value in day_values.items():
            if (key, resource) in changed:
                low = refine["min"].get((key, resource), {}).get(w)
                if low is None:  # the resource had no request in this window
                    per_resource[resource] = [(count, 0.0)]
                    continue
                high = refine["max"][(key, resource)][w]
                total = refine["sum"][(key, resource)][w]
                per_resource[resource] = _split_window(count, low, high, total, previous.get(resource))
            else:
                per_resource[resource] = [(count, value)]
            previous[resource] = per_resource[resource][-1][1]
        for n, requests in _merge_pieces(per_resource, count):
            if pieces and pieces[-1][1] == requests:
                pieces[-1] = (pieces[-1][0] + n, requests)
            else:
                pieces.append((n, requests))
    at = round(start + (run[0] + 1) * step) - windows[run[0]] * interval
    segments = []
    for n, requests in pieces:
        segments.append(Segment(key[0], key[1], key[2], at, n * interval, requests))
        at += n * interval
    return segments


def _parse_time(text: str) -> int:
    return int(dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC).timestamp())


# --- attribution, GPUs, CPUs ---------------------------------------------------------------


@dataclass(frozen=True)
class Owner:
    pi: str
    project: str
    user: str
    attributed: bool


def load_mapping(path: str | None) -> dict[str, dict[str, str]]:
    """namespace,pi,project[,user] rows (a header line starting with 'namespace' is allowed)."""
    if not path:
        return {}
    mapping: dict[str, dict[str, str]] = {}
    with open(Path(path), newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle), 1):
            if not row or row[0].startswith("#") or (number == 1 and row[0].strip().lower() == "namespace"):
                continue
            if len(row) < 3 or not all(cell.strip() for cell in row[:3]):
                raise ValueError(f"{path}:{number}: expected namespace,pi,project[,user], got {row!r}")
            mapping[row[0].strip()] = {"pi": row[1].strip(), "project": row[2].strip(),
                                       "user": (row[3].strip() if len(row) > 3 else "") or row[1].strip()}  # fmt: skip
    return mapping


def namespace_metadata(archive: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Annotations and labels per namespace; duplicate series merge, first non-empty value wins."""
    merged: dict[str, dict[str, str]] = defaultdict(dict)
    for name in ("ns_annotations", "ns_labels"):
        for series in sorted(_result(archive, name), key=lambda s: sorted(s["metric"].items())):
            metric = series["metric"]
            target = merged[metric.get("namespace", "")]
            for label, value in metric.items():
                if value and label != "namespace":
                    target.setdefault(label, value)
    return merged


def first_value(metadata: dict[str, str], keys: list[str]) -> str | None:
    """The first non-empty value among a namespace's annotations, then labels, for each key in order."""
    for key in keys:
        for prefix in ("annotation", "label"):
            value = metadata.get(label_name(prefix, key))
            if value:
                return value
    return None


def owner_of(
    namespace: str, metadata: dict[str, str], mapping: dict[str, dict[str, str]], policy: OpenShiftPolicy
) -> Owner:
    if namespace in mapping:
        row = mapping[namespace]
        return Owner(row["pi"], row["project"], row["user"], True)
    pi, project = first_value(metadata, policy.pi_keys), first_value(metadata, policy.project_keys)
    attributed = pi is not None and project is not None
    pi = pi or policy.default_pi
    return Owner(pi, project or policy.default_project, first_value(metadata, policy.user_keys) or pi, attributed)


def gpu_types(archive: dict[str, Any], product_label: str) -> dict[str, str]:
    """Node -> GPU product; duplicate label series (several kube-state-metrics) collapse."""
    found: dict[str, set[str]] = defaultdict(set)
    for series in _result(archive, "nodes"):
        product = series["metric"].get(product_label)
        if product:
            found[series["metric"].get("node", "")].add(product)
    return {node: sorted(products)[-1] for node, products in found.items()}


def mig_share(profile: str, policy: OpenShiftPolicy) -> float:
    if policy.mig == "whole":
        return 1.0
    if profile in policy.mig_fractions:
        return policy.mig_fractions[profile]
    match = _MIG_SLICES.match(profile)
    if not match:
        raise ValueError(f"MIG profile {profile!r} has no share: set it in policies[].mig_fractions")
    return min(1.0, int(match.group(1)) / 7)


def gpu_equivalent(requests: dict[str, float], policy: OpenShiftPolicy) -> float:
    """Whole GPUs plus MIG slices under the policy."""
    return requests.get(GPU, 0.0) + sum(
        n * mig_share(resource.removeprefix(MIG_PREFIX), policy)
        for resource, n in requests.items()
        if resource.startswith(MIG_PREFIX)
    )


def ncpus(cores: float, policy: OpenShiftPolicy) -> int:
    if cores <= 0:
        return 0
    if policy.cpu == "millicores":
        return math.floor(cores * 1000 + 0.5)
    if policy.cpu == "cores_ceil":
        return math.ceil(cores - 1e-9)
    return max(1, math.floor(cores + 0.5))


def _safe(text: str) -> str:
    return _UNSAFE.sub("_", text)


def _slurm_time(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _elapsed(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    text = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}-{text}" if days else text


def assign_ids(segments: list[Segment], day: dt.date) -> list[int]:
    """Deterministic ids: the day in the high bits, a probed hash of the identity in the low bits."""
    day_index = (day - ID_EPOCH).days
    if not 0 <= day_index < 1 << (32 - SLOT_BITS):
        raise IdSpaceError(f"{day} is outside the id scheme's days ({ID_EPOCH} + {1 << (32 - SLOT_BITS)} days)")
    size = 1 << SLOT_BITS
    if len(segments) > size:
        raise IdSpaceError(f"{len(segments)} segments on {day}: more than the {size} ids a day has")
    order = sorted(range(len(segments)), key=lambda i: _identity(segments[i]))
    taken: set[int] = set()
    ids = [0] * len(segments)
    for index in order:
        slot = int.from_bytes(hashlib.sha256(_identity(segments[index]).encode()).digest()[:8], "big") % size
        while slot in taken:
            slot = (slot + 1) % size
        taken.add(slot)
        ids[index] = day_index << SLOT_BITS | slot
    return ids


def _identity(segment: Segment) -> str:
    return f"{segment.namespace}\0{segment.pod}\0{segment.node}\0{segment.start}"


def sacct_lines(
    archive: dict[str, Any],
    *,
    xdmod_resource: str,
    policy: OpenShiftPolicy,
    product_label: str,
    mapping: dict[str, dict[str, str]],
    max_hole_seconds: float,
) -> tuple[list[bytes], RowCounts]:
    """The day's rows as sacct lines (XDMoD's 26 fields), in id order, and what happened."""
    segments, counts = build_segments(archive)
    counts.holes = find_holes(archive, max_hole_seconds)
    metadata = namespace_metadata(archive)
    types = gpu_types(archive, product_label)
    day = dt.date.fromisoformat(archive["window"]["start"][:10])
    kept = []
    for segment in segments:
        requests = segment.requests
        if requests.get("cpu", 0.0) <= 0 and requests.get("memory", 0.0) <= 0 and gpu_equivalent(requests, policy) <= 0:
            counts.zero_request_segments += 1
            continue
        kept.append(segment)
    lines: list[tuple[int, bytes]] = []
    unattributed: set[str] = set()
    owners = {
        namespace: owner_of(namespace, metadata.get(namespace, {}), mapping, policy)
        for namespace in {segment.namespace for segment in kept}
    }
    for segment, job_id in zip(kept, assign_ids(kept, day), strict=True):
        requests = segment.requests
        owner = owners[segment.namespace]
        if not owner.attributed:
            unattributed.add(segment.namespace)
            counts.unattributed_rows += 1
        cpus = ncpus(requests.get("cpu", 0.0), policy)
        mem_mib = math.ceil(requests.get("memory", 0.0) / 1048576)
        equivalent = gpu_equivalent(requests, policy)
        gpus = math.floor(equivalent * policy.gpu_scale + 0.5)
        counts.gpu_rounding_gpu_seconds += (gpus / policy.gpu_scale - equivalent) * segment.seconds
        tres = f"cpu={cpus},mem={mem_mib}M,node=1"
        if gpus:
            gpu_type = types.get(segment.node) or policy.gpu_fallback_type
            if gpu_type:
                tres += f",gres/gpu:{_GRES_TYPE.sub('_', gpu_type)}={gpus}"
            else:
                tres += f",gres/gpu={gpus}"
                counts.untyped_gpu_rows += 1
        start, end = _slurm_time(segment.start), _slurm_time(segment.end)
        fields = [
            str(job_id), str(job_id), xdmod_resource, segment.namespace, "openshift", owner.project, owner.pi, "",
            owner.user, "", start, start, start, end, _elapsed(segment.seconds), "0:0", "COMPLETED", "1",
            str(cpus), str(cpus), f"{mem_mib}M", tres, tres, "UNLIMITED", segment.node, segment.pod,
        ]  # fmt: skip
        lines.append((job_id, "|".join(_safe(value) for value in fields).encode("utf-8")))
    counts.unattributed_namespaces = sorted(unattributed)
    counts.rows = len(lines)
    return [line for _, line in sorted(lines)], counts


def find_holes(archive: dict[str, Any], max_hole_seconds: float) -> list[dict[str, Any]]:
    """Stretches of the day where Prometheus has no request samples at all, longer than allowed."""
    answer = archive["answers"].get("presence")
    if answer is None:
        return []
    start = _parse_time(archive["window"]["start"])
    step = float(answer["step"])
    windows = int(86400 // step)
    present = Counter()
    for series in answer["data"]["result"]:
        for ts, value in series["values"]:
            if float(value) > 0:
                present[_window_index(float(ts), start, step)] += 1
    holes, run_start = [], None
    for index in range(windows + 1):
        if index < windows and not present[index]:
            run_start = index if run_start is None else run_start
            continue
        # Windows are at most max_hole / 2: a hole of max_hole always empties a whole window, and
        # the empty windows plus their partly empty neighbours can span max_hole.
        if run_start is not None and (index - run_start + 1) * step >= max_hole_seconds:
            holes.append({"start": _slurm_time(int(start + run_start * step)) + "Z",
                          "end": _slurm_time(int(start + index * step)) + "Z",
                          "minutes": round((index - run_start) * step / 60)})  # fmt: skip
        run_start = None
    return holes
