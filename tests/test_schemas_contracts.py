"""The order validator's contract rules (which fields each sec_type takes), what a valid order
passes on (contract spec, order intent, idempotency fingerprint), FX pairs found without
sec_type, the one error per field a caller reads, and the rules served to the browser in the
OpenAPI document, compared with the rules the validator applies."""

from __future__ import annotations

import hashlib
import json

import pytest

from instruments import ContractSpec
from order_records import OrderIntent
from schemas import OrderIn, ValidationError, first_error, looks_like_fx, price_tick

BASE = {"symbol": "AAPL", "action": "BUY", "quantity": 10}
# a valid value for every contract field
CONTRACT = {
    "expiry": "20261218",
    "strike": 200,
    "right": "C",
    "exchange": "SMART",
    "multiplier": 100,
    "trading_class": "AAPL",
    "local_symbol": "AAPL  261218C00200000",
}
SEC_TYPES = ("STK", "CASH", "OPT", "FUT")
# what each asset class takes (a stock or FX pair is named by its symbol alone)
TAKES = {
    "STK": set(),
    "CASH": set(),
    "OPT": set(CONTRACT),
    "FUT": set(CONTRACT) - {"strike", "right"},
}


def body_for(sec_type: str, **fields) -> dict:
    symbol = "EUR.USD" if sec_type == "CASH" else "AAPL"
    order_type = {"order_type": "LMT", "limit_price": 1.5} if sec_type == "OPT" else {}
    return {**BASE, "symbol": symbol, "sec_type": sec_type, **order_type, **fields}


def accepted(**fields) -> OrderIn:
    return OrderIn.model_validate({**BASE, **fields})


def refused_body(body: dict) -> tuple[str | None, str]:
    with pytest.raises(ValidationError) as caught:
        OrderIn.model_validate(body)
    field, message, details = first_error(caught.value)
    assert details[0] == {"field": field, "message": message}
    return field, message


def refused(**fields) -> tuple[str | None, str]:
    return refused_body({**BASE, **fields})


# ------------------------------------------------------------------- contract fields
@pytest.mark.parametrize("sec_type", SEC_TYPES)
@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_each_sec_type_takes_its_contract_fields_and_refuses_the_others(sec_type, name):
    value = "202612" if (sec_type, name) == ("FUT", "expiry") else CONTRACT[name]
    body = body_for(sec_type, **{name: value})
    if name in TAKES[sec_type]:
        assert getattr(OrderIn.model_validate(body), name) == value
    else:
        assert refused_body(body) == (name, f"is not used by {sec_type} orders")


def test_an_option_with_every_contract_field_is_accepted():
    order = OrderIn.model_validate(body_for("OPT", **CONTRACT))
    assert {name: getattr(order, name) for name in CONTRACT} == CONTRACT


def test_derivatives_named_by_symbol_alone_are_left_to_the_broker():
    """The broker resolves a contract from what is given: no field is required here."""
    assert OrderIn.model_validate(body_for("OPT")).expiry is None
    assert OrderIn.model_validate(body_for("FUT")).expiry is None
    assert OrderIn.model_validate(body_for("OPT", local_symbol="AAPL  261218C00200000"))


def test_an_option_expiry_is_a_day_a_future_may_name_a_month():
    assert OrderIn.model_validate(body_for("OPT", expiry="20261218")).expiry == "20261218"
    assert refused_body(body_for("OPT", expiry="202612")) == (
        "expiry",
        "an option's expiry is a date, YYYYMMDD",
    )
    assert OrderIn.model_validate(body_for("FUT", expiry="202612")).expiry == "202612"
    assert OrderIn.model_validate(body_for("FUT", expiry="20261218")).expiry == "20261218"
    assert refused_body(body_for("FUT", expiry="2026121"))[0] == "expiry"


