"""Runners execute XDMoD commands somewhere. The dry-run runner shows exactly what would run.

Why a dry-run runner: XDMoD cannot run everywhere the DAGs are tested or demonstrated; the
dry run logs the exact argv and the files it would place, so an operator can check a run
before pointing it at production.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

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
    """Logs the command, its inputs and (with a pod factory) the exact pod; runs nothing."""

    def __init__(self, input_dir: str, build_pod: Callable[[XdmodCommand], Any] | None = None) -> None:
        self.input_dir = input_dir
        self.build_pod = build_pod

    def run(self, command: XdmodCommand) -> RunResult:
        for item in command.inputs:
            log.info("DRY RUN would place %s (sha256 %s) at %s/%s", item.url, item.sha256, self.input_dir, item.name)
        log.info("DRY RUN would run argv=%s", list(command.argv))
        log.info("DRY RUN as a shell line: %s", shlex.join(command.argv))
        if self.build_pod is not None:
            import yaml

            from .kubernetes_runner import pod_spec

            spec = yaml.safe_dump(pod_spec(self.build_pod(command)), sort_keys=False, width=200)
            log.info("DRY RUN pod spec:\n%s", spec)
        return RunResult(command.step, list(command.argv), True, None, "")


class KubernetesRunner:
    """Runs the command in a pod built by the one pod factory, inside the calling task."""

    def __init__(self, build_pod: Callable[[XdmodCommand], Any], context: dict[str, Any]) -> None:
        self.build_pod = build_pod
        self.context = context

    def run(self, command: XdmodCommand) -> RunResult:
        operator = self.build_pod(command)
        operator.execute(self.context)  # raises on a non-zero exit; logs were streamed
        return RunResult(command.step, list(command.argv), False, 0, "")
