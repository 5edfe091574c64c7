"""The coverage index follows every manifest write, survives racing writers, and builds the view's grid.

Days are staged by the real Slurm pipeline (synthetic sacct lines) on a local disk and on a real S3
endpoint; downstream notes come from the real note builders the DAG tasks use.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from test_s3_staging import s3_bucket, s3_store  # noqa: F401 - s3_bucket is a fixture
from xdmod_usage import coverage
from xdmod_usage.aggregation import ingest_note
from xdmod_usage.config import parse_site_config
from xdmod_usage.coverage_view import grid
from xdmod_usage.reconciliation import Reconciliation, checked_note
from xdmod_usage.slurm_pipeline import SlurmDay, stage_slurm_day
from xdmod_usage.staging import DayStage, Store
from xdmod_usage.synthetic import synthetic_sacct_lines
from xdmod_usage.window import UsageWindow

RUN = {"dag_id": "usage_slurm_hpc1", "run_id": "scheduled__2026-11-20T00:00:00+00:00"}
BAD_LINE = b"not|a|sacct|line\n"


def stage(store: Store, day: dt.date, rows: int, bad: int = 0) -> dict:
    window = UsageWindow.for_day(day)
    # Lines 100.. of the generator are plain finished jobs (the first hundred are its edge cases).
    lines = b"".join(list(synthetic_sacct_lines(window, 100 + rows))[100:]) + BAD_LINE * bad
    result = stage_slurm_day(store, SlurmDay("hpc1", "hpc1", "synth", window), lambda out: out.write(lines),
                             {"type": "t"}, max_quarantine_share=1.0)  # fmt: skip
    return result.manifest


def ingest_and_check(store: Store, day: dt.date, manifest: dict, held: int) -> None:
    stage_ = DayStage(store, "hpc1", day.isoformat())
    extra = {"dry_run": False, "last_modified_start": "2026-11-21 00:10:00"}
    stage_.annotate(manifest["version"], "xdmod_ingest", ingest_note(extra, RUN["run_id"]))
    expected = manifest["counts"]["xdmod_rows"]
    verdict = Reconciliation("job", "hpc1", day.isoformat(), expected, held, expected)
    stage_.annotate(manifest["version"], "reconciliation", checked_note(verdict, RUN["run_id"]))


def seed(store: Store) -> dict[str, dict]:
    """Four days: reconciled; staged with quarantined lines; a reconciliation mismatch; staged only."""
    days = [dt.date(2026, 11, d) for d in (20, 21, 22, 23)]
    manifests = {day.isoformat(): stage(store, day, 40 + n, bad=3 if n == 1 else 0) for n, day in enumerate(days)}
    ingest_and_check(store, days[0], manifests["2026-11-20"], held=40)
    ingest_and_check(store, days[2], manifests["2026-11-22"], held=41)  # XDMoD lost one
    return manifests


def check_seeded(index: dict[str, dict], manifests: dict[str, dict]) -> None:
    states = {"2026-11-20": "reconciled", "2026-11-21": "staged", "2026-11-22": "mismatch", "2026-11-23": "staged"}
    assert {day: entry["state"] for day, entry in index.items()} == states
    for day, manifest in manifests.items():
        assert index[day]["staged"] == manifest["counts"]["staged"]
        assert index[day]["read"] == manifest["counts"]["read"]
        assert index[day]["version"] == manifest["version"]
    assert index["2026-11-21"]["quarantined"] == 3
    assert sum(index["2026-11-21"]["quarantine_reasons"].values()) == 3
    assert index["2026-11-20"]["quarantined"] == 0
    assert index["2026-11-22"]["reconciliation"]["held"] == 41
    assert index["2026-11-22"]["reconciliation"]["expected"] == 42
    assert "1 missing" in index["2026-11-22"]["reconciliation"]["message"]


@pytest.fixture
def local_store(tmp_path) -> Store:
    return Store.from_path(tmp_path / "staging")


def test_index_follows_every_manifest_write(local_store, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CTX_DAG_ID", RUN["dag_id"])
    monkeypatch.setenv("AIRFLOW_CTX_DAG_RUN_ID", RUN["run_id"])
    manifests = seed(local_store)
    index = coverage.read(local_store, "hpc1")
    check_seeded(index, manifests)
    assert index["2026-11-20"]["run"] == RUN
    assert index["2026-11-20"]["ingest_run"] == RUN["run_id"]
    # The compacted index alone (no pending entries read) holds the same days.
    stored = json.loads(local_store.read_bytes("_coverage/hpc1/index.json"))
    assert stored["format"] == coverage.FORMAT
    assert {d: e["state"] for d, e in stored["days"].items()} == {d: e["state"] for d, e in index.items()}


def test_restaging_a_day_replaces_its_cell(local_store):
    manifests = seed(local_store)
    again = stage(local_store, dt.date(2026, 11, 20), 45)  # the source grew: a new version, notes gone
    assert again["version"] != manifests["2026-11-20"]["version"]
    entry = coverage.read(local_store, "hpc1")["2026-11-20"]
    assert (entry["state"], entry["staged"], entry["version"]) == ("staged", 45, again["version"])


def test_a_stale_compaction_loses_no_entry(local_store):
    """Two writers compact at once; the one that read the index earlier writes last."""
    stage(local_store, dt.date(2026, 11, 20), 10)
    stale = local_store.read_bytes("_coverage/hpc1/index.json")  # what the slower writer read
    stage(local_store, dt.date(2026, 11, 21), 11)  # the faster writer: index + its pending entry
    local_store.put_bytes("_coverage/hpc1/index.json", stale)  # the slower writer's index lands last
    assert "2026-11-21" not in json.loads(local_store.read_bytes("_coverage/hpc1/index.json"))["days"]
    assert coverage.read(local_store, "hpc1")["2026-11-21"]["staged"] == 11  # readers merge pending
    coverage.compact(local_store, "hpc1")
    assert "2026-11-21" in json.loads(local_store.read_bytes("_coverage/hpc1/index.json"))["days"]
    # Pending entries go only once old enough and held by the index.
    assert len(local_store.list_names("_coverage/hpc1/pending")) == 2
    later = max(e["written_ns"] for e in coverage.read(local_store, "hpc1").values()) + coverage.PENDING_KEEP_NS + 1
    coverage.compact(local_store, "hpc1", now_ns=later)
    assert local_store.list_names("_coverage/hpc1/pending") == []
    assert set(coverage.read(local_store, "hpc1")) == {"2026-11-20", "2026-11-21"}


def test_rebuild_from_manifests_matches_the_incremental_index(local_store):
    manifests = seed(local_store)
    incremental = coverage.read(local_store, "hpc1")
    local_store.remove_tree("_coverage")
    assert coverage.read(local_store, "hpc1") == {}
    assert coverage.rebuild(local_store, "hpc1") == 4
    rebuilt = coverage.read(local_store, "hpc1")
    check_seeded(rebuilt, manifests)
    strip = {"run", "written_ns"}
    assert {d: {k: v for k, v in e.items() if k not in strip} for d, e in rebuilt.items()} == {
        d: {k: v for k, v in e.items() if k not in strip} for d, e in incremental.items()
    }


def test_hierarchy_area_is_no_resource(local_store):
    DayStage(local_store, "_hierarchy", "current")._write_manifest({"version": "v-1"})
    assert not local_store.exists("_coverage/_hierarchy/index.json")


SITE = """
staging: {root: "file:///unused"}
xdmod: {runner: dry_run}
resources:
  - {name: hpc1, kind: slurm, xdmod_resource: hpc1, start_date: "2026-11-19", source: {cluster: hpc1}}
  - {name: hpc2, kind: slurm, xdmod_resource: hpc2, start_date: "2026-11-22", end_date: "2026-11-23",
     source: {cluster: hpc2}}
