"""The SSH runner against a real sshd on loopback (scripts/services/sshd.sh).

XDMoD cannot run here: stand-in scripts at the XDMoD command paths record the argv they were
given and the input file they were pointed at. They prove the transport (SFTP, the sha256 check
on the far side, argv quoting, exit status and output), not XDMoD's behaviour.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path

import pytest

from xdmod_usage.runners import XdmodCommandError
from xdmod_usage.slurm_pipeline import SlurmDay, stage_slurm_day
from xdmod_usage.ssh_runner import SshRunner, SshRunnerSettings
from xdmod_usage.staging import DayStage, Store
from xdmod_usage.synthetic import synthetic_sacct_lines
from xdmod_usage.window import UsageWindow
from xdmod_usage.xdmod_commands import XdmodInput, aggregate, shred_cloud, shred_slurm

CONN_ID = "xdmod_host"
WINDOW = UsageWindow.for_day(dt.date(2026, 11, 20))

RECORDER = """#!/usr/bin/env python3
# Stand-in for an XDMoD command: records argv and the -i input, then behaves as told.
import json, os, sys
record = os.environ.get("XU_RECORD_DIR", "{record}")
args = sys.argv[1:]
entry = {{"command": os.path.basename(sys.argv[0]), "argv": args}}
if "-i" in args:
    with open(args[args.index("-i") + 1], "rb") as handle:
        entry["input_bytes"] = len(handle.read())
with open(os.path.join(record, "calls.jsonl"), "a") as out:
    out.write(json.dumps(entry) + "\\n")
