"""Message pacing like TWS: 50 messages/s per client, error 100 per excess message, and the
socket closed after repeated violations; a client that connects with ``+PACEAPI`` is queued.

Sources: IB's message-code table (100: "The TWS will likely disconnect the client application
after this message"), ib_insync PR #35 (TWS "complains Error 100 several times and then drops the
connection"), users' logs of the wire text ("...exceeded:max=50 rec=138 (1)"), and the connect
option ``+PACEAPI`` (ib_async ``Client.setConnectOptions``: "request-pacing built into TWS/gateway
974+"). Pure: time comes in as ``now`` (monotonic seconds).
"""

from __future__ import annotations

import collections
import enum
from dataclasses import dataclass, field

EPISODE_SECONDS = 1.0  # excess messages within this long of a violation's first are one violation


class Verdict(enum.Enum):
    ADMIT = "admit"
    QUEUE = "queue"  # +PACEAPI: process later, when the budget allows
    REJECT = "reject"  # error 100, message dropped
    DISCONNECT = "disconnect"  # too many violations: close the socket


@dataclass
class Pacer:
    """A token bucket (bursts up to ``rate``, ``rate`` per second) plus violation counting.

    A strict "at most rate in any 1.0 s window" check is unfair to ib_async's own throttle,
    which sends its bursts exactly 1.0 s apart: the slightest lag in reading one burst puts two
    bursts in one window. The bucket refills continuously, so such jitter is absorbed while a
    sustained excess is still caught.
    """

    rate: int
    disconnect_after: int = 3  # violations tolerated; the next one closes the socket (0 = never)
    queue: bool = False
    tokens: float = 0.0
    refilled: float = 0.0
    violations: int = 0
    episode_start: float = -1e18
    stamps: collections.deque = field(default_factory=collections.deque)

    def __post_init__(self) -> None:
        self.tokens = float(self.rate)

    def start(self, now: float) -> None:
        self.refilled = now

    def count(self, now: float) -> int:
        """Record one arrival; how many arrived within the last second."""
        self.stamps.append(now)
        while self.stamps and self.stamps[0] <= now - 1.0:
            self.stamps.popleft()
        return len(self.stamps)

    def _refill(self, now: float) -> None:
        self.tokens = min(float(self.rate), self.tokens + (now - self.refilled) * self.rate)
        self.refilled = now

    def take(self, now: float) -> bool:
        """Spend one message of budget if there is one."""
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def wait(self, now: float) -> float:
        """Seconds until the budget allows one more message."""
        self._refill(now)
        return max(0.0, (1.0 - self.tokens) / self.rate)

    def judge(self, now: float) -> Verdict:
        """What to do with a message arriving at ``now`` (queued ones are not judged again)."""
        if self.take(now):
            return Verdict.ADMIT
        if self.queue:
            return Verdict.QUEUE
        if now - self.episode_start >= EPISODE_SECONDS:
            self.violations += 1
            self.episode_start = now
        if self.disconnect_after and self.violations > self.disconnect_after:
            return Verdict.DISCONNECT
        return Verdict.REJECT
