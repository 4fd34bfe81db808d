"""The risk gate's view of the market (risk_quotes.py), on its own with an injected quote source
and clock (no waiting, no gateway): whether a stop would trigger the moment it arrives (the
sentence the API's 422 ``stop_triggers_immediately`` and the preview's ``immediate_trigger``
show), and the quote cache (reused for less than ``QUOTE_TTL``, per contract)."""

from __future__ import annotations

import dataclasses

import pytest

from config import load_settings
from order_records import OrderIntent
from risk import QUOTE_TTL, RiskGate, RiskQuote

PAPER = ("DU1234567",)


class Clock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Quotes:
    """A quote source that records what it was asked, contract id included."""

    def __init__(self, answer: RiskQuote | tuple = (99.0, 101.0, 100.0)) -> None:
        self.answer: RiskQuote | tuple | Exception = answer
        self.calls: list[tuple[str, str, int]] = []

    def __call__(
        self, symbol: str, sec_type: str, con_id: int, currency: str = "USD"
    ) -> RiskQuote | tuple:
        self.calls.append((symbol, sec_type, con_id))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def make_gate(quotes: Quotes | None = None, clock: Clock | None = None) -> RiskGate:
    return RiskGate(
        load_settings(env={}, dotenv_path=None, overrides={}),
        quotes or Quotes(),
        lambda: 0,
        lambda: PAPER,
        monotonic=clock or Clock(),
    )


def stop(action: str, stop_price: float | None, **fields) -> OrderIntent:
    return OrderIntent(
        symbol=fields.pop("symbol", "AAPL"),
        action=action,
        quantity=1.0,
        order_type=fields.pop("order_type", "STP"),
        stop_price=stop_price,
        **fields,
    )


def trigger(quote: tuple, intent: OrderIntent) -> str | None:
    return make_gate(Quotes(quote)).immediate_trigger(intent)


# ------------------------------------------------------------------------ immediate trigger
def test_a_buy_stop_at_the_ask_triggers_and_a_cent_above_rests():
    quote = (99.0, 101.0, 100.0)
    assert trigger(quote, stop("BUY", 101.0)) == (
        "a BUY stop at 101 is at or below the market (ask 101): "
        "it triggers as soon as it arrives (then fills at market)"
    )
    assert trigger(quote, stop("BUY", 101.01)) is None


def test_the_message_shows_every_digit_of_the_prices():
    # an index future near 12,345: six significant digits would read 12345.8 for 12345.75
    assert trigger((12345.25, 12345.75, 12345.5), stop("BUY", 12345.5)) == (
        "a BUY stop at 12345.5 is at or below the market (ask 12345.75): "
        "it triggers as soon as it arrives (then fills at market)"
    )


def test_a_buy_stop_is_measured_from_the_ask_not_the_last_price():
    # below the ask, above the last trade: the ask is what a buy stop triggers on
    assert trigger((99.0, 101.0, 100.0), stop("BUY", 100.5)) == (
        "a BUY stop at 100.5 is at or below the market (ask 101): "
        "it triggers as soon as it arrives (then fills at market)"
    )
    # above the ask, below the last trade: rests
    assert trigger((99.0, 101.0, 102.0), stop("BUY", 101.5)) is None


def test_a_buy_stop_without_an_ask_uses_the_last_price():
    quote = (99.0, None, 100.0)
    assert trigger(quote, stop("BUY", 100.0)) == (
        "a BUY stop at 100 is at or below the market (last 100): "
        "it triggers as soon as it arrives (then fills at market)"
    )
    assert trigger(quote, stop("BUY", 100.01)) is None


def test_a_sell_stop_at_the_bid_triggers_and_a_cent_below_rests():
    quote = (99.0, 101.0, 100.0)
    assert trigger(quote, stop("SELL", 99.0)) == (
        "a SELL stop at 99 is at or above the market (bid 99): "
        "it triggers as soon as it arrives (then fills at market)"
    )
    assert trigger(quote, stop("SELL", 98.99)) is None


def test_a_sell_stop_is_measured_from_the_bid_not_the_last_price():
    # above the bid, below the last trade: the bid is what a sell stop triggers on
    assert trigger((99.0, 101.0, 100.0), stop("SELL", 99.5)) == (
        "a SELL stop at 99.5 is at or above the market (bid 99): "
        "it triggers as soon as it arrives (then fills at market)"
    )
    # below the bid, above the last trade: rests
    assert trigger((99.0, 101.0, 98.0), stop("SELL", 98.5)) is None


def test_a_sell_stop_without_a_bid_uses_the_last_price():
    quote = (None, 101.0, 100.0)
    assert trigger(quote, stop("SELL", 100.0)) == (
        "a SELL stop at 100 is at or above the market (last 100): "
        "it triggers as soon as it arrives (then fills at market)"
    )
    assert trigger(quote, stop("SELL", 99.99)) is None


def test_a_stop_limit_names_the_limit_order_it_becomes():
    buy = stop("BUY", 100.25, order_type="STP LMT", limit_price=100.75)
    assert trigger((99.0, 101.0, 100.0), buy) == (
        "a BUY stop at 100.25 is at or below the market (ask 101): "
        "it triggers as soon as it arrives (then a limit order at 100.75)"
    )
    sell = stop("SELL", 99.5, order_type="STP LMT", limit_price=99.25)
    assert trigger((99.0, 101.0, 100.0), sell) == (
        "a SELL stop at 99.5 is at or above the market (bid 99): "
        "it triggers as soon as it arrives (then a limit order at 99.25)"
    )
    assert trigger((99.0, 101.0, 100.0), dataclasses.replace(buy, stop_price=101.5)) is None


