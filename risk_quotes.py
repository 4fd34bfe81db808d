"""The risk gate's view of the market: the quote it prices an order with (asked through the
gate's quote source for the listing the order trades, reused for ``QUOTE_TTL``), the FX rate
that turns the order's currency into the account's base currency (the limits' currency), and
whether a stop would trigger the moment it arrives. A base of ``risk.RiskGate``; ``RiskQuote``
and ``QUOTE_TTL`` are re-exported by ``risk``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from order_records import OrderIntent
from schemas import price_tick

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


# (symbol, secType, conId: a derivative the broker resolved, else 0, currency) -> prices
QuoteSource = Callable[
    [str, str, int, str], "RiskQuote | tuple[float | None, float | None, float | None]"
]
QuoteKey = tuple[str, str, str, int]  # (symbol, secType, currency, conId)
# IB's IDEALPRO pairs put these before USD (EUR.USD); the other currencies after (USD.JPY)
_QUOTED_BEFORE_USD = ("EUR", "GBP", "AUD", "NZD")


def price_currency(intent: OrderIntent) -> str:
    """The currency the order's prices (and so its notional) are in: an FX pair's quote
    currency (JPY for EUR.JPY), else the listing's currency."""
    if intent.sec_type == "CASH":
        return pair_currencies(intent.symbol)[1]
    return intent.currency


def pair_currencies(symbol: str) -> tuple[str, str]:
    """An FX pair's base and quote currencies (EUR.JPY: EUR, JPY; with or without the dot)."""
    pair = symbol.replace(".", "")
    return pair[:3], pair[3:]


def fx_pairs(currency: str, base: str) -> tuple[tuple[str, bool], ...]:
    """The FX pairs that give the rate of ``currency`` in ``base``, IB's usual one first, each
    with whether its price must be inverted (JPY in USD: 1 / USD.JPY)."""
    rank = {c: i for i, c in enumerate((*_QUOTED_BEFORE_USD, "USD"))}
    direct, inverse = (f"{currency}.{base}", False), (f"{base}.{currency}", True)
    usual = rank.get(currency, len(rank)) <= rank.get(base, len(rank))
    return (direct, inverse) if usual else (inverse, direct)


def _mid(quote: RiskQuote) -> float | None:
    """The middle of the quote (the last price without a bid and an ask); None without one."""
    if quote.bid and quote.ask and quote.bid > 0 and quote.ask > 0:
        return (quote.bid + quote.ask) / 2
    return quote.last if quote.last and quote.last > 0 else None


@dataclass(frozen=True)
class Valuation:
    """An order's notional in the account's base currency (the limits' currency), the rate
    that converted it, or why it cannot be valued (no rate: the order is refused)."""

    notional: float | None
    currency: str
    fx_rate: float | None
    problem: str | None = None


