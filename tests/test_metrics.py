"""Metrics reach a real StatsD receiver (a UDP socket on loopback) when Airflow's metrics are on."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
from pathlib import Path

from xdmod_usage.metrics import stage_metrics

ROOT = Path(__file__).resolve().parent.parent

EMIT = """
from xdmod_usage.metrics import emit
emit("hpc1", {"staged": 9, "quarantined": 2, "lag_seconds": 3600.5, "stage_seconds": 1.25})
"""


def test_stage_metrics_are_counts_lag_and_duration():
    counts = {"read": 12, "staged": 9, "outside_window": 1, "skipped": {"end_unknown": 1}, "quarantined": {"x": 1},
              "xdmod_rows": 9, "het_ids_rewritten": 0}  # fmt: skip
    end = dt.datetime(2026, 11, 21, tzinfo=dt.UTC)
    values = stage_metrics("hpc1", counts, end, 1.25, now=end + dt.timedelta(hours=1, seconds=0.5))
    assert values == {"read": 12, "staged": 9, "outside_window": 1, "skipped": 1, "quarantined": 1,
                      "lag_seconds": 3600.5, "stage_seconds": 1.25}  # fmt: skip


def test_metrics_reach_statsd():
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(10)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "plugins"), "AIRFLOW__METRICS__STATSD_ON": "True",
           "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
           "AIRFLOW__METRICS__STATSD_PORT": str(receiver.getsockname()[1]),
           "AIRFLOW__METRICS__STATSD_PREFIX": "airflow"}  # fmt: skip
    subprocess.run([sys.executable, "-c", EMIT], env=env, check=True, timeout=60)
    expected = {
        "airflow.xdmod_usage.hpc1.staged:9|g",
        "airflow.xdmod_usage.hpc1.quarantined:2|g",
        "airflow.xdmod_usage.hpc1.lag_seconds:3600.5|g",
        "airflow.xdmod_usage.hpc1.stage:1250.000000|ms",
    }
    packets: set[str] = set()
    try:
        while not expected <= packets:
            packets.update(receiver.recv(4096).decode().split("\n"))
    except TimeoutError:
        pass
    finally:
        receiver.close()
    assert expected <= packets, packets
