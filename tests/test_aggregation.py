"""Which ingests an aggregation covers and from when: the rules, without a scheduler (the scheduler test
is in test_xdmod_pool.py)."""

from __future__ import annotations

import datetime as dt

from xdmod_usage.aggregation import IngestEvent, plan

T0 = dt.datetime(2026, 11, 21, 0, 40, tzinfo=dt.UTC)


def event(ingest_id: str, ts: str, minutes: int = 0, dry_run: bool = False) -> IngestEvent:
    return IngestEvent(
        ingest_id, ingest_id.split("/")[0], "2026-11-20", ts, dry_run, T0 + dt.timedelta(minutes=minutes)
    )


def test_earliest_timestamp_of_the_pending_ingests_and_all_of_them_covered():
    events = [event("a/1", "2026-11-21 00:35:10", 1), event("b/1", "2026-11-21 00:31:07", 3),
              event("c/1", "2026-11-21 00:36:00", 2)]  # fmt: skip
    chosen = plan(events, [], dry_run=False)
    assert chosen.last_modified_start == "2026-11-21 00:31:07"
    assert chosen.covered == ["a/1", "b/1", "c/1"]
    assert [e.ingest_id for e in chosen.aggregate] == ["a/1", "c/1", "b/1"]  # in event time order


def test_a_later_run_finds_covered_ingests_and_has_nothing_to_do():
    events = [event("a/1", "2026-11-21 00:35:10"), event("a/1", "2026-11-21 00:35:10")]  # the same event twice
    first = plan(events, [], dry_run=False)
    again = plan(events, [{"covered": first.covered}], dry_run=False)
    assert again.last_modified_start is None and again.already_covered == 1
    newer = plan([*events, event("b/2", "2026-11-21 01:10:00", 30)], [{"covered": first.covered}], dry_run=False)
    assert newer.last_modified_start == "2026-11-21 01:10:00" and newer.covered == ["b/2"]


def test_a_dry_run_never_marks_real_ingests_as_aggregated():
    events = [event("a/1", "2026-11-21 00:35:10"), event("b/1", "2026-11-21 00:31:07", dry_run=True)]
    dry = plan(events, [], dry_run=True)
    assert dry.last_modified_start == "2026-11-21 00:31:07" and dry.covered == ["b/1"]
    real = plan(events, [{"covered": dry.covered}], dry_run=False)
    assert real.last_modified_start == "2026-11-21 00:35:10" and real.covered == ["a/1"]


def test_events_not_written_by_an_ingest_task_are_ignored():
    assert IngestEvent.from_event({}, T0) is None
    assert IngestEvent.from_event({"ingest_id": "x", "resource": "r", "day": "d", "last_modified_start": "t"}, T0)


def test_what_an_ingest_task_writes_the_aggregation_reads_back():
    from xdmod_usage.aggregation import ingest_extra, ingest_note
    from xdmod_usage.config import Resource

    resource = Resource.model_validate({"name": "hpc1", "kind": "slurm", "xdmod_resource": "hpc1",
                                        "start_date": "2026-11-01", "source": {"cluster": "hpc1"}})  # fmt: skip
    extra = ingest_extra("usage_slurm_hpc1/r1/1", resource, "2026-11-20", "2026-11-21 00:31:07", False, reload=True)
    parsed = IngestEvent.from_event(extra, T0)
    assert parsed == IngestEvent("usage_slurm_hpc1/r1/1", "hpc1", "2026-11-20", "2026-11-21 00:31:07", False, T0)
    assert extra["realm"] == "job" and ingest_note(extra, "r1") == {
        "run_id": "r1", "dry_run": False, "last_modified_start": "2026-11-21 00:31:07", "reload": True}  # fmt: skip
