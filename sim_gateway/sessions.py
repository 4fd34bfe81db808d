"""Trading sessions of the simulated gateway: when each kind of contract trades.

Pure functions of a contract and an epoch time. Four weekly schedules, in the exchange's zone:

* US stocks (``STK``): regular hours (IB's ``liquidHours``) 09:30-16:00 US/Eastern, extended
  hours (``tradingHours``) 04:00-20:00, Monday to Friday;
* FX (``CASH``, IDEALPRO): Sunday 17:15 to Friday 17:00 US/Eastern, one session a day from
  17:15 to 17:00 the next day (liquid and trading hours are the same);
* US equity options (``OPT``): 09:30-16:00 US/Eastern only, Monday to Friday (no extended hours:
  an outsideRth option order waits for the open, as at IB);
* futures (``FUT``, CME Globex style): trading hours Sunday to Thursday 17:00 to 16:00 the next
  day, regular (liquid) hours 08:30-16:00 Monday to Friday, US/Central, as IB's contract details
  of ES give them (rust-ibapi's recorded ``10|9000|ES|FUT|...``: ``20250521:1700-20250522:1600``,
  ``20250522:0830-20250522:1600``). Like a stock's, a futures order without outsideRth works in
  the regular hours only (rust-ibapi #373: a bracket's legs on ES/MNQ did not work overnight
  until they carried outsideRth; ib_insync users: a GC stop triggered at 07:00 CT with it).

Exchange holidays are not modelled. The text format is IB's contractDetails one, e.g.
``20250324:0400-20250324:2000;20250325:0400-...`` with ``20250329:CLOSED`` for a day without a
session (recorded paper-TWS contract details in wboayue/rust-ibapi ``src/transport/sync_tests.rs``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from .types import Contract

DAYS_LISTED = 7  # days of sessions a contractDetails answer lists, from today
SEARCH_DAYS = 10  # how far ahead the next session is looked for (covers any weekend)


@dataclass(frozen=True)
class Weekly:
    """One session a day on ``weekdays`` (Monday = 0), from ``start`` to ``end`` (next day if
    ``overnight``), in the IB time zone ``zone``."""

    zone: str
    weekdays: frozenset[int]
    start: time
    end: time
    overnight: bool = False


@dataclass(frozen=True)
class Schedule:
    """Regular (liquid) and extended (trading) hours of one kind of contract."""

    liquid: Weekly
    trading: Weekly

    @property
    def zone(self) -> str:
        return self.liquid.zone


_WEEKDAYS = frozenset(range(5))
US_STOCKS = Schedule(
    liquid=Weekly("US/Eastern", _WEEKDAYS, time(9, 30), time(16, 0)),
    trading=Weekly("US/Eastern", _WEEKDAYS, time(4, 0), time(20, 0)),
)
_OPTION_DAYS = Weekly("US/Eastern", _WEEKDAYS, time(9, 30), time(16, 0))
US_OPTIONS = Schedule(liquid=_OPTION_DAYS, trading=_OPTION_DAYS)
_FX_DAYS = Weekly(
    "US/Eastern", frozenset({6, 0, 1, 2, 3}), time(17, 15), time(17, 0), overnight=True
)
FX = Schedule(liquid=_FX_DAYS, trading=_FX_DAYS)
_GLOBEX = Weekly("US/Central", frozenset({6, 0, 1, 2, 3}), time(17, 0), time(16, 0), overnight=True)
FUTURES = Schedule(
    liquid=Weekly("US/Central", _WEEKDAYS, time(8, 30), time(16, 0)), trading=_GLOBEX
)
_BY_SEC_TYPE = {"CASH": FX, "FUT": FUTURES, "OPT": US_OPTIONS}
IB_ZONES = {"US/Eastern": "America/New_York", "US/Central": "America/Chicago"}


def schedule_of(contract: Contract) -> Schedule:
    """The weekly schedule of a contract (US stock hours unless its secType has its own)."""
    return _BY_SEC_TYPE.get(contract.sec_type, US_STOCKS)


def zone_info(ib_zone: str) -> ZoneInfo:
    return ZoneInfo(IB_ZONES.get(ib_zone, ib_zone))


@lru_cache(maxsize=4096)
def _day_session(weekly: Weekly, day: date) -> tuple[float, float] | None:
    """(start, end) epoch of the session that starts on ``day``, or None."""
    if day.weekday() not in weekly.weekdays:
        return None
    zone = zone_info(weekly.zone)
    start = datetime.combine(day, weekly.start, zone)
    end_day = day + timedelta(days=1) if weekly.overnight else day
    return start.timestamp(), datetime.combine(end_day, weekly.end, zone).timestamp()


def _local_day(weekly: Weekly, now: float) -> date:
    return datetime.fromtimestamp(now, zone_info(weekly.zone)).date()


def current_or_next(weekly: Weekly, now: float) -> tuple[float, float] | None:
    """The session containing ``now``, else the next one; None if none within SEARCH_DAYS."""
    first = _local_day(weekly, now) - timedelta(
        days=1
    )  # an overnight session may have begun yesterday
    for offset in range(SEARCH_DAYS + 1):
        session = _day_session(weekly, first + timedelta(days=offset))
        if session is not None and now < session[1]:
            return session
    return None


def weekly_for(contract: Contract, outside_rth: bool) -> Weekly:
    """The hours an order works in: extended with outsideRth, regular without."""
    schedule = schedule_of(contract)
    return schedule.trading if outside_rth else schedule.liquid


def opens_at(contract: Contract, now: float, outside_rth: bool) -> float | None:
    """When an order may next work: ``now`` while its session is open, else the next open."""
    session = current_or_next(weekly_for(contract, outside_rth), now)
    return None if session is None else max(now, session[0])


def closes_at(contract: Contract, now: float, outside_rth: bool) -> float | None:
    """End of the session an order placed at ``now`` works in (the current or the next one)."""
    session = current_or_next(weekly_for(contract, outside_rth), now)
    return None if session is None else session[1]


def is_open(contract: Contract, now: float, outside_rth: bool) -> bool:
    """Whether an order may work at ``now``."""
    session = current_or_next(weekly_for(contract, outside_rth), now)
    return session is not None and session[0] <= now


def _stamp(epoch: float, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(epoch, zone).strftime("%Y%m%d:%H%M")


def hours_text(weekly: Weekly, now: float, days: int = DAYS_LISTED) -> str:
    """IB's tradingHours/liquidHours text for ``days`` days from today (closed days listed)."""
    zone = zone_info(weekly.zone)
    today = _local_day(weekly, now)
    parts = []
    for offset in range(days):
        day = today + timedelta(days=offset)
        session = _day_session(weekly, day)
        if session is None:
            parts.append(f"{day:%Y%m%d}:CLOSED")
        else:
            parts.append(f"{_stamp(session[0], zone)}-{_stamp(session[1], zone)}")
    return ";".join(parts)


