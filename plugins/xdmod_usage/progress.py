"""Progress lines for long loops (rows done, rate, ETA) and heartbeats for long waits.

Why: a task that stages a day for an hour and a task stuck on a dead connection look the same in
the log unless the work reports itself at a steady rate. ``Progress`` logs at most one line per
``every`` seconds while a loop advances; ``heartbeat`` logs from a daemon thread while the main
thread waits on something that reports nothing (a subprocess, a query, an upload).

Why a count threshold: the hottest loop (sacct lines) does ~300,000 rows/s; reading the clock per
row would cost as much as the row's own work. ``add`` compares two integers; the clock is read only
when the count passes a threshold set from the rate seen so far (about ``_CHECKS`` reads per
interval, doubling while the rate is unknown), so a line comes at most ~1/_CHECKS of an interval
late while the rate holds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType

EVERY = 30.0  # seconds between lines when the site config does not say (tasks.progress_interval)
_CHECKS = 30  # clock reads per interval at a steady rate
_MIN_BEAT = 0.05  # a heartbeat with every=0 (tests) must not spin


def duration(seconds: float) -> str:
    """45 s, 12 min 5 s, 3 h 02 min: short enough to read in a log line."""
    seconds = max(0.0, seconds)
    if seconds < 100:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds + 0.5), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def amount(value: float, unit: str) -> str:
    """A count in its unit: thousands separated, bytes in decimal kB/MB/GB/TB."""
    if unit == "bytes":
        for scale, name in ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
            if value >= scale:
                return f"{value / scale:.1f} {name}"
        return f"{value:.0f} B"
    if value and abs(value) < 10 and value != int(value):
        return f"{value:.2f} {unit}"
    return f"{value:,.0f} {unit}"


class Progress:
    """Counts work and logs "<what>: N rows of T (P%), R rows/s, ETA E" at most every ``every`` seconds.

    Without ``total`` the line has no percentage or ETA. The rate in a line is over the interval since
    the previous line (a slowdown shows at once); ``done()`` logs the count, elapsed time and average
    rate. Use as a context manager to log the final line on success and "stopped after" on an error.
    """

    __slots__ = ("_clock", "_finished", "_last", "_last_count", "_slice", "_started", "check_at", "count", "every",
                 "log", "total", "unit", "what")  # fmt: skip

    def __init__(
        self,
        what: str,
        total: int | None,
        log: logging.Logger,
        every: float = EVERY,
        clock: Callable[[], float] = time.monotonic,
        *,
        unit: str = "rows",
    ) -> None:
        self.what, self.total, self.log, self.every, self.unit = what, total, log, max(0.0, every), unit
        self.count = 0
        self.check_at = 1  # the count at which the clock is next read
        self._clock = clock
        self._started = self._last = clock()
        self._last_count = 0
        self._slice = self.every / _CHECKS
        self._finished = False

    def add(self, n: int = 1) -> None:
        """Count ``n`` more; cheap enough to call per row."""
        self.count += n
        if self.count >= self.check_at:
            self._check()

    def update(self, count: int) -> int:
        """Set the count (a loop that counts anyway); returns the count at which to call again.

        A hot loop keeps the returned threshold in a local and compares its own counter with it, so
        rows between checks cost one integer comparison: ``if n >= next_at: next_at = p.update(n)``.
        """
        self.count = count
        if count >= self.check_at:
            self._check()
        return self.check_at

    def _check(self) -> None:
        now = self._clock()
        if now - self._last >= self.every:
            self._line(now)
        elapsed = now - self._started
        step = int(self.count / elapsed * self._slice) if elapsed > 0 else self.count
        self.check_at = self.count + max(1, min(step, self.count))  # at most double while the rate is unknown

    def _line(self, now: float) -> None:
        rate = (self.count - self._last_count) / (now - self._last) if now > self._last else 0.0
        text = amount(self.count, self.unit)
        if self.total is not None:
            share = f" ({self.count / self.total:.0%})" if self.total else ""
            of = amount(self.total, self.unit) if self.unit == "bytes" else f"{self.total:,}"
            text += f" of {of}{share}"
        text += f", {amount(rate, self.unit)}/s"
        if self.total is not None and rate > 0:
            text += f", ETA {duration(max(0, self.total - self.count) / rate)}"
        self.log.info("%s: %s", self.what, text)
        self._last, self._last_count = now, self.count

    def done(self) -> None:
        """Log the final line (count, elapsed, average rate); later calls do nothing."""
        if self._finished:
            return
        self._finished = True
        elapsed = self._clock() - self._started
        rate = f", {amount(self.count / elapsed, self.unit)}/s" if elapsed > 0 else ""
        self.log.info("%s: done, %s in %s%s", self.what, amount(self.count, self.unit), duration(elapsed), rate)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None:
            self.done()
        elif not self._finished:
            self._finished = True
            elapsed = duration(self._clock() - self._started)
            self.log.warning("%s: stopped after %s in %s (%s)", self.what, amount(self.count, self.unit), elapsed,
                             kind.__name__)  # fmt: skip


@contextmanager
def heartbeat(
    what: str, log: logging.Logger, every: float = EVERY, status: Callable[[], str] | None = None
) -> Iterator[None]:
    """Log "still running <what>: <elapsed>[, <status()>]" every ``every`` seconds until the block ends.

    For steps that report nothing while they run (a subprocess, a remote query, an upload): the line
    names the step the task is in, so a hang points at its cause. ``status`` may add a figure read
    from the running step (bytes written so far; "" adds nothing); it runs on the heartbeat thread
    and must not block.
    """
    stop = threading.Event()
    started = time.monotonic()
    wait = max(every, _MIN_BEAT)

    def beat() -> None:
        while not stop.wait(wait):
            extra = ""
            if status is not None:
                try:
                    extra = status()
                except Exception as exc:  # a figure must never break the heartbeat
                    extra = f"(status unavailable: {exc})"
            extra = f", {extra}" if extra else ""
            log.info("still running %s: %s%s", what, duration(time.monotonic() - started), extra)

    thread = threading.Thread(target=beat, name=f"heartbeat: {what}"[:60], daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
