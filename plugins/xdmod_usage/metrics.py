"""Counts, lag and durations through Airflow's metrics (StatsD or OpenTelemetry, when enabled).

Names: ``xdmod_usage.<resource>.<metric>`` with a ``resource`` tag, so dashboards work with plain
StatsD as well as with tagging backends. Nothing is sent unless the operator enables Airflow's
``[metrics]`` (statsd_on or otel_on); emitting never fails a task.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

log = logging.getLogger(__name__)


def stage_metrics(resource: str, counts: dict[str, Any], window_end: dt.datetime, seconds: float,
                  now: dt.datetime | None = None) -> dict[str, float]:  # fmt: skip
    """The numbers one staged day reports: counts, lag behind the window end, duration."""
    now = now or dt.datetime.now(dt.UTC)
    return {
        "read": counts["read"],
        "staged": counts["staged"],
        "outside_window": counts["outside_window"],
        "skipped": sum(counts["skipped"].values()),
        "quarantined": sum(counts["quarantined"].values()),
        "lag_seconds": round((now - window_end).total_seconds(), 3),
        "stage_seconds": round(seconds, 3),
    }


def emit(resource: str, values: dict[str, float]) -> None:
    """Gauges for counts and lag, timings for durations (names ending in _seconds)."""
    try:
        from airflow.sdk.observability.stats import Stats

        tags = {"resource": resource}
        for name, value in values.items():
            if name.endswith("_seconds") and name != "lag_seconds":  # a duration: a timing, in ms
                Stats.timing(f"xdmod_usage.{resource}.{name.removesuffix('_seconds')}", dt.timedelta(seconds=value),
                             tags=tags)  # fmt: skip
            else:
                Stats.gauge(f"xdmod_usage.{resource}.{name}", value, tags=tags)
    except Exception:  # metrics must never fail the accounting
        log.warning("could not emit metrics for %s", resource, exc_info=True)
