"""Property-based tests of the order validator: whatever comes in, only sane orders get out."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from instruments import DERIVATIVES
from schemas import NEEDS, ModifyIn, OrderIn, ValidationError, first_error, price_tick

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
FIELDS = {
    "symbol": st.sampled_from(["AAPL", "msft", "EUR.USD", "", "A$PL", "X" * 20, 5]) | JSON,
    "action": st.sampled_from(["BUY", "SELL", "buy", "HOLD", ""]) | JSON,
    "quantity": st.integers(-5, 2_000_000) | st.floats() | st.sampled_from(["10", True]),
    "order_type": st.sampled_from(list(NEEDS) + ["MOC", ""]),
    "limit_price": st.none() | st.floats(-10, 1e8) | st.sampled_from([0, "1"]),
    "stop_price": st.none() | st.floats(-10, 1e8),
    "trailing_amount": st.none() | st.floats(-1, 100),
    "trailing_percent": st.none() | st.floats(-1, 200),
    "take_profit": st.none() | st.floats(-1, 1e4),
    "stop_loss": st.none() | st.floats(-1, 1e4),
    "tif": st.sampled_from(["DAY", "GTC", "IOC", "gtc", "FOK"]),
    "outside_rth": st.booleans() | st.sampled_from(["true", 1]),
    "sec_type": st.sampled_from(["STK", "CASH", "OPT"]),
    "extra": JSON,
}


@st.composite
def bodies(draw):
    names = draw(st.sets(st.sampled_from(sorted(FIELDS))))
    return {name: draw(FIELDS[name]) for name in names}


def assert_sane(order: OrderIn) -> None:
    """What every accepted order satisfies."""
    assert order.action in ("BUY", "SELL") and order.tif in ("DAY", "GTC", "IOC")
    assert 0 < order.quantity <= 1_000_000 and math.isfinite(order.quantity)
    if order.sec_type == "STK":
        assert float(order.quantity).is_integer()
    needs_limit, needs_stop = NEEDS[order.order_type]
    assert (order.limit_price is not None) == needs_limit
    assert (order.stop_price is not None) == needs_stop
    for price in (
        order.limit_price,
        order.stop_price,
        order.take_profit,
        order.stop_loss,
        order.trailing_amount,
    ):
        assert price is None or (price > 0 and math.isfinite(price))
        # a derivative's increments are its market rule's, checked once the broker names the
        # contract (web/trading.py; tests/test_derivatives_orders.py), not by the schema
        if price is not None and order.sec_type not in DERIVATIVES:
            tick = price_tick(order.sec_type, order.symbol, price)
            assert abs(round(price / tick) * tick - price) <= tick * 1e-6
    if order.order_type == "TRAIL":
        assert (order.trailing_amount is None) != (order.trailing_percent is None)
    else:
        assert order.trailing_amount is None and order.trailing_percent is None
    if order.take_profit is not None and order.stop_loss is not None:
        assert (order.take_profit - order.stop_loss) * (1 if order.action == "BUY" else -1) > 0
    intent = order.intent()
    assert intent.quantity == float(order.quantity) and intent.tif == order.tif


@pytest.mark.slow
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies())
def test_order_validator_accepts_only_sane_orders(body):
    try:
        order = OrderIn.model_validate(body)
    except ValidationError as exc:
        field, message, details = first_error(exc)
        assert message and details
        assert field is None or isinstance(field, str)
        return
    assert_sane(order)


def test_modify_validator():
    outcomes = {"accepted": 0, "refused": 0}

    @settings(deadline=None, database=None, derandomize=True)
    @given(
        st.dictionaries(
            st.sampled_from(["quantity", "limit_price", "stop_price", "x"]),
            st.integers(-3, 5) | st.floats() | st.none(),
            max_size=4,
        )
    )
    def run(body):
        # the oracle: a change is valid when it names only known fields, gives at least one
        # value, and every value given is a positive finite number within its bound (a whole
        # one for quantity)
        given = {k: v for k, v in body.items() if v is not None}
        bound = {"quantity": 1_000_000, "limit_price": 10_000_000, "stop_price": 10_000_000}
        sane = (
            "x" not in body
            and bool(given)
            and all(0 < v <= bound[k] for k, v in given.items())
            and float(given.get("quantity", 1)).is_integer()
        )
        try:
            change = ModifyIn.model_validate(body)
        except ValidationError:
            assert not sane, body
            outcomes["refused"] += 1
            return
        assert sane, body
        assert all(getattr(change, k) == v for k, v in given.items())
        outcomes["accepted"] += 1

    run()
    assert outcomes["accepted"] > 10 and outcomes["refused"] > 100, outcomes  # both, often


def test_a_price_under_one_tick_is_no_price():
    """1e-12 is a whole number (zero) of ticks: a trailing amount of it passed the grid check,
    and a sell's trailing stop at a hair's width filled at once."""
    base = {"symbol": "AAPL", "action": "SELL", "quantity": 1, "order_type": "TRAIL"}
    for amount in (1e-12, 1e-5):
        try:
            OrderIn.model_validate({**base, "trailing_amount": amount})
        except ValidationError as exc:
            assert first_error(exc)[0] == "trailing_amount"
        else:
            raise AssertionError(f"trailing amount {amount} accepted")
    OrderIn.model_validate({**base, "trailing_amount": 0.01})


def test_prices_must_sit_on_the_tick_grid():
    base = {"symbol": "AAPL", "action": "BUY", "quantity": 1, "order_type": "LMT"}
    for price, ok in ((150.25, True), (150.255, False), (0.5123, True), (0.51235, False)):
        try:
            OrderIn.model_validate({**base, "limit_price": price})
        except ValidationError as exc:
            assert not ok and first_error(exc)[0] == "limit_price"
            assert "price tick" in first_error(exc)[1]
        else:
            assert ok, price
    fx = {
        "symbol": "EUR.USD",
        "sec_type": "CASH",
        "action": "BUY",
        "quantity": 20000,
        "order_type": "LMT",
    }
    OrderIn.model_validate({**fx, "limit_price": 1.08455})
    try:
        OrderIn.model_validate({**fx, "limit_price": 1.08451})
    except ValidationError as exc:
        assert first_error(exc)[0] == "limit_price"
    else:
        raise AssertionError("off-tick FX price accepted")


def test_examples_name_the_field():
    cases = {
        ("quantity", 0): "quantity",
        ("quantity", 1.5): "quantity",
        ("order_type", "LMT"): "limit_price",
        ("limit_price", 5): "limit_price",
    }
    for (name, value), field in cases.items():
        body = {"symbol": "AAPL", "action": "BUY", "quantity": 1, name: value}
        try:
            OrderIn.model_validate(body)
        except ValidationError as exc:
            assert first_error(exc)[0] == field
        else:
            raise AssertionError(f"{body} accepted")
    bracket = {
        "symbol": "AAPL",
        "action": "BUY",
        "quantity": 1,
        "order_type": "LMT",
        "limit_price": 100,
        "take_profit": 90,
    }
    try:
        OrderIn.model_validate(bracket)
    except ValidationError as exc:
        assert first_error(exc)[:2] == ("take_profit", "must be above the limit price for a BUY")
    else:
        raise AssertionError("bracket with take profit below entry accepted")


@st.composite
def plausible_orders(draw):
    order_type = draw(st.sampled_from(list(NEEDS)))
    body = {
        "symbol": draw(st.sampled_from(["AAPL", "IBM", "EUR.USD"])),
        "action": draw(st.sampled_from(["BUY", "SELL"])),
        "quantity": draw(st.integers(1, 1000) | st.floats(0.5, 1000)),
        "order_type": order_type,
        "tif": draw(st.sampled_from(["DAY", "GTC", "IOC"])),
    }
    needs_limit, needs_stop = NEEDS[order_type]
    price = st.integers(100, 100_000).map(lambda cents: cents / 100) | st.floats(0.01, 1000)
    if needs_limit or draw(st.booleans()):
        body["limit_price"] = draw(price)
    if needs_stop or draw(st.booleans()):
        body["stop_price"] = draw(price)
    if order_type == "TRAIL":
        if draw(st.booleans()):
            body["trailing_amount"] = draw(price)
        else:
            body["trailing_percent"] = draw(st.floats(0.1, 50))
    if draw(st.booleans()):
        body["take_profit"] = draw(price)
        body["stop_loss"] = draw(price)
    if body["symbol"] == "EUR.USD":
        body["sec_type"] = "CASH"
    return body


@pytest.mark.slow
def test_plausible_orders_are_accepted_or_named_precisely():
    outcomes = {"accepted": 0, "refused": 0}

    @settings(deadline=None, database=None, derandomize=True)
    @given(plausible_orders())
    def run(body):
        try:
            order = OrderIn.model_validate(body)
        except ValidationError as exc:
            field = first_error(exc)[0]
            assert field in body or field in ("limit_price", "stop_price", "trailing_amount")
            outcomes["refused"] += 1
            return
        assert_sane(order)
        outcomes["accepted"] += 1

    run()
    # both branches were really exercised (the generator is built to hit each often)
    tried = sum(outcomes.values())
    assert outcomes["accepted"] > tried / 20 and outcomes["refused"] > tried / 20, outcomes
