"""Progress lines come at a steady rate with the right figures, cost little, and a real staging logs them."""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
from pathlib import Path

import pytest
import yaml

from xdmod_usage.config import ConfigError, parse_site_config
from xdmod_usage.progress import Progress, amount, duration, heartbeat
from xdmod_usage.slurm_pipeline import SlurmDay, stage_slurm_day
from xdmod_usage.staging import Store
from xdmod_usage.synthetic import synthetic_sacct_lines
from xdmod_usage.window import UsageWindow

LOG = logging.getLogger("test.progress")
EXAMPLE = Path(__file__).resolve().parent.parent / "include" / "site-config.example.yaml"


class Clock:
    """A clock the test moves by hand; counts how often it is read."""

    def __init__(self) -> None:
        self.now = 0.0
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now


def lines_of(caplog: pytest.LogCaptureFixture, what: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"{what}:")]


def test_lines_come_every_interval_not_more_often(caplog):
    clock, stamps = Clock(), []
    caplog.set_level(logging.INFO, logger=LOG.name)
    progress = Progress("steady", None, LOG, every=30, clock=clock)
    seen = 0
    for _ in range(10_000):  # 100 rows/s for 100 s
        clock.now += 0.01
        progress.add()
        if len(caplog.records) > seen:
            stamps.append(clock.now)
            seen = len(caplog.records)
    assert len(stamps) == 3, stamps
    gaps = [b - a for a, b in zip([0.0, *stamps], stamps, strict=False)]
    assert all(30 <= gap <= 32 for gap in gaps), gaps  # late by at most a check slice (every / 30)
    assert clock.reads < 200  # not once per row: about 30 reads per interval at a steady rate


def test_rate_percent_and_eta(caplog):
    clock = Clock()
    caplog.set_level(logging.INFO, logger=LOG.name)
    progress = Progress("stage slurm democluster 2026-11-20", 3_000_000, LOG, every=30, clock=clock)
    clock.now = 30
    progress.add(1_200_000)
    clock.now = 40
    progress.add(1)  # checked, but too soon for a line
    clock.now = 60
    progress.add(599_999)  # 600,000 rows in this interval: the rate is the interval's, not the average
    assert lines_of(caplog, "stage slurm democluster 2026-11-20") == [
        "stage slurm democluster 2026-11-20: 1,200,000 rows of 3,000,000 (40%), 40,000 rows/s, ETA 45 s",
        "stage slurm democluster 2026-11-20: 1,800,000 rows of 3,000,000 (60%), 20,000 rows/s, ETA 60 s",
    ]
    clock.now = 90
    progress.add(1_200_000)
    caplog.clear()
    progress.done()
    progress.done()  # once only
    assert [r.getMessage() for r in caplog.records] == [
        "stage slurm democluster 2026-11-20: done, 3,000,000 rows in 90 s, 33,333 rows/s"
    ]


def test_without_total_no_percent_or_eta(caplog):
    clock = Clock()
    caplog.set_level(logging.INFO, logger=LOG.name)
    progress = Progress("pull", None, LOG, every=10, clock=clock, unit="bytes")
    clock.now = 10
    progress.add(52_000_000)
    assert lines_of(caplog, "pull") == ["pull: 52.0 MB, 5.2 MB/s"]


def test_update_form_and_threshold_growth():
    """The hot-loop form: one integer comparison per row, the clock read a few dozen times for a million rows."""
    holder: list[Progress] = []
    clock_reads = [0]

    def clock() -> float:  # 1,000,000 rows/s of simulated time
        clock_reads[0] += 1
        return holder[0].count * 1e-6 if holder else 0.0

    progress = Progress("hot", None, LOG, every=30, clock=clock)
    holder.append(progress)
    next_at = 1
    for number in range(1, 1_000_001):
        if number == next_at:
            next_at = progress.update(number)
    progress.update(1_000_000)  # as check_sacct_lines does after its loop
    assert progress.count == 1_000_000
    assert clock_reads[0] < 60


