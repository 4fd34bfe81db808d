"""Whether the order journal's writes succeed: a failure (a full disk, an I/O error) from the
first failed write until one succeeds with no failed save waiting for its retry."""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class WriteFailure:
    """The journal's writes fail (a full disk, an I/O error) since ``since`` (epoch)."""

    since: float
    error: str


class WriteHealth:
    """Whether the journal's writes succeed: failing from the first failed write until one
    succeeds with no failed save waiting for its retry (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failure: WriteFailure | None = None
        self._backlog = False  # a failed batch of saves waits for its retry
        self._reminded = 0.0  # when the log last said writes still fail
        self.on_change: Callable[[], None] | None = None  # a failure started or ended

    @property
    def failure(self) -> WriteFailure | None:
        """Since when and why writes fail; None while they succeed."""
        return self._failure

    def failed(self, exc: sqlite3.Error, backlog: bool = False) -> bool:
        """Count a failed write; whether it is the first of a run of them, or the first
        failed save of one (to log in full: the writer retries every 0.2 s, and each retry's
        traceback filled the log)."""
        with self._lock:
            started = self._failure is None
            if started:
                self._failure = WriteFailure(time.time(), str(exc))
                self._reminded = self._failure.since
            first_save = backlog and not self._backlog
            self._backlog = self._backlog or backlog
        if started:
            self._changed()
        return started or first_save

    def remind(self, every: float = 60.0) -> str | None:
        """While writes fail: a line for the log at most once per ``every`` seconds."""
        with self._lock:
            failure, now = self._failure, time.time()
            if failure is None or now - self._reminded < every:
                return None
            self._reminded = now
        return f"journal writes still failing after {now - failure.since:.0f} s: {failure.error}"

    def succeeded(self, backlog_saved: bool = False) -> None:
        with self._lock:
            if backlog_saved:
                self._backlog = False
            ended = self._failure is not None and not self._backlog
            if ended:
                self._failure = None
        if ended:
            log.warning("✅ journal writes succeed again")
            self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()
