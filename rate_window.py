"""A sliding-window rate limit (the webhook's alerts per minute)."""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Callable

Clock = Callable[[], float]


class SlidingWindow:
    """At most ``limit`` events in any ``seconds`` (thread-safe)."""

    def __init__(
        self, limit: int, seconds: float = 60.0, monotonic: Clock = time.monotonic
    ) -> None:
        self.limit, self.seconds = limit, seconds
        self._monotonic = monotonic
        self._stamps: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()

    def allow(self) -> bool:
        """Count one event if the window has room; False (not counted) otherwise."""
        now = self._monotonic()
        with self._lock:
            self._expire(now)
            if len(self._stamps) >= self.limit:
                return False
            self._stamps.append(now)
            return True

    def retry_after(self) -> int:
        """Whole seconds until the window has room again (0 when it has now)."""
        now = self._monotonic()
        with self._lock:
            self._expire(now)
            if len(self._stamps) < self.limit:
                return 0
            return max(1, math.ceil(self._stamps[0] + self.seconds - now))

    def _expire(self, now: float) -> None:
        while self._stamps and self._stamps[0] <= now - self.seconds:
            self._stamps.popleft()