print("{stdout}")
sys.exit({status})
"""


def stand_ins(directory: Path, record: Path, stdout: str = "Shredded 9 records", status: int = 0) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    record.mkdir(parents=True, exist_ok=True)
    for name in ("xdmod-shredder", "xdmod-ingestor"):
        path = directory / name
        path.write_text(RECORDER.format(record=record, stdout=stdout, status=status))
        path.chmod(0o755)
    return str(directory)


def calls(record: Path) -> list[dict]:
    return [json.loads(line) for line in (record / "calls.jsonl").read_text().splitlines()]


@pytest.fixture
def staged_day(tmp_path):
    """A real staged day (local store) and its staged file as an XDMoD input."""
    store = Store.from_path(tmp_path / "staging")
    lines = b"".join(synthetic_sacct_lines(WINDOW, 2000))
    result = stage_slurm_day(store, SlurmDay("hpc1", "hpc1", "synth", WINDOW), lambda out: out.write(lines),
                             {"type": "t"}, max_quarantine_share=1.0)  # fmt: skip
    name = result.manifest["staged_name"]
    entry = result.manifest["files"][name]
    stage = DayStage(store, "hpc1", "2026-11-20")
    item = XdmodInput(name, stage.url_of(entry), entry["sha256"])
    return item, stage, entry


@pytest.fixture
def ssh_client(sshd_login, monkeypatch):
    from airflow.providers.ssh.hooks.ssh import SSHHook

    for key, value in sshd_login.airflow_env(CONN_ID).items():
        monkeypatch.setenv(key, value)
    with SSHHook(ssh_conn_id=CONN_ID).get_conn() as client:
        yield client


def open_local(url: str):
    return open(url.removeprefix("file://"), "rb")


def test_inputs_are_placed_verified_and_the_exact_argv_runs(ssh_client, staged_day, tmp_path):
    item, _stage, entry = staged_day
    remote_in, record = tmp_path / "xdmod-host" / "input", tmp_path / "record"
    bin_dir = stand_ins(tmp_path / "bin", record)
    runner = SshRunner(ssh_client, SshRunnerSettings(str(remote_in), bin_dir), open_local, timeout=60)
    result = runner.run(shred_slurm("hpc1", str(remote_in), item))
    assert result.exit_status == 0 and "Shredded 9 records" in result.output_tail
    placed = remote_in / item.name
    assert placed.read_bytes() == Path(item.url.removeprefix("file://")).read_bytes()
    assert not [p for p in remote_in.iterdir() if p.name.startswith(".")]  # no partial file left
    (call,) = calls(record)
    assert call == {"command": "xdmod-shredder", "argv": ["-r", "hpc1", "-f", "slurm", "-i", str(placed)],
                    "input_bytes": entry["bytes"]}  # fmt: skip

    runner.run(aggregate("job", "2026-11-21 00:31:07"))
    assert calls(record)[1]["argv"] == ["--aggregate=job", "--last-modified-start-date", "2026-11-21 00:31:07"]


def test_a_cloud_day_is_placed_in_its_own_directory_and_shredded_by_directory(ssh_client, staged_day, tmp_path):
    item, _stage, _entry = staged_day
    remote_in, record = tmp_path / "xdmod-host" / "input", tmp_path / "record"
    runner = SshRunner(ssh_client, SshRunnerSettings(str(remote_in), stand_ins(tmp_path / "bin", record)), open_local,
                       timeout=60)  # fmt: skip
    runner.run(shred_cloud("cloud", "openstack", str(remote_in), "openstack-cloud-2026-11-20", item))
    day_dir = remote_in / "openstack-cloud-2026-11-20"
    assert [p.name for p in day_dir.iterdir()] == [item.name]  # nothing partial or hidden left beside it
    assert calls(record)[0]["argv"] == ["-r", "cloud", "-f", "openstack", "-d", str(day_dir)]


def test_a_copy_that_does_not_match_the_manifest_is_removed_and_retryable(ssh_client, staged_day, tmp_path):
    item, _, _ = staged_day
    remote_in, record = tmp_path / "in", tmp_path / "record"
    wrong = XdmodInput(item.name, item.url, "0" * 64)
    runner = SshRunner(ssh_client, SshRunnerSettings(str(remote_in), stand_ins(tmp_path / "bin", record)),
                       open_local, timeout=60)  # fmt: skip
    with pytest.raises(XdmodCommandError, match="sha256 on the XDMoD host") as info:
        runner.run(shred_slurm("hpc1", str(remote_in), wrong))
    assert info.value.retryable
    assert list(remote_in.iterdir()) == []  # neither the partial nor a final file
    assert not (record / "calls.jsonl").exists()  # XDMoD never ran


@pytest.mark.parametrize(
    ("stdout", "retryable"),
    [
        ("Cannot obtain lock: another ETL process is running", True),
        ("SQLSTATE[HY000]: General error: 1205 Lock wait timeout exceeded; try restarting transaction", True),
        ("Failed to shred line 3 of file x.log: Malformed Slurm sacct line", False),
        ("No config found for 'hpc1' in '/etc/xdmod/resources.json'", False),
    ],
)
def test_lock_failures_are_retryable_and_parse_failures_are_not(ssh_client, tmp_path, stdout, retryable):
    runner = SshRunner(ssh_client, SshRunnerSettings(str(tmp_path / "in"),
                       stand_ins(tmp_path / "bin", tmp_path / "record", stdout=stdout, status=1)),
                       open_local, timeout=60)  # fmt: skip
    with pytest.raises(XdmodCommandError) as info:
        runner.run(aggregate("job", "2026-11-21 00:31:07"))
    assert info.value.retryable is retryable
    assert stdout in str(info.value) and "exited 1" in str(info.value)


def test_arguments_with_shell_characters_reach_xdmod_literally(ssh_client, staged_day, tmp_path):
    item, _, _ = staged_day
    odd_dir = tmp_path / "in $(touch pwned) ; x"
    record = tmp_path / "record"
    runner = SshRunner(ssh_client, SshRunnerSettings(str(odd_dir), stand_ins(tmp_path / "bin", record)),
                       open_local, timeout=60)  # fmt: skip
    runner.run(shred_slurm("a b;c`id`", str(odd_dir), item))
    (call,) = calls(record)
    assert call["argv"][:2] == ["-r", "a b;c`id`"] and call["argv"][-1] == f"{odd_dir}/{item.name}"
    assert not (Path(os.path.expanduser("~")) / "pwned").exists() and not Path("pwned").exists()
    shutil.rmtree(odd_dir)