@dataclass(frozen=True)
class ContractHours:
    """The three contractDetails fields about hours."""

    time_zone_id: str
    trading_hours: str
    liquid_hours: str


def contract_hours(contract: Contract, now: float) -> ContractHours:
    """timeZoneId, tradingHours and liquidHours of a contract as of ``now``."""
    schedule = schedule_of(contract)
    return ContractHours(
        schedule.zone, hours_text(schedule.trading, now), hours_text(schedule.liquid, now)
    )


def held_until_text(contract: Contract, at: float) -> str:
    """IB's "2026-12-01 09:30:00 US/Eastern" (the time in warning 399)."""
    zone_name = schedule_of(contract).zone
    return (
        datetime.fromtimestamp(at, zone_info(zone_name)).strftime("%Y-%m-%d %H:%M:%S ") + zone_name
    )


def demo_clock_start(now: float) -> float | None:
    """Where a demo's simulated clock starts so US stocks trade: None (real time) while they do,
    else 10:00 New York time of the latest weekday before ``now`` (six hours of open market)."""
    probe = Contract(con_id=0, symbol="")
    if is_open(probe, now, False):
        return None
    zone = zone_info(US_STOCKS.liquid.zone)
    day = datetime.fromtimestamp(now, zone).date()
    for offset in range(SEARCH_DAYS):
        candidate = datetime.combine(day - timedelta(days=offset), time(10, 0), zone).timestamp()
        if candidate <= now and is_open(probe, candidate, False):
            return candidate
    return None
