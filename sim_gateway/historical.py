"""Historical bars (reqHistoricalData) and IB's pacing of them, sans-IO.

Wire layouts at the negotiated versions 157..178 (checked against ib_async 2.1.0's client and
decoder and ibapi 9.81's): reqHistoricalData ``[20, reqId, <12-field contract>, includeExpired,
endDateTime, barSize, duration, useRTH, whatToShow, formatDate, (BAG legs), keepUpToDate,
chartOptions]`` (no version field from v124 on), cancelHistoricalData ``[25, 1, reqId]`` →
historicalData ``[17, reqId, start, end, n, (date, open, high, low, close, volume, wap,
barCount)…]`` (the separate end message only exists from v196 on).

Pacing, from IB's "Historical data limitations" page, for bars of 30 seconds or less: no
identical request within 15 s; no 6 or more requests for the same contract, exchange and tick
type within 2 s; no more than 60 requests in any 10 minutes (BID_ASK counts twice). A
violation answers 162 "Historical data request pacing violation". Larger bars are not paced
(IB throttles them softly). The simulator counts per gateway, on real (monotonic) time.

Bars of a minute or more come from ``tape`` (one process for history and live ticks, see
``chart_service``); ``bars`` here is the walk of sub-minute bars, ending at the current price.
"""

from __future__ import annotations

import collections
import math
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from .codec import FieldReader, fmt_price, read_contract
from .tape import Bar
from .types import ContractQuery

REQ_HISTORICAL_DATA, CANCEL_HISTORICAL_DATA, HISTORICAL_DATA = 20, 25, 17
IDENTICAL_WINDOW, BURST_WINDOW, BURST_MAX = 15.0, 2.0, 5  # the 6th within 2 s is a violation
TEN_MINUTES, TEN_MINUTE_MAX = 600.0, 60
PACED_UP_TO = 30  # bar seconds: smaller or equal bars are paced
MAX_BARS = 2000
PACING_TEXT = "Historical data request pacing violation"
NEW_YORK = ZoneInfo("America/New_York")

_UNITS = {
    "sec": 1,
    "secs": 1,
    "min": 60,
    "mins": 60,
    "hour": 3600,
    "hours": 3600,
    "day": 86400,
    "days": 86400,
    "week": 604800,
    "weeks": 604800,
    "month": 2592000,
    "months": 2592000,
}
_DURATION_UNITS = {"S": 1, "D": 86400, "W": 604800, "M": 2592000, "Y": 31536000}


@dataclass(frozen=True)
class ReqHistoricalData:
    req_id: int
    contract: ContractQuery
    end: str
    bar_size: str
    duration: str
    use_rth: bool
    what_to_show: str
    format_date: int
    keep_up_to_date: bool


@dataclass(frozen=True)
class CancelHistoricalData:
    req_id: int


def decode_req_historical_data(r: FieldReader, version: int) -> ReqHistoricalData:
    from .protocol import _skip_groups  # the shared group skipper (protocol imports this module)

    req_id, contract = r.read_int("reqId"), read_contract(r)
    r.skip(1, "includeExpired")
    end, bar_size, duration = (
        r.read_str("endDateTime"),
        r.read_str("barSize"),
        r.read_str("duration"),
    )
    use_rth, what = r.read_bool("useRTH"), r.read_str("whatToShow")
    format_date = r.read_int("formatDate")
    if contract.sec_type == "BAG":
        _skip_groups(r, "comboLegsCount", 4)
    keep = r.read_bool("keepUpToDate")
    r.skip(1, "chartOptions")
    return ReqHistoricalData(
        req_id, contract, end, bar_size, duration, use_rth, what, format_date, keep
    )


def decode_cancel_historical_data(r: FieldReader, version: int) -> CancelHistoricalData:
    r.skip(1, "version")
    return CancelHistoricalData(r.read_int("reqId"))


HistoricalRequest = ReqHistoricalData | CancelHistoricalData
DECODERS: dict[int, Callable[[FieldReader, int], HistoricalRequest]] = {
    REQ_HISTORICAL_DATA: decode_req_historical_data,
    CANCEL_HISTORICAL_DATA: decode_cancel_historical_data,
}


def _encode_req(q: ReqHistoricalData, version: int) -> list[str]:
    from .instrument_messages import _contract_fields

    return [
        str(REQ_HISTORICAL_DATA),
        str(q.req_id),
        *_contract_fields(q.contract),
        "0",
        q.end,
        q.bar_size,
        q.duration,
        str(int(q.use_rth)),
        q.what_to_show,
        str(q.format_date),
        str(int(q.keep_up_to_date)),
        "",
    ]


ENCODERS: dict[type, Callable[[Any, int], list[str]]] = {  # client side (tests)
    ReqHistoricalData: _encode_req,
    CancelHistoricalData: lambda q, v: [str(CANCEL_HISTORICAL_DATA), "1", str(q.req_id)],
}


# ------------------------------------------------------------------ parsing
def bar_seconds(bar_size: str) -> int:
    """ "5 mins" → 300; ValueError for what IB does not accept."""
    match = re.fullmatch(r"(\d+) ([a-z]+)", bar_size.strip())
    if not match or match.group(2) not in _UNITS or int(match.group(1)) <= 0:
        raise ValueError(f"invalid bar size {bar_size!r}")
    return int(match.group(1)) * _UNITS[match.group(2)]


