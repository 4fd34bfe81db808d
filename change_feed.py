"""A version counter that wakes waiting threads when the app's data changes.

The connector bumps it after each new snapshot and the order handler after
each change of a lifecycle record; Server-Sent-Event streams wait on it. It
also bounds how many streams may be open at once.
"""

from __future__ import annotations

import threading


class ChangeFeed:
    """Thread-safe change counter with bounded stream slots."""

    def __init__(self, max_streams: int = 8) -> None:
        self._cond = threading.Condition()
        self._version = 0
        self._quotes = 0  # the quote hub's pushes (watchlist, charts, alerts): own counter
        self._closed = False
        self._slots = threading.BoundedSemaphore(max_streams)
        self.max_streams = max_streams
        self._open = 0

    @property
    def version(self) -> int:
        """The current version."""
        return self._version

    @property
    def closed(self) -> bool:
        """True once the app is shutting down."""
        return self._closed

    @property
    def open_streams(self) -> int:
        """Streams currently open."""
        return self._open

    def bump(self) -> None:
        """Something changed: wake every waiter (callable from any thread)."""
        with self._cond:
            self._version += 1
            self._cond.notify_all()

    @property
    def quotes_version(self) -> int:
        return self._quotes

    def bump_quotes(self) -> None:
        """New quotes (callable from any thread): wakes streams without a new state version."""
        with self._cond:
            self._quotes += 1
            self._cond.notify_all()

    def wait_any(self, seen: int, seen_quotes: int, timeout: float) -> tuple[int, int]:
        """Like ``wait``, also waking on new quotes: (state version, quotes version)."""
        with self._cond:
            self._cond.wait_for(
                lambda: self._version != seen or self._quotes != seen_quotes or self._closed,
                timeout,
            )
            return self._version, self._quotes

    def wait(self, seen: int, timeout: float) -> int:
        """Block until the version differs from ``seen``, the feed closes, or ``timeout``."""
        with self._cond:
            self._cond.wait_for(lambda: self._version != seen or self._closed, timeout)
            return self._version

    def close(self) -> None:
        """Wake and end every stream (shutdown)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def open_stream(self) -> bool:
        """Take a stream slot; False when all are taken."""
        if not self._slots.acquire(blocking=False):
            return False
        with self._cond:
            self._open += 1
        return True

    def close_stream(self) -> None:
        """Give a stream slot back."""
        with self._cond:
            self._open -= 1
        self._slots.release()
