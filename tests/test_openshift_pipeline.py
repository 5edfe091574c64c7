"""OpenShift usage staged from a real Prometheus holding a generated cluster-day.

The generator writes the samples as OpenShift exposes them (three scheduler replicas, GPUs without
a unit, pending pods without a node, ephemeral storage, an outage hour) and computes the truth
from the samples it wrote; promtool backfills them; the pipeline queries the real HTTP API.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict

import pytest

from conftest import free_port
from xdmod_usage.config import OpenShiftSource
from xdmod_usage.openshift_pipeline import PrometheusHolesError, stage_openshift_day
from xdmod_usage.openshift_rows import ID_EPOCH, SLOT_BITS
from xdmod_usage.prometheus_api import PrometheusApi, PromQueryError, PromUnavailableError
from xdmod_usage.slurm_format import SACCT_FIELDS
from xdmod_usage.staging import Store
from xdmod_usage.window import UsageWindow

F = {name: index for index, name in enumerate(SACCT_FIELDS)}
SOURCE = OpenShiftSource.model_validate(
    {"prometheus_conn_id": "prom", "policies": [{"effective": "2026-01-01", "resolution": "15m",
                                                 "gpu_fallback_type": "unlabelled-gpu"}]}
)  # fmt: skip


def stage(store_root, prometheus_site, source=SOURCE, api="live"):
    url, _, day = prometheus_site
    client = PrometheusApi(url) if api == "live" else None
    window = UsageWindow.for_day(dt.date.fromisoformat(day))
    return stage_openshift_day(Store.from_path(store_root), "ocp1", "ocp1", source, window, client)


def rows_of(result, store_root) -> list[list[str]]:
    entry = result.manifest["files"][result.manifest["staged_name"]]
    text = (store_root / "ocp1" / result.manifest["window"]["start"][:10] / entry["path"]).read_text()
    return [line.split("|", 25) for line in text.splitlines()]


def seconds(row: list[str]) -> int:
    start = dt.datetime.fromisoformat(row[F["start"]])
    return int((dt.datetime.fromisoformat(row[F["end"]]) - start).total_seconds())


def usage_by(rows: list[list[str]], key) -> dict:
    totals: dict = defaultdict(lambda: defaultdict(float))
    for row in rows:
        span = seconds(row)
        tres = dict(item.split("=", 1) for item in row[F["alloctres"]].split(","))
        totals[key(row)]["cpu_core_seconds"] += int(row[F["ncpus"]]) / 1000 * span
        totals[key(row)]["memory_byte_seconds"] += int(tres["mem"].rstrip("M")) * 1048576 * span
        for name, value in tres.items():
            if name.startswith("gres/gpu"):
                totals[key(row)]["gpu_seconds"] += int(value) * span
    return totals


@pytest.fixture(scope="module")
def staged(prometheus_site, tmp_path_factory):
    root = tmp_path_factory.mktemp("ocp-staging")
    result = stage(root, prometheus_site)
    return root, result, rows_of(result, root)


def test_every_row_passes_xdmods_rules_and_ids_are_unique_and_of_the_day(staged, prometheus_site):
    _, result, rows = staged
    counts = result.manifest["counts"]
    assert counts["quarantined"] == {} and counts["staged"] == len(rows) == result.manifest["source_counts"]["rows"]
    ids = [int(row[F["jobid"]]) for row in rows]
    assert len(set(ids)) == len(ids) and all(row[F["jobid"]] == row[F["jobidraw"]] for row in rows)
    day = dt.date.fromisoformat(prometheus_site[2])
    assert {job_id >> SLOT_BITS for job_id in ids} == {(day - ID_EPOCH).days}
    for row in rows:
        assert row[F["cluster"]] == "ocp1" and row[F["state"]] == "COMPLETED" and row[F["nnodes"]] == "1"
        assert row[F["submit"]] == row[F["eligible"]] == row[F["start"]]
        assert row[F["start"]] >= day.isoformat() and row[F["end"]] < (day + dt.timedelta(days=1)).isoformat()
        assert row[F["reqtres"]] == row[F["alloctres"]] and ",node=1" in row[F["alloctres"]]


def test_usage_per_namespace_matches_the_samples_written(staged, prometheus_site):
    _, _, rows = staged
    truth = prometheus_site[1]
    got = usage_by(rows, lambda row: row[F["partition"]])
    for namespace, expected in truth["namespaces"].items():
        for measure in ("cpu_core_seconds", "memory_byte_seconds"):
            want = expected[measure]
            assert got[namespace][measure] == pytest.approx(want, rel=1e-3, abs=1e-6), (namespace, measure)
        # MIG slices count as their share of a GPU, rounded per row (checked in test_named_cases).
        if not expected["mig_seconds"]:
            want_gpu = sum(expected["gpu_seconds"].values())
            assert got[namespace]["gpu_seconds"] == pytest.approx(want_gpu, rel=1e-3), namespace
    assert set(got) <= set(truth["namespaces"])  # nothing charged that the truth does not have


def test_no_pod_with_usage_is_lost_and_stopped_pods_are_not_charged(staged, prometheus_site):
    _, _, rows = staged
    truth = prometheus_site[1]
    charged = usage_by(rows, lambda row: (row[F["partition"]], row[F["jobname"]]))
    for key, expected in truth["pods"].items():
        namespace, pod = key.split("/", 1)
        if expected["cpu_core_seconds"] > 0:
            assert charged[(namespace, pod)]["cpu_core_seconds"] == pytest.approx(expected["cpu_core_seconds"],
                                                                                   rel=1e-3), key  # fmt: skip
    for pod in truth["cases"]["pending"] + truth["cases"]["unschedulable"]:
        assert not [row for row in rows if row[F["jobname"]] == pod.split("/")[-1]], pod


def test_rerun_and_archive_replay_are_byte_identical(staged, prometheus_site, tmp_path):
    root, first, _ = staged
    again = stage(root, prometheus_site)
    assert again.manifest["version"] == first.manifest["version"]
    assert again.manifest["files"] == first.manifest["files"]
    replayed = stage(root, prometheus_site, api=None)
    assert replayed.manifest["files"] == first.manifest["files"]
    assert replayed.manifest["source"]["replayed_from_archive"] is True
    other = stage(tmp_path, prometheus_site)  # a fresh store: same bytes, no dependence on earlier runs
    assert other.manifest["files"] == first.manifest["files"]


def test_holes_in_prometheus_data_are_recorded_and_can_fail_the_day(staged, prometheus_site, tmp_path):
    _, result, _ = staged
    outage = prometheus_site[1]["outage"]
    holes = result.manifest["source_counts"]["holes"]
    iso = [dt.datetime.fromtimestamp(outage[k], dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") for k in ("start", "end")]
    assert [(h["start"], h["end"]) for h in holes] == [tuple(iso)]
    strict = SOURCE.model_copy(update={"on_hole": "fail"})
    with pytest.raises(PrometheusHolesError, match="no request samples for"):
        stage(tmp_path, prometheus_site, source=strict)
    assert (tmp_path / "ocp1").exists()  # staged before failing: nothing is lost


def test_named_cases(staged, prometheus_site):
    _, _, rows = staged
    cases = prometheus_site[1]["cases"]

    def rows_for(name: str) -> list[list[str]]:
        namespace, pod = name.split("/", 1)
        return sorted((r for r in rows if r[F["partition"]] == namespace and r[F["jobname"]] == pod),
                      key=lambda r: r[F["start"]])  # fmt: skip

    same_name = [rows_for(name) for name in cases["same_name_two_namespaces"]]
    assert all(same_name) and same_name[0][0][F["ncpus"]] != same_name[1][0][F["ncpus"]]
    restarted = rows_for(cases["restarted"][0])
    assert len(restarted) == 2 and restarted[0][F["nodelist"]] != restarted[1][F["nodelist"]]
    gap = dt.datetime.fromisoformat(restarted[1][F["start"]]) - dt.datetime.fromisoformat(restarted[0][F["end"]])
    assert gap >= dt.timedelta(minutes=39)  # the 40 minutes it was stopped are not charged
    cpu_change = rows_for(cases["cpu_change"][0])
    assert len(cpu_change) == 2 and cpu_change[0][F["end"]] == cpu_change[1][F["start"]]
    assert [r[F["ncpus"]] for r in cpu_change] == ["500", "1500"]
    gpu_types = {r[F["alloctres"]].split("gres/gpu:")[1].split("=")[0] for r in rows_for(cases["gpu_type_change"][0])}
    assert len(gpu_types) == 2
    assert all("gres/gpu:unlabelled-gpu=" in r[F["alloctres"]] for r in rows_for(cases["gpu_unlabelled_node"][0]))
    assert rows_for(cases["mig"][0])


def test_prometheus_errors_fail_clearly(prometheus_site):
    url = prometheus_site[0]
    with pytest.raises(PromQueryError, match="bad_data"):
        PrometheusApi(url).query("sum(", dt.datetime(2026, 11, 21, tzinfo=dt.UTC).timestamp())
    down = PrometheusApi(f"http://127.0.0.1:{free_port()}", retries=1, backoff=0.01)
    with pytest.raises(PromUnavailableError, match="after 2 attempts"):
        down.query("up", 0)


def test_policy_is_chosen_by_effective_date():
    policies = [{"effective": "2026-01-01", "cpu": "millicores"}, {"effective": "2026-12-01", "cpu": "cores_ceil"}]
    source = OpenShiftSource.model_validate({"prometheus_conn_id": "p", "policies": policies})
    assert source.policy_for(dt.date(2026, 11, 30)).cpu == "millicores"
    assert source.policy_for(dt.date(2026, 12, 1)).cpu == "cores_ceil"
    with pytest.raises(ValueError, match="no policy is effective"):
        source.policy_for(dt.date(2025, 12, 31))
    json.dumps(source.model_dump(mode="json"))


@pytest.mark.parametrize("resolution", ["5m", "1h"])
def test_usage_does_not_depend_on_the_resolution(prometheus_site, tmp_path, resolution):
    """Counts of raw samples per window: a coarser window moves row boundaries, never the usage."""
    source = SOURCE.model_copy(update={"policies": [SOURCE.policies[0].model_copy(update={
        "resolution": dt.timedelta(seconds={"5m": 300, "1h": 3600}[resolution])})]})  # fmt: skip
    rows = rows_of(stage(tmp_path, prometheus_site, source=source), tmp_path)
    got = usage_by(rows, lambda row: row[F["partition"]])
    for namespace, expected in prometheus_site[1]["namespaces"].items():
        assert got[namespace]["cpu_core_seconds"] == pytest.approx(expected["cpu_core_seconds"], rel=1e-3)


def test_mig_slices_count_as_their_share_of_a_gpu(prometheus_site, tmp_path):
    (mig_pod,) = prometheus_site[1]["cases"]["mig"]
    namespace, pod = mig_pod.split("/")
    for scale, expected in ((1, "1"), (1000, "714")):  # 2 x 1g (1/7) + 1 x 3g (3/7) = 5/7 of a GPU
        policy = SOURCE.policies[0].model_copy(update={"gpu_scale": scale})
        result = stage(tmp_path / str(scale), prometheus_site, source=SOURCE.model_copy(update={"policies": [policy]}))
        rows = [
            r
            for r in rows_of(result, tmp_path / str(scale))
            if (r[F["partition"]], r[F["jobname"]]) == (namespace, pod)
        ]
        assert rows and all(r[F["alloctres"]].rsplit("=", 1)[1] == expected for r in rows), rows


def test_kube_state_metrics_source_charges_running_pods_only(prometheus_ksm_site, tmp_path):
    """Clusters without the scheduler metric: container requests summed per pod, samples counted from the
    Running phase, so a completed pod's lingering request series (kept while the pod object exists) is free."""
    source = SOURCE.model_copy(update={"metric": "kube_state_metrics"})
    rows = rows_of(stage(tmp_path, prometheus_ksm_site, source=source), tmp_path)
    truth = prometheus_ksm_site[1]
    got = usage_by(rows, lambda row: row[F["partition"]])
    for namespace, expected in truth["namespaces"].items():
        for measure in ("cpu_core_seconds", "memory_byte_seconds"):
            assert got[namespace][measure] == pytest.approx(expected[measure], rel=1e-3), (namespace, measure)
    pods = usage_by(rows, lambda row: f"{row[F['partition']]}/{row[F['jobname']]}")
    for key, expected in truth["pods"].items():
        assert pods[key]["cpu_core_seconds"] == pytest.approx(expected["cpu_core_seconds"], rel=1e-3), key


