"""Every DAG imports with the example config and carries the policy operators rely on."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DAG_FILES = sorted((ROOT / "dags").glob("*.py"))
XDMOD_TASKS = {"xdmod_timestamp", "xdmod_shred", "xdmod_ingest"}
CLOUD_XDMOD_TASKS = {"xdmod_timestamp", "xdmod_shred_events", "xdmod_shred_hypervisors", "xdmod_ingest"}

PARSE_CHILD = """
import json, sys, time
t0 = time.perf_counter()
from airflow.dag_processing.dagbag import DagBag
t1 = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
stat = bag.dagbag_stats[0]
print(json.dumps({"file_seconds": stat.duration.total_seconds(), "airflow_import_seconds": t1 - t0,
                  "dags": sorted(bag.dag_ids), "errors": {k: v for k, v in bag.import_errors.items()}}))
"""


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    return bag


def parse_in_fresh_process(path: Path, config: Path) -> dict:
    env = {**os.environ, "XDMOD_USAGE_CONFIG": str(config)}
    out = subprocess.run([sys.executable, "-c", PARSE_CHILD, str(path)], env=env, capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_each_dag_file_parses_fast_in_a_fresh_process(path):
    result = parse_in_fresh_process(path, ROOT / "include" / "site-config.example.yaml")
    assert result["errors"] == {}
    assert result["dags"]
    # Target 0.3 s; the test allows headroom for a loaded CI machine, bench/ reports the figure.
    assert result["file_seconds"] < 1.0, result


def test_invalid_config_is_an_import_error_naming_file_key_and_reason(tmp_path):
    data = yaml.safe_load((ROOT / "include" / "site-config.example.yaml").read_text())
    data["resources"][0]["source"]["clustr"] = data["resources"][0]["source"].pop("cluster")
    bad = tmp_path / "bad-site.yaml"
    bad.write_text(yaml.safe_dump(data))
    result = parse_in_fresh_process(ROOT / "dags" / "usage_daily.py", bad)
    assert result["dags"] == []
    (message,) = result["errors"].values()
    assert str(bad) in message
    assert "resources[0].source.cluster: Field required" in message
    assert "resources[0].source.clustr: unknown key" in message


def usage_dags(dagbag):
    return [dag for dag in dagbag.dags.values() if dag.dag_id.startswith("usage_")]


def test_one_dag_per_resource_plus_the_freshness_watch(dagbag):
    assert set(dagbag.dag_ids) == {"usage_slurm_hpc1", "usage_openshift_ocp-prod", "usage_openstack_cloud",
                                   "xdmod_usage_freshness", "xdmod_usage_preflight", "xdmod_backup",
                                   "xdmod_restore", "xdmod_aggregate_jobs", "xdmod_aggregate_cloud",
                                   "xdmod_hierarchy", "xdmod_reload"}  # fmt: skip


def test_backup_dumps_in_the_xdmod_pool_and_the_restore_never_retries(dagbag):
    backup, restore = dagbag.dags["xdmod_backup"], dagbag.dags["xdmod_restore"]
    assert {t.task_id: t.pool for t in backup.tasks if t.pool == "xdmod"} == {"dump_databases": "xdmod"}
    assert backup.catchup is False and backup.max_active_runs == 1
    assert backup.timetable.expression == "0 3 * * 0" and str(backup.timetable.timezone) == "UTC"
    assert backup.deadline and backup.deadline[0].interval == dt.timedelta(hours=12)
    for upstream, downstream in (
        ("dump_databases", "backup_config"),
        ("dump_databases", "backup_archive"),
        ("backup_config", "verify"),
        ("backup_archive", "verify"),
        ("verify", "retention"),
    ):
        assert downstream in backup.get_task(upstream).downstream_task_ids  # fmt: skip
    assert type(restore.timetable).__name__ == "NullTimetable"  # manual trigger only
    assert restore.get_task("restore").pool == "xdmod" and restore.get_task("restore").retries == 0
    assert set(restore.params.keys()) == {"backup_id", "target_conn_id", "confirm", "replace", "databases", "users",
                                          "config_dir"}  # fmt: skip


def test_every_task_has_retries_backoff_and_timeout(dagbag):
    for dag in dagbag.dags.values():
        for task in dag.tasks:
            if dag.dag_id == "xdmod_restore":  # destructive: an operator reruns it, never a retry
                assert task.retries == 0, task.task_id
            else:
                assert task.retries >= 1, task.task_id
            assert task.retry_exponential_backoff, task.task_id
            assert task.max_retry_delay is not None, task.task_id
            assert task.execution_timeout is not None and task.execution_timeout > dt.timedelta(0), task.task_id


def test_xdmod_tasks_use_the_xdmod_pool_and_nothing_else_does(dagbag):
    for dag in usage_dags(dagbag):
        pools = {task.task_id: task.pool for task in dag.tasks}
        expected = CLOUD_XDMOD_TASKS if dag.dag_id.startswith("usage_openstack_") else XDMOD_TASKS
        assert {t for t, pool in pools.items() if pool == "xdmod"} == expected


def test_openstack_stages_days_in_order_and_ingests_if_either_shred_ran(dagbag):
    dag = dagbag.dags["usage_openstack_cloud"]
    assert dag.get_task("stage").depends_on_past is True  # reads the day before's end state
    assert not any(task.depends_on_past for task in dag.tasks if task.task_id != "stage")
    assert dag.get_task("xdmod_shred_hypervisors").trigger_rule == "none_failed"
    assert dag.get_task("xdmod_ingest").trigger_rule == "none_failed_min_one_success"
    chain = ["stage", "xdmod_timestamp", "xdmod_shred_events", "xdmod_shred_hypervisors", "xdmod_ingest",
             "reconcile"]  # fmt: skip
    for upstream, downstream in itertools.pairwise(chain):
        assert downstream in dag.get_task(upstream).downstream_task_ids


def test_source_dags_ingest_with_an_asset_event_and_reconcile_instead_of_aggregating(dagbag):
    for dag in usage_dags(dagbag):
        realm = "cloud" if dag.dag_id.startswith("usage_openstack_") else "job"
        resource = dag.dag_id.split("_", 2)[2]
        assert not [task.task_id for task in dag.tasks if "aggregate" in task.task_id]
        ingest = dag.get_task("xdmod_ingest")
        assert [asset.name for asset in ingest.outlets] == [f"xdmod-ingest.{realm}.{resource}"]
        reconcile = dag.get_task("reconcile")
        assert reconcile.upstream_task_ids >= {"xdmod_ingest", "stage"} and reconcile.pool != "xdmod"
        assert reconcile.trigger_rule == "none_failed"  # an empty day is checked too: XDMoD must hold nothing


def test_one_aggregation_dag_per_realm_runs_on_any_ingest_one_run_at_a_time(dagbag):
    from airflow.sdk import AssetAny

    for realm, dag_id, resources in (("job", "xdmod_aggregate_jobs", ["hpc1", "ocp-prod"]),
                                     ("cloud", "xdmod_aggregate_cloud", ["cloud"])):  # fmt: skip
        dag = dagbag.dags[dag_id]
        condition = dag.timetable.asset_condition
        assert isinstance(condition, AssetAny)  # a paused resource never stalls the others
        assert sorted(asset.name for asset in condition.objects) == [f"xdmod-ingest.{realm}.{r}" for r in resources]
        assert dag.max_active_runs == 1 and dag.catchup is False
        aggregate = dag.get_task("aggregate")
        assert aggregate.pool == "xdmod" and "settle" in aggregate.upstream_task_ids
        assert [a.name for a in aggregate.outlets] == [f"xdmod-aggregated.{realm}"]
        assert {a.name for a in aggregate.inlets} == {f"xdmod-ingest.{realm}.{r}" for r in resources} | {
            f"xdmod-aggregated.{realm}"}  # fmt: skip
        assert dag.get_task("settle").pool != "xdmod"  # waiting holds no XDMoD slot


def test_hierarchy_and_reload_dags_keep_xdmod_commands_in_the_pool(dagbag):
    hierarchy = dagbag.dags["xdmod_hierarchy"]
    assert {t.task_id: t.pool for t in hierarchy.tasks} == {"snapshot": "default_pool", "import_files": "xdmod",
                                                            "reingest": "xdmod"}  # fmt: skip
    assert hierarchy.catchup is False and set(hierarchy.params.keys()) == {"as_of", "import_files", "dry_run"}
    reload = dagbag.dags["xdmod_reload"]
    assert type(reload.timetable).__name__ == "NullTimetable"  # manual only
    assert {t.task_id for t in reload.tasks if t.pool == "xdmod"} == {"xdmod_timestamp", "delete_jobs", "shred",
                                                                     "xdmod_ingest"}  # fmt: skip
    assert reload.params["list_only"] is True and reload.params["confirm"] == ""
    assert reload.params.get_param("resource").schema["enum"] == ["hpc1", "ocp-prod"]  # job resources only
    chain = ["plan", "restage", "xdmod_timestamp", "delete_jobs", "shred", "xdmod_ingest", "reconcile"]
    for upstream, downstream in itertools.pairwise(chain):
        assert downstream in reload.get_task(upstream).downstream_task_ids


def test_schedule_is_one_utc_day_midnight_to_midnight_with_catchup(dagbag):
    from airflow.sdk import CronDataIntervalTimetable

    for dag in usage_dags(dagbag):
        assert isinstance(dag.timetable, CronDataIntervalTimetable)
        assert dag.catchup is True
        cloud = dag.dag_id.startswith("usage_openstack_")
        first = dt.datetime(2026, 10, 31, tzinfo=dt.UTC) if cloud else dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
        assert dag.start_date == first
        assert dag.timetable.expression == "0 0 * * *" and str(dag.timetable.timezone) == "UTC"
        from airflow.timetables.interval import CronDataIntervalTimetable as SchedulerTimetable

        scheduler_view = SchedulerTimetable(dag.timetable.expression, dag.timetable.timezone)
        after = scheduler_view.next_dagrun_info(last_automated_data_interval=None, restriction=_restriction(dag))
        assert after.data_interval.start == first
        assert after.data_interval.end - after.data_interval.start == dt.timedelta(days=1)
        assert set(dag.params.keys()) >= {"dry_run", "source", "allow_fewer_records", "max_quarantine_share"}
        assert dag.max_active_runs == 2
        assert dag.doc_md and "Backfill" in dag.doc_md
        resource = dag.dag_id.split("_", 2)[2]
        assert {"xdmod", dag.dag_id.split("_")[1], f"resource:{resource}"} <= set(dag.tags)


def _restriction(dag):
    from airflow.timetables.base import TimeRestriction

    return TimeRestriction(earliest=dag.start_date, latest=None, catchup=True)


def test_tasks_never_read_ds_or_logical_date():
    """The window comes only from data_interval_start/end."""
    for path in (ROOT / "plugins" / "xdmod_usage").glob("*.py"):
        text = path.read_text()
        for word in ('["ds"]', '.get("ds")', "{{ ds", '["logical_date"]', '.get("logical_date")', "execution_date"):
            assert word not in text, f"{path.name} uses {word}"


def test_every_library_module_imports():
    import importlib
    import pkgutil

    import xdmod_usage

    for module in pkgutil.iter_modules(xdmod_usage.__path__):
        importlib.import_module(f"xdmod_usage.{module.name}")


def test_core_library_runs_without_airflow():
    code = (
        "import sys, xdmod_usage.config, xdmod_usage.slurm_pipeline, xdmod_usage.sacct, xdmod_usage.runners, "
        "xdmod_usage.xdmod_commands, xdmod_usage.backup_make, xdmod_usage.backup_restore, xdmod_usage.aggregation, "
        "xdmod_usage.hierarchy_pipeline, xdmod_usage.hierarchy_sources, xdmod_usage.reload; "
        "assert not [m for m in sys.modules if m.split('.')[0] == 'airflow'], 'airflow'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(ROOT / "plugins")})


def test_end_date_makes_its_day_the_last_one_scheduled():
    from airflow.timetables.base import TimeRestriction
    from airflow.timetables.interval import CronDataIntervalTimetable as SchedulerTimetable

    from xdmod_usage.config import parse_site_config
    from xdmod_usage.dag_factory import build_usage_dags

    data = yaml.safe_load((ROOT / "include" / "site-config.example.yaml").read_text())
    data["resources"][0].update(start_date="2026-11-20", end_date="2026-11-21")
    dag = build_usage_dags(parse_site_config(yaml.safe_dump(data)))["usage_slurm_hpc1"]
    timetable = SchedulerTimetable(dag.timetable.expression, dag.timetable.timezone)
    restriction = TimeRestriction(earliest=dag.start_date, latest=dag.end_date, catchup=True)
    days, last = [], None
    while (info := timetable.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)) is not None:
        days.append(info.data_interval.start.date().isoformat())
        last = info.data_interval
        assert len(days) < 10
    assert days == ["2026-11-20", "2026-11-21"]
