"""The risk gate's view of the market: the quote it prices an order with (asked through the
gate's quote source, reused for ``QUOTE_TTL``), and whether a stop would trigger the moment it
arrives. A base of ``risk.RiskGate``; ``RiskQuote`` and ``QUOTE_TTL`` are re-exported by ``risk``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from order_records import OrderIntent

QUOTE_TTL = 1.0  # seconds a quote is reused for risk checks


def num_text(value: float) -> str:
    """A quantity or price as a refusal shows it: every digit (to 12 decimal places), no
    exponent and no trailing zeros (``:g`` keeps six significant digits: 12345.75 read 12345.8
    and a million FX units 1e+06)."""
    return f"{value:.12f}".rstrip("0").rstrip(".")


@dataclass(frozen=True)
class RiskQuote:
    """What the gate knows of the market: prices, whether they are delayed, and IB's reason
    when there are none (e.g. 354 / 10168 / 10197, in words)."""

    bid: float | None
    ask: float | None
    last: float | None
    delayed: bool = False
    notice: str | None = None


# (symbol, secType, conId: a derivative the broker resolved, else 0) -> prices
QuoteSource = Callable[
    [str, str, int], "RiskQuote | tuple[float | None, float | None, float | None]"
]


class RiskQuotes:
    """The gate's quotes (cached per contract) and the stop-trigger check built on them."""

    _monotonic: Callable[[], float]
    _quotes: QuoteSource
    _quote_cache: dict[tuple[str, str, int], tuple[float, RiskQuote]]

    def immediate_trigger(self, intent: OrderIntent) -> str | None:
        """Why a stop (STP, STP LMT) would trigger the moment it arrives: the market is
        already past its stop price. None when it would rest, or when no quote says."""
        if intent.order_type not in ("STP", "STP LMT") or intent.stop_price is None:
            return None
        quote = self._quote(intent)
        stop = intent.stop_price
        if intent.action == "BUY":
            market, name = quote.ask or quote.last, "ask" if quote.ask else "last"
            passed = market is not None and market >= stop
            where = "at or below"
        else:
            market, name = quote.bid or quote.last, "bid" if quote.bid else "last"
            passed = market is not None and market <= stop
            where = "at or above"
        if not passed or market is None:  # (passed implies a market price)
            return None
        then = (
            "then a limit order at " + f"{num_text(intent.limit_price)}"
            if intent.order_type == "STP LMT" and intent.limit_price
            else "then fills at market"
        )
        return (
            f"a {intent.action} stop at {num_text(stop)} is {where} the market ({name} {num_text(market)}): "
            f"it triggers as soon as it arrives ({then})"
        )

    def _quote(self, intent: OrderIntent) -> RiskQuote:
        key = (intent.symbol, intent.sec_type, intent.con_id)
        cached = self._quote_cache.get(key)
        if cached is not None and self._monotonic() - cached[0] < QUOTE_TTL:
            return cached[1]
        answer = self._quotes(intent.symbol, intent.sec_type, intent.con_id)
        quote = answer if isinstance(answer, RiskQuote) else RiskQuote(*answer)
        self._quote_cache[key] = (self._monotonic(), quote)
        return quote


def exits_at_once(intent: OrderIntent, quote: RiskQuote) -> str | None:
    """Why a bracket would exit the moment its entry fills: an entry that fills now (at
    market, trailing, or a limit the market has reached) whose take profit or stop loss is
    already past the quote its exit meets (a BUY's exits sell at the bid). None otherwise: a
    resting limit's or a stop entry's legs are checked against its price by the schema
    (``schemas.SIDE_RULES``)."""
    if intent.stop_price or not intent.is_bracket:
        return None
    buy, limit = intent.action == "BUY", intent.limit_price
    name, market = ("bid", quote.bid) if buy else ("ask", quote.ask)
    if market is None:
        name, market = "last", quote.last
    sign = 1 if buy else -1
    if market is None or (limit is not None and (limit - market) * sign < 0):
        return None  # no price at all (no_reference_price refuses it), or a resting limit
    then = f"the {name} {num_text(market)}: it would {{}} as soon as the entry fills"
    tp, sl = intent.take_profit, intent.stop_loss
    if tp is not None and (tp - market) * sign <= 0:
        where = "at or below" if buy else "at or above"
        return f"take_profit {num_text(tp)} is {where} " + then.format("sell" if buy else "buy")
    if sl is not None and (market - sl) * sign <= 0:
        where = "at or above" if buy else "at or below"
        return f"stop_loss {num_text(sl)} is {where} " + then.format("trigger")
    return None
