"""Runners execute XDMoD commands somewhere. The dry-run runner shows exactly what would run.

Why a dry-run runner: XDMoD cannot run everywhere the DAGs are tested or demonstrated; the
dry run logs the exact argv and the files it would place, so an operator can check a run
before pointing it at production.
"""

from __future__ import annotations

import logging
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .xdmod_commands import XdmodCommand

log = logging.getLogger(__name__)

# XDMoD's ETL lock fails at once instead of waiting; MySQL lock waits and deadlocks surface as
# HY000 errors on slow storage. These clear by themselves: retry. Anything else (a file XDMoD
# cannot parse, a missing resource) will fail the same way again: do not.
LOCK_FAILURE = re.compile(r"Cannot obtain lock|Lock wait timeout exceeded|Deadlock found|SQLSTATE\[HY000\]", re.I)
TAIL_LINES = 40


class XdmodCommandError(RuntimeError):
    """An XDMoD command failed; ``retryable`` says whether a retry can help (lock contention)."""

    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def classify_failure(argv: list[str], status: int, output: str) -> XdmodCommandError:
    tail = "\n".join(output.strip().splitlines()[-TAIL_LINES:])
    retryable = bool(LOCK_FAILURE.search(output))
    kind = "lock contention, will retry" if retryable else "not retried"
    return XdmodCommandError(f"{argv[0]} exited {status} ({kind}): {shlex.join(argv)}\n{tail}", retryable)


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
        try:
            operator.execute(self.context)  # raises on a non-zero exit; logs were streamed
        except Exception as exc:
            # The pod's termination message (FallbackToLogsOnError) carries XDMoD's last lines.
            raise classify_failure(list(command.argv), 1, str(exc)) from exc
        return RunResult(command.step, list(command.argv), False, 0, "")
