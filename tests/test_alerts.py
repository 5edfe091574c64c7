"""Alerts delivered to real receivers on loopback: an SMTP server (aiosmtpd) and an HTTP server
standing in for a Slack webhook and a generic webhook. No mocks: the provider hooks really send."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

from scripts.local_run import DAY, LocalSite

from conftest import WEBHOOK_TOKEN
from xdmod_usage.alerts import Alert, deadline_missed, deliver

ROUTES = [
    {"type": "email", "to": ["ops@example.edu"], "conn_id": "alert_smtp", "sender": "etl@example.edu"},
    {"type": "slack", "conn_id": "alert_slack"},
    {"type": "webhook", "conn_id": "alert_hook"},
]


def test_a_failed_run_alerts_every_route_with_the_facts(receivers, tmp_path, airflow_db):
    """A real `airflow dags test` whose stage task fails: the failure callback reaches all three."""
    site = LocalSite(tmp_path / "state", tmp_path / "out", {})
    site.write_config()
    config = json.loads(site.config_path.read_text())
    config["alerts"] = ROUTES
    config["tasks"]["retries"] = 0
    config["resources"][0]["source"]["sacct_path"] = "/nonexistent/bin/sacct"
    site.config_path.write_text(json.dumps(config))
    site.prepare_airflow()
    status, _log = site.run_day(DAY, extra_env=receivers.env)
    assert status != 0

    (mail,) = receivers.mails
    assert mail["To"] == "ops@example.edu" and mail["From"] == "etl@example.edu"
    assert mail["Subject"] == "[xdmod-usage] usage_slurm_democluster.stage failed for 2026-11-20T00:00:00+00:00"
    (slack,) = [body for path, body in receivers.posts if path == f"/services/{WEBHOOK_TOKEN}"]
    (hook,) = [body for path, body in receivers.posts if path != f"/services/{WEBHOOK_TOKEN}"]
    assert "usage_slurm_democluster.stage failed" in slack["text"]
    assert hook["dag_id"] == "usage_slurm_democluster" and hook["task_id"] == "stage"
    assert hook["window_start"] == "2026-11-20T00:00:00+00:00" and hook["window_end"] == "2026-11-21T00:00:00+00:00"
    assert hook["try_number"] == 1
    assert hook["log_url"].startswith("http") and "usage_slurm_democluster" in hook["log_url"]
    assert hook["error"] == "command not found: '/nonexistent/bin/sacct' (set source.sacct_path/sacctmgr_path)"
    body = mail.get_payload(decode=True) if not mail.is_multipart() else mail.get_payload()[0].get_payload(decode=True)
    assert b"try_number: 1" in body and b"command not found: &#x27;/nonexistent/bin/sacct&#x27;" in body


def test_one_broken_route_does_not_stop_the_others_and_no_route_only_logs(receivers, caplog):
    alert = Alert("subject", "text", {"event": "task_failed", "dag_id": "d"})
    delivered = deliver(
        [{"type": "webhook", "conn_id": "alert_dead"}, {"type": "webhook", "conn_id": "alert_hook"}], alert
    )
    assert delivered == ["webhook"] and len(receivers.posts) == 1
    assert "alert route webhook (alert_dead) failed" in caplog.text
    assert deliver([], alert) == []
    assert "no alert route configured" in caplog.text


def test_lateness_callback_delivers(receivers):
    class Run:
        run_id = "scheduled__2026-11-21T00:00:00+00:00"
        data_interval_start = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
        data_interval_end = dt.datetime(2026, 11, 21, tzinfo=dt.UTC)

    asyncio.run(deadline_missed([ROUTES[2]], "usage_slurm_hpc1", "12:00:00", context={"dag_run": Run()}))
    ((_, body),) = receivers.posts
    assert body["event"] == "deadline_missed" and body["deadline"] == "12:00:00"
    assert body["window_start"] == "2026-11-20T00:00:00+00:00" and body["run_id"] == Run.run_id


def test_every_task_alerts_and_every_dag_has_a_lateness_deadline():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(Path(__file__).resolve().parent.parent / "dags"))
    assert {dag.dag_id for dag in bag.dags.values()} == {
        "usage_slurm_hpc1",
        "usage_openshift_ocp-prod",
        "usage_openstack_cloud",
        "xdmod_usage_freshness",
        "xdmod_usage_preflight",
        "xdmod_backup",
        "xdmod_restore",
        "xdmod_aggregate_jobs",
        "xdmod_aggregate_cloud",
        "xdmod_hierarchy",
        "xdmod_reload",
    }
    for dag in bag.dags.values():
        for task in dag.tasks:
            (callback,) = task.on_failure_callback
            assert type(callback).__name__ == "UsageFailureNotifier"
            assert callback.routes == [{"type": "email", "to": ["hpc-accounting@example.edu"]}]
    deadlines = {"usage_slurm_hpc1": 12, "xdmod_backup": 12, "xdmod_hierarchy": 12, "xdmod_aggregate_jobs": 6}
    for dag_id, hours in deadlines.items():
        dag = bag.dags[dag_id]
        assert dag.deadline and dag.deadline[0].interval == dt.timedelta(hours=hours)
        for task in dag.tasks:
            (callback,) = task.on_failure_callback
            assert type(callback).__name__ == "UsageFailureNotifier"
            assert callback.routes == [{"type": "email", "to": ["hpc-accounting@example.edu"]}]
