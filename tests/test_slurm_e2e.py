"""The Slurm DAG end to end on a real Slurm with accounting, run by `airflow dags test` on SQLite.

Expectations come from what the workload submitted (scripts/slurm_workload.py records job ids,
users, intended end states, array tasks, --mem, the job run across midnight), never from the code
under test.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path

import pytest
from scripts.local_run import CLUSTER, DAY, NEXT_DAY, LocalSite

from xdmod_usage import coverage
from xdmod_usage.sacct import SacctError, run_local, sacct_argv, sacct_env
from xdmod_usage.staging import Store, staged_part
from xdmod_usage.window import UsageWindow

pytestmark = pytest.mark.slurm


def snapshot(site: LocalSite, day: dt.date) -> dict[str, bytes]:
    """Every staged file's bytes; the manifest without the notes of the runs that ingested and reconciled it."""
    root = site.staging_root / CLUSTER / day.isoformat()
    files = {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    files["manifest.json"] = json.dumps(staged_part(json.loads(files["manifest.json"])), sort_keys=True).encode()
    return files


def staged_rows(site: LocalSite, day: dt.date) -> dict[str, list[str]]:
    rows = {}
    for line in site.staged_path(day).read_text(encoding="utf-8").splitlines():
        fields = line.split("|", 25)
        assert len(fields) == 26
        rows[fields[0]] = fields
    return rows


@pytest.fixture(scope="module")
def two_days(slurm_site):
    site, workload = slurm_site
    logs = {}
    for day in (DAY, NEXT_DAY):
        status, logs[day] = site.run_day(day)
        assert status == 0, logs[day].read_text()[-4000:]
    return site, workload, logs


def expected_ids(job: dict) -> set[str]:
    if job["array_task_ids"]:
        return {f"{job['job_id']}_{task}" for task in job["array_task_ids"]}
    return {str(job["job_id"])}


def test_staged_rows_match_what_the_workload_submitted(two_days):
    site, workload, _ = two_days
    day_rows, next_rows = staged_rows(site, DAY), staged_rows(site, NEXT_DAY)
    assert not set(day_rows) & set(next_rows), "a job landed on two days"
    staged = {**day_rows, **next_rows}

    started = [job for job in workload["jobs"] if job["expected_started"]]
    never_started = [job for job in workload["jobs"] if not job["expected_started"]]
    assert set(staged) == set().union(*(expected_ids(job) for job in started))
    assert never_started and not set(staged) & set().union(*(expected_ids(job) for job in never_started))
    for job in started:
        for job_id in expected_ids(job):
            row = staged[job_id]
            assert row[16].split(" ")[0] == job["expected_state"], job_id
            assert (row[8], row[5]) == (job["user"], job["account"]), job_id
            assert row[1].isdigit() and row[2] == CLUSTER
            assert row[25] == job["name"], job_id  # pipes and non-ASCII intact
            if job["mem_mb"]:
                assert row[20] == f"{job['mem_mb']}M"
            if job["expected_state"] == "CANCELLED":
                assert row[16].startswith("CANCELLED by ")


def test_a_job_across_midnight_lands_on_the_day_it_ended_only(two_days):
    site, workload, _logs = two_days
    (job,) = [job for job in workload["jobs"] if job["spans_midnight"]]
    midnight = workload["midnight_fake"].replace("Z", "")
    assert midnight == f"{NEXT_DAY.isoformat()}T00:00:00"
    row = staged_rows(site, NEXT_DAY)[str(job["job_id"])]
    assert row[12] < midnight <= row[13]  # started before, ended after midnight
    assert str(job["job_id"]) not in staged_rows(site, DAY)
    assert site.manifest(DAY)["counts"]["outside_window"] >= 1


def test_manifest_accounts_for_every_line(two_days):
    site, _, _ = two_days
    for day in (DAY, NEXT_DAY):
        manifest = site.manifest(day)
        counts = manifest["counts"]
        assert counts["quarantined"] == {}
        assert counts["read"] == (counts["staged"] + counts["outside_window"] + sum(counts["skipped"].values()))
        assert counts["staged"] == len(staged_rows(site, day))
        assert manifest["window"]["start"] == f"{day.isoformat()}T00:00:00Z"
        assert manifest["source"]["argv"][:2] == ["sacct", "--allusers"]


def test_dry_run_logs_the_exact_xdmod_commands(two_days):
    _site, _, logs = two_days
    log = logs[DAY].read_text()
    staged = f"/srv/xdmod-usage/input/slurm-{CLUSTER}-{DAY.isoformat()}.log"
    assert f"argv=['xdmod-shredder', '-r', '{CLUSTER}', '-f', 'slurm', '-i', '{staged}']" in log
    assert "argv=['xdmod-ingestor', '--ingest']" in log
    assert log.index("xdmod-shredder") < log.index("'--ingest'")
    # Aggregation is the jobs aggregation DAG's, on this ingest's asset event (with the pre-shred timestamp).
    assert "--aggregate=job" not in log
    assert f"ingest event for xdmod-ingest.job.{CLUSTER}: " in log and "'last_modified_start': '20" in log
    manifest = _site.manifest(DAY)
    assert manifest["xdmod_ingest"]["dry_run"] is True
    note = manifest["reconciliation"]
    assert note["status"] == "not_checked" and note["expected"] == note["writer_claim"] == manifest["counts"][
        "xdmod_rows"]  # fmt: skip
    assert f"DRY RUN reconciliation of {CLUSTER} {DAY}: XDMoD should hold {note['expected']} job rows" in log
    assert "xdmod-test-pw" not in log  # the DB password never reaches a log
    # The configured kubernetes runner is shown as the exact pod of each step (dry_run param).
    assert log.count("DRY RUN pod spec:") == 2
    assert "fetch-staged-files" in log and "namespace: xdmod" in log and "automountServiceAccountToken: false" in log


def test_the_dag_run_feeds_the_coverage_index(two_days):
    """Each manifest write of a real run lands in the coverage index, with the run that made it."""
    site, _, _ = two_days
    index = coverage.read(Store.from_path(site.staging_root), CLUSTER)
    for day in (DAY, NEXT_DAY):
        entry, manifest = index[day.isoformat()], site.manifest(day)
        assert entry["version"] == manifest["version"] and entry["staged"] == manifest["counts"]["staged"]
        assert entry["state"] == "staged" and entry["dry_run"] is True  # XDMoD steps in dry run
        assert entry["run"]["dag_id"] == f"usage_slurm_{CLUSTER}"
        assert entry["run"]["run_id"] == manifest["reconciliation"]["run_id"]  # the last write: reconcile's


def test_rerun_in_another_worker_time_zone_is_byte_identical(two_days):
    site, _, _ = two_days
    before = snapshot(site, DAY)
    status, log = site.run_day(DAY, extra_env={"TZ": "America/New_York"})
    assert status == 0, log.read_text()[-3000:]
    assert snapshot(site, DAY) == before


def test_replay_from_the_archive_reproduces_the_day(two_days):
    site, _, _ = two_days
    staged_before = site.staged_path(NEXT_DAY).read_bytes()
    files_before = site.manifest(NEXT_DAY)["files"]
    status, log = site.run_day(NEXT_DAY, conf={"source": "archive"})
    assert status == 0, log.read_text()[-3000:]
    assert site.manifest(NEXT_DAY)["source"]["replayed_from_archive"] is True
    assert site.manifest(NEXT_DAY)["files"] == files_before
    assert site.staged_path(NEXT_DAY).read_bytes() == staged_before


def test_sacct_errors_carry_sacct_message(slurm_site, tmp_path):
    site, _ = slurm_site
    bad_conf = tmp_path / "slurm.conf"
    text = Path(site.slurm_conf).read_text()
    bad_conf.write_text(text.replace(f"AccountingStoragePort={site.ports['XU_SLURMDBD_PORT']}",
                                     "AccountingStoragePort=9"))  # fmt: skip
    argv = sacct_argv(CLUSTER, UsageWindow.for_day(DAY))
    with pytest.raises(SacctError, match=r"sacct failed .*Connection refused"), open(os.devnull, "wb") as sink:
        run_local(argv, sacct_env({"SLURM_CONF": str(bad_conf)}), sink)


def test_failing_sacct_fails_the_run_with_sacct_message(slurm_site, tmp_path):
    site, _ = slurm_site
    broken = LocalSite(site.state_dir, tmp_path, site.ports)
    bad_conf = tmp_path / "slurm.conf"
    shutil.copy(site.slurm_conf, bad_conf)
    bad_conf.write_text(bad_conf.read_text().replace(f"AccountingStoragePort={site.ports['XU_SLURMDBD_PORT']}",
                                                     "AccountingStoragePort=9"))  # fmt: skip
    broken.write_config(SLURM_CONF=str(bad_conf))
    status, log = broken.run_day(DAY)
    text = log.read_text()
    assert status != 0
    assert "sacct failed (exit status 1)" in text and "Problem talking to the database" in text
    assert text.count("new_state=up_for_retry") == 1  # slurmdbd may come back: retried (retries=1)
    assert not (tmp_path / "staging" / CLUSTER / DAY.isoformat() / "manifest.json").exists()


def test_unknown_cluster_is_an_error_not_an_empty_day(slurm_site, tmp_path):
    site, _ = slurm_site
    config = json.loads(site.config_path.read_text())
    config["resources"][0]["source"]["cluster"] = "democlustr"
    misspelt = LocalSite(site.state_dir, tmp_path, site.ports)
    misspelt.config_path.parent.mkdir(parents=True, exist_ok=True)
    misspelt.config_path.write_text(json.dumps(config))
    status, log = misspelt.run_day(DAY)
    assert "slurmdbd does not know cluster 'democlustr'" in log.read_text()
    assert status != 0
    assert log.read_text().count("new_state=up_for_retry") == 0  # a config error is not retried
    assert not (tmp_path / "staging").exists()