"""


def test_grid_marks_missing_and_not_due_days(local_store):
    manifests = seed(local_store)
    site = parse_site_config(SITE, "site.yaml")
    data = grid(site, lambda resource: local_store, today=dt.date(2026, 11, 26), days=8)
    assert data["days"] == [f"2026-11-{d}" for d in range(18, 26)]
    hpc1, hpc2 = data["resources"]
    assert [c and c["state"] for c in hpc1["cells"]] == [
        None, "missing", "reconciled", "staged", "mismatch", "staged", "missing", "missing"]  # fmt: skip
    assert hpc1["cells"][3]["quarantined"] == 3
    assert hpc1["cells"][2]["staged"] == manifests["2026-11-20"]["counts"]["staged"]
    assert hpc1["totals"]["missing"] == 3 and hpc1["quarantined_days"] == 1
    # hpc2 shares the store but has no days of its own: due only 22..23.
    assert [c and c["state"] for c in hpc2["cells"]] == [None] * 4 + ["missing", "missing", None, None]
    only = grid(
        site,
        lambda resource: local_store,
        today=dt.date(2026, 11, 26),
        days=8,
        allowed={"usage_slurm_hpc2"}.__contains__,
    )
    assert [r["name"] for r in only["resources"]] == ["hpc2"]


def test_index_and_grid_on_s3(s3_bucket):  # noqa: F811 - the fixture
    store = s3_store(s3_bucket)
    manifests = seed(store)
    check_seeded(coverage.read(store, "hpc1"), manifests)
    keys = {key.split("/staging/", 1)[1] for key in store.fs.find(store.root)}
    assert "_coverage/hpc1/index.json" in keys
    site = parse_site_config(SITE, "site.yaml")
    data = grid(site, lambda resource: store, today=dt.date(2026, 11, 24), days=5)
    assert [c["state"] for c in data["resources"][0]["cells"]] == ["missing", "reconciled", "staged", "mismatch",
                                                                    "staged"]  # fmt: skip


def test_rebuild_command_reindexes_every_resource(tmp_path):
    import subprocess
    import sys

    store = Store.from_path(tmp_path / "staging")
    seed(store)
    store.remove_tree("_coverage")
    site = tmp_path / "site.yaml"
    site.write_text(SITE.replace("file:///unused", f"file://{tmp_path / 'staging'}"))
    proc = subprocess.run([sys.executable, "-m", "xdmod_usage.coverage", "rebuild", "--config", str(site)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["hpc1: 4 days indexed", "hpc2: 0 days indexed"]
    assert coverage.read(store, "hpc1")["2026-11-22"]["state"] == "mismatch"
    bad = subprocess.run([sys.executable, "-m", "xdmod_usage.coverage", "rebuild", "--config", str(site),
                          "--resource", "nope"], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert bad.returncode != 0 and "no resource 'nope'" in bad.stderr
