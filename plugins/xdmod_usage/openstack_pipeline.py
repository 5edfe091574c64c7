"""Stage one UTC day of OpenStack usage: read the APIs (or replay the archive), build events, commit.

One day's version holds:

- ``<day>T00:00:00_<day>T23:59:59.json``: the events, XDMoD's file name (colons) and format;
- ``hypervisor_facts_<day>T23:59:59.json``: hypervisor sizes for ``-f cloudresourcespecs``;
- ``state.json``: every instance's state at the window end, read by the next day (the API cannot
  say which flavor an instance had before a resize);
- ``quarantine.jsonl`` and ``raw.openstack.json.gz`` as for the other kinds.

The runner places the two XDMoD files in one directory per day (``input_subdir``), because the
cloud shredders read directories: ``-d`` must not see other days' files.

Runs without Airflow; the DAG task passes a ready OpenStackApi, or None to replay.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from . import __version__
from .openstack_api import OpenStackApi, fetch_day
from .openstack_events import SECOND, DayEvents, build_day
from .progress import EVERY, Progress
from .slurm_pipeline import QUARANTINE_NAME, QuarantineLimitError, StageResult
from .staging import DayStage, HashingWriter, SourceShrankError, SpooledFile, Store, gzip_file
from .window import UsageWindow

log = logging.getLogger(__name__)
RAW_NAME = "raw.openstack.json.gz"
STATE_NAME = "state.json"
_XDMOD_TIME = "%Y-%m-%dT%H:%M:%S"


def events_name(window: UsageWindow) -> str:
    """XDMoD's openstack file name: first and last second of the window, with colons (11.0)."""
    return f"{window.start.strftime(_XDMOD_TIME)}_{(window.end - SECOND).strftime(_XDMOD_TIME)}.json"


def hypervisors_name(window: UsageWindow) -> str:
    return f"hypervisor_facts_{(window.end - SECOND).strftime(_XDMOD_TIME)}.json"


def input_subdir(xdmod_resource: str, window: UsageWindow) -> str:
    return f"openstack-{xdmod_resource}-{window.day.isoformat()}"