@pytest.mark.parametrize("action", ["BUY", "SELL"])
def test_no_price_at_all_says_nothing(action):
    # the risk gate's no_reference_price rule answers for such an order
    quote = RiskQuote(None, None, None, notice="no market data permissions")
    assert trigger(quote, stop(action, 100.0)) is None


@pytest.mark.parametrize(
    ("order_type", "fields"),
    [
        ("MKT", {}),
        ("LMT", {"limit_price": 150.0}),
        ("TRAIL", {"trailing_amount": 1.0}),
        ("STP", {}),  # a stop without a stop price: nothing to compare
        ("STP LMT", {"limit_price": 150.0}),
    ],
)
def test_only_stops_with_a_stop_price_are_checked(order_type, fields):
    quotes = Quotes((99.0, 101.0, 100.0))
    gate = make_gate(quotes)
    assert gate.immediate_trigger(stop("BUY", None, order_type=order_type, **fields)) is None
    assert gate.immediate_trigger(stop("SELL", None, order_type=order_type, **fields)) is None
    assert quotes.calls == []  # no market data asked for


def test_an_unknown_symbol_raises_to_the_caller():
    # the API's preview and refusal treat a LookupError as "no answer" (the order's own
    # checks name the unknown symbol); the gate does not swallow it
    quotes = Quotes()
    quotes.answer = LookupError("ZZZZ: no such contract")
    with pytest.raises(LookupError, match="ZZZZ"):
        make_gate(quotes).immediate_trigger(stop("BUY", 100.0, symbol="ZZZZ"))


# ----------------------------------------------------------------------------- quote cache
def test_the_quote_source_is_asked_for_the_contract_of_the_order():
    quotes = Quotes()
    gate = make_gate(quotes)
    option = stop("SELL", 5.0, symbol="SPY", sec_type="OPT", con_id=123456, multiplier=100.0)
    gate.immediate_trigger(option)
    assert quotes.calls == [("SPY", "OPT", 123456)]


def test_a_quote_is_reused_for_less_than_the_ttl_then_asked_again():
    quotes, clock = Quotes((99.0, 101.0, 100.0)), Clock()
    gate = make_gate(quotes, clock)
    assert gate.immediate_trigger(stop("BUY", 101.0)) is not None
    quotes.answer = (104.0, 106.0, 105.0)  # the market moves; the cached quote still says 101
    clock.now += QUOTE_TTL - 0.001
    assert "(ask 101)" in (gate.immediate_trigger(stop("BUY", 101.0)) or "")
    assert len(quotes.calls) == 1
    clock.now += 0.001  # exactly the TTL: asked again
    assert "(ask 106)" in (gate.immediate_trigger(stop("BUY", 106.0)) or "")
    assert len(quotes.calls) == 2


def test_the_trigger_check_and_the_risk_check_share_one_quote():
    # a preview asks both: one market data request, and both judge the same prices
    quotes = Quotes((99.0, 101.0, 100.0))
    gate = make_gate(quotes)
    gate.immediate_trigger(stop("BUY", 102.0))
    assert gate.check(stop("BUY", 102.0)).reference_price == 102.0
    assert len(quotes.calls) == 1


def test_the_cache_is_per_contract():
    quotes = Quotes()
    gate = make_gate(quotes)
    call = stop("SELL", 5.0, symbol="SPY", sec_type="OPT", con_id=111)
    put = dataclasses.replace(call, con_id=222)  # another option of the same symbol
    stock = stop("SELL", 5.0, symbol="SPY")
    for intent in (call, put, stock, call, put, stock):
        gate.immediate_trigger(intent)
    assert quotes.calls == [("SPY", "OPT", 111), ("SPY", "OPT", 222), ("SPY", "STK", 0)]


def test_the_cache_keeps_each_contracts_own_prices():
    quotes = Quotes((4.9, 5.1, 5.0))
    gate = make_gate(quotes)
    call = stop("BUY", 5.1, symbol="SPY", sec_type="OPT", con_id=111)
    assert "(ask 5.1)" in (gate.immediate_trigger(call) or "")
    quotes.answer = (1.9, 2.1, 2.0)
    put = dataclasses.replace(call, con_id=222, stop_price=2.1)
    assert "(ask 2.1)" in (gate.immediate_trigger(put) or "")
    assert "(ask 5.1)" in (gate.immediate_trigger(call) or "")


def test_a_failed_answer_is_not_cached():
    quotes = Quotes()
    quotes.answer = TimeoutError("no quote in time")
    gate = make_gate(quotes)
    with pytest.raises(TimeoutError):
        gate.immediate_trigger(stop("BUY", 101.0))
    quotes.answer = (99.0, 101.0, 100.0)  # at once, well within the TTL: asked again
    assert "(ask 101)" in (gate.immediate_trigger(stop("BUY", 101.0)) or "")
    assert len(quotes.calls) == 2


def test_a_quote_with_its_reasons_is_kept_whole():
    # a RiskQuote (delayed, IB's notice) is passed through as it is; a plain tuple is prices
    delayed = RiskQuote(99.0, 101.0, 100.0, delayed=True, notice="delayed 15 minutes")
    gate = make_gate(Quotes(delayed))
    assert "(ask 101)" in (gate.immediate_trigger(stop("BUY", 101.0)) or "")
    assert gate.check(stop("BUY", 101.0)).figures["quote_delayed"] is True
    gate = make_gate(Quotes((99.0, 101.0, 100.0)))
    assert gate.check(stop("BUY", 101.0)).figures["quote_delayed"] is False