def test_a_market_order_acknowledgement_belongs_to_options():
    ack = OrderIn.model_validate(body_for("OPT", order_type="MKT", limit_price=None))
    assert ack.market_order_ack is False
    ack = OrderIn.model_validate(
        {**body_for("OPT", market_order_ack=True), "order_type": "MKT", "limit_price": None}
    )
    assert ack.market_order_ack is True and ack.intent().market_order_ack is True
    for sec_type in ("STK", "CASH", "FUT"):
        assert refused_body(body_for(sec_type, market_order_ack=True)) == (
            "market_order_ack",
            "is only used by OPT orders",
        )
    assert accepted(market_order_ack=False).market_order_ack is False


def test_options_default_to_limit_orders():
    assert refused_body({**BASE, "sec_type": "opt"}) == (
        "limit_price",
        "is required for LMT orders",
    )
    assert OrderIn.model_validate({**BASE, "sec_type": "OPT", "limit_price": 2}).order_type == "LMT"
    assert accepted(sec_type="FUT").order_type == "MKT"


def test_derivative_quantities_are_whole_contracts():
    assert refused_body(body_for("FUT", quantity=1.5)) == (
        "quantity",
        "must be a whole number of contracts",
    )
    assert refused_body(body_for("OPT", quantity=2.5))[0] == "quantity"
    assert OrderIn.model_validate(body_for("FUT", quantity=2.0)).intent().quantity == 2.0


# ------------------------------------------------------------- contract spec, intent
def test_stocks_and_fx_name_no_derivative_contract():
    assert accepted().contract_spec() is None
    assert accepted(symbol="EUR.USD", sec_type="CASH").contract_spec() is None


def test_an_option_passes_on_every_contract_field():
    order = OrderIn.model_validate(body_for("OPT", currency="EUR", **CONTRACT))
    spec = order.contract_spec()
    assert spec == ContractSpec(
        symbol="AAPL",
        sec_type="OPT",
        currency="EUR",
        expiry="20261218",
        strike=200.0,
        right="C",
        exchange="SMART",
        multiplier=100.0,
        trading_class="AAPL",
        local_symbol="AAPL  261218C00200000",
    )
    assert spec is not None and type(spec.strike) is float and type(spec.multiplier) is float
    intent = order.intent("DU9")
    assert intent == OrderIntent(
        symbol="AAPL",
        action="BUY",
        quantity=10.0,
        order_type="LMT",
        limit_price=1.5,
        sec_type="OPT",
        currency="EUR",
        account="DU9",
        expiry="20261218",
        strike=200.0,
        right="C",
        exchange="SMART",
        trading_class="AAPL",
        local_symbol="AAPL  261218C00200000",
        multiplier=100.0,
    )
    assert type(intent.strike) is float and type(intent.multiplier) is float


def test_a_future_named_by_its_month_leaves_the_rest_empty():
    order = OrderIn.model_validate(body_for("FUT", symbol="ES", expiry="202612"))
    assert order.contract_spec() == ContractSpec(symbol="ES", sec_type="FUT", expiry="202612")
    spec = order.contract_spec()
    assert spec is not None
    assert (spec.strike, spec.right, spec.exchange, spec.multiplier) == (None, "", "", None)
    assert (spec.trading_class, spec.local_symbol, spec.currency) == ("", "", "USD")
    intent = order.intent()
    assert intent == OrderIntent(
        symbol="ES", action="BUY", quantity=10.0, order_type="MKT", sec_type="FUT", expiry="202612"
    )
    assert (intent.strike, intent.right, intent.exchange) == (None, "", "")
    assert (intent.trading_class, intent.local_symbol) == ("", "")
    assert intent.multiplier == 1.0  # not given: the broker's is filled in at resolution


def test_a_future_by_local_symbol_and_exchange():
    order = OrderIn.model_validate(
        body_for("FUT", symbol="ES", local_symbol="esz6", exchange="cme", multiplier=50)
    )
    assert order.contract_spec() == ContractSpec(
        symbol="ES", sec_type="FUT", local_symbol="ESZ6", exchange="CME", multiplier=50.0
    )
    intent = order.intent()
    assert (intent.local_symbol, intent.exchange, intent.multiplier, intent.expiry) == (
        "ESZ6",
        "CME",
        50.0,
        "",
    )


