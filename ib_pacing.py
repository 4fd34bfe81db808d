"""The request pace of both IB connections: a smooth 45 messages/s, at most 4 at once.

IB allows a client 50 messages/s (error 100 above it, then the socket is closed). ib_async's
own throttle (``Client.sendMsg``) sends ``MaxRequests`` per ``RequestsInterval`` counted from the
moments it actually sent: on a busy two-core machine each timer wake-up comes 10-40 ms late and
pushes every later send back by as much, so 50 orders paced 5 per 1/9 s took 1.13-1.40 s at the
gateway instead of 1.0 s (``bench/pacing_vs_raw.py``). ``TokenBucket`` refills by the clock
instead: a late wake-up sends what accrued meanwhile, so a slip shorter than ``(burst - 1) / rate``
(67 ms: it wakes when one send is due) costs nothing, and however late it wakes, no window of one second holds more than
``burst + rate`` = 49 sends.

``SmoothPacer`` puts the bucket in front of one ``ib_async`` client's socket: it replaces that
client's ``sendMsg`` (the one method every request goes through) and keeps ib_async's queue
(``_msgQ``, cleared by ``Client.reset`` on a disconnect) and its ``throttleStart`` /
``throttleEnd`` events.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass, field

from ib_async import IB, Client
from ib_async.util import getLoop

log = logging.getLogger(__name__)

RATE = 45.0  # messages per second, 5 under IB's 50
BURST = 4  # sent at once at most; RATE + BURST = 49 in any one second: 1 spare for arrival jitter
EPSILON = 1e-9  # a token refilled up to rounding is a token (a timer at wait() then sends)


@dataclass
class TokenBucket:
    """Up to ``burst`` sends at once, refilled at ``rate`` per second by the clock (pure)."""

    rate: float
    burst: int
    tokens: float = field(init=False)
    stamp: float | None = None  # the clock at the last refill

    def __post_init__(self) -> None:
        self.tokens = float(self.burst)

    def take(self, now: float) -> bool:
        """Spend one send if the budget holds one at ``now``."""
        self._refill(now)
        if self.tokens >= 1.0 - EPSILON:
            self.tokens = max(0.0, self.tokens - 1.0)
            return True
        return False

    def wait(self, now: float) -> float:
        """Seconds from ``now`` until the budget holds one send."""
        self._refill(now)
        return max(0.0, (1.0 - self.tokens) / self.rate)

    def _refill(self, now: float) -> None:
        if self.stamp is not None:
            self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now


def queued_seconds(client: Client, rate: float = RATE) -> float:
    """Seconds the requests still queued for ``client``'s socket will take to go out."""
    return len(client._msgQ) / rate


PLACE_ORDER = "3"  # the placeOrder message's id, its first field (the orderId is the second)


async def sent_out(ib: IB, timeout: float) -> int:
    """Wait, connected, until what waits for the pace and what was written have left the
    socket, ``timeout`` at most: a disconnect empties the queue unsent (``Client.reset``), and
    a change or cancel recorded as sent may still wait there. The requests left queued."""
    deadline = time.monotonic() + timeout
    while ib.isConnected():
        transport = ib.client.conn.transport
        if not ib.client._msgQ and not (transport and transport.get_write_buffer_size()):
            return 0
        if time.monotonic() > deadline:
            return len(ib.client._msgQ)
        await asyncio.sleep(0.01)
    return 0


def _placed_id(text: str) -> int | None:
    """The orderId of a queued placeOrder message (a new order or a change), else None."""
    msg_id, _, rest = text.partition("\0")
    order_id = rest.partition("\0")[0]
    return int(order_id) if msg_id == PLACE_ORDER and order_id.isdigit() else None


def queued_orders(client: Client) -> collections.Counter[int]:
    """How many placeOrder messages (an order's, its changes') are still queued for
    ``client``'s socket, by orderId."""
    return collections.Counter(i for i in map(_placed_id, client._msgQ) if i is not None)


def withdraw(client: Client, order_ids: set[int]) -> list[int]:
    """Take the placeOrder messages of ``order_ids`` still queued for ``client``'s socket out
    of the queue: they are never sent. Returns the orderIds taken out."""
    queue = client._msgQ
    kept, taken = [], []
    for text in queue:
        order_id = _placed_id(text)
        if order_id is not None and order_id in order_ids:
            taken.append(order_id)
        else:
            kept.append(text)
    if taken:
        queue.clear()
        queue.extend(kept)
    return taken


class SmoothPacer:
    """Sends one ib_async client's requests through a ``TokenBucket``."""

    def __init__(self, client: Client, bucket: TokenBucket | None = None) -> None:
        self._client = client
        self.bucket = bucket or TokenBucket(RATE, BURST)
        self._timer: asyncio.TimerHandle | None = None
        client.MaxRequests = 0  # ib_async's own throttle off: this pacer replaces it
        client.sendMsg = self.send  # type: ignore[method-assign]  # every request goes through it

    def send(self, msg: str | None) -> None:
        """Queue ``msg`` (None: just a wake-up) and send what the budget allows now."""
        client = self._client
        queue = client._msgQ  # read each time: Client.reset() replaces it
        if msg:
            queue.append(msg)
        loop = getLoop()
        now = loop.time()
        while queue and self.bucket.take(now):
            text = queue.popleft()
            client.conn.sendMsg(client._prefix(text.encode()))
            if log.isEnabledFor(logging.DEBUG):
                log.debug(">>> %s", text[:-1].replace("\0", ","))
        if queue:
            self._throttling(True)
            if self._timer is None:
                self._timer = loop.call_at(now + self.bucket.wait(now), self._wake)
        else:
            self._throttling(False)

    def _wake(self) -> None:
        self._timer = None
        self.send(None)

    def _throttling(self, on: bool) -> None:
        client = self._client
        if client._isThrottling == on:
            return
        client._isThrottling = on
        (client.throttleStart if on else client.throttleEnd).emit()
