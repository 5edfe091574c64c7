"""The window is one UTC day from the data interval; anything else fails with a clear message."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from xdmod_usage.window import UsageWindow, WindowError

UTC = dt.UTC


def test_one_utc_day():
    window = UsageWindow.from_interval(dt.datetime(2026, 11, 20, tzinfo=UTC), dt.datetime(2026, 11, 21, tzinfo=UTC))
    assert window.day == dt.date(2026, 11, 20)
    assert window.sacct_bounds() == ("2026-11-20T00:00:00", "2026-11-21T00:00:00")


def test_same_instant_in_another_zone_is_accepted_as_utc():
    ny = ZoneInfo("America/New_York")
    start = dt.datetime(2026, 11, 19, 19, tzinfo=ny)  # 2026-11-20T00:00Z
    window = UsageWindow.from_interval(start, start + dt.timedelta(days=1))
    assert window.start == dt.datetime(2026, 11, 20, tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "end", "match"),
    [
        (None, None, "no data interval"),
        (dt.datetime(2026, 11, 20), dt.datetime(2026, 11, 21), "time-zone aware"),
        (dt.datetime(2026, 11, 20, 2, tzinfo=UTC), dt.datetime(2026, 11, 21, 2, tzinfo=UTC), "not one UTC day"),
        (dt.datetime(2026, 11, 20, tzinfo=UTC), dt.datetime(2026, 11, 20, tzinfo=UTC), "not one UTC day"),
        (dt.datetime(2026, 11, 19, tzinfo=UTC), dt.datetime(2026, 11, 21, tzinfo=UTC), "not one UTC day"),
    ],
)
def test_rejects_anything_else(start, end, match):
    with pytest.raises(WindowError, match=match):
        UsageWindow.from_interval(start, end)


def test_a_manual_trigger_without_logical_date_fails_fast_with_the_fix():
    from airflow.sdk.exceptions import AirflowFailException

    from xdmod_usage.airflow_tasks import window_from_context

    with pytest.raises(AirflowFailException, match="--logical-date"):
        window_from_context({"data_interval_start": None, "data_interval_end": None})
    window = window_from_context(
        {
            "data_interval_start": dt.datetime(2026, 11, 20, tzinfo=UTC),
            "data_interval_end": dt.datetime(2026, 11, 21, tzinfo=UTC),
        }
    )
    assert window.day == dt.date(2026, 11, 20)
