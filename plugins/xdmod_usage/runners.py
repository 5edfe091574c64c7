"""Runners execute XDMoD commands somewhere. The dry-run runner shows exactly what would run.

Why a dry-run runner: XDMoD cannot run everywhere the DAGs are tested or demonstrated; the
dry run logs the exact argv and the files it would place, so an operator can check a run
before pointing it at production.
"""

from __future__ import annotations

import logging
import shlex
from dataclasses import dataclass
from typing import Protocol

from .xdmod_commands import XdmodCommand

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResult:
    step: str
    argv: list[str]
    dry_run: bool
    exit_status: int | None
    output_tail: str


class XdmodRunner(Protocol):
    def run(self, command: XdmodCommand) -> RunResult: ...


class DryRunRunner:
    """Logs the command and its inputs; runs nothing."""

    def __init__(self, input_dir: str) -> None:
        self.input_dir = input_dir

    def run(self, command: XdmodCommand) -> RunResult:
        for item in command.inputs:
            log.info("DRY RUN would place %s (sha256 %s) at %s/%s", item.url, item.sha256, self.input_dir, item.name)
        log.info("DRY RUN would run argv=%s", list(command.argv))
        log.info("DRY RUN as a shell line: %s", shlex.join(command.argv))
        return RunResult(command.step, list(command.argv), True, None, "")