class RiskQuotes:
    """The gate's quotes (cached per contract), the FX rates that value an order in the
    account's base currency and the stop-trigger check built on them."""

    _base_currency: Callable[[], str]
    _monotonic: Callable[[], float]
    _quotes: QuoteSource
    _quote_cache: dict[QuoteKey, tuple[float, RiskQuote]]

    def immediate_trigger(self, intent: OrderIntent) -> str | None:
        """Why a stop (STP, STP LMT) would trigger the moment it arrives: the market is
        already past its stop price. None when it would rest, or when no quote says."""
        if intent.order_type not in ("STP", "STP LMT") or intent.stop_price is None:
            return None
        stop = intent.stop_price
        market, name = stop_passed(intent, self._quote(intent))
        if market is None:
            return None
        where = "at or below" if intent.action == "BUY" else "at or above"
        then = (
            "then a limit order at " + f"{num_text(intent.limit_price)}"
            if intent.order_type == "STP LMT" and intent.limit_price
            else "then fills at market"
        )
        return (
            f"a {intent.action} stop at {num_text(stop)} is {where} the market ({name} {num_text(market)}): "
            f"it triggers as soon as it arrives ({then})"
        )

    def value(self, intent: OrderIntent, notional: float | None) -> Valuation:
        """``notional`` (in the order's currency) in the account's base currency."""
        base = self._base_currency()
        if intent.sec_type == "CASH" and pair_currencies(intent.symbol)[0] == base:
            return Valuation(intent.quantity, base, 1.0)  # USD.JPY: the quantity is dollars
        if notional is None:
            return Valuation(None, base, 1.0)
        currency = price_currency(intent)
        rate, why = self.fx_rate(currency, base)
        if rate is None:
            problem = (
                f"the order is priced in {currency} and the limits are in {base}, but {why}; "
                "it cannot be valued"
            )
            return Valuation(None, base, None, problem)
        return Valuation(notional * rate, base, rate)

    def fx_rate(self, currency: str, base: str) -> tuple[float | None, str]:
        """How many ``base`` one ``currency`` is worth (the mid of the FX pair), and the pair
        asked, or why there is none (no pair known, no price: IB's reason); 1 for ``base``."""
        if currency == base:
            return 1.0, ""
        why = f"no FX pair converts {currency} into {base}"
        for pair, inverted in fx_pairs(currency, base):
            try:
                quote = self._cached((pair, "CASH", pair[4:], 0))
            except LookupError:
                continue
            mid = _mid(quote)
            if mid is not None:
                return (1 / mid if inverted else mid), pair
            return None, f"no price for {pair}" + (f": {quote.notice}" if quote.notice else "")
        return None, why

    def _quote(self, intent: OrderIntent) -> RiskQuote:
        return self._cached((intent.symbol, intent.sec_type, intent.currency, intent.con_id))

    def _cached(self, key: QuoteKey) -> RiskQuote:
        cached = self._quote_cache.get(key)
        if cached is not None and self._monotonic() - cached[0] < QUOTE_TTL:
            return cached[1]
        symbol, sec_type, currency, con_id = key
        answer = self._quotes(symbol, sec_type, con_id, currency)
        quote = answer if isinstance(answer, RiskQuote) else RiskQuote(*answer)
        self._quote_cache[key] = (self._monotonic(), quote)
        return quote


def stop_passed(intent: OrderIntent, quote: RiskQuote) -> tuple[float | None, str]:
    """The price (and its name) past a stop order's stop, so that it triggers on arrival: a
    BUY's ask (else last) at or above it, a SELL's bid (else last) at or below it; None when
    it would rest, or no price says."""
    stop = intent.stop_price
    if stop is None:
        return None, ""
    if intent.action == "BUY":
        market, name = quote.ask or quote.last, "ask" if quote.ask else "last"
        return (market, name) if market is not None and market >= stop else (None, "")
    market, name = quote.bid or quote.last, "bid" if quote.bid else "last"
    return (market, name) if market is not None and market <= stop else (None, "")


def exits_at_once(intent: OrderIntent, quote: RiskQuote) -> str | None:
    """Why a bracket would exit the moment its entry fills: an entry that fills now (at
    market, trailing, a limit the market has reached, or a stop it has passed) whose take
    profit or stop loss is already past the quote its exit meets (a BUY's exits sell at the
    bid). None otherwise: a resting limit's or stop's legs are checked against its price by
    the schema (``schemas.SIDE_RULES``)."""
    if not intent.is_bracket:
        return None
    if intent.stop_price is not None and stop_passed(intent, quote)[0] is None:
        return None  # a stop entry that rests until the market comes to it
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


def spread_allowance(quote: RiskQuote, intent: OrderIntent, mid: float) -> float:
    """How far from the mid a price may always be: half the spread and a tick of the
    instrument (a cheap option quoted 0.01 / 0.02 is 33 % from its mid at either side), or a
    tick from the one side quoted; 0 without a bid or an ask."""
    tick = price_tick(intent.sec_type, intent.symbol, mid)
    if quote.bid and quote.ask:
        return max(quote.ask - quote.bid, 0.0) / 2 + tick
    return tick if quote.bid or quote.ask else 0.0