def test_every_zero_logs_each_check_and_errors_say_stopped(caplog):
    caplog.set_level(logging.INFO, logger=LOG.name)
    with pytest.raises(RuntimeError), Progress("fails", 10, LOG, every=0) as progress:
        for _ in range(3):
            progress.add()
        raise RuntimeError("boom")
    messages = lines_of(caplog, "fails")
    assert len(messages) == 4 and messages[0].startswith("fails: 1 rows of 10 (10%)")
    assert messages[-1].startswith("fails: stopped after 3 rows in ") and messages[-1].endswith("(RuntimeError)")
    assert caplog.records[-1].levelno == logging.WARNING


def test_formats():
    assert [duration(s) for s in (0.25, 45, 99.4, 100, 725, 3600 * 3 + 125)] == [
        "0.2 s", "45 s", "99 s", "1 min 40 s", "12 min 5 s", "3 h 02 min",
    ]  # fmt: skip
    assert amount(1_234_567, "rows") == "1,234,567 rows"
    assert amount(0.25, "days") == "0.25 days"
    assert [amount(n, "bytes") for n in (999, 1500, 2_500_000, 3.2e9)] == ["999 B", "1.5 kB", "2.5 MB", "3.2 GB"]


def test_heartbeat_beats_while_blocked_and_stops(caplog):
    caplog.set_level(logging.INFO, logger=LOG.name)
    with heartbeat("sacct hpc1", LOG, every=0.05, status=lambda: "12 B so far"):
        time.sleep(0.4)
    beats = [r.getMessage() for r in caplog.records if r.getMessage().startswith("still running sacct hpc1: ")]
    assert len(beats) >= 2, beats
    assert all(re.fullmatch(r"still running sacct hpc1: \d+\.\d s, 12 B so far", beat) for beat in beats)
    count = len(caplog.records)
    time.sleep(0.2)
    assert len(caplog.records) == count  # stopped on exit


def test_heartbeat_survives_a_failing_status(caplog):
    caplog.set_level(logging.INFO, logger=LOG.name)

    def status() -> str:
        raise ValueError("closed file")

    with heartbeat("upload", LOG, every=0.05, status=status):
        time.sleep(0.2)
    assert any("(status unavailable: closed file)" in r.getMessage() for r in caplog.records)


def test_progress_interval_from_the_site_config():
    data = yaml.safe_load(EXAMPLE.read_text())
    site = parse_site_config(yaml.safe_dump(data))
    assert site.tasks.progress_interval == dt.timedelta(seconds=30)
    data["resources"][0]["tasks"] = {"progress_interval": "2m"}
    site = parse_site_config(yaml.safe_dump(data))
    assert site.tasks_for(site.resources[0]).progress_interval == dt.timedelta(minutes=2)
    for bad in ("0s", "2h", "soon"):
        data["tasks"]["progress_interval"] = bad
        with pytest.raises(ConfigError, match=r"tasks\.progress_interval: "):
            parse_site_config(yaml.safe_dump(data))


def test_a_staged_day_logs_progress_lines(tmp_path, caplog):
    """The real Slurm staging (no services): with every=0 each check logs a line with rows and rate."""
    caplog.set_level(logging.INFO, logger="xdmod_usage.slurm_pipeline")
    window = UsageWindow.for_day(dt.date(2026, 11, 20))
    lines = b"".join(synthetic_sacct_lines(window, 3000))
    result = stage_slurm_day(Store.from_path(tmp_path), SlurmDay("hpc1", "hpc1", "synth", window),
                             lambda out: out.write(lines), {"type": "test"}, max_quarantine_share=1.0,
                             progress_every=0)  # fmt: skip
    messages = lines_of(caplog, "stage slurm hpc1 2026-11-20")
    steps = [m for m in messages if ": done, " not in m]
    assert len(steps) >= 5, messages  # the threshold doubles while the rate is unknown, then follows it
    assert all(re.fullmatch(r"stage slurm hpc1 2026-11-20: [\d,]+ rows, [\d,.]+ rows/s", m) for m in steps)
    assert re.fullmatch(r"stage slurm hpc1 2026-11-20: done, 3,000 rows in [\d.]+ s(, [\d,]+ rows/s)?", messages[-1])
    assert result.counts.read == 3000
