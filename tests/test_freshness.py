"""The freshness watch finds days that never landed or landed incomplete, in the staging store itself."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from xdmod_usage.config import parse_site_config
from xdmod_usage.freshness import due_days, find_gaps
from xdmod_usage.slurm_pipeline import SlurmDay, stage_slurm_day
from xdmod_usage.staging import Store
from xdmod_usage.synthetic import synthetic_sacct_lines
from xdmod_usage.window import UsageWindow

ROOT = Path(__file__).resolve().parent.parent
UTC = dt.UTC


def site_config(tmp_path: Path, start: dt.date) -> tuple[Path, object]:
    data = yaml.safe_load((ROOT / "include" / "site-config.example.yaml").read_text())
    data["staging"]["root"] = f"file://{tmp_path / 'staging'}"
    data["resources"] = data["resources"][:1]  # the Slurm resource hpc1 only
    data.pop("hierarchy")  # its sources name the resources left out
    data["resources"][0]["start_date"] = start.isoformat()
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, parse_site_config(path.read_text(), str(path))


def stage(tmp_path: Path, day: dt.date) -> None:
    window = UsageWindow.for_day(day)
    lines = b"".join(synthetic_sacct_lines(window, 200))
    stage_slurm_day(Store.from_path(tmp_path / "staging"), SlurmDay("hpc1", "hpc1", "hpc1", window),
                    lambda out: out.write(lines), {"type": "t"}, max_quarantine_share=1.0)  # fmt: skip


def test_due_days_respect_start_date_settle_delay_and_grace(tmp_path):
    _, site = site_config(tmp_path, dt.date(2026, 11, 19))
    resource = site.resources[0]  # settle 30m
    now = dt.datetime(2026, 11, 22, 6, 29, tzinfo=UTC)
    assert due_days(resource, now, 7, dt.timedelta(hours=6)) == [dt.date(2026, 11, 19), dt.date(2026, 11, 20)]
    later = now + dt.timedelta(minutes=1)  # 11-21 is due at 00:00 + 30m + 6h
    assert due_days(resource, later, 7, dt.timedelta(hours=6))[-1] == dt.date(2026, 11, 21)


def test_missing_and_incomplete_days_are_reported(tmp_path):
    _, site = site_config(tmp_path, dt.date(2026, 11, 1))
    now = dt.datetime(2026, 11, 22, 12, tzinfo=UTC)
    for day in (dt.date(2026, 11, 19), dt.date(2026, 11, 21)):
        stage(tmp_path, day)
    staged = next((tmp_path / "staging" / "hpc1" / "2026-11-21").glob("v-*/slurm-*.log"))
    staged.write_bytes(staged.read_bytes()[:100])  # truncated behind the manifest's back
    gaps = find_gaps(site, lambda r: Store.from_path(tmp_path / "staging"), now, 3, dt.timedelta(hours=6))
    assert [(g.day, g.problem.split(" ")[0]) for g in gaps] == [("2026-11-20", "no"), ("2026-11-21", staged.name)]
    assert "has 100 bytes, the manifest says" in gaps[1].problem


def test_cli_for_cron_exits_1_with_the_gaps_and_0_when_complete(tmp_path):
    today = dt.datetime.now(UTC).date()
    path, _ = site_config(tmp_path, today - dt.timedelta(days=4))
    days = [today - dt.timedelta(days=n) for n in (2, 3, 4)]  # yesterday may not be due yet
    for day in days[1:]:
        stage(tmp_path, day)
    cli = [sys.executable, "-m", "xdmod_usage.freshness", "--config", str(path), "--days", "4", "--json"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "plugins")}
    missing = subprocess.run(cli, capture_output=True, text=True, env=env)
    assert missing.returncode == 1
    assert {"resource": "hpc1", "day": days[0].isoformat(), "problem": "no staged day (no manifest)"} in json.loads(
        missing.stdout
    )
    stage(tmp_path, days[0])
    stage(tmp_path, today - dt.timedelta(days=1))  # due or not, depending on the hour
    complete = subprocess.run(cli[:-1], capture_output=True, text=True, env=env)
    assert complete.returncode == 0, complete.stdout
    assert "all resources have complete staged days for the last 4 days" in complete.stdout

    path.write_text(path.read_text().replace("hpc1", "HPC 1"))  # not a valid resource name
    invalid = subprocess.run(cli, capture_output=True, text=True, env=env)
    assert invalid.returncode == 2 and "Traceback" not in invalid.stderr  # cron mails one clear line
    assert invalid.stderr.startswith(f"config invalid: {path}: resources[0].name")


def test_the_dag_task_fails_with_the_gaps_on_its_last_line(tmp_path):
    from airflow.sdk.exceptions import AirflowFailException

    from xdmod_usage.airflow_tasks import check_freshness

    _, site = site_config(tmp_path, dt.datetime.now(UTC).date() - dt.timedelta(days=3))
    with pytest.raises(AirflowFailException) as info:
        check_freshness(site, {})
    last = str(info.value).splitlines()[-1]
    assert last.startswith("stale staging: ") and "hpc1" in last and "(no staged day (no manifest))" in last
