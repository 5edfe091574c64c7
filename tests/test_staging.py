"""Staging on a local disk: atomic under a kill, deterministic, refuses to shrink a day."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from xdmod_usage import coverage
from xdmod_usage.slurm_pipeline import QuarantineLimitError, SlurmDay, stage_slurm_day
from xdmod_usage.staging import MANIFEST, SourceShrankError, StagingError, Store
from xdmod_usage.synthetic import synthetic_sacct_lines
from xdmod_usage.window import UsageWindow

DAY = dt.date(2026, 11, 20)
WINDOW = UsageWindow.for_day(DAY)
SLURM_DAY = SlurmDay("hpc1", "hpc1", "synth", WINDOW)


def puller(lines: list[bytes]):
    return lambda out: out.write(b"".join(lines))


def day_dir(root: Path) -> Path:
    return root / "hpc1" / DAY.isoformat()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def staged_tree(root: Path) -> dict[Path, bytes]:
    """Every staged file's bytes; the coverage index (_coverage) records write times, so it is left out."""
    return {
        p.relative_to(root): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and p.parts[len(root.parts)] != "_coverage"
    }


def assert_manifest_consistent(root: Path) -> dict:
    manifest = json.loads((day_dir(root) / MANIFEST).read_text())
    for entry in manifest["files"].values():
        path = day_dir(root) / entry["path"]
        assert path.stat().st_size == entry["bytes"]
        assert sha256(path) == entry["sha256"]
    return manifest


def test_rerun_is_byte_identical_and_replaces_atomically(tmp_path):
    lines = list(synthetic_sacct_lines(WINDOW, 3000))
    store = Store.from_path(tmp_path)
    first = stage_slurm_day(store, SLURM_DAY, puller(lines), {"type": "test"}, max_quarantine_share=1.0)
    snapshot = staged_tree(tmp_path)
    second = stage_slurm_day(store, SLURM_DAY, puller(lines), {"type": "test"}, max_quarantine_share=1.0)
    assert first.manifest == second.manifest
    assert staged_tree(tmp_path) == snapshot
    manifest = assert_manifest_consistent(tmp_path)
    counts = manifest["counts"]
    assert counts["read"] == 3000
    assert (
        counts["staged"]
        + counts["outside_window"]
        + sum(counts["skipped"].values())
        + sum(counts["quarantined"].values())
        == counts["read"]
    )
    assert manifest["window"] == {"start": "2026-11-20T00:00:00Z", "end": "2026-11-21T00:00:00Z"}
    assert set(manifest["files"]) == {"slurm-hpc1-2026-11-20.log", "quarantine.jsonl", "raw.sacct.gz"}

    # A changed source makes a new version; the old one disappears once the manifest points away.
    stage_slurm_day(store, SLURM_DAY, puller([*lines[:-1], lines[0]]), {"type": "test"}, max_quarantine_share=1.0)
    versions = [p.name for p in day_dir(tmp_path).iterdir() if p.name.startswith("v-")]
    assert versions == [json.loads((day_dir(tmp_path) / MANIFEST).read_text())["version"]]


def test_refuses_a_smaller_pull_and_replays_the_archive(tmp_path):
    lines = list(synthetic_sacct_lines(WINDOW, 2000))
    store = Store.from_path(tmp_path)
    full = stage_slurm_day(store, SLURM_DAY, puller(lines), {"type": "test"}, max_quarantine_share=1.0)
    before = (day_dir(tmp_path) / MANIFEST).read_bytes()
    with pytest.raises(SourceShrankError, match="Replay from the archive"):
        stage_slurm_day(store, SLURM_DAY, puller(lines[:500]), {"type": "test"}, max_quarantine_share=1.0)
    assert (day_dir(tmp_path) / MANIFEST).read_bytes() == before  # nothing replaced

    replayed = stage_slurm_day(store, SLURM_DAY, None, {"type": "test"}, max_quarantine_share=1.0)
    assert replayed.manifest["files"] == full.manifest["files"]  # same bytes from the archive
    assert replayed.manifest["source"]["replayed_from_archive"] is True

    shrunk = stage_slurm_day(
        store, SLURM_DAY, puller(lines[:500]), {"type": "test"}, allow_fewer_records=True, max_quarantine_share=1.0
    )
    assert shrunk.manifest["counts"]["read"] == 500


