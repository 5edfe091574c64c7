"""The accounting window: exactly one UTC day, midnight to midnight.

Why its own type: the old cron jobs computed "yesterday" from the local clock and staged the wrong
UTC day. Every task takes its window from the run's data interval through this one check.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

UTC = dt.UTC
ONE_DAY = dt.timedelta(days=1)


class WindowError(ValueError):
    """The run has no usable one-day UTC window."""


@dataclass(frozen=True)
class UsageWindow:
    """[start, end) in UTC, one whole day."""

    start: dt.datetime
    end: dt.datetime

    @classmethod
    def from_interval(cls, start: dt.datetime | None, end: dt.datetime | None) -> UsageWindow:
        """Validate a run's data interval; refuse anything but one UTC day."""
        if start is None or end is None:
            raise WindowError(
                "this run has no data interval (a manual trigger without a logical date): trigger it "
                "with a logical date, e.g. 'airflow dags trigger DAG_ID --logical-date 2026-11-21T00:00:00+00:00', "
                "or use a backfill; the window is then the UTC day before that logical date"
            )
        if start.tzinfo is None or end.tzinfo is None:
            raise WindowError(f"data interval must be time-zone aware, got {start!r} .. {end!r}")
        start_utc = dt.datetime.fromtimestamp(start.timestamp(), UTC)
        end_utc = dt.datetime.fromtimestamp(end.timestamp(), UTC)
        if end_utc - start_utc != ONE_DAY or start_utc.time() != dt.time(0):
            raise WindowError(
                f"data interval {start_utc.isoformat()} .. {end_utc.isoformat()} is not one UTC day "
                "from midnight to midnight: check the DAG's timetable"
            )
        return cls(start_utc, end_utc)

    @classmethod
    def for_day(cls, day: dt.date) -> UsageWindow:
        start = dt.datetime(day.year, day.month, day.day, tzinfo=UTC)
        return cls(start, start + ONE_DAY)

    @property
    def day(self) -> dt.date:
        return self.start.date()

    def sacct_bounds(self) -> tuple[str, str]:
        """The window as sacct and XDMoD print times (UTC, no zone suffix)."""
        fmt = "%Y-%m-%dT%H:%M:%S"
        return self.start.strftime(fmt), self.end.strftime(fmt)

    def as_dict(self) -> dict[str, str]:
        return {"start": self.start.strftime("%Y-%m-%dT%H:%M:%SZ"), "end": self.end.strftime("%Y-%m-%dT%H:%M:%SZ")}