def duration_seconds(duration: str) -> int:
    """ "1 D" → 86400; ValueError for what IB does not accept."""
    match = re.fullmatch(r"(\d+) ([SDWMY])", duration.strip())
    if not match or int(match.group(1)) <= 0:
        raise ValueError(f"invalid duration {duration!r}")
    return int(match.group(1)) * _DURATION_UNITS[match.group(2)]


def end_time(end: str, now: float) -> float:
    """endDateTime: "" = now; "yyyyMMdd HH:mm:ss[ zone]" or "yyyyMMdd-HH:mm:ss" (UTC)."""
    text = end.strip()
    if not text:
        return now
    if "-" in text and len(text) == 17:
        return (
            datetime.strptime(text, "%Y%m%d-%H:%M:%S").replace(tzinfo=ZoneInfo("UTC")).timestamp()
        )
    parts = text.split(" ")
    when = datetime.strptime(" ".join(parts[:2]), "%Y%m%d %H:%M:%S")
    zone = ZoneInfo(parts[2]) if len(parts) > 2 else NEW_YORK
    return when.replace(tzinfo=zone).timestamp()


# ------------------------------------------------------------------ bars
def bars(
    seed: int, con_id: int, last: float, tick: float, end: float, bar: int, span: int
) -> list[Bar]:
    """Bars of ``bar`` seconds covering ``span`` seconds up to ``end``, ending at ``last``."""
    n = max(1, min(MAX_BARS, span // bar))
    first = (int(end) // bar - n + 1) * bar
    rng = random.Random(f"{seed}/{con_id}/{first}/{bar}")
    vol = 0.0008 * math.sqrt(bar / 60)
    closes = [last]
    for _ in range(n - 1):
        closes.append(closes[-1] * math.exp(-rng.gauss(0.0, vol)))
    closes.reverse()
    out = []
    for i, close in enumerate(closes):
        open_ = closes[i - 1] if i else close * math.exp(rng.gauss(0.0, vol / 2))
        high = max(open_, close) * (1 + abs(rng.gauss(0.0, vol / 3)))
        low = min(open_, close) * (1 - abs(rng.gauss(0.0, vol / 3)))
        o, h, lo, c = (round(round(p / tick) * tick, 8) for p in (open_, high, low, close))
        out.append(
            Bar(
                first + i * bar,
                o,
                max(o, h, c),
                min(o, lo, c),
                c,
                100 * rng.randint(1, 50),
                round((o + c + h + lo) / 4, 4),
                rng.randint(1, 40),
            )
        )
    return out


def _date(start: float, bar: int, format_date: int) -> str:
    if format_date == 2:
        return str(int(start))
    if bar >= 86400:  # daily bars start at midnight UTC: their date is that day
        return datetime.fromtimestamp(start, ZoneInfo("UTC")).strftime("%Y%m%d")
    return datetime.fromtimestamp(start, NEW_YORK).strftime("%Y%m%d %H:%M:%S") + " US/Eastern"


def historical_data(req_id: int, rows: list[Bar], bar: int, format_date: int) -> list[str]:
    """The historicalData message (volume integral: ibapi 9.81 reads it as an int)."""
    start = _date(rows[0].start, bar, 1) if rows else ""
    end = _date(rows[-1].start + bar, bar, 1) if rows else ""
    fields = [str(HISTORICAL_DATA), str(req_id), start, end, str(len(rows))]
    for row in rows:
        fields += [
            _date(row.start, bar, format_date),
            fmt_price(row.open),
            fmt_price(row.high),
            fmt_price(row.low),
            fmt_price(row.close),
            str(row.volume),
            fmt_price(row.wap),
            str(row.count),
        ]
    return fields


# ------------------------------------------------------------------ pacing
@dataclass
class HistoricalPacer:
    """IB's three rules; ``admit`` records a request and says why it violates, if it does."""

    identical: dict[tuple, float] = field(default_factory=dict)
    per_contract: dict[tuple, collections.deque] = field(default_factory=dict)
    recent: collections.deque = field(default_factory=collections.deque)  # (time, weight)

    def admit(
        self, request: ReqHistoricalData, con_id: int, now: float | None = None
    ) -> str | None:
        now = time.monotonic() if now is None else now
        if bar_seconds(request.bar_size) > PACED_UP_TO:
            return None
        key = (
            con_id,
            request.end,
            request.duration,
            request.bar_size,
            request.what_to_show,
            request.use_rth,
        )
        contract_key = (con_id, request.contract.exchange, request.what_to_show)
        weight = 2 if request.what_to_show.upper() == "BID_ASK" else 1
        while self.recent and self.recent[0][0] <= now - TEN_MINUTES:
            self.recent.popleft()
        burst = self.per_contract.setdefault(contract_key, collections.deque())
        while burst and burst[0] <= now - BURST_WINDOW:
            burst.popleft()
        if now - self.identical.get(key, -math.inf) < IDENTICAL_WINDOW:
            return "identical request within 15 s"
        if len(burst) >= BURST_MAX:
            return "6 or more requests for the same contract within 2 s"
        if sum(w for _, w in self.recent) + weight > TEN_MINUTE_MAX:
            return "more than 60 requests within 10 minutes"
        self.identical[key] = now
        burst.append(now)
        self.recent.append((now, weight))
        return None
