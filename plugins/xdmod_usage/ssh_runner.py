"""Run XDMoD commands on the XDMoD host over SSH (the most common install: XDMoD on a VM).

Staged files are streamed over SFTP to a temporary name in the input directory, their sha256 is
computed on the far side and compared with the manifest, and only then renamed into place, so
XDMoD never reads a partial or corrupted file. Commands run as argv lists joined with shell
quoting: nothing from config or data is interpreted by the remote shell.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import IO, Any

from .runners import TAIL_LINES, RunResult, XdmodCommandError, classify_failure
from .xdmod_commands import XdmodCommand

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SshRunnerSettings:
    input_dir: str
    command_dir: str | None = None  # absolute directory of XDMoD's commands; None = the remote PATH


class SshRunner:
    """Places a command's inputs on the XDMoD host, checks them, and runs the command there."""

    def __init__(
        self,
        client: Any,
        settings: SshRunnerSettings,
        open_input: Callable[[str], AbstractContextManager[IO[bytes]]],
        timeout: float | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.open_input = open_input  # url -> readable stream of the staged file
        self.timeout = timeout

    def _exec(self, argv: list[str]) -> tuple[int, str]:
        """Run argv remotely; stdout and stderr merged, as XDMoD's logs interleave them."""
        # get_pty=False and stderr merged into stdout on the channel before the command starts.
        channel = self.client.get_transport().open_session(timeout=self.timeout)
        channel.set_combine_stderr(True)
        channel.settimeout(self.timeout)
        channel.exec_command(shlex.join(argv))
        channel.shutdown_write()
        stdout = channel.makefile("rb")
        output = stdout.read().decode("utf-8", "replace")
        return channel.recv_exit_status(), output

    def place_inputs(self, command: XdmodCommand) -> None:
        root = self.settings.input_dir
        # A name may carry one directory (a cloud day's own directory, read with -d).
        directories = sorted({f"{root}/{item.name}".rsplit("/", 1)[0] for item in command.inputs} | {root})
        status, output = self._exec(["mkdir", "-p", "--", *directories])
        if status:
            raise XdmodCommandError(f"cannot create {directories} on the XDMoD host: {output.strip()}", True)
        with self.client.open_sftp() as sftp:
            for item in command.inputs:
                final = f"{root}/{item.name}"
                directory, base = final.rsplit("/", 1)
                partial = f"{directory}/.{base}.part"  # hidden: XDMoD's shredder skips dot files
                with self.open_input(item.url) as source, sftp.open(partial, "wb") as remote:
                    remote.set_pipelined(True)
                    for chunk in iter(lambda src=source: src.read(1 << 20), b""):
                        remote.write(chunk)
                status, output = self._exec(["sha256sum", "--", partial])
                remote_sum = output.split()[0] if status == 0 and output else ""
                if remote_sum != item.sha256:
                    self._exec(["rm", "-f", "--", partial])
                    raise XdmodCommandError(
                        f"{item.name}: sha256 on the XDMoD host is {remote_sum or output.strip()!r}, "
                        f"the manifest says {item.sha256}; the copy was removed",
                        True,
                    )
                sftp.posix_rename(partial, final)
                log.info("placed %s on the XDMoD host at %s (sha256 verified there)", item.url, final)

    def run(self, command: XdmodCommand) -> RunResult:
        self.place_inputs(command)
        argv = list(command.argv)
        if self.settings.command_dir:
            argv[0] = f"{self.settings.command_dir.rstrip('/')}/{argv[0]}"
        log.info("running on the XDMoD host: %s", shlex.join(argv))
        status, output = self._exec(argv)
        for line in output.splitlines():
            log.info("xdmod> %s", line)
        if status != 0:
            raise classify_failure(argv, status, output)
        return RunResult(command.step, argv, False, status, "\n".join(output.splitlines()[-TAIL_LINES:]))


def stream_remote(client: Any, argv: list[str], out: IO[bytes], timeout: float | None = None) -> None:
    """Run argv on the remote host and stream its stdout into ``out`` (e.g. a tar of /etc/xdmod).

    A non-zero exit fails with the remote stderr, so a half-written tar is never taken as whole.
    """
    channel = client.get_transport().open_session(timeout=timeout)
    channel.settimeout(timeout)
    channel.exec_command(shlex.join(argv))
    channel.shutdown_write()
    stdout = channel.makefile("rb")
    for chunk in iter(lambda: stdout.read(1 << 20), b""):
        out.write(chunk)
    stderr = channel.makefile_stderr("rb").read().decode("utf-8", "replace").strip()
    status = channel.recv_exit_status()
    if status != 0:
        raise RuntimeError(f"{shlex.join(argv)} exited {status} on the remote host: {stderr[-2000:]}")
