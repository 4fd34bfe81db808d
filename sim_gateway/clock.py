"""The gateway's clock: real time, or a simulated one that starts where a test wants it.

``SimClock(start=..., speed=...)`` runs from ``start`` (epoch seconds) at ``speed`` times real
time, measured on the monotonic clock; without ``start`` it follows the wall clock (times
``speed`` from the moment it was made). The broker never reads a clock: the server passes it
``clock.now()``.
"""

from __future__ import annotations

import math
import time
from datetime import datetime

MAX_SPEED = 10_000.0


def parse_when(text: str) -> float:
    """ISO 8601 with an offset, e.g. ``2026-11-30T10:00:00-05:00`` → epoch seconds."""
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        raise ValueError(f"{text!r} needs a UTC offset, e.g. 2026-11-30T10:00:00-05:00")
    return when.timestamp()


def check_speed(speed: float) -> float:
    if not math.isfinite(speed) or not 0 < speed <= MAX_SPEED:
        raise ValueError(f"clock speed must be within (0, {MAX_SPEED:g}], got {speed}")
    return speed


class SimClock:
    """Epoch seconds that advance ``speed`` times as fast as real time."""

    def __init__(self, start: float | None = None, speed: float = 1.0) -> None:
        self.speed = check_speed(speed)
        self.simulated = start is not None
        self._origin = time.time() if start is None else start
        self._mono = time.monotonic()

    def now(self) -> float:
        """The current (simulated) time."""
        return self._origin + (time.monotonic() - self._mono) * self.speed

    def wall_seconds(self, sim_seconds: float) -> float:
        """How long real time takes to pass ``sim_seconds`` of clock time."""
        return sim_seconds / self.speed

    def set(self, when: float | None = None, speed: float | None = None) -> None:
        """Jump forward to ``when`` and/or change the speed; never backwards."""
        now = self.now()
        if when is not None and when < now - 1e-6:
            raise ValueError("the simulated clock only moves forward")
        self._origin, self._mono = (now if when is None else when), time.monotonic()
        if speed is not None:
            self.speed = check_speed(speed)
        self.simulated = self.simulated or when is not None
