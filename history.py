"""Historical bars for the app: cached, and paced below IB's limits (pure; time passed in).

IB answers error 162 ("Historical data request pacing violation") to an identical request
within 15 s, to the 6th request for one contract within 2 s and to more than 60 requests in
10 minutes (BID_ASK counting twice) — see /work/shared/reference/ib-bad-days.md. The app keeps
a margin under each: identical requests are served from the cache for at least 20 s; at most
5 requests per contract in any 2.5 s (a 6th waits for its turn: the extra half second
absorbs the time requests take to reach IB, which counts their arrival); at most 50 in any 10 minutes
(beyond that the caller is told when to retry, nothing is sent). Every bar size is paced, not
only the small ones IB names: a dashboard never needs more.
"""

from __future__ import annotations

import collections
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from ib_async import IB, Contract

CACHE_AT_LEAST = 20.0  # seconds: > IB's 15 s for identical requests
CACHE_AT_MOST = 300.0
BURST_WINDOW, BURST_MAX = 2.5, 5  # IB: the 6th within 2 s; 0.5 s for delivery jitter
BURST_MARGIN = 0.01  # the 6th goes a hair after the window of the 1st has passed
WINDOW, WINDOW_MAX = 600.0, 50
CACHE_ENTRIES = 64
BAR_SECONDS = {
    "5 secs": 5,
    "10 secs": 10,
    "15 secs": 15,
    "30 secs": 30,
    "1 min": 60,
    "2 mins": 120,
    "3 mins": 180,
    "5 mins": 300,
    "15 mins": 900,
    "30 mins": 1800,
    "1 hour": 3600,
    "1 day": 86400,
}
WHAT_TO_SHOW = ("TRADES", "MIDPOINT", "BID", "ASK", "BID_ASK")


class HistoryBudgetSpent(RuntimeError):
    """Asking now would exceed IB's 10-minute budget: retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(
            f"the historical-data budget ({WINDOW_MAX} requests in 10 minutes, "
            f"under IB's 60) is used up; retry in {math.ceil(retry_after)} s"
        )
        self.retry_after = retry_after


@dataclass(frozen=True)
class BarsKey:
    symbol: str
    sec_type: str
    duration: str
    bar_size: str
    what_to_show: str
    use_rth: bool = True

    def ttl(self) -> float:
        """How long an answer is served from the cache."""
        return min(CACHE_AT_MOST, max(CACHE_AT_LEAST, float(BAR_SECONDS.get(self.bar_size, 60))))


@dataclass(frozen=True)
class Bar:
    time: float  # epoch seconds of the bar's start
    open: float
    high: float
    low: float
    close: float
    volume: float


@dataclass(frozen=True)
class Bars:
    key: BarsKey
    bars: tuple[Bar, ...]
    fetched_at: float  # epoch seconds


@dataclass
class HistoryPacer:
    """The cache and the request budget (used on one thread: the reader's loop)."""

    cache: collections.OrderedDict = field(default_factory=collections.OrderedDict)
    per_contract: dict[tuple[str, str], collections.deque] = field(default_factory=dict)
    recent: collections.deque = field(default_factory=collections.deque)  # (time, weight)
    sent: int = 0
    hits: int = 0

    def cached(self, key: BarsKey, now: float) -> Bars | None:
        entry = self.cache.get(key)
        if entry is None or now - entry[0] >= key.ttl():
            return None
        self.hits += 1
        return entry[1]

    def store(self, key: BarsKey, bars: Bars, now: float) -> None:
        self.cache[key] = (now, bars)
        self.cache.move_to_end(key)
        while len(self.cache) > CACHE_ENTRIES:
            self.cache.popitem(last=False)

    def wait(self, key: BarsKey, now: float) -> float:
        """Seconds to wait before sending ``key`` (0: send now, and it is counted);
        HistoryBudgetSpent when the 10-minute budget is used up."""
        while self.recent and self.recent[0][0] <= now - WINDOW:
            self.recent.popleft()
        weight = 2 if key.what_to_show == "BID_ASK" else 1
        if sum(w for _, w in self.recent) + weight > WINDOW_MAX:
            raise HistoryBudgetSpent(self.recent[0][0] + WINDOW - now)
        burst = self.per_contract.setdefault((key.symbol, key.sec_type), collections.deque())
        while burst and burst[0] <= now - BURST_WINDOW:
            burst.popleft()
        if len(burst) >= BURST_MAX:
            return burst[0] + BURST_WINDOW - now + BURST_MARGIN
        burst.append(now)
        self.recent.append((now, weight))
        self.sent += 1
        return 0.0


# IB serves historical data only to an account with real-time (Level 1) data for the listing
NO_PERMISSION_HINT = (
    " (IB serves historical bars only with a live market data subscription for the listing: "
    "delayed data is not enough)"
)


class HistoryRefused(RuntimeError):
    """The gateway answered the request with an error (e.g. 162, 354): nothing to show."""


class HistoryTimeout(TimeoutError):
    """The gateway did not answer the request in time (ib_async gives up, cancels it at IB
    and returns an empty list): not "no bars", so never cached as such."""

    def __init__(self, timeout: float) -> None:
        super().__init__(
            f"the gateway did not answer the historical-data request within {timeout:g} s "
            "(IB's historical-data farm may be slow or unreachable); retry shortly"
        )


async def fetch_bars(ib: IB, contract: Contract, key: BarsKey, timeout: float) -> Bars:
    """One reqHistoricalData on the loop that owns ``ib``; HistoryRefused names IB's error,
    HistoryTimeout when it did not answer within ``timeout``."""
    errors: list[tuple[int, int, str]] = []  # (reqId, code, text) of every error meanwhile

    def on_error(req_id: int, code: int, text: str, about: Contract | None) -> None:
        errors.append((req_id, code, text))

    ib.errorEvent += on_error
    started = time.monotonic()
    try:
        rows = await ib.reqHistoricalDataAsync(
            contract,
            "",
            key.duration,
            key.bar_size,
            key.what_to_show,
            key.use_rth,
            formatDate=2,
            timeout=timeout,
        )
    finally:
        ib.errorEvent -= on_error
    # only this request's errors: a quote line on the same contract has its own (e.g. 10168)
    refusals = [(code, text) for req_id, code, text in errors if req_id == rows.reqId]
    if not rows and refusals:
        code, text = refusals[-1]
        hint = NO_PERMISSION_HINT if code == 162 and "permission" in text.lower() else ""
        raise HistoryRefused(f"IB error {code}: {text}{hint}")
    # ib_async's time-out returns an empty list: an answer (even of no bars) comes before it
    if not rows and time.monotonic() - started >= timeout:
        raise HistoryTimeout(timeout)
    return Bars(
        key,
        tuple(Bar(_epoch(r.date), r.open, r.high, r.low, r.close, float(r.volume)) for r in rows),
        time.time(),
    )


def _epoch(value: date | datetime) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.combine(value, datetime.min.time(), UTC).timestamp()