def _dump(
    path: Path, name: str, document: Any, *, lines: bool = False, progress: Progress | None = None
) -> SpooledFile:
    writer = HashingWriter(path / name)
    if lines:  # a JSON array with one event per line: diffable, and jq reads it as one document
        writer.write(b"[\n")
        for index, item in enumerate(document):
            writer.write(json.dumps(item, sort_keys=True, ensure_ascii=False).encode())
            writer.write(b",\n" if index < len(document) - 1 else b"\n")
            if progress is not None:
                progress.add()
        writer.write(b"]\n")
    else:
        writer.write((json.dumps(document, sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode())
    return writer.finish(name)


def previous_state(store: Store, resource: str, day: dt.date) -> tuple[dict[str, Any] | None, str | None]:
    """The end state staged with the day before, and a note naming it (None: that day is not staged)."""
    stage = DayStage(store, resource, (day - dt.timedelta(days=1)).isoformat())
    manifest = stage.read_manifest()
    if manifest is None or STATE_NAME not in manifest.get("files", {}):
        return None, None
    entry = manifest["files"][STATE_NAME]
    with stage.open_entry(entry) as handle:
        state = json.load(handle)
    return state, f"{stage.url_of(entry)} sha256 {entry['sha256']}"


def stage_openstack_day(
    store: Store,
    resource: str,
    xdmod_resource: str,
    window: UsageWindow,
    api: OpenStackApi | None,
    *,
    zero_vcpus: str = "quarantine",
    hypervisors: bool = True,
    source_info: dict[str, Any] | None = None,
    allow_fewer_records: bool = False,
    max_quarantine_share: float = 0.01,
    spool_dir: str | None = None,
    progress_every: float = EVERY,
) -> StageResult:
    """Stage the day; ``api`` None replays the archived API answers.

    Refuses (SourceShrankError) to replace a day with fewer events than it holds unless
    ``allow_fewer_records``: Nova forgets deleted servers once their rows are archived, and a
    rerun then must not erase their usage. Raises QuarantineLimitError after committing when the
    quarantined share of events exceeds the limit. Logs progress (servers read, events written) and
    heartbeats every ``progress_every`` seconds.
    """
    what = f"stage openstack {resource} {window.day.isoformat()}"
    stage = DayStage(store, resource, window.day.isoformat())
    existing = stage.read_manifest()
    info: dict[str, Any] = {"type": "openstack", **(source_info or {}), "replayed_from_archive": api is None}
    with tempfile.TemporaryDirectory(prefix="xdmod-usage-", dir=spool_dir) as tmp:
        spool = Path(tmp)
        raw_path = spool / "raw.json"
        if api is None:
            with open(raw_path, "wb") as out:
                stage.replay_raw(existing, RAW_NAME, out)
        else:
            archive = fetch_day(
                api, window.start, window.end, hypervisors=hypervisors, what=what, progress_every=progress_every
            )
            raw_path.write_bytes(json.dumps(archive, sort_keys=True, separators=(",", ":")).encode())
            info["api"] = api.stats.as_dict()
        archive = json.loads(raw_path.read_bytes())
        before, before_note = previous_state(store, resource, window.day)
        day = build_day(archive, before, zero_vcpus=zero_vcpus, previous_name=before_note)  # type: ignore[arg-type]
        with Progress(f"{what}: events written", len(day.events), log, progress_every, unit="events") as events:
            files = _files(spool, window, day, raw_path, events)
        counts = day.counts.as_counts()

        if existing is not None and not allow_fewer_records:
            held = int(existing.get("counts", {}).get("staged", 0))
            if counts["staged"] < held:
                raise SourceShrankError(
                    f"{resource} {window.day}: the APIs now give {counts['staged']} events but the day at "
                    f"{stage.manifest_url} holds {held}; Nova has probably archived deleted servers. Nothing "
                    "was replaced. Replay from the archive (trigger with param source=archive), or, if the "
                    "smaller day is right, rerun with param allow_fewer_records=true."
                )
        names = {"events": events_name(window),
                 "hypervisors": hypervisors_name(window) if day.hypervisor_facts else None}  # fmt: skip
        manifest = {
            "format": "xdmod-usage-staging/1",
            "package_version": __version__,
            "kind": "openstack",
            "resource": resource,
            "xdmod_resource": xdmod_resource,
            "window": window.as_dict(),
            "source": info,
            "counts": counts,
            "source_counts": day.counts.as_source_counts(),
            "staged_name": names["events"],
            "xdmod_format": "openstack",
            "xdmod_inputs": names,
            "input_subdir": input_subdir(xdmod_resource, window),
        }
        committed = stage.publish(files, manifest)

    result = StageResult(committed, stage.manifest_url, day.counts)  # type: ignore[arg-type]
    quarantined = sum(counts["quarantined"].values())
    total = quarantined + counts["staged"]
    share = quarantined / total if total else 0.0
    if share > max_quarantine_share:
        raise QuarantineLimitError(
            f"{quarantined} of {total} events ({share:.2%}) were quarantined, above the limit of "
            f"{max_quarantine_share:.2%}; reasons {counts['quarantined']}. They are in "
            f"{stage.url_of(committed['files'][QUARANTINE_NAME])}. Fix the source or the config "
            "(e.g. zero_vcpus), or raise max_quarantine_share, then rerun."
        )
    return result


def _files(spool: Path, window: UsageWindow, day: DayEvents, raw_path: Path, events: Progress) -> list[SpooledFile]:
    files = [
        _dump(spool, events_name(window), day.events, lines=True, progress=events),
        _dump(spool, STATE_NAME, day.end_state),
        _quarantine(spool, day.quarantine),
        gzip_file(raw_path, spool / RAW_NAME, RAW_NAME),
    ]
    if day.hypervisor_facts is not None:
        files.append(_dump(spool, hypervisors_name(window), day.hypervisor_facts))
    return files


def _quarantine(spool: Path, entries: list[dict[str, Any]]) -> SpooledFile:
    writer = HashingWriter(spool / QUARANTINE_NAME)
    for entry in entries:
        writer.write((json.dumps(entry, sort_keys=True, ensure_ascii=False) + "\n").encode())
    return writer.finish(QUARANTINE_NAME)