def test_an_option_right_may_be_spelled_out():
    put = OrderIn.model_validate(body_for("OPT", right="put", strike=150.5, trading_class="aapl"))
    spec = put.contract_spec()
    assert spec is not None and (spec.right, spec.strike, spec.trading_class) == (
        "P",
        150.5,
        "AAPL",
    )
    assert (put.intent().right, put.intent().strike) == ("P", 150.5)
    assert OrderIn.model_validate(body_for("OPT", right="Call")).intent().right == "C"


# -------------------------------------------------------------------------- fingerprint
def canonical(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def test_a_stock_fingerprint_is_its_content_without_the_derivative_fields():
    """Fingerprints are kept (idempotent retries): a stock order's must not change when fields
    it does not use are added to the model, nor with the order of the keys."""
    order = accepted(order_type="LMT", limit_price=100, client_order_id="x-1")
    content = {
        "symbol": "AAPL",
        "action": "BUY",
        "quantity": 10,
        "order_type": "LMT",
        "limit_price": 100,
        "stop_price": None,
        "trailing_amount": None,
        "trailing_percent": None,
        "take_profit": None,
        "stop_loss": None,
        "tif": "DAY",
        "outside_rth": False,
        "sec_type": "STK",
        "currency": "USD",
    }
    assert order.fingerprint() == canonical(content)
    reordered = OrderIn.model_validate(
        dict(reversed(list({**BASE, "order_type": "LMT", "limit_price": 100}.items())))
    )
    assert reordered.fingerprint() == order.fingerprint()


def test_the_fingerprint_ignores_how_a_trigger_is_accepted():
    stop = {"order_type": "STP", "stop_price": 90}
    assert (
        accepted(**stop, accept_immediate_trigger=True).fingerprint()
        == accepted(**stop).fingerprint()
    )


def test_the_fingerprint_tells_contracts_apart():
    one = OrderIn.model_validate(body_for("OPT", **CONTRACT))
    assert one.fingerprint() == OrderIn.model_validate(body_for("OPT", **CONTRACT)).fingerprint()
    for name, other in (
        ("strike", 205),
        ("right", "P"),
        ("expiry", "20261217"),
        ("multiplier", 10),
    ):
        changed = OrderIn.model_validate(body_for("OPT", **{**CONTRACT, name: other}))
        assert changed.fingerprint() != one.fingerprint(), name
    bare = OrderIn.model_validate(body_for("OPT"))
    assert bare.fingerprint() != one.fingerprint()
    mkt = {"order_type": "MKT", "limit_price": None}
    acked = OrderIn.model_validate({**body_for("OPT", market_order_ack=True), **mkt})
    assert acked.fingerprint() != OrderIn.model_validate({**body_for("OPT"), **mkt}).fingerprint()


# ------------------------------------------------------------------ FX pairs, sec_type
@pytest.mark.parametrize("symbol", ["EUR.USD", "EURUSD", "eur.usd", "USD.JPY", "GBPCHF", " AUDNZD"])
def test_two_traded_currencies_make_an_fx_pair(symbol):
    assert looks_like_fx(symbol)


@pytest.mark.parametrize(
    "symbol",
    [
        "EUREUR",  # one currency against itself
        "EUR.EUR",
        "XYZUSD",  # not a currency first
        "EURXYZ",  # not a currency second
        "ABCDEF",
        "EURUS",  # too short
        "EURUSDX",  # too long
        "EUR.USD.",  # a dot too many
        "E.UR.USD",
        "AAPL",
    ],
)
def test_other_symbols_are_not_fx_pairs(symbol):
    assert not looks_like_fx(symbol)


@pytest.mark.parametrize(
    ("symbol", "sec_type"),
    [
        ("EUR.USD", "CASH"),
        ("usdjpy", "CASH"),
        ("AAPL", "STK"),
        ("EURXYZ", "STK"),
        ("EUR.EUR", "STK"),
    ],
)
def test_without_sec_type_an_fx_looking_symbol_is_a_pair(symbol, sec_type):
    order = OrderIn.model_validate({**BASE, "symbol": symbol})
    assert order.sec_type == sec_type and order.intent().sec_type == sec_type


def test_a_given_sec_type_is_kept_for_an_fx_looking_symbol():
    assert accepted(symbol="EURUSD", sec_type="STK").sec_type == "STK"
    assert accepted(symbol="EURUSD", sec_type=None).sec_type == "CASH"


def test_an_fx_pair_found_without_sec_type_takes_fractional_quantities():
    """CASH trades in any amount; a stock in whole shares."""
    assert (
        OrderIn.model_validate({**BASE, "symbol": "EUR.USD", "quantity": 1000.5}).quantity == 1000.5
    )
    assert refused(symbol="XYZ.USD", quantity=1000.5) == (
        "quantity",
        "must be a whole number of shares for stocks",
    )


# ---------------------------------------------------------------------------- first_error
def test_a_number_as_text_is_one_error_saying_a_number_is_needed():
    with pytest.raises(ValidationError) as caught:
        OrderIn.model_validate({**BASE, "quantity": "10", "junk": 1, "limit_price": "1"})
    field, message, details = first_error(caught.value)
    assert (field, message) == ("quantity", "must be a number")
    assert details == [
        {"field": "quantity", "message": "must be a number"},
        {"field": "limit_price", "message": "must be a number"},
        {"field": "junk", "message": "Extra inputs are not permitted"},
    ]


def test_a_number_out_of_range_keeps_its_words():
    assert refused(quantity=0) == ("quantity", "Input should be greater than 0")
    assert refused(quantity=True) == ("quantity", "must be a number")


def test_an_error_without_details_still_answers():
    empty = ValidationError.from_exception_data("OrderIn", [])
    assert first_error(empty) == (None, "invalid request", [])


# ------------------------------------------------------------------- the served rules
def served() -> dict:
    """The order schema as /api/v1/openapi.json serves it (built afresh: no test reads a copy
    made at import)."""
    return OrderIn.model_json_schema()


def enum_of(name: str) -> list[str]:
    return served()["properties"][name]["enum"]


def valid(body: dict) -> bool:
    try:
        OrderIn.model_validate(body)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("order_type", enum_of("order_type"))
def test_x_needs_says_which_prices_validation_requires(order_type):
    accepted_with = [
        (lim, stp, trl)
        for lim in (False, True)
        for stp in (False, True)
        for trl in (False, True)
        if valid(
            {
                **BASE,
                "order_type": order_type,
                **({"limit_price": 100} if lim else {}),
                **({"stop_price": 101} if stp else {}),
                **({"trailing_amount": 1} if trl else {}),
            }
        )
    ]
    assert len(accepted_with) == 1
    lim, stp, trl = accepted_with[0]
    assert served()["x-needs"][order_type] == {
        "limit_price": lim,
        "stop_price": stp,
        "trailing": trl,
    }
    assert set(served()["x-needs"]) == set(enum_of("order_type"))


TICK_CASES = [  # one price for every kind of grid: stocks above and below $1, FX, yen pairs
    ("STK", "AAPL", 100.0),
    ("STK", "AAPL", 0.5),
    ("CASH", "EUR.USD", 1.1),
    ("CASH", "USD.JPY", 150.0),
]


def served_row(sec_type: str, symbol: str, price: float) -> int:
    """The browser's reading of x-price-ticks: the first matching row."""
    for index, row in enumerate(served()["x-price-ticks"]):
        below = row["below"]
        if (
            row["sec_type"] == sec_type
            and row["symbol_contains"] in symbol
            and (below is None or price < below)
        ):
            return index
    raise AssertionError(f"no tick for {sec_type} {symbol}")


@pytest.mark.parametrize(("sec_type", "symbol", "price"), TICK_CASES)
def test_x_price_ticks_is_the_grid_validation_applies(sec_type, symbol, price):
    tick = served()["x-price-ticks"][served_row(sec_type, symbol, price)]["tick"]
    assert tick == price_tick(sec_type, symbol, price)
    body = {**BASE, "symbol": symbol, "sec_type": sec_type, "order_type": "LMT"}
    assert valid({**body, "limit_price": round(price + tick, 10)})
    off = round(price + tick / 2, 10)
    assert refused_body({**body, "limit_price": off}) == (
        "limit_price",
        f"{written(off)} is not a multiple of the price tick {written(tick)}",
    )


def written(number: float) -> str:
    """A price as the trader typed it (every digit; the cases have at most ten decimals)."""
    return f"{number:.10f}".rstrip("0").rstrip(".")


def test_every_served_tick_row_is_the_first_match_of_a_price():
    used = {served_row(*case) for case in TICK_CASES}
    assert used == set(range(len(served()["x-price-ticks"])))


def test_derivative_prices_fall_back_to_a_cent():
    """The webhook rounds every price with price_tick, an option's or future's too."""
    assert price_tick("FUT", "ES", 5000.0) == 0.01
    assert price_tick("OPT", "AAPL", 0.5) == 0.01


OFF_GRID = {  # a valid order but for one price off the cent grid
    "limit_price": {"order_type": "LMT", "limit_price": 100.005},
    "stop_price": {"order_type": "STP", "stop_price": 100.005},
    "take_profit": {"order_type": "LMT", "limit_price": 100, "take_profit": 110.005},
    "stop_loss": {"order_type": "LMT", "limit_price": 100, "stop_loss": 90.005},
    "trailing_amount": {"order_type": "TRAIL", "trailing_amount": 1.005},
    "trailing_percent": {"order_type": "TRAIL", "trailing_percent": 1.005},
}


def test_x_tick_fields_are_the_prices_validation_puts_on_the_grid():
    on_grid = {name for name, fields in OFF_GRID.items() if not valid({**BASE, **fields})}
    assert set(served()["x-tick-fields"]) == on_grid
    for name in served()["x-tick-fields"]:
        assert refused(**OFF_GRID[name])[0] == name


@pytest.mark.parametrize("action", ["BUY", "SELL"])
def test_x_side_rules_are_the_bracket_sides_validation_applies(action):
    rules = served()["x-side-rules"]
    assert {(r["field"], r["than"]) for r in rules} == {
        ("take_profit", "limit_price"),
        ("stop_loss", "limit_price"),
        ("take_profit", "stop_price"),
        ("stop_loss", "stop_price"),
        ("stop_loss", "take_profit"),
    }
    entry_types = {"limit_price": "LMT", "stop_price": "STP"}
    for rule in rules:
        side = rule["buy"] if action == "BUY" else {"above": "below", "below": "above"}[rule["buy"]]
        step = 10 if side == "above" else -10
        order_type = entry_types.get(rule["than"], "MKT")
        body = {**BASE, "action": action, "order_type": order_type, rule["than"]: 100}
        assert valid({**body, rule["field"]: 100 + step}), rule
        field, message = refused_body({**body, rule["field"]: 100 - step})
        assert field == rule["field"] and message.startswith(f"must be {side} "), rule


def test_x_whole_quantity_lists_asset_classes_refusing_fractions():
    for sec_type in served()["x-whole-quantity"]:
        assert refused_body(body_for(sec_type, quantity=1.5))[0] == "quantity"
    assert served()["x-whole-quantity"] == ["STK"]
    assert valid(body_for("CASH", quantity=1.5))


def test_x_bracket_tifs_refused_are_the_tifs_a_bracket_cannot_have():
    refused_tifs = [
        tif
        for tif in enum_of("tif")
        if not valid(
            {**BASE, "order_type": "LMT", "limit_price": 100, "take_profit": 110, "tif": tif}
        )
    ]
    assert served()["x-bracket-tifs-refused"] == refused_tifs == ["IOC"]
    assert refused(take_profit=110, tif="IOC") == ("tif", "a bracket cannot be IOC")
