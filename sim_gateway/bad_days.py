"""IB's bad days, pure: server outages (1100 → 1101/1102), the nightly reset, market-data
entitlements (354 / 10167 / 10168) and competing live sessions (10197).

Facts (see /work/shared/reference/ib-bad-days.md and IB's message-code table):

* While IB's servers are unreachable the API socket stays up; the gateway sends 1100 (repeated
  while it lasts) and the farm notices 2103 / 2105 / 2157; afterwards 1102 (data maintained) or
  1101 (data lost: market-data and account subscriptions must be requested again), then 2104 /
  2106 / 2158. North American servers reset every night around 23:45–00:45 New York time.
* An account without a live subscription answers a live request (type 1/2) with 354; with
  delayed data requested (``reqMarketDataType`` 3/4) it answers 10167 (a warning) and sends
  delayed ticks (66..76), or 10168 (no data) when delayed data is not enabled. An account with
  the subscription gets live data whatever type it asks for (IB ignores a delayed request then).
  IB words the same lack as 10089 ("requires additional subscription for API ... Delayed market
  data is available.") on accounts whose subscriptions do not cover the API (IB4m #158: a paper
  account): no ticks for a live request, and for a delayed one an advisory, the delayed ticks
  follow (rust-ibapi #677, reported from a delayed-only account).
* While the same user is logged in elsewhere with live data (e.g. the phone app), live requests
  answer 10197 and live streams stop.

The simulator's own modelling (``sim``): the outage holds what clients ask of IB's servers
(orders, cancels, contract look-ups) and the order and account messages IB produces meanwhile;
at 1102 both are delivered, at 1101 the requests are processed but the messages made during the
outage are dropped — a client finds its fills again with reqExecutions / reqOpenOrders /
reqCompletedOrders (LEAN's IB brokerage #249 is what happens to one that does not).

Time is passed in (epoch seconds of the gateway's clock); nothing here touches a socket.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from . import errors

NEW_YORK = ZoneInfo("America/New_York")
REPEAT_1100 = 10.0  # clock seconds between repeated 1100 notices during an outage
FARMS = (  # (broken code, OK code, farm): what an outage takes down, in IB's notice order
    (2103, 2104, "usfarm"),
    (2105, 2106, "ushmds"),
    (2157, 2158, "secdefnj"),
)
DEFAULT_NIGHTLY = "23:45/300"
MARKET_FARMS = {"usfarm": "US stocks and everything but FX", "cashfarm": "FX pairs"}


def market_farm(sec_type: str) -> str:
    """The market data farm a contract's quotes come from (the simulator's two)."""
    return "cashfarm" if sec_type == "CASH" else "usfarm"


class Entitlement(enum.Enum):
    """What the account may see: ``--market-data-subscriptions``."""

    LIVE = "live"  # subscribed: live data whatever type is asked
    DELAYED = "delayed"  # no subscription, delayed data enabled (most paper accounts)
    API_DELAYED = "api-delayed"  # no subscription for the API, delayed enabled: IB says 10089
    NONE = "none"  # no subscription, delayed data not enabled


@dataclass(frozen=True)
class Window:
    """A time span on the gateway's clock; ``lost``: the outage ends with 1101; ``through``:
    the broker's messages (fills, IB's cancels) still reach the clients during it, as IB's
    gateway may pass them on between its 1100s (else they are held for its end)."""

    start: float
    end: float
    lost: bool = False
    through: bool = False

    def covers(self, now: float) -> bool:
        return self.start <= now < self.end


@dataclass(frozen=True)
class Nightly:
    """The nightly server reset: every day at ``at`` (New York time) for ``seconds``."""

    at: time
    seconds: float
    lost: bool = False

    def window(self, now: float) -> Window | None:
        """The reset window covering ``now``, if any (today's or yesterday's, past midnight)."""
        today = datetime.fromtimestamp(now, NEW_YORK).date()
        for day in (today, today - timedelta(days=1)):
            start = datetime.combine(day, self.at, NEW_YORK).timestamp()
            if start <= now < start + self.seconds:
                return Window(start, start + self.seconds, self.lost)
        return None

    def next_start(self, now: float) -> float:
        """The next reset's start at or after ``now``."""
        day: date = datetime.fromtimestamp(now, NEW_YORK).date()
        while True:
            start = datetime.combine(day, self.at, NEW_YORK).timestamp()
            if start >= now:
                return start
            day += timedelta(days=1)


@dataclass(frozen=True)
class Schedule:
    """One-off windows plus an optional nightly reset."""

    windows: tuple[Window, ...] = ()
    nightly: Nightly | None = None

    def active(self, now: float) -> Window | None:
        for window in self.windows:
            if window.covers(now):
                return window
        return self.nightly.window(now) if self.nightly is not None else None