def test_attribution_from_annotations_with_mapping_file_and_defaults(staged, prometheus_site, tmp_path):
    _, result, rows = staged

    def owners(namespace: str, table=rows) -> set[tuple[str, str, str]]:
        return {(r[F["account"]], r[F["group"]], r[F["user"]]) for r in table if r[F["partition"]] == namespace}

    assert owners("case-a") == {("9001", "alice@example.edu", "alice")}  # cf_project_id, cf_pi, requester
    assert owners("case-b") == {("9002", "bob@example.edu", "bob@example.edu")}  # no requester: the PI
    assert owners("case-unattributed") == {("unattributed", "carol", "carol")}  # requester as PI, no project
    assert owners("case-bare") == {("unattributed", "unattributed", "unattributed")}
    source_counts = result.manifest["source_counts"]
    assert {"case-unattributed", "case-bare"} <= set(source_counts["unattributed_namespaces"])
    assert "case-a" not in source_counts["unattributed_namespaces"]

    mapping = tmp_path / "namespaces.csv"
    mapping.write_text("namespace,pi,project,user\ncase-bare,dave@example.edu,77,\n")
    policy = SOURCE.policies[0].model_copy(update={"mapping_file": str(mapping)})
    mapped = stage(tmp_path / "s", prometheus_site, source=SOURCE.model_copy(update={"policies": [policy]}))
    mapped_rows = rows_of(mapped, tmp_path / "s")
    assert owners("case-bare", mapped_rows) == {("77", "dave@example.edu", "dave@example.edu")}
    assert "case-bare" not in mapped.manifest["source_counts"]["unattributed_namespaces"]
    # Attribution is not part of a row's identity: the same usage keeps its ids.
    assert sorted(r[F["jobid"]] for r in mapped_rows) == sorted(r[F["jobid"]] for r in rows)
