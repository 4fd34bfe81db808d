"""GET /api/v1/options/chain, /options/quotes and /futures/contracts over the simulated gateway
(reader connection)."""

from __future__ import annotations

import re

EXPIRY = "20261218"
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")  # 2026-11-30T15:00:00.123Z


def test_chain_lists_expiries_and_strikes_from_sec_def_opt_params(client):
    answer = client.get("/api/v1/options/chain?symbol=aapl")
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert (body["symbol"], body["under_con_id"]) == ("AAPL", 265598)
    [aapl] = body["classes"]
    assert (aapl["trading_class"], aapl["multiplier"]) == ("AAPL", 100)
    assert {"SMART", "CBOE"} <= set(aapl["exchanges"])
    assert EXPIRY in aapl["expirations"] and aapl["expirations"] == sorted(aapl["expirations"])
    assert len(aapl["strikes"]) == 13 and 190 in aapl["strikes"]
    assert ISO_MS.match(body["time"]), body["time"]  # the API's one time format (wire.py)


def test_quotes_give_prices_iv_and_greeks_per_strike_around_the_money(client):
    answer = client.get(f"/api/v1/options/quotes?symbol=AAPL&expiry={EXPIRY}&strikes=3")
    assert answer.status_code == 200, answer.get_json()
    board = answer.get_json()
    assert (board["expiry"], board["multiplier"]) == (EXPIRY, 100)
    strikes = [row["strike"] for row in board["rows"]]
    assert len(strikes) == 7 and strikes == sorted(strikes)
    assert abs(strikes[3] - board["under_price"]) <= 2.5  # the middle strike is at the money
    assert ISO_MS.match(board["time"]), board["time"]
    for row in board["rows"]:
        call, put = row["call"], row["put"]
        assert call["description"] == f"AAPL {EXPIRY} {row['strike']:g} C"
        assert put["description"] == f"AAPL {EXPIRY} {row['strike']:g} P"
        for leg in (call, put):
            assert 0 < leg["bid"] < leg["ask"] and 0.05 < leg["implied_vol"] < 1.5
            assert leg["gamma"] > 0 and leg["vega"] > 0 and leg["theta"] < 0
        assert 0 < call["delta"] < 1 and -1 < put["delta"] < 0
    deltas = [row["call"]["delta"] for row in board["rows"]]
    assert deltas == sorted(deltas, reverse=True)  # calls: higher strike, lower delta


QUOTE_ERRORS = [  # (query, status, the field the error names)
    ("", 400, "symbol"),
    ("symbol=AAPL", 400, "expiry"),
    ("symbol=AAPL&expiry=2026-12-18", 400, "expiry"),
    ("symbol=AAPL&expiry=20261219", 400, "expiry"),  # a date with no options
    (f"symbol=AAPL&expiry={EXPIRY}&strikes=0", 400, "strikes"),
    (f"symbol=AAPL&expiry={EXPIRY}&strikes=x", 400, "strikes"),
    (f"symbol=AAPL&expiry={EXPIRY}&colour=red", 400, "colour"),
    (f"symbol=ZZZZ&expiry={EXPIRY}", 404, "symbol"),
    (f"symbol=MSFT&expiry={EXPIRY}", 404, "symbol"),  # no listed options
]
FUTURES_ERRORS = [
    ("", 400, "symbol"),
    ("symbol=ES&exchange=c m e", 400, "exchange"),
    ("symbol=ZZZZ", 404, "symbol"),
    ("symbol=ES&exchange=NYMEX", 404, "symbol"),
]


def test_bad_parameters_are_named(client):
    """One app for every case (each is one request)."""
    for path, cases in (("options/quotes", QUOTE_ERRORS), ("futures/contracts", FUTURES_ERRORS)):
        for query, status, field in cases:
            answer = client.get(f"/api/v1/{path}?{query}")
            assert (answer.status_code, answer.get_json()["error"]["field"]) == (status, field), (
                path,
                query,
            )
    assert client.get("/api/v1/options/chain?symbol=1x").get_json()["error"]["field"] == "symbol"
    unknown = client.get("/api/v1/options/chain?symbol=ZZZZ")
    assert (unknown.status_code, unknown.get_json()["error"]["code"]) == (404, "unknown_symbol")


def test_futures_contracts_list_the_contract_months_nearest_first(client):
    answer = client.get("/api/v1/futures/contracts?symbol=es&exchange=cme")
    assert answer.status_code == 200, answer.get_json()
    months = answer.get_json()["contracts"]
    assert [m["local_symbol"] for m in months] == ["ESZ6", "ESH7", "ESM7"]  # clock: 2026-11-30
    assert all(m["multiplier"] == 50 and m["exchange"] == "CME" for m in months)
    assert months[0]["description"] == "ES 202612" and months[0]["contract_month"] == "202612"
    crude = client.get("/api/v1/futures/contracts?symbol=CL").get_json()["contracts"]
    assert crude[0]["contract_month"] > crude[0]["last_trade_date"][:6]  # CL: the month after