def test_replay_without_archive_is_a_clear_error(tmp_path):
    with pytest.raises(StagingError, match="no archive to replay"):
        stage_slurm_day(Store.from_path(tmp_path), SLURM_DAY, None, {"type": "test"})


def test_quarantine_limit_fails_after_writing(tmp_path):
    lines = list(synthetic_sacct_lines(WINDOW, 1000))  # holds one malformed line
    with pytest.raises(QuarantineLimitError, match=r"1 of 1000 lines \(0.10%\)"):
        stage_slurm_day(Store.from_path(tmp_path), SLURM_DAY, puller(lines), {"type": "test"}, max_quarantine_share=0)
    manifest = assert_manifest_consistent(tmp_path)
    quarantine = (day_dir(tmp_path) / manifest["files"]["quarantine.jsonl"]["path"]).read_text().splitlines()
    assert [json.loads(q)["reason"].split(":")[0] for q in quarantine] == ["field_count"]


KILL_CHILD = """
import sys, datetime as dt
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from xdmod_usage.slurm_pipeline import SlurmDay, stage_slurm_day
from xdmod_usage.staging import Store
from xdmod_usage.window import UsageWindow
day = SlurmDay("hpc1", "hpc1", "synth", UsageWindow.for_day(dt.date(2026, 11, 20)))
def pull(out):
    with open(sys.argv[2], "rb") as handle:
        out.write(handle.read())
stage_slurm_day(Store.from_path(Path(sys.argv[1])), day, pull, {"type": "t"}, max_quarantine_share=1.0,
                spool_dir=sys.argv[4])
"""


@pytest.fixture(scope="module")
def big_source(tmp_path_factory) -> tuple[Path, dict[Path, bytes]]:
    """A 400k-line pull and the day it must produce, staged once without interruption."""
    tmp = tmp_path_factory.mktemp("big")
    source = tmp / "big.sacct"
    with open(source, "wb") as out:
        for line in synthetic_sacct_lines(WINDOW, 400_000, seed=2):
            out.write(line)
    root = tmp / "reference"
    stage_slurm_day(
        Store.from_path(root), SLURM_DAY, puller([source.read_bytes()]), {"type": "t"}, max_quarantine_share=1
    )
    return source, staged_tree(root)


@pytest.mark.parametrize("kill_after", [0.3, 0.8, 1.5, 2.5, 4.0])
def test_a_kill_mid_write_leaves_the_old_day_or_the_new_day_whole(tmp_path, big_source, kill_after):
    """SIGKILL the writer at several points: readers see the old day or the new day, never a mix."""
    source, new_day = big_source
    root, spool = tmp_path / "staging", tmp_path / "spool"
    spool.mkdir()
    old_lines = list(synthetic_sacct_lines(WINDOW, 1000, seed=1))
    stage_slurm_day(Store.from_path(root), SLURM_DAY, puller(old_lines), {"type": "t"}, max_quarantine_share=1.0)
    old_day = staged_tree(root)

    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_CHILD, str(root), str(source), str(Path(__file__).parent.parent / "plugins"),
         str(spool)],
    )  # fmt: skip
    time.sleep(kill_after)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    manifest_rel = day_dir(Path(".")) / MANIFEST
    visible = (root / manifest_rel).read_bytes()
    assert visible in (old_day[manifest_rel], new_day[manifest_rel])
    assert_manifest_consistent(root)
    # Every visible (non-hidden) file is complete: byte-identical to the old or the new day's file.
    for rel, data in staged_tree(root).items():
        if not rel.name.startswith("."):
            assert data == old_day.get(rel) or data == new_day.get(rel), f"partial file visible: {rel}"
    # A rerun after the kill commits cleanly and leaves no temp files or stray versions behind.
    stage_slurm_day(
        Store.from_path(root), SLURM_DAY, puller(old_lines), {"type": "t"}, allow_fewer_records=True,
        max_quarantine_share=1.0,
    )  # fmt: skip
    assert staged_tree(root) == old_day
    # The coverage index names the version the rerun committed.
    committed = json.loads((root / manifest_rel).read_bytes())["version"]
    assert coverage.read(Store.from_path(root), "hpc1")[DAY.isoformat()]["version"] == committed
