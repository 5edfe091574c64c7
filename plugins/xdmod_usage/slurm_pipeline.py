"""Stage one UTC day in XDMoD's Slurm format: pull (or replay the archive), check, archive, commit.

Slurm's sacct output is staged as it is; other sources (OpenShift) pass ``convert``, which turns
their raw archive into sacct lines, so every source's rows pass the same XDMoD-rule check. Runs
without Airflow: the DAG task passes in how to pull and where to stage; the benchmark and tests
call it directly.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from . import __version__
from .progress import EVERY, Progress, amount, heartbeat
from .slurm_format import SacctCounts, check_sacct_lines
from .staging import DayStage, HashingWriter, SourceShrankError, StagingError, Store, gzip_file
from .window import UsageWindow

log = logging.getLogger(__name__)
RAW_NAME = "raw.sacct.gz"
QUARANTINE_NAME = "quarantine.jsonl"


class QuarantineLimitError(StagingError):
    """Too large a share of the day's lines were quarantined (they were written and counted)."""


@dataclass(frozen=True)
class SlurmDay:
    """What identifies the day being staged."""

    resource: str
    xdmod_resource: str
    cluster: str
    window: UsageWindow
    kind: str = "slurm"

    @property
    def staged_name(self) -> str:
        return f"{self.kind}-{self.xdmod_resource}-{self.window.day.isoformat()}.log"

    @property
    def raw_name(self) -> str:
        return RAW_NAME if self.kind == "slurm" else f"raw.{self.kind}.json.gz"


@dataclass(frozen=True)
class StageResult:
    manifest: dict[str, Any]
    manifest_url: str
    counts: SacctCounts

    def summary(self) -> dict[str, Any]:
        """Small enough for XCom: what downstream tasks and the demo print need."""
        return {
            "manifest_url": self.manifest_url,
            "version": self.manifest["version"],
            "counts": self.manifest["counts"],
            "files": {
                name: {**entry, "url": self.manifest_url.rsplit("/", 1)[0] + "/" + entry["path"]}
                for name, entry in self.manifest["files"].items()
            },
            "staged_name": self.manifest["staged_name"],
            # Cloud kinds: which file each shredder reads, and the day's own input directory.
            **{key: self.manifest[key] for key in ("xdmod_inputs", "input_subdir") if key in self.manifest},
        }


def stage_slurm_day(
    store: Store,
    day: SlurmDay,
    pull: Callable[[IO[bytes]], Any] | None,
    source_info: dict[str, Any],
    *,
    allow_fewer_records: bool = False,
    max_quarantine_share: float = 0.01,
    spool_dir: str | None = None,
    convert: Callable[[Path, Path], dict[str, Any]] | None = None,
    progress_every: float = EVERY,
) -> StageResult:
    """Stage the day. ``pull`` writes raw source data to a stream; None replays the day's archive.

    ``convert(raw, lines)`` writes sacct lines from the raw data and returns what the manifest
    records about it (``source_counts``); without it the raw data are sacct lines.

    Refuses (SourceShrankError) to replace a day whose archive holds more raw lines than the new
    pull, unless ``allow_fewer_records``: a source past its retention must not erase usage.
    Raises QuarantineLimitError after committing when the quarantined share exceeds the limit.
    Logs a heartbeat every ``progress_every`` seconds while pulling (bytes so far), and progress
    lines while checking the lines.
    """
    what = f"stage {day.kind} {day.resource} {day.window.day.isoformat()}"
    stage = DayStage(store, day.resource, day.window.day.isoformat())
    previous = stage.read_manifest()
    with tempfile.TemporaryDirectory(prefix="xdmod-usage-", dir=spool_dir) as tmp:
        spool = Path(tmp)
        raw_path = spool / "raw"
        with open(raw_path, "wb") as raw_out:
            step = "replaying the archive" if pull is None else "pulling"
            with heartbeat(f"{what} ({step})", log, progress_every,
                           lambda: f"{amount(raw_out.tell(), 'bytes')} so far" if raw_out.tell() else ""):  # fmt: skip
                if pull is None:
                    stage.replay_raw(previous, day.raw_name, raw_out)
                else:
                    pull(raw_out)

        lines_path, source_counts = raw_path, None
        if convert is not None:
            lines_path = spool / "rows.sacct"
            with heartbeat(f"{what} (building rows)", log, progress_every):
                source_counts = convert(raw_path, lines_path)
        staged = HashingWriter(spool / day.staged_name)
        quarantine = HashingWriter(spool / QUARANTINE_NAME)
        with open(lines_path, "rb") as lines_in, Progress(what, None, log, progress_every) as progress:
            counts = check_sacct_lines(lines_in, day.window, staged.write, quarantine.write, progress)
        with heartbeat(f"{what} (compressing the raw archive)", log, progress_every):
            files = [
                staged.finish(day.staged_name),
                quarantine.finish(QUARANTINE_NAME),
                gzip_file(raw_path, spool / day.raw_name, day.raw_name),
            ]

        if previous is not None and not allow_fewer_records:
            before = int(previous.get("counts", {}).get("read", 0))
            if counts.read < before:
                raise SourceShrankError(
                    f"{day.resource} {day.window.day}: the source returned {counts.read} lines but the archive "
                    f"at {stage.manifest_url} holds {before}; the source has probably expired data. Nothing "
                    "was replaced. Replay from the archive (trigger with param source=archive), or, if the "
                    "smaller pull is right, rerun with param allow_fewer_records=true."
                )

        manifest = {
            "format": "xdmod-usage-staging/1",
            "package_version": __version__,
            "kind": day.kind,
            "resource": day.resource,
            "xdmod_resource": day.xdmod_resource,
            "window": day.window.as_dict(),
            "source": {**source_info, "replayed_from_archive": pull is None},
            "counts": counts.as_dict(),
            **({"source_counts": source_counts} if source_counts is not None else {}),
            "staged_name": day.staged_name,
            "xdmod_format": "slurm",
        }
        with heartbeat(f"{what} (publishing)", log, progress_every):
            committed = stage.publish(files, manifest)

    result = StageResult(committed, stage.manifest_url, counts)
    share = counts.quarantined_total / counts.read if counts.read else 0.0
    if share > max_quarantine_share:
        raise QuarantineLimitError(
            f"{counts.quarantined_total} of {counts.read} lines ({share:.2%}) were quarantined, above the "
            f"limit of {max_quarantine_share:.2%}; reasons {dict(counts.quarantined)}. They are in "
            f"{stage.url_of(committed['files'][QUARANTINE_NAME])}. Fix the source or raise "
            "max_quarantine_share, then rerun."
        )
    return result
