"""The risk gate on its own: every limit at its boundary, counters over many orders, across a
restart and across UTC midnight, the quote cache and the per-minute window, with injected clocks
(no waiting). The gate's wiring into the app is tests/test_risk.py."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime

import pytest

from config import load_settings
from journal import Journal
from order_records import Lifecycle, OrderIntent
from rate_window import SlidingWindow
from risk import QUOTE_TTL, RiskDecision, RiskGate, RiskQuote, RiskRejected

PAPER = ("DU1234567",)
# 2026-03-02 23:59:00 UTC: one minute before a UTC day boundary
BEFORE_MIDNIGHT = datetime(2026, 3, 2, 23, 59, tzinfo=UTC).timestamp()


class Clocks:
    """A wall clock and a monotonic clock that move only when told."""

    def __init__(self, wall: float = BEFORE_MIDNIGHT - 3600, mono: float = 1000.0) -> None:
        self.now, self.mono = wall, mono

    def wall(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.mono += seconds


class Quotes:
    """A quote source that counts its calls."""

    def __init__(self, answer: RiskQuote | tuple = (99.0, 101.0, 100.0)) -> None:
        self.answer = answer
        self.calls: list[tuple[str, str]] = []

    def __call__(
        self, symbol: str, sec_type: str, con_id: int = 0, currency: str = "USD"
    ) -> RiskQuote | tuple:
        self.calls.append((symbol, sec_type))
        return self.answer


def journaled(order_id: str, at: float) -> Lifecycle:
    return Lifecycle(
        id=order_id, intent=buy(), source="api", created_at=at, phase="queued", updated_at=at
    )


def settings(**limits):
    return load_settings(env={}, dotenv_path=None, overrides=limits)


def make_gate(
    clocks=None, quotes=None, open_orders=0, accounts=PAPER, notional_today=0.0, **limits
):
    clocks = clocks or Clocks()
    return RiskGate(
        settings(**limits),
        quotes or Quotes(),
        lambda: open_orders,
        lambda: accounts,
        notional_today,
        wall=clocks.wall,
        monotonic=clocks.monotonic,
    )


def buy(quantity=1.0, **fields):
    return OrderIntent(
        symbol="AAPL",
        action="BUY",
        quantity=quantity,
        order_type=fields.pop("order_type", "MKT"),
        **fields,
    )


def rule_of(gate, intent, *, reserve=True):
    with pytest.raises(RiskRejected) as caught:
        (gate.reserve if reserve else gate.check)(intent)
    return caught.value.decision


# ----------------------------------------------------------------------- per-order limits
def test_quantity_at_the_limit_passes_and_one_more_is_refused():
    gate = make_gate(risk_max_quantity=10)
    assert gate.reserve(buy(10)).accepted
    decision = rule_of(gate, buy(10.5))
    assert decision.rule == "max_quantity" and decision.accepted is False
    assert decision.message == (
        "max_quantity: quantity 10.5 exceeds the limit of 10 shares for stocks"
    )


def test_notional_at_the_limit_passes_and_a_cent_more_is_refused():
    gate = make_gate(risk_max_notional=1010)  # 10 x ask 101
    assert gate.reserve(buy(10)).notional == 1010
    decision = rule_of(gate, buy(1, order_type="LMT", limit_price=1010.01))
    assert decision.rule == "price_collar"  # the collar looks first ...
    gate = make_gate(risk_max_notional=1010, risk_price_collar_pct=99)
    decision = rule_of(gate, buy(10, order_type="LMT", limit_price=101.01))
    assert decision.rule == "max_notional"  # ... then the order's own notional
    assert decision.message == "max_notional: notional 1,010.10 exceeds the limit of 1,010.00"


def test_price_collar_boundary_is_inclusive_and_uses_the_mid():
    # mid 100 (bid 99, ask 101): 5 % away is allowed under a 5 % collar, 5.01 % is not
    gate = make_gate(risk_price_collar_pct=5)
    assert gate.reserve(buy(1, order_type="LMT", limit_price=105.0)).accepted
    assert gate.reserve(buy(1, order_type="LMT", limit_price=95.0)).accepted
    decision = rule_of(gate, buy(1, order_type="LMT", limit_price=105.01))
    assert decision.rule == "price_collar"
    assert decision.message == ("price_collar: price 105.01 is 5.0% from the quote 100 (collar 5%)")
    stop = rule_of(gate, buy(1, order_type="STP", stop_price=94.99))
    assert stop.rule == "price_collar"
    assert stop.figures["quote_mid"] == 100.0 and stop.reference_price == 94.99


def test_market_orders_skip_the_collar_and_are_valued_at_the_far_side():
    gate = make_gate(risk_price_collar_pct=1)
    bought = gate.reserve(buy(2))
    assert bought.reference_price == 101.0 and bought.notional == 202.0
    sold = gate.reserve(dataclasses.replace(buy(2), action="SELL"))
    assert sold.reference_price == 99.0 and sold.notional == 198.0


def test_with_one_side_quoted_the_collar_is_measured_from_it_not_the_last_price():
    """An option nobody bids for (ask 0.05) whose last trade, or the close standing in for it,
    was 2.00: measured from that, a buy at the ask was refused and one at 1.90 (38 x the ask,
    sweeping the offers) accepted."""
    only_ask = Quotes((None, 0.05, 2.0))
    gate = make_gate(quotes=only_ask, risk_price_collar_pct=10, risk_opt_max_notional=1e6)
    at_ask = gate.reserve(option(1, order_type="LMT", limit_price=0.05))
    assert at_ask.accepted and at_ask.figures["quote_mid"] == 0.05
    assert gate.reserve(option(1, order_type="LMT", limit_price=0.06)).accepted  # a tick beyond
    far = rule_of(gate, option(1, order_type="LMT", limit_price=1.9))
    assert far.rule == "price_collar" and "from the quote 0.05" in far.message
    sell = dataclasses.replace(buy(1), action="SELL")
    assert gate.reserve(sell).reference_price == 2.0  # a market sell with no bid: the last
    no_ask = Quotes((99.0, None, 98.0))
    gate = make_gate(quotes=no_ask)
    assert gate.reserve(buy(1)).reference_price == 98.0
    assert gate.reserve(buy(1, order_type="LMT", limit_price=98.5)).figures["quote_mid"] == 99
    no_quote = make_gate(quotes=Quotes((None, None, 100.0)), risk_price_collar_pct=5)
    assert no_quote.reserve(buy(1, order_type="LMT", limit_price=104.0)).figures["quote_mid"] == 100


def test_a_cheap_options_touch_passes_the_collar_and_a_cent_beyond_it():
    """Quoted 0.01 / 0.02, its mid is 0.015: every price on the grid is 33 % from it or more,
    so a 10 % collar refused every limit order and only a market order went through."""
    gate = make_gate(quotes=Quotes((0.01, 0.02, 0.015)), risk_price_collar_pct=10)
    # (a stock under $1 is on a 0.0001 grid: its allowance is that tick, not a cent)
    for price in (0.01, 0.02, 0.03):
        assert gate.reserve(option(1, order_type="LMT", limit_price=price)).accepted, price
    sell = dataclasses.replace(option(1, order_type="LMT", limit_price=0.01), action="SELL")
    assert gate.reserve(sell).accepted
    decision = rule_of(gate, option(1, order_type="LMT", limit_price=0.04))
    assert decision.message == (
        "price_collar: price 0.04 is 166.7% from the quote 0.015 "
        "(collar 10%, or 0.015 across the spread)"
    )


def test_the_collar_is_measured_from_the_mid_not_the_last_price():
    gate = make_gate(quotes=Quotes((99.0, 101.0, 104.0)), risk_price_collar_pct=5)
    assert gate.reserve(buy(1, order_type="LMT", limit_price=95.0)).figures["quote_mid"] == 100
    assert rule_of(gate, buy(1, order_type="LMT", limit_price=105.5)).rule == "price_collar"


def test_delayed_quotes_use_their_own_collar():
    delayed = Quotes(RiskQuote(99.0, 101.0, 100.0, delayed=True))
    gate = make_gate(quotes=delayed, risk_price_collar_pct=10, risk_delayed_collar_pct=2)
    assert gate.reserve(buy(1, order_type="LMT", limit_price=102.0)).accepted
    decision = rule_of(gate, buy(1, order_type="LMT", limit_price=103.0))
    assert decision.message == (
        "price_collar: price 103 is 3.0% from the delayed quote 100 (delayed-data collar 2%)"
    )
    assert decision.figures["quote_delayed"] is True
    # without a delayed collar the normal one applies to delayed quotes too
    gate = make_gate(quotes=delayed, risk_price_collar_pct=10)
    assert gate.reserve(buy(1, order_type="LMT", limit_price=109.0)).accepted
    # and the delayed collar never loosens a live quote
    live = make_gate(risk_price_collar_pct=2, risk_delayed_collar_pct=10)
    assert rule_of(live, buy(1, order_type="LMT", limit_price=103.0)).rule == "price_collar"


def test_missing_quotes_name_ibs_reason():
    silent = Quotes(RiskQuote(None, None, None, notice="IB 354: not subscribed"))
    gate = make_gate(quotes=silent)
    market = rule_of(gate, buy(1))
    assert market.rule == "no_reference_price"
    assert market.message == (
        "no_reference_price: no quote for AAPL to value the order: IB 354: not subscribed"
    )
    limit = rule_of(gate, buy(1, order_type="LMT", limit_price=100.0))
    assert limit.message == (
        "price_collar: no quote for AAPL to check the 10% price collar: IB 354: not subscribed"
    )
    quiet = make_gate(quotes=Quotes((None, None, None)))
    assert (
        rule_of(quiet, buy(1)).message == "no_reference_price: no quote for AAPL to value the order"
    )


def test_symbol_lists():
    assert rule_of(make_gate(risk_symbol_denylist="TSLA,AAPL"), buy()).message == (
        "symbol_not_allowed: AAPL is on the deny list"
    )
    assert rule_of(make_gate(risk_symbol_allowlist="MSFT,IBM"), buy()).message == (
        "symbol_not_allowed: AAPL is not on the allow list (IBM, MSFT)"
    )
    assert make_gate(risk_symbol_allowlist="MSFT,AAPL").reserve(buy()).accepted
    assert make_gate(risk_symbol_denylist="TSLA").reserve(buy()).accepted


def test_live_accounts_need_allow_live_trading():
    live = ("DU1234567", "U7654321")
    decision = rule_of(make_gate(accounts=live), buy())
    assert decision.message == (
        "live_trading_disabled: account U7654321 is a live account and "
        "ALLOW_LIVE_TRADING is off; orders are refused"
    )
    assert make_gate(accounts=live, allow_live_trading=True).reserve(buy()).accepted
    assert rule_of(make_gate(accounts=()), buy()).message == (
        "live_trading_disabled: no account is known yet, so live trading cannot be ruled out"
    )


# --------------------------------------------------------------- asset classes
OPT_QUOTE = (1.9, 2.1, 2.0)  # an option premium: mid 2.0, ask 2.1


def option(quantity=1.0, **fields):
    """A call of multiplier 100: one contract is 100 x the premium."""
    return buy(
        quantity,
        sec_type="OPT",
        expiry="20261218",
        strike=200.0,
        right="C",
        multiplier=100.0,
        **fields,
    )


def test_option_contracts_at_the_class_limit_pass_and_one_more_is_refused():
    # the stock limits (5 shares, 1,000 notional) do not apply: options have their own
    gate = make_gate(
        quotes=Quotes(OPT_QUOTE),
        risk_opt_max_contracts=10,
        risk_max_quantity=5,
        risk_max_notional=1000,
    )
    at_limit = gate.reserve(option(10, order_type="LMT", limit_price=2.0))
    assert at_limit.accepted and at_limit.notional == 2000.0  # 10 x 2.0 x 100
    decision = rule_of(gate, option(11, order_type="LMT", limit_price=2.0))
    assert decision.rule == "asset_class_limit" and decision.accepted is False
    assert decision.message == "asset_class_limit: 11 OPT contracts exceed the limit of 10"
    futures = make_gate(
        quotes=Quotes((4999.0, 5001.0, 5000.0)),
        risk_fut_max_contracts=5,
        risk_daily_notional_cap=2e6,
    )
    future = dataclasses.replace(buy(5), symbol="ES", sec_type="FUT", multiplier=50.0)
    assert futures.reserve(future).notional == 5 * 5001.0 * 50  # 1,250,250: under 1.5 M
    assert rule_of(futures, dataclasses.replace(future, quantity=6)).message == (
        "asset_class_limit: 6 FUT contracts exceed the limit of 5"
    )


def test_option_notional_counts_the_multiplier_and_holds_at_the_class_limit():
    gate = make_gate(quotes=Quotes(OPT_QUOTE), risk_opt_max_notional=2000)
    assert gate.reserve(option(10, order_type="LMT", limit_price=2.0)).notional == 2000.0
    decision = rule_of(gate, option(10, order_type="LMT", limit_price=2.01))
    assert decision.rule == "asset_class_limit"
    assert decision.message == (
        "asset_class_limit: OPT notional 2,010.00 (price x 10 x multiplier 100) exceeds the "
        "limit of 2,000.00"
    )
    # at market, the premium is the ask: 10 x 2.1 x 100 = 2,100
    acked = option(10, market_order_ack=True)
    assert rule_of(gate, acked).figures["notional"] == 2100.0


def test_an_option_with_no_value_to_count_skips_the_notional_limit():
    # a worthless option (bid 0, last 0) sold to close: worth 0 against the limit and the day,
    # even with the day's cap used up
    gate = make_gate(
        quotes=Quotes(RiskQuote(0.0, 0.05, 0.0)),
        risk_opt_max_notional=1,
        risk_daily_notional_cap=50,
        notional_today=50.0,
    )
    close = dataclasses.replace(option(5, market_order_ack=True), action="SELL")
    decision = gate.check(close)
    assert decision.accepted and decision.reference_price == 0.0 and decision.notional == 0.0
    reserved = gate.reserve(close)
    assert reserved.notional == 0.0 and reserved.figures["notional_today"] == 50.0
    gate.release(reserved)
    assert gate.evaluate(close).figures["notional_today"] == 50.0


def test_a_buy_with_no_price_above_zero_is_refused_not_left_unbounded():
    """No ask and no last (both 0): a buy at market could fill at any price, so the notional
    limits could not hold it; with a last price the same buy is valued at it."""
    quotes = Quotes(RiskQuote(0.0, 0.0, 0.0))
    gate = make_gate(quotes=quotes, risk_opt_max_notional=1_000)
    refused = rule_of(gate, option(5, market_order_ack=True))
    assert refused.rule == "no_reference_price" and refused.message == (
        "no_reference_price: no price above 0 for AAPL to value the buy"
    )
    assert rule_of(gate, buy(1)).rule == "no_reference_price"
    quotes.answer = RiskQuote(0.0, 0.0, 1.4)
    later = make_gate(quotes=quotes, risk_opt_max_notional=1_000)  # no cached zero quote
    assert later.reserve(option(5, market_order_ack=True)).notional == pytest.approx(700.0)


def test_an_option_market_order_needs_the_traders_acknowledgement():
    gate = make_gate(quotes=Quotes(OPT_QUOTE))
    for refused in (rule_of(gate, option(1)), rule_of(gate, option(1), reserve=False)):
        assert refused.rule == "option_market_order" and refused.accepted is False
        assert refused.message == (
            "option_market_order: a market order on an option fills at market (when it "
            "triggers), possibly far from its value (wide spreads); use a limit (STP LMT), or "
            "send market_order_ack: true"
        )
    assert gate.reserve(option(1, order_type="LMT", limit_price=2.0)).accepted
    acked = gate.reserve(option(1, market_order_ack=True))
    assert acked.reference_price == 2.1 and acked.notional == pytest.approx(210.0)
    assert gate.reserve(buy(1)).accepted  # a stock at market needs no acknowledgement


@pytest.mark.parametrize(
    "fields, kind",
    [
        ({"order_type": "STP", "stop_price": 1.5}, "a stop"),
        ({"order_type": "TRAIL", "trailing_amount": 0.1}, "a trailing stop"),
        ({"order_type": "LMT", "limit_price": 2.0, "stop_loss": 1.5}, "a stop loss"),
    ],
)
def test_an_option_order_that_becomes_a_market_order_needs_the_acknowledgement(fields, kind):
    """A stop, a trailing stop or a bracket's stop loss on an option is sent to the market when
    it triggers: it went out without the acknowledgement a market order needs (a trailing
    stop at a hair's width filled at once, a naked short call for a sell)."""
    gate = make_gate(quotes=Quotes(OPT_QUOTE), risk_price_collar_pct=99)
    refused = rule_of(gate, option(1, **fields))
    assert refused.rule == "option_market_order"
    assert refused.message.startswith(f"option_market_order: {kind} on an option fills at market")
    assert gate.reserve(option(1, market_order_ack=True, **fields)).accepted
    stop_limit = option(1, order_type="STP LMT", stop_price=1.5, limit_price=1.4)
    assert gate.reserve(stop_limit).accepted


def test_a_change_of_an_option_stop_placed_without_the_acknowledgement_is_not_refused(
    tmp_path,
):
    """Option stops (a bracket's stop loss too, GTC) placed before stops needed the
    acknowledgement have none, and a change cannot carry it: every move of the protective
    stop was refused. A change cannot alter the order's type: it is not refused for it."""
    from orders.change_checks import check_change
    from orders.commands import Modify
    from orders.lifecycle import Tracker

    journal = Journal(str(tmp_path / "orders.db"))
    gate = make_gate(quotes=Quotes(OPT_QUOTE), risk_price_collar_pct=99)
    intent = option(1, order_type="STP", stop_price=1.5)
    record = Lifecycle("o-stop", intent, "api", 0.0, "tracking", order_id=5, verdict="working")
    tracker = Tracker(record, lambda r: None)
    checked = check_change(gate, journal, tracker, None, Modify(tracker, None, None, 1.6))
    assert checked.basis is not None
    journal.close()


def fx(symbol, quantity):
    return dataclasses.replace(buy(quantity), symbol=symbol, sec_type="CASH")


def test_fx_notional_is_in_dollars_whichever_side_the_dollar_is_on():
    yen = make_gate(quotes=Quotes((149.9, 150.1, 150.0)), risk_max_notional=10_000)
    # USD.JPY: the quantity is dollars (10,000), not 10,000 x 150.1 yen; the broker is sent the
    # pair without its dot (ib_compat), so the dot's place does not change the valuation
    for symbol in ("USD.JPY", "USDJPY", "US.DJPY"):
        decision = yen.reserve(fx(symbol, 10_000))
        assert decision.notional == 10_000 and decision.reference_price == 150.1
    assert rule_of(yen, fx("USD.JPY", 10_001)).message == (
        "max_notional: notional 10,001.00 exceeds the limit of 10,000.00"
    )
    euro = make_gate(quotes=Quotes((1.0999, 1.1001, 1.1)), risk_max_quantity_fx=20_000)
    assert euro.reserve(fx("EUR.USD", 10_000)).notional == pytest.approx(11_001.0)
    assert rule_of(euro, fx("EUR.USD", 20_001)).message == (
        "max_quantity: quantity 20001 exceeds the limit of 20000 units of the base currency "
        "for FX pairs"
    )
    # FX sizes run to millions of units: every digit shown, never 2e+06
    big = make_gate(quotes=Quotes((1.0999, 1.1001, 1.1)), risk_max_quantity_fx=2_000_000)
    assert rule_of(big, fx("EUR.USD", 2_000_000.5)).message == (
        "max_quantity: quantity 2000000.5 exceeds the limit of 2000000 units of the base "
        "currency for FX pairs"
    )
    # CASH only: a stock whose ticker starts with USD is valued at its price
    stock = make_gate(quotes=Quotes((26.9, 27.0, 26.95)))
    assert stock.reserve(dataclasses.replace(buy(10), symbol="USDU")).notional == 270.0


# ----------------------------------------------------------------------------- preview
def test_a_preview_gives_the_verdict_with_its_figures_and_counts_nothing():
    clocks = Clocks()
    gate = make_gate(clocks, open_orders=2, risk_max_orders_per_minute=1)
    preview = buy(3, order_type="LMT", limit_price=100.5)
    expected = RiskDecision(
        accepted=True,
        figures={
            "quantity": 3,
            "reference_price": 100.5,
            "multiplier": 1.0,
            "quote_mid": 100.0,
            "quote_delayed": False,
            "notional": 301.5,
            "currency": "USD",
            "fx_rate": 1.0,
            "open_orders": 2,
            "orders_last_minute": 0,
            "notional_today": 0.0,
        },
        reference_price=100.5,
        notional=301.5,
        at=clocks.now,
    )
    assert gate.evaluate(preview) == expected
    assert gate.evaluate(preview) == expected  # the first preview took no per-minute slot
    assert gate.limits()["notional_today"] == 0.0
    gate.reserve(buy(1))
    # unlike check(), a preview applies the flow limits; it returns the refusal, not raises it
    refused = gate.evaluate(preview)
    assert refused.accepted is False and refused.rule == "max_orders_per_minute"
    assert refused.message == "max_orders_per_minute: 1 orders in the last 60 s; the limit is 1"
    assert refused.notional == 301.5 and refused.at == clocks.now
    denied = make_gate(risk_symbol_denylist="AAPL").evaluate(buy())
    assert denied.rule == "symbol_not_allowed" and not denied.accepted


def test_a_preview_sees_the_daily_cap_reset_at_utc_midnight():
    clocks = Clocks(wall=BEFORE_MIDNIGHT)
    gate = make_gate(clocks, risk_daily_notional_cap=1000, notional_today=950.0)
    assert gate.evaluate(buy(1)).rule == "daily_notional_cap"
    clocks.advance(60)  # 00:00:00 the next UTC day
    assert gate.limits()["notional_today"] == 0.0  # /status: the new day, before any order
    decision = gate.evaluate(buy(1))
    assert decision.accepted and decision.figures["notional_today"] == 0.0


# ------------------------------------------------------------------------ flow limits
def test_open_orders_limit_counts_accepted_but_unregistered_orders():
    gate = make_gate(open_orders=1, risk_max_open_orders=3)
    first = gate.reserve(buy())  # 1 working + 0 unregistered < 3
    gate.reserve(buy())  # 1 + 1 < 3
    decision = rule_of(gate, buy())  # 1 + 2 = 3: at the limit, refused
    assert decision.message == "max_open_orders: 3 orders are working; the limit is 3"
    gate.release(first)
    assert gate.reserve(buy()).accepted
    gate.registered(first)  # counted by open_orders() now (the fake still says 1: one fewer)
    assert gate.reserve(buy()).accepted
    assert rule_of(gate, buy()).rule == "max_open_orders"


def test_registered_and_release_never_go_below_zero():
    gate = make_gate(risk_max_open_orders=1, risk_max_orders_per_minute=5)
    decision = gate.reserve(buy())
    gate.registered(decision)
    gate.registered(decision)  # one too many
    gate.release(decision)
    gate.release(decision)  # over-released: nothing is owed back
    assert gate.limits()["notional_today"] == 0.0
    assert gate.reserve(buy()).accepted  # unregistered 0 -> 1, not -1 -> 0
    assert rule_of(gate, buy()).rule == "max_open_orders"


def test_orders_per_minute_window_expires_after_sixty_seconds():
    clocks = Clocks()
    gate = make_gate(clocks, risk_max_orders_per_minute=3)
    for _ in range(3):
        assert gate.reserve(buy()).accepted
        clocks.advance(10)
    decision = rule_of(gate, buy())  # 3 orders in the last 30 s: at the limit
    assert decision.message == "max_orders_per_minute: 3 orders in the last 60 s; the limit is 3"
    assert decision.figures["orders_last_minute"] == 3
    clocks.advance(30)  # the first is exactly 60 s old: still in the window
    assert rule_of(gate, buy()).rule == "max_orders_per_minute"
    clocks.advance(0.5)  # now it is older
    assert gate.reserve(buy()).figures["orders_last_minute"] == 3  # two older ones and this
    assert rule_of(gate, buy()).rule == "max_orders_per_minute"
    clocks.advance(61)  # all expired
    assert gate.reserve(buy()).figures["orders_last_minute"] == 1


def test_release_gives_back_the_per_minute_slot():
    gate = make_gate(risk_max_orders_per_minute=2)
    gate.reserve(buy())
    second = gate.reserve(buy())
    assert rule_of(gate, buy()).rule == "max_orders_per_minute"
    gate.release(second)
    assert gate.reserve(buy()).accepted


def test_daily_cap_accumulates_over_many_orders_and_holds_at_the_cap():
    gate = make_gate(risk_daily_notional_cap=2020, risk_max_orders_per_minute=1000)  # 20 x 101
    for n in range(1, 21):
        decision = gate.reserve(buy(1))
        assert decision.figures["notional_today"] == pytest.approx(101.0 * n)  # this one too
    assert gate.limits()["notional_today"] == 2020.0  # exactly at the cap: allowed
    decision = rule_of(gate, buy(1))
    assert decision.message == (
        "daily_notional_cap: today's notional would be 2,121.00, over the cap of 2,020.00"
    )
    gate2 = make_gate(risk_daily_notional_cap=303)
    taken = gate2.reserve(buy(2))
    gate2.release(taken)
    assert gate2.limits()["notional_today"] == 0.0
    gate2.reserve(buy(3))
    assert rule_of(gate2, buy(1)).rule == "daily_notional_cap"


def test_daily_cap_resets_at_utc_midnight_and_not_before():
    clocks = Clocks(wall=BEFORE_MIDNIGHT)
    gate = make_gate(clocks, risk_daily_notional_cap=1000, notional_today=950.0)
    assert rule_of(gate, buy(1)).rule == "daily_notional_cap"
    clocks.advance(59.5)  # 23:59:59.5, same UTC day
    assert rule_of(gate, buy(1)).rule == "daily_notional_cap"
    clocks.advance(0.5)  # 00:00:00 next day
    decision = gate.reserve(buy(1))
    assert decision.figures["notional_today"] == 101.0  # the new day's first order alone
    clocks.advance(3661)  # later that day (another hour and minute) the new total holds
    assert gate.reserve(buy(1)).figures["notional_today"] == 202.0


def test_a_clock_stepped_back_over_midnight_keeps_the_days_total():
    """The machine's clock stepped back over UTC midnight (an NTP correction) and on again:
    the day's total was zeroed twice, so the day took twice its cap."""
    clocks = Clocks(wall=BEFORE_MIDNIGHT + 60)  # 00:00:00, the new day
    gate = make_gate(clocks, risk_daily_notional_cap=1000)
    for _ in range(9):
        gate.reserve(buy(1))  # 101 each
    assert gate.limits()["notional_today"] == 909.0
    clocks.now -= 5  # 23:59:55 of the day before: that day's own total
    assert gate.limits()["notional_today"] == 0.0
    clocks.now += 10  # the new day again
    assert rule_of(gate, buy(1)).rule == "daily_notional_cap"
    assert gate.limits()["notional_today"] == 909.0


def test_a_clock_set_right_from_days_ahead_counts_the_real_day():
    """The machine's clock ran days ahead when the app started, then was set right: the
    day's total stayed on the future date and refused the real day's orders."""
    clocks = Clocks(wall=BEFORE_MIDNIGHT + 3 * 86400)
    gate = make_gate(clocks, risk_daily_notional_cap=1000)
    for _ in range(9):
        gate.reserve(buy(1))
    clocks.now = BEFORE_MIDNIGHT + 120  # set right: the real day has had no order
    assert gate.limits()["notional_today"] == 0.0
    assert gate.reserve(buy(1)).figures["notional_today"] == 101.0


def test_the_day_is_the_utc_day_whatever_the_machines_time_zone(monkeypatch):
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        clocks = Clocks(wall=BEFORE_MIDNIGHT + 59.5)  # 18:59:59.5 in New York
        gate = make_gate(clocks, risk_daily_notional_cap=1000, notional_today=950.0)
        assert rule_of(gate, buy(1)).rule == "daily_notional_cap"
        clocks.advance(0.5)  # UTC midnight: a new day for the cap
        assert gate.reserve(buy(1)).figures["notional_today"] == 101.0
    finally:
        monkeypatch.undo()
        time.tzset()


def test_daily_cap_survives_a_restart_through_the_journal(tmp_path):
    """The gate of a restarted app starts from the journal's notional since UTC midnight."""
    path = str(tmp_path / "orders.db")
    clocks = Clocks()
    midnight = BEFORE_MIDNIGHT + 60 - 86400
    journal = Journal(path)
    gate = make_gate(clocks, risk_daily_notional_cap=1000, risk_max_orders_per_minute=100)
    for n in range(9):
        decision = gate.reserve(buy(1))
        journal.insert(journaled(f"o{n}", clocks.now), risk=decision.as_dict())
    journal.insert(journaled("no-risk", clocks.now))  # e.g. re-adopted: no gate decision
    journal.insert(journaled("yesterday", midnight - 1), risk={"notional": 500.0})
    journal.close()
    reopened = Journal(path)
    try:
        assert reopened.notional_since(midnight) == pytest.approx(909.0)
        assert reopened.notional_since(clocks.now + 1) == 0.0
        restarted = make_gate(
            clocks, risk_daily_notional_cap=1000, notional_today=reopened.notional_since(midnight)
        )
        assert rule_of(restarted, buy(1)).rule == "daily_notional_cap"
        assert restarted.limits()["notional_today"] == 909.0
    finally:
        reopened.close()


def test_a_change_counts_what_it_adds_and_is_refused_past_the_cap(tmp_path):
    gate = make_gate(risk_daily_notional_cap=700, risk_max_quantity=8)
    small = buy(2, order_type="LMT", limit_price=100.0)
    gate.reserve(small)  # 200 today
    bigger = dataclasses.replace(small, quantity=6)
    assert gate.reserve_change(bigger, small) == 400.0  # only the addition counts
    assert gate.reserve_change(dataclasses.replace(bigger, limit_price=90.0), bigger) == 0.0
    assert gate.limits()["notional_today"] == 600.0
    refused = rule_of_change(gate, dataclasses.replace(small, quantity=8), bigger)
    assert refused.rule == "daily_notional_cap" and "would be 800.00" in refused.message
    assert gate.limits()["notional_today"] == 600.0  # a refused change counts nothing
    assert rule_of_change(gate, dataclasses.replace(small, quantity=9), small).rule == (
        "max_quantity"  # the per-order rules first, as for a new order
    )
    gate.give_back(400.0)  # the change was not sent after all
    assert gate.limits()["notional_today"] == 200.0
    over = make_gate(risk_daily_notional_cap=100, notional_today=150)  # a cap lowered since
    assert over.reserve_change(dataclasses.replace(small, limit_price=90.0), small) == 0.0

    journal = Journal(str(tmp_path / "orders.db"))
    try:
        journal.insert(journaled("placed", time.time()), risk={"notional": 200.0})
        journal.insert(journaled("adopted", time.time()))  # no gate decision of its own
        journal.add_notional("placed", 400.0)
        journal.add_notional("adopted", 50.0)
        assert journal.notional_since(0) == 650.0
    finally:
        journal.close()


def rule_of_change(gate, after, before):
    with pytest.raises(RiskRejected) as caught:
        gate.reserve_change(after, before)
    return caught.value.decision


def test_check_applies_the_per_order_rules_only_and_counts_nothing():
    gate = make_gate(risk_max_orders_per_minute=1, risk_daily_notional_cap=150, risk_max_quantity=5)
    for _ in range(3):
        assert gate.check(buy(1)).accepted  # not counted: the per-minute limit never bites
    assert gate.limits()["notional_today"] == 0.0
    assert rule_of(gate, buy(6), reserve=False).rule == "max_quantity"
    gate.reserve(buy(1))
    assert gate.check(buy(1)).accepted  # flow limits (per minute, daily cap) are not checked


# ---------------------------------------------------------------- quotes and decisions
def test_quotes_are_reused_for_less_than_the_ttl():
    clocks, quotes = Clocks(), Quotes()
    gate = make_gate(clocks, quotes)
    gate.reserve(buy())
    clocks.advance(QUOTE_TTL / 2)
    gate.reserve(buy())
    assert len(quotes.calls) == 1
    gate.reserve(dataclasses.replace(buy(), symbol="MSFT"))
    assert quotes.calls == [("AAPL", "STK"), ("MSFT", "STK")]
    clocks.advance(QUOTE_TTL / 2)  # exactly the TTL since the first: fetched again
    quotes.answer = (199.0, 201.0, 200.0)
    assert gate.reserve(buy()).reference_price == 201.0
    assert len(quotes.calls) == 3


def test_a_decision_carries_its_figures_and_the_gate_clock():
    clocks = Clocks()
    gate = make_gate(clocks, open_orders=2)
    decision = gate.reserve(buy(3, order_type="LMT", limit_price=100.5))
    assert decision == RiskDecision(
        accepted=True,
        rule=None,
        message="accepted",
        figures={
            "quantity": 3,
            "reference_price": 100.5,
            "multiplier": 1.0,
            "quote_mid": 100.0,
            "quote_delayed": False,
            "notional": 301.5,
            "currency": "USD",
            "fx_rate": 1.0,
            "open_orders": 2,
            "orders_last_minute": 1,
            "notional_today": 301.5,
        },
        reference_price=100.5,
        notional=301.5,
        at=clocks.now,
    )
    assert decision.as_dict()["figures"]["notional"] == 301.5
    refused = rule_of(make_gate(clocks, risk_max_quantity=1), buy(2))
    assert refused.at == clocks.now and refused.notional == 202.0
    assert refused.figures["orders_last_minute"] == 0 and refused.reference_price == 101.0
    assert gate.check(buy(2, order_type="LMT", limit_price=100.5)) == RiskDecision(
        accepted=True,
        figures={
            "quantity": 2,
            "reference_price": 100.5,
            "multiplier": 1.0,
            "quote_mid": 100.0,
            "quote_delayed": False,
            "notional": 201.0,
            "currency": "USD",
            "fx_rate": 1.0,
            "open_orders": 2,
            "orders_last_minute": 1,
            "notional_today": 301.5,
        },
        reference_price=100.5,
        notional=201.0,
        at=clocks.now,
    )


def test_figures_round_notional_and_hide_non_finite_values():
    gate = make_gate(quotes=Quotes((1.0, 1.0 / 3, 1.0)), risk_price_collar_pct=99)
    assert gate.reserve(buy(1)).figures["notional"] == 0.33
    huge = make_gate(
        quotes=Quotes((1e308, 1e308, 1e308)), risk_max_notional=1e300, risk_max_quantity=1e9
    )
    assert rule_of(huge, buy(1000)).figures["notional"] is None  # inf, not a number to show


def test_limits_report_the_configuration():
    gate = make_gate(
        risk_max_quantity=7,
        risk_max_notional=8,
        risk_price_collar_pct=9,
        risk_symbol_allowlist="AAPL",
        risk_symbol_denylist="TSLA",
        risk_max_open_orders=10,
        risk_max_orders_per_minute=11,
        risk_daily_notional_cap=12,
        allow_live_trading=True,
        live_confirm_notional=13,
        notional_today=1.234,
    )
    assert gate.limits() == {
        "max_quantity": 7,
        "max_notional": 8,
        "price_collar_pct": 9,
        "symbol_allowlist": ["AAPL"],
        "symbol_denylist": ["TSLA"],
        "max_open_orders": 10,
        "max_orders_per_minute": 11,
        "daily_notional_cap": 12,
        "notional_today": 1.23,
        "allow_live_trading": True,
        "live_confirm_notional": 13,
        "asset_classes": {
            "STK": {"max_quantity": 7, "unit": "shares"},
            "CASH": {"max_quantity": 1_000_000, "unit": "units of the base currency"},
            "OPT": {"max_quantity": 50.0, "max_notional": 50_000.0, "unit": "contracts"},
            "FUT": {"max_quantity": 5.0, "max_notional": 1_500_000.0, "unit": "contracts"},
        },
    }


# ------------------------------------------------------------------------ SlidingWindow
def test_sliding_window_is_a_minute_by_default():
    clocks = Clocks()
    window = SlidingWindow(1, monotonic=clocks.monotonic)
    assert window.allow() and not window.allow()
    clocks.advance(59.9)
    assert not window.allow()
    clocks.advance(0.1)
    assert window.allow()


def test_the_gate_runs_on_the_real_clocks_by_default():
    before = time.time()
    gate = RiskGate(settings(risk_max_orders_per_minute=1), Quotes(), lambda: 0, lambda: PAPER)
    decision = gate.reserve(buy())
    assert before <= decision.at <= time.time() and gate.limits()["notional_today"] == 101.0
    assert rule_of(gate, buy()).rule == "max_orders_per_minute"  # within the real minute
    assert (
        RiskGate(settings(), Quotes(), lambda: 0, lambda: PAPER).limits()["notional_today"] == 0.0
    )


def test_sliding_window_allows_the_limit_then_frees_slots_as_they_age():
    clocks = Clocks()
    window = SlidingWindow(2, seconds=10.0, monotonic=clocks.monotonic)
    assert window.allow() and window.allow()
    assert not window.allow()  # refused, and not counted
    clocks.advance(9.9)
    assert not window.allow()
    clocks.advance(0.1)  # the first two are exactly 10 s old: out of the window
    assert window.allow() and window.allow()
    assert not window.allow()
