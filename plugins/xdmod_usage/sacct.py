"""Pull one window of Slurm accounting with exactly the sacct call XDMoD's own helper makes.

Why exact: XDMoD's shredder maps fields by position, and its helper's flags (--allocations,
--duplicates, --allusers) decide which records exist. TZ=UTC because XDMoD reads the times as
UTC; SLURM_TIME_FORMAT=standard because a site default like "relative" would change the time
text. Output streams to a file: a busy cluster's day does not fit comfortably in memory.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import threading
from collections.abc import Mapping
from typing import IO, Any

from .slurm_format import SACCT_FIELDS
from .window import UsageWindow

FIXED_ENV = {"TZ": "UTC", "SLURM_TIME_FORMAT": "standard"}
_STDERR_LIMIT = 64 * 1024


class SacctError(RuntimeError):
    """sacct exited non-zero or wrote to stderr; the message carries sacct's own words."""


class UnknownClusterError(SacctError):
    """slurmdbd does not know the cluster: sacct would return an empty day with exit status 0."""


def sacct_argv(cluster: str, window: UsageWindow, sacct_path: str = "sacct") -> list[str]:
    """The argv XDMoD's xdmod-slurm-helper runs, for one window."""
    start, end = window.sacct_bounds()
    return [
        sacct_path,
        "--allusers",
        "--parsable2",
        "--noheader",
        "--allocations",
        "--duplicates",
        "--clusters",
        cluster,
        "--format",
        ",".join(SACCT_FIELDS),
        "--starttime",
        start,
        "--endtime",
        end,
    ]


def sacct_env(extra: Mapping[str, str]) -> dict[str, str]:
    """Environment for sacct: the caller's extras, then the fixed UTC/time-format settings."""
    return {**extra, **FIXED_ENV}


def cluster_check_argv(cluster: str, sacctmgr_path: str = "sacctmgr") -> list[str]:
    """Ask slurmdbd whether it knows the cluster (prints its name, or nothing)."""
    return [sacctmgr_path, "--noheader", "--parsable2", "list", "cluster", cluster, "format=cluster"]


def ensure_cluster_known(cluster: str, listing: bytes) -> None:
    """Fail clearly when sacctmgr did not list the cluster: a misspelt name is not an empty day."""
    if cluster.encode() not in listing.split():
        raise UnknownClusterError(
            f"sacct returned nothing and slurmdbd does not know cluster {cluster!r}: check source.cluster "
            "(sacct --clusters prints nothing and exits 0 for an unknown cluster)"
        )


class _StderrDrain:
    """Read a stream to its end in a thread, keeping only the head: a chatty client never blocks on a full pipe."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._kept: list[bytes] = []
        self._size = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for chunk in iter(lambda: self._stream.read(8192), b""):
            if self._size < _STDERR_LIMIT:
                self._kept.append(chunk)
                self._size += len(chunk)

    def text(self) -> bytes:
        self._thread.join(timeout=5)
        return b"".join(self._kept)[:_STDERR_LIMIT]


def verify_cluster_known(run: Any, cluster: str, sacctmgr_path: str = "sacctmgr") -> None:
    """Ask slurmdbd through ``run(argv, stream)`` (here or over SSH) and fail if it lacks the cluster."""
    import io

    listing = io.BytesIO()
    run(cluster_check_argv(cluster, sacctmgr_path), listing)
    ensure_cluster_known(cluster, listing.getvalue())


def _fail(argv: list[str], status: int, stderr: bytes) -> SacctError:
    text = stderr.decode("utf-8", "replace").strip() or "(no stderr)"
    return SacctError(f"{argv[0]} failed (exit status {status}): {text} [command: {shlex.join(argv)}]")


def run_local(argv: list[str], env: Mapping[str, str], out: IO[bytes], timeout: float | None = None) -> int:
    """Run a Slurm client here, streaming stdout into ``out``; returns bytes written.

    Like XDMoD's helper, any stderr output counts as failure: sacct reports some errors (an
    unreachable slurmdbd) on stderr with exit status 0.
    """
    full_env = {**os.environ, **env}
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env)
    except FileNotFoundError as exc:
        raise SacctError(f"command not found: {exc.filename!r} (set source.sacct_path/sacctmgr_path)") from None
    drain = _StderrDrain(proc.stderr)
    written = 0
    assert proc.stdout is not None
    for chunk in iter(lambda: proc.stdout.read(1 << 20), b""):
        out.write(chunk)
        written += len(chunk)
    try:
        status = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise SacctError(f"{argv[0]} timed out after {timeout} s [command: {shlex.join(argv)}]") from None
    stderr = drain.text()
    if status != 0 or stderr.strip():
        raise _fail(argv, status, stderr)
    return written


def run_ssh(client: Any, argv: list[str], env: Mapping[str, str], out: IO[bytes], timeout: float | None = None) -> int:
    """Run a Slurm client on a login node through an open paramiko SSHClient, streaming stdout.

    The remote command is ``env K=V ... sacct ...`` with every word shell-quoted: nothing from
    config or data is ever interpreted by the remote shell.
    """
    env_words = [f"{key}={value}" for key, value in sorted(env.items())]
    command = shlex.join(["env", *env_words, *argv])
    _stdin, stdout, stderr = client.exec_command(command, timeout=timeout)
    stdout.channel.shutdown_write()
    drain = _StderrDrain(stderr)
    written = 0
    try:
        for chunk in iter(lambda: stdout.read(1 << 20), b""):
            out.write(chunk)
            written += len(chunk)
    except TimeoutError:  # paramiko's channel timeout (socket.timeout)
        stdout.channel.close()
        raise SacctError(f"{argv[0]} over SSH gave no output for {timeout} s [command: {command}]") from None
    status = stdout.channel.recv_exit_status()
    stderr_bytes = drain.text()
    if status != 0 or stderr_bytes.strip():
        raise _fail(argv, status, stderr_bytes)
    return written
