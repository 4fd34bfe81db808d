"""Sliding-window rate limits: one window (the webhook's alerts per minute) and, per key,
several at once (the lockout's failed secrets per address and in total)."""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Callable, Sequence

Clock = Callable[[], float]
Rule = tuple[int, float]  # at most this many events in any this many seconds
MAX_KEYS = 10_000  # keys MovingWindows remembers at most


class SlidingWindow:
    """At most ``limit`` events in any ``seconds`` (thread-safe): one key's ``MovingWindows``."""

    def __init__(
        self, limit: int, seconds: float = 60.0, monotonic: Clock = time.monotonic
    ) -> None:
        self.limit, self.seconds = limit, seconds
        self._windows = MovingWindows(((limit, seconds),), max_keys=1, monotonic=monotonic)

    def allow(self) -> bool:
        """Count one event if the window has room; False (not counted) otherwise."""
        return self._windows.allow("")

    def retry_after(self) -> int:
        """Whole seconds until the window has room again (0 when it has now)."""
        return whole_seconds(self._windows.wait(""))


def whole_seconds(wait: float) -> int:
    """A wait in whole seconds, rounded up (a Retry-After): 0 only when there is none."""
    return max(1, math.ceil(wait)) if wait > 0 else 0


class MovingWindows:
    """Events counted per key against every rule at once (thread-safe), in bounded memory.

    A key holds only the stamps of its last ``max(count)`` events, and only while the newest
    is younger than the longest rule; past ``max_keys`` keys the one whose last event is the
    oldest is forgotten, and starts afresh. So someone cycling through more than ``max_keys``
    keys (addresses) is never held by the per-key rules: the memory bound has that price.
    """

    def __init__(
        self, rules: Sequence[Rule], max_keys: int = MAX_KEYS, monotonic: Clock = time.monotonic
    ) -> None:
        if not rules or any(count < 1 or seconds <= 0 for count, seconds in rules):
            raise ValueError(f"rules need a count >= 1 and seconds > 0: {rules!r}")
        self.rules = tuple(rules)
        self.max_keys = max_keys
        self._keep = max(count for count, _ in self.rules)
        self._span = max(seconds for _, seconds in self.rules)
        self._monotonic = monotonic
        # by the time of each key's last event, oldest first
        self._stamps: collections.OrderedDict[str, collections.deque[float]] = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()

    def hit(self, key: str) -> None:
        """Count one event of ``key`` (whether or not a rule is over its count)."""
        with self._lock:  # the clock read inside: the stamps stay in order
            self._hit(key, self._monotonic())

    def allow(self, key: str) -> bool:
        """Count one event of ``key`` if every rule has room; False (not counted) otherwise."""
        with self._lock:
            now = self._monotonic()
            if self._wait(key, now) > 0:
                return False
            self._hit(key, now)
            return True

    def wait(self, key: str) -> float:
        """Seconds until ``key`` is within every rule again (0.0: it is now)."""
        with self._lock:
            return self._wait(key, self._monotonic())

    def _hit(self, key: str, now: float) -> None:
        self._forget_idle(now)
        stamps = self._stamps.get(key)
        if stamps is None:
            stamps = self._stamps[key] = collections.deque(maxlen=self._keep)
        else:
            self._stamps.move_to_end(key)
        stamps.append(now)
        while len(self._stamps) > self.max_keys:
            self._stamps.popitem(last=False)

    def _wait(self, key: str, now: float) -> float:
        stamps = self._stamps.get(key)
        if stamps is None:
            return 0.0
        waits = [
            stamps[-count] + seconds - now for count, seconds in self.rules if len(stamps) >= count
        ]
        return max([0.0, *waits])

    def keys(self) -> int:
        """Keys remembered now."""
        with self._lock:
            return len(self._stamps)

    def _forget_idle(self, now: float) -> None:
        while self._stamps:
            key, stamps = next(iter(self._stamps.items()))
            if stamps[-1] > now - self._span:
                return
            del self._stamps[key]
