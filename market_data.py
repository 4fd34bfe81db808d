"""Market data types and IB's entitlement messages, in words a trader can act on.

The read connection asks for market data type 3 by default (``MARKET_DATA_TYPE``): IB answers
live data where the account is subscribed and delayed data (~15 minutes, tick ids 66..76, a
10167 warning) where it is not, so the dashboard falls back by itself. Each quote says which
type it carries and, when it carries no price, the message IB gave (354, 10168, 10197...).
"""

from __future__ import annotations

import math

from ib_async import Ticker

TYPE_NAMES = {1: "live", 2: "frozen", 3: "delayed", 4: "delayed-frozen"}
DELAYED_TYPES = frozenset({3, 4})
# code -> what it means for the trader and what to do
NO_DATA_CODES: dict[int, str] = {
    354: "IB error 354: this account has no live market-data subscription for {symbol}. "
    "Subscribe in IB's Client Portal (paper accounts share the live account's "
    "subscriptions) or set MARKET_DATA_TYPE=3 to use free delayed data.",
    10168: "IB error 10168: no market-data subscription for {symbol} and delayed data is not "
    "enabled. Subscribe in IB's Client Portal, or enable delayed data (TWS/Gateway: "
    "Global Configuration > API > Settings).",
    10197: "IB error 10197: competing live session — the same IB user is logged in elsewhere "
    "(TWS, the phone app, Client Portal) with live data. Log out of the other session.",
    10089: "IB error 10089: {symbol} needs an additional market-data subscription.",
    10186: "IB error 10186: market data for {symbol} is not subscribed (requested type not "
    "available).",
}
NOTICE_CODES = frozenset(NO_DATA_CODES) | {10167}
# 10089 ends "Delayed market data is available.": on a request for delayed data (type 3/4) it
# is an advisory like 10167 and the delayed ticks follow it (rust-ibapi #677); on a live-only
# request nothing follows
DELAYED_ADVISORIES = frozenset({10089})


def no_data(code: int, requested_type: int) -> bool:
    """Whether IB's message ``code`` on a request of market data type ``requested_type``
    means that no price follows."""
    if code in DELAYED_ADVISORIES and requested_type in DELAYED_TYPES:
        return False
    return code in NO_DATA_CODES


def type_name(market_data_type: int) -> str:
    return TYPE_NAMES.get(market_data_type, f"type {market_data_type}")


def reset_ticker(ticker: Ticker | None) -> None:
    """ib_async keeps one Ticker per contract and reuses it for every snapshot: clear the
    prices so that a snapshot that gets none (10197, an outage) does not show the last ones."""
    if ticker is None:
        return
    for name in ("bid", "ask", "last", "close", "bidSize", "askSize", "lastSize"):
        setattr(ticker, name, math.nan)
    ticker.marketDataType = 1


def explain(
    codes: list[tuple[int, str]], symbol: str, requested_type: int
) -> tuple[int | None, str | None]:
    """The code and the sentence of the most telling no-data message among ``codes`` (IB's
    answers to a request of market data type ``requested_type``)."""
    for code, text in codes:
        if no_data(code, requested_type):
            return code, NO_DATA_CODES[code].format(symbol=symbol) + f" (IB: {text.strip()})"
    return None, None


class Entitlements:
    """Which market data the account's prices are (live, delayed...), learned from every quote
    that carried a price, per contract and for the account as a whole. IB prices the portfolio
    (updatePortfolio: the positions' market price and value) from the same data as the
    account's quotes, so a position is labelled with what its contract's last quote was; None
    until one has said (another contract's says nothing of it: an account may have live US
    stocks and delayed European ones, or free live FX and no stock data)."""

    def __init__(self) -> None:
        self._by_con: dict[int, str] = {}

    def learn(self, con_id: int, kind: str) -> bool:
        """Record a priced quote's type; True when that changes what a position would say."""
        changed = self._by_con.get(con_id) != kind
        self._by_con[con_id] = kind
        return changed

    def of(self, con_id: int) -> str | None:
        return self._by_con.get(con_id)

    def clear(self) -> None:
        self._by_con.clear()