# ------------------------------------------------------------------ parsing (CLI switches)
def _seconds(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a finite number of seconds >= 0, got {text!r}")
    return value


def _instant(text: str, origin: float) -> float:
    """``AT``: seconds after ``origin`` (the gateway's start), or an ISO 8601 time with offset."""
    try:
        return origin + _seconds(text, "AT")
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"AT {text!r} is neither seconds after the start nor an ISO 8601 "
            "time such as 2026-11-30T23:50:00-05:00"
        ) from None
    if when.tzinfo is None:
        raise ValueError(f"AT {text!r} needs a UTC offset, e.g. 2026-11-30T23:50:00-05:00")
    return when.timestamp()


def parse_window(text: str, origin: float, allow_lost: bool = True) -> Window:
    """``AT:FOR[:lost|:kept|:through]`` → a Window (AT: seconds after ``origin`` or an ISO
    time)."""
    lost = through = False
    head, _, tail = text.rpartition(":")
    if tail in ("lost", "kept", "through"):
        if not allow_lost:
            raise ValueError(f"{text!r}: ':{tail}' only applies to outages")
        lost, through, text = tail == "lost", tail == "through", head
    at_text, sep, for_text = text.rpartition(":")
    if not sep or not at_text:
        raise ValueError(f"{text!r} is not AT:FOR (e.g. 30:60, or 2026-11-30T23:50:00-05:00:600)")
    start = _instant(at_text, origin)
    duration = _seconds(for_text, "FOR")
    if duration <= 0:
        raise ValueError(f"{text!r}: FOR must be above 0 seconds")
    return Window(start, start + duration, lost, through)


def parse_nightly(text: str) -> Nightly:
    """``HH:MM/SECONDS[/lost]`` (New York time), e.g. ``23:45/300``."""
    parts = text.split("/")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("lost", "kept")):
        raise ValueError(f"{text!r} is not HH:MM/SECONDS[/lost] (e.g. {DEFAULT_NIGHTLY})")
    try:
        at = time.fromisoformat(parts[0])
    except ValueError:
        raise ValueError(f"{parts[0]!r} is not a time of day HH:MM") from None
    seconds = _seconds(parts[1], "SECONDS")
    if not 0 < seconds < 86400:
        raise ValueError(f"{text!r}: the reset lasts more than 0 s and less than a day")
    return Nightly(at, seconds, len(parts) == 3 and parts[2] == "lost")


# ------------------------------------------------------------------ notices
Notice = tuple[int, str]  # (code, text) of an error message with reqId -1


def outage_started() -> list[Notice]:
    return [(1100, errors.text(1100))] + [
        (broken, errors.text(broken, farm=farm)) for broken, _, farm in FARMS
    ]


def outage_ended(lost: bool) -> list[Notice]:
    code = 1101 if lost else 1102
    return [(code, errors.text(code))] + [(ok, errors.text(ok, farm=farm)) for _, ok, farm in FARMS]


def farm_notices_ok(broken: Collection[str] = ()) -> list[Notice]:
    """What every connection is told when its API session starts; a market data farm in
    ``broken`` (down alone, ``farm_down``) is said broken (2103) instead of OK."""
    start = ((2104, "usfarm"), (2104, "cashfarm"), (2106, "ushmds"), (2158, "secdefnj"))
    return [
        (2103, errors.text(2103, farm=farm)) if farm in broken else (ok, errors.text(ok, farm=farm))
        for ok, farm in start
    ]


# ------------------------------------------------------------------ market data
@dataclass(frozen=True)
class DataAnswer:
    """What a reqMktData gets: an error/warning (code, text) or none, and the market data type
    of the ticks that follow (None: no ticks)."""

    notice: Notice | None
    delivered: int | None


def market_data_answer(
    entitlement: Entitlement, requested: int, competing: bool, listing: str
) -> DataAnswer:
    """The answer to a market data request of type ``requested`` (1 live, 2 frozen, 3 delayed,
    4 delayed-frozen) for a contract listed as ``listing`` (e.g. "AAPL NASDAQ.NMS/TOP/ALL")."""
    delayed_wanted = requested in (3, 4)
    if entitlement is Entitlement.API_DELAYED:
        notice = (10089, errors.text(10089, listing=listing))
        return DataAnswer(notice, requested if delayed_wanted else None)
    if entitlement is Entitlement.LIVE:
        if competing:
            return DataAnswer((10197, errors.text(10197)), None)
        return DataAnswer(None, 2 if requested in (2, 4) else 1)
    if not delayed_wanted:
        detail = (
            "Delayed market data is available." + listing
            if entitlement is Entitlement.DELAYED
            else ""
        )
        return DataAnswer((354, errors.text(354, detail=detail)), None)
    if entitlement is Entitlement.DELAYED:
        return DataAnswer((10167, errors.text(10167)), requested)
    return DataAnswer((10168, errors.text(10168)), None)
