"""One lock per idempotency key: a request and its retry never both create an order, while
requests of other keys (every dashboard order and webhook alert carries one) go on beside them.

A single lock held across an order's creation (a derivative's contract look-up, the risk
gate's quote: broker round trips of up to seconds) queued every other order and alert behind
the slowest, and held their server threads meanwhile.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class KeyLocks:
    """``with locks.held(key):`` -- a lock of its own per key, kept only while it is held or
    waited for (memory bounded by the requests in flight)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}  # key -> (lock, holders+waiters)

    @contextmanager
    def held(self, key: str) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.get(key, (None, 0))
            lock = lock or threading.Lock()
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                users = self._locks[key][1] - 1
                if users:
                    self._locks[key] = (lock, users)
                else:
                    del self._locks[key]

    def __len__(self) -> int:
        with self._guard:
            return len(self._locks)
