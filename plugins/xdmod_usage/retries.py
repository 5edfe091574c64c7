"""One retry policy for the HTTP sources (Prometheus, OpenStack): exponential backoff, a log line
per retry, and a clear error naming what failed after the last attempt.

The callers decide what is worth retrying (5xx, 429, timeouts, connection errors) and what fails at
once (bad credentials, a refused query): an attempt returns its answer, or ``Retry`` with the problem.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Retry:
    """An attempt that may pass if repeated, and why it did not pass this time."""

    problem: str


def with_retries(attempt: Callable[[], T | Retry], *, retries: int, backoff: float, label: str,
                 give_up: type[Exception], on_retry: Callable[[], None] | None = None) -> T:  # fmt: skip
    """Run ``attempt`` until it answers, at most ``retries`` + 1 times, sleeping backoff x 2^n between."""
    for number in range(retries + 1):
        outcome = attempt()
        if not isinstance(outcome, Retry):
            return outcome
        if number == retries:
            raise give_up(f"{label} failed after {number + 1} attempts: {outcome.problem}")
        if on_retry is not None:
            on_retry()
        delay = backoff * 2**number
        log.warning("%s: %s (attempt %d), retrying in %.1f s", label, outcome.problem, number + 1, delay)
        time.sleep(delay)
    raise AssertionError("unreachable")
