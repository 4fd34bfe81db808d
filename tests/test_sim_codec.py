"""The sans-IO codec and protocol layer, checked against the real client libraries.

Requests are captured from what ib_async 2.1.0's ``Client`` and ibapi 9.81's
``EClient`` actually write; server messages are fed to their real decoders.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import math
import struct
import typing
from collections.abc import Callable
from datetime import UTC
from types import SimpleNamespace
from typing import Any

import ib_async
import pytest
from ib_async.client import Client as AsyncClient
from ib_async.contract import ComboLeg as AsyncComboLeg
from ib_async.contract import DeltaNeutralContract as AsyncDeltaNeutral
from ib_async.decoder import Decoder as AsyncDecoder
from ib_async.objects import TagValue as AsyncTagValue
from ib_async.util import UNSET_DOUBLE as ASYNC_UNSET_DOUBLE
from ibapi import comm
from ibapi import order_condition as ib_cond
from ibapi.client import EClient
from ibapi.contract import Contract as IbContract
from ibapi.decoder import Decoder as IbDecoder
from ibapi.execution import ExecutionFilter as IbExecutionFilter
from ibapi.order import Order as IbOrder
from ibapi.tag_value import TagValue as IbTagValue
from ibapi.wrapper import EWrapper

from sim_gateway import chart_messages as cm
from sim_gateway import depth
from sim_gateway import instrument_messages as im
from sim_gateway import protocol as p
from sim_gateway.codec import (
    MAX_FRAME_SIZE,
    UNSET_DOUBLE,
    ClientFrameReader,
    DecodeError,
    Hello,
    ProtocolError,
    ServerFrameReader,
    encode_client_hello,
    encode_frame,
    encode_handshake_reply,
    fmt_price,
    fmt_qty,
    parse_float,
    parse_int,
)
from sim_gateway.derivatives import Chain
from sim_gateway.historical import CancelHistoricalData, ReqHistoricalData
from sim_gateway.options_model import Greeks
from sim_gateway.types import (
    AccountValue,
    CommissionReport,
    Contract,
    ContractQuery,
    Execution,
    ExecutionFilter,
    OrderRequest,
    OrderView,
    PnL,
    PnLSingle,
    PortfolioItem,
    Position,
)

ASYNC_VERSIONS = (157, 163, 164, 170, 176, 177, 178)
CLIENT_VERSIONS = (157, 178)

# ============================================================ framing


def _feed_bytewise(
    reader: ServerFrameReader | ClientFrameReader, data: bytes
) -> list[tuple[int, Any]]:
    """Feed one byte at a time; record (offset of last byte, event)."""
    events = []
    for offset in range(len(data)):
        reader.feed(data[offset : offset + 1])
        while (event := reader.next_event()) is not None:
            events.append((offset, event))
    return events


def test_server_reader_byte_by_byte() -> None:
    chunks = [
        encode_client_hello(157, 178, "+PACEAPI"),
        encode_frame(["71", "2", "1", ""]),
        encode_frame(["61", "1"]),
        encode_frame([]),
        encode_frame(["62", "1", "9", "All", "NetLiquidation,BuyingPower"]),
    ]
    ends = [sum(map(len, chunks[: i + 1])) - 1 for i in range(len(chunks))]
    events = _feed_bytewise(ServerFrameReader(), b"".join(chunks))
    assert events == list(
        zip(
            ends,
            [
                Hello(157, 178, "+PACEAPI"),
                ["71", "2", "1", ""],
                ["61", "1"],
                [],
                ["62", "1", "9", "All", "NetLiquidation,BuyingPower"],
            ],
            strict=True,
        )
    )


def test_server_reader_plain_hello_and_batched_feed() -> None:
    reader = ServerFrameReader()
    reader.feed(encode_client_hello(100, 157) + encode_frame(["71", "2", "0", ""]))
    assert reader.next_event() == Hello(100, 157, "")
    assert reader.next_event() == ["71", "2", "0", ""]
    assert reader.next_event() is None


def test_client_reader_byte_by_byte() -> None:
    chunks = [
        encode_handshake_reply(178, "20260101 09:30:00 US/Eastern"),
        encode_frame(p.managed_accounts(["DU1234567"])),
        encode_frame(p.next_valid_id(1)),
    ]
    ends = [sum(map(len, chunks[: i + 1])) - 1 for i in range(len(chunks))]
    events = _feed_bytewise(ClientFrameReader(), b"".join(chunks))
    assert events == list(
        zip(
            ends,
            [["178", "20260101 09:30:00 US/Eastern"], ["15", "1", "DU1234567"], ["9", "1", "1"]],
            strict=True,
        )
    )


def test_handshake_reply_has_exactly_two_fields() -> None:
    data = encode_handshake_reply(157, "20260101 09:30:00 EST")
    assert data == struct.pack(">I", 26) + b"157\x0020260101 09:30:00 EST\x00"


@pytest.mark.parametrize("data", [b"GET / HTTP/1.1\r\n", b"APX", b"\x00\x00\x00\x09v157..178"])
def test_bad_magic(data: bytes) -> None:
    reader = ServerFrameReader()
    reader.feed(data)
    with pytest.raises(ProtocolError):
        reader.next_event()


@pytest.mark.parametrize("text", [b"v157", b"x157..178", b"v178..157", b"v1a..2", b""])
def test_bad_version_range(text: bytes) -> None:
    reader = ServerFrameReader()
    reader.feed(b"API\0" + struct.pack(">I", len(text)) + text)
    with pytest.raises(ProtocolError):
        reader.next_event()


def test_oversize_frames() -> None:
    reader = ServerFrameReader()
    reader.feed(b"API\0" + struct.pack(">I", 100_000))
    with pytest.raises(ProtocolError):
        reader.next_event()
    reader = ServerFrameReader()
    reader.feed(encode_client_hello(157, 178) + struct.pack(">I", MAX_FRAME_SIZE + 1))
    assert isinstance(reader.next_event(), Hello)
    with pytest.raises(ProtocolError):
        reader.next_event()
    client = ClientFrameReader()
    client.feed(struct.pack(">I", MAX_FRAME_SIZE + 1))
    with pytest.raises(ProtocolError):
        client.next_event()


def test_invalid_utf8_is_a_decode_error() -> None:
    reader = ClientFrameReader()
    reader.feed(struct.pack(">I", 2) + b"\xff\x00")
    with pytest.raises(DecodeError):
        reader.next_event()


# ============================================================ field helpers


def test_formatting() -> None:
    assert [fmt_qty(100.0), fmt_qty(-110), fmt_qty(0.5), fmt_qty(0.0)] == [
        "100",
        "-110",
        "0.5",
        "0",
    ]
    assert [fmt_price(196.52), fmt_price(0.0), fmt_price(None), fmt_price(None, "0.0")] == [
        "196.52",
        "0.0",
        "",
        "0.0",
    ]
    assert fmt_price(math.inf) == "Infinite"
    assert fmt_price(UNSET_DOUBLE, "X") == "X"


def test_parsing() -> None:
    assert parse_float("", "f") is None
    assert parse_float("1.7976931348623157e+308", "f") is None
    assert parse_float("1.7976931348623157E308", "f") is None
    assert parse_float("Infinite", "f") == math.inf
    assert parse_float("196.52", "f") == 196.52
    assert parse_int("", "f", default=7) == 7
    assert parse_int("2147483647", "f") == 0
    assert parse_int("-1", "f") == -1
    for bad in ("abc", "nan", "1..2"):
        with pytest.raises(DecodeError, match="price"):
            parse_float(bad, "price")
    with pytest.raises(DecodeError, match="orderId"):
        parse_int("1.5", "orderId")


# ============================================================ request round trips

AAPL_QUERY = ContractQuery(
    con_id=265598, symbol="AAPL", sec_type="STK", exchange="SMART", primary_exchange="NASDAQ",
    currency="USD", local_symbol="AAPL", trading_class="NMS",
)  # fmt: skip

FULL_ORDER = OrderRequest(
    order_id=42, contract=AAPL_QUERY, action="SELL", total_quantity=12.5, order_type="TRAIL LIMIT",
    lmt_price=190.25, aux_price=1.5, tif="GTC", oca_group="oca-7", oca_type=2, account="DU1234567",
    order_ref="bot:7", transmit=False, parent_id=41, outside_rth=True, trailing_percent=0.75,
    trail_stop_price=188.0, what_if=True, e_trade_only=True, firm_quote_only=True,
)  # fmt: skip

REQUESTS: list[p.Request] = [
    p.StartApi(7, "+X"),
    p.ReqIds(-1),
    p.ReqCurrentTime(),
    p.ReqManagedAccts(),
    p.ReqContractDetails(
        3, ContractQuery(symbol="AAPL", sec_type="STK", exchange="SMART", currency="USD")
    ),
    p.ReqMktData(4, AAPL_QUERY, "233,236", True, False),
    p.ReqMktData(
        5, ContractQuery(symbol="SPREAD", sec_type="BAG", exchange="SMART"), "", False, True
    ),
    p.CancelMktData(4),
    p.ReqMarketDataType(3),
    p.PlaceOrder(FULL_ORDER),
    p.PlaceOrder(
        OrderRequest(
            1,
            ContractQuery(symbol="EUR", sec_type="CASH", exchange="IDEALPRO"),
            "BUY",
            20000,
            "MKT",
        )
    ),
    p.PlaceOrder(
        OrderRequest(
            2, ContractQuery(symbol="AAPL", exchange="IBKRATS"), "BUY", 1, "PEG BENCH", 1.0
        )
    ),
    p.PlaceOrder(
        OrderRequest(3, ContractQuery(symbol="AAPL", exchange="IBKRATS"), "BUY", 1, "PEG BEST", 1.0)
    ),
    p.PlaceOrder(
        OrderRequest(4, ContractQuery(symbol="AAPL", sec_type="BAG"), "BUY", 1, "PEG MID", 1.0)
    ),
    p.CancelOrder(9),
    p.ReqOpenOrders(),
    p.ReqAllOpenOrders(),
    p.ReqAutoOpenOrders(True),
    p.ReqCompletedOrders(True),
    p.ReqExecutions(
        2, ExecutionFilter(1, "DU1", "20260101-00:00:00", "AAPL", "STK", "SMART", "BUY")
    ),
    p.ReqPositions(),
    p.CancelPositions(),
    p.ReqAccountUpdates(True, "DU1"),
    p.ReqAccountUpdatesMulti(5, "DU1", "", True),
    p.CancelAccountUpdatesMulti(5),
    p.ReqAccountSummary(6, "All", ("NetLiquidation", "$LEDGER:ALL")),
    p.CancelAccountSummary(6),
    p.ReqPnL(7, "DU1", ""),
    p.CancelPnL(7),
    p.ReqPnLSingle(8, "DU1", "", 265598),
    p.CancelPnLSingle(8),
    p.ReqGlobalCancel(),
    im.ReqSecDefOptParams(12, "AAPL", "", "STK", 265598),
    im.ReqMktDepth(13, AAPL_QUERY, 10, True),
    im.CancelMktDepth(13, True),
    im.ReqMktDepthExchanges(),
    im.ReqMarketRule(26),
    ReqHistoricalData(
        17,
        ContractQuery(
            con_id=265598, symbol="AAPL", sec_type="STK", exchange="SMART", currency="USD"
        ),
        "20261130 16:00:00 US/Eastern",
        "5 mins",
        "1 D",
        True,
        "TRADES",
        1,
        False,
    ),
    CancelHistoricalData(17),
    cm.ReqHeadTimeStamp(18, AAPL_QUERY, False, "TRADES", 1),
    cm.CancelHeadTimeStamp(18),
    cm.ReqRealTimeBars(19, AAPL_QUERY, 5, "MIDPOINT", True),
    cm.CancelRealTimeBars(19),
    cm.ReqMatchingSymbols(20, "EUR"),
]


def test_every_request_type_has_a_round_trip_case() -> None:
    all_types = set(typing.get_args(p.Request)) - {p.Unsupported}
    assert all_types == {type(req) for req in REQUESTS}


@pytest.mark.parametrize("version", CLIENT_VERSIONS)
@pytest.mark.parametrize("req", REQUESTS, ids=lambda r: type(r).__name__)
def test_request_round_trip(req: p.Request, version: int) -> None:
    fields = p.encode_request(req, version)
    reader = ServerFrameReader()
    reader.feed(encode_client_hello(157, 178) + encode_frame(fields))
    reader.next_event()
    event = reader.next_event()
    assert isinstance(event, list)
    assert p.decode_request(event, version) == req


def test_encode_unsupported_request_raises() -> None:
    with pytest.raises(ProtocolError):
        p.encode_request(p.Unsupported(10, "REQ_MKT_DEPTH"), 157)


# ============================================================ real client bytes


def _server_fields(frame: bytes) -> list[str]:
    """Run one captured client frame through the server reader."""
    reader = ServerFrameReader()
    reader.feed(encode_client_hello(157, 178) + frame)
    assert isinstance(reader.next_event(), Hello)
    fields = reader.next_event()
    assert isinstance(fields, list) and reader.next_event() is None
    return fields


def ib_async_sends(version: int, call: Callable[[AsyncClient], None]) -> list[list[str]]:
    """What ib_async's Client writes for ``call`` at ``version``."""
    client = AsyncClient(None)
    client._serverVersion = version
    client.connState = AsyncClient.CONNECTED
    sent: list[str] = []
    client.sendMsg = sent.append  # type: ignore[method-assign, assignment]  # record what it sends
    call(client)
    return [_server_fields(client._prefix(msg.encode())) for msg in sent]


class IbapiRecorder(EWrapper):
    """An ibapi EWrapper that records every callback."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattribute__(self, name: str) -> Any:
        if name in _EWRAPPER_METHODS:
            calls = object.__getattribute__(self, "calls")
            return lambda *args: calls.append((name, args))
        return object.__getattribute__(self, name)


_EWRAPPER_METHODS = {
    name for name, _ in inspect.getmembers(EWrapper, inspect.isfunction) if not name.startswith("_")
} - {"logAnswer"}


class FakeConn:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def isConnected(self) -> bool:
        return True

    def sendMsg(self, msg: bytes) -> None:
        self.sent.append(msg)


def placing(order_id: int, contract: Any, order: Any) -> Callable[[EClient], None]:
    """ibapi's placeOrder of ``order`` (bound now, called later)."""
    return lambda client: client.placeOrder(order_id, contract, order)


def start_api_as(client_id: int) -> Callable[[AsyncClient], None]:
    def start(client: AsyncClient) -> None:
        client.clientId = client_id
        client.startApi()

    return start


def ibapi_sends(call: Callable[[EClient], None]) -> list[list[str]]:
    """What ibapi 9.81's EClient writes for ``call`` at v157."""
    wrapper = IbapiRecorder()
    client = EClient(wrapper)
    client.serverVersion_ = 157
    client.connState = EClient.CONNECTED
    client.conn = FakeConn()
    call(client)
    assert wrapper.calls == []  # no client-side error
    return [_server_fields(frame) for frame in client.conn.sent]


def _async_stock() -> ib_async.Contract:
    return ib_async.Contract(
        conId=265598, symbol="AAPL", secType="STK", exchange="SMART", primaryExchange="NASDAQ",
        currency="USD", localSymbol="AAPL", tradingClass="NMS",
    )  # fmt: skip


def _ib_stock() -> IbContract:
    c = IbContract()
    c.symbol, c.secType, c.exchange, c.currency = "AAPL", "STK", "SMART", "USD"
    return c


def _ib_order(action: str, qty: float, order_type: str, **attrs: Any) -> IbOrder:
    order = IbOrder()
    order.action, order.totalQuantity, order.orderType = action, qty, order_type
    for name, value in attrs.items():
        setattr(order, name, value)
    return order


def _decoded_order(fields: list[str], version: int) -> OrderRequest:
    req = p.decode_request(fields, version)
    assert isinstance(req, p.PlaceOrder)
    return req.order


def _async_orders() -> list[tuple[ib_async.Order, dict[str, Any]]]:
    """(order as the user builds it, expected OrderRequest fields)."""
    return [
        (
            ib_async.LimitOrder("BUY", 100, 196.52, orderRef="bot-1", tif="GTC", outsideRth=True, parentId=3),
            dict(order_type="LMT", lmt_price=196.52, aux_price=None, order_ref="bot-1", tif="GTC",
                 outside_rth=True, parent_id=3, total_quantity=100.0, transmit=True),
        ),
        (
            ib_async.MarketOrder("SELL", 5, orderRef="close", tif="DAY", account="DU1234567"),
            dict(order_type="MKT", lmt_price=None, order_ref="close", tif="DAY", account="DU1234567",
                 action="SELL", e_trade_only=False, firm_quote_only=False),
        ),
        (
            ib_async.LimitOrder("BUY", 10, 100.0, transmit=False),
            dict(order_type="LMT", transmit=False, parent_id=0),
        ),
        (
            ib_async.LimitOrder("SELL", 10, 110.0, parentId=41, transmit=False),
            dict(order_type="LMT", lmt_price=110.0, parent_id=41, transmit=False),
        ),
        (
            ib_async.StopOrder("SELL", 10, 95.0, parentId=41, transmit=True, ocaGroup="b41", ocaType=1),
            dict(order_type="STP", aux_price=95.0, parent_id=41, transmit=True, oca_group="b41", oca_type=1),
        ),
        (
            ib_async.Order(action="SELL", totalQuantity=10, orderType="TRAIL", trailingPercent=1.5,
                           trailStopPrice=180.0),
            dict(order_type="TRAIL", trailing_percent=1.5, trail_stop_price=180.0, aux_price=None),
        ),
        (
            ib_async.Order(action="BUY", totalQuantity=1, orderType="LMT", lmtPrice=1.0, whatIf=True),
            dict(what_if=True),
        ),
    ]  # fmt: skip


@pytest.mark.parametrize("version", CLIENT_VERSIONS)
@pytest.mark.parametrize("case", range(len(_async_orders())))
def test_ib_async_place_order(version: int, case: int) -> None:
    order, expected = _async_orders()[case]
    [fields] = ib_async_sends(version, lambda c: c.placeOrder(17, _async_stock(), order))
    decoded = _decoded_order(fields, version)
    assert decoded.order_id == 17
    assert decoded.contract == AAPL_QUERY
    for name, value in expected.items():
        assert getattr(decoded, name) == value, name


@pytest.mark.parametrize("version", CLIENT_VERSIONS)
def test_our_place_order_layout_matches_ib_async(version: int) -> None:
    order = ib_async.LimitOrder(
        "BUY", 100, 1.5, orderRef="x", tif="DAY", outsideRth=True, parentId=2
    )
    [theirs] = ib_async_sends(version, lambda c: c.placeOrder(5, _async_stock(), order))
    ours = p.encode_request(p.PlaceOrder(_decoded_order(theirs, version)), version)
    assert len(ours) == len(theirs) == {157: 110, 178: 114}[version]
    assert ours == theirs


def _exotic_async_orders() -> list[tuple[ib_async.Contract, ib_async.Order]]:
    """Orders that trigger every conditional group of placeOrder."""
    from ib_async.order import (
        ExecutionCondition,
        MarginCondition,
        PercentChangeCondition,
        PriceCondition,
        TimeCondition,
        VolumeCondition,
    )

    bag = ib_async.Contract(symbol="AAPL", secType="BAG", exchange="SMART", currency="USD")
    bag.comboLegs = [AsyncComboLeg(conId=1, ratio=1, action="BUY", exchange="SMART"),
                     AsyncComboLeg(conId=2, ratio=2, action="SELL", exchange="SMART")]  # fmt: skip
    bag_order = ib_async.LimitOrder("BUY", 1, 2.5)
    bag_order.orderComboLegs = [ib_async.OrderComboLeg(price=1.0)]
    bag_order.smartComboRoutingParams = [AsyncTagValue("NonGuaranteed", "1")]
    conditioned = ib_async.LimitOrder("BUY", 1, 2.5)
    conditioned.conditions = [
        PriceCondition(price=100.0, conId=265598, exch="SMART"), TimeCondition(time="20260101 10:00:00"),
        MarginCondition(percent=30), ExecutionCondition(secType="STK", exch="SMART", symbol="AAPL"),
        VolumeCondition(volume=1000, conId=265598, exch="SMART"),
        PercentChangeCondition(changePercent=2.0, conId=265598, exch="SMART"),
    ]  # fmt: skip
    dn_contract = _async_stock()
    dn_contract.deltaNeutralContract = AsyncDeltaNeutral(conId=3, delta=0.5, price=10.0)
    ats = _async_stock()
    ats.exchange = "IBKRATS"
    return [
        (bag, bag_order),
        (_async_stock(), conditioned),
        (_async_stock(), ib_async.LimitOrder("BUY", 1, 2.5, algoStrategy="Adaptive",
                                             algoParams=[AsyncTagValue("adaptivePriority", "Normal")])),
        (_async_stock(), ib_async.LimitOrder("BUY", 100, 2.5, scalePriceIncrement=0.05, scaleInitLevelSize=10,
                                             scaleSubsLevelSize=10, hedgeType="D", hedgeParam="0.5")),
        (dn_contract, ib_async.Order(action="BUY", totalQuantity=1, orderType="VOL", volatility=0.3,
                                     volatilityType=2, deltaNeutralOrderType="LMT", deltaNeutralAuxPrice=1.0)),
        (_async_stock(), ib_async.Order(action="BUY", totalQuantity=1, orderType="PEG BENCH", lmtPrice=2.5,
                                        referenceContractId=4, peggedChangeAmount=0.1, referenceChangeAmount=0.2)),
        (_async_stock(), ib_async.Order(action="BUY", totalQuantity=1, orderType="PEG BEST", lmtPrice=2.5,
                                        minCompeteSize=100, competeAgainstBestOffset=math.inf,
                                        midOffsetAtWhole=0.01, midOffsetAtHalf=0.005)),
        (_async_stock(), ib_async.Order(action="BUY", totalQuantity=1, orderType="PEG BEST", lmtPrice=2.5,
                                        minCompeteSize=100, competeAgainstBestOffset=0.02)),
        (_async_stock(), ib_async.Order(action="BUY", totalQuantity=1, orderType="PEG MID", lmtPrice=2.5,
                                        midOffsetAtWhole=0.01, midOffsetAtHalf=0.005)),
        (ats, ib_async.LimitOrder("BUY", 100, 2.5, minTradeQty=10)),
    ]  # fmt: skip


@pytest.mark.parametrize("version", (157, 170, 178))
@pytest.mark.parametrize("case", range(len(_exotic_async_orders())))
def test_ib_async_place_order_conditional_groups(version: int, case: int) -> None:
    contract, order = _exotic_async_orders()[case]
    [fields] = ib_async_sends(version, lambda c: c.placeOrder(23, contract, order))
    decoded = _decoded_order(fields, version)  # finish() proves every field was consumed
    if version >= 170:  # the group really was on the wire
        assert len(fields) > len(_real_place_order(version))
    assert (decoded.order_id, decoded.order_type, decoded.contract.sec_type) == (
        23,
        order.orderType,
        contract.secType,
    )
    assert decoded.lmt_price == (None if order.lmtPrice == ASYNC_UNSET_DOUBLE else order.lmtPrice)


def test_ibapi_place_order() -> None:
    orders: list[tuple[Any, dict[str, Any]]] = [
        (_ib_order("BUY", 100, "LMT", lmtPrice=196.52, orderRef="bot-1", tif="GTC", outsideRth=True, parentId=3),
         dict(order_type="LMT", lmt_price=196.52, order_ref="bot-1", tif="GTC", outside_rth=True, parent_id=3,
              e_trade_only=True, firm_quote_only=True, total_quantity=100.0)),
        (_ib_order("SELL", 5, "MKT", tif="DAY", account="DU1"),
         dict(order_type="MKT", lmt_price=None, aux_price=None, tif="DAY", account="DU1", action="SELL")),
        (_ib_order("SELL", 10, "LMT", lmtPrice=110.0, parentId=41, transmit=False),
         dict(parent_id=41, transmit=False, lmt_price=110.0)),
        (_ib_order("SELL", 10, "STP", auxPrice=95.0, parentId=41, transmit=True),
         dict(parent_id=41, transmit=True, aux_price=95.0, order_type="STP")),
        (_ib_order("SELL", 10, "TRAIL", trailingPercent=1.5, trailStopPrice=180.0),
         dict(order_type="TRAIL", trailing_percent=1.5, trail_stop_price=180.0, aux_price=None)),
    ]  # fmt: skip
    for order, expected in orders:
        [fields] = ibapi_sends(placing(17, _ib_stock(), order))
        assert len(fields) == 110
        decoded = _decoded_order(fields, 157)
        assert decoded.order_id == 17 and decoded.contract.symbol == "AAPL"
        for name, value in expected.items():
            assert getattr(decoded, name) == value, name


def test_ibapi_place_order_conditional_groups() -> None:
    bag = _ib_stock()
    bag.secType = "BAG"
    leg = SimpleNamespace(conId=1, ratio=1, action="BUY", exchange="SMART", openClose=0,
                          shortSaleSlot=0, designatedLocation="", exemptCode=-1)  # fmt: skip
    bag.comboLegs = [leg, leg]
    conditioned = _ib_order("BUY", 1, "LMT", lmtPrice=2.5, eTradeOnly=False, firmQuoteOnly=False)
    conditioned.conditions = [
        ib_cond.PriceCondition(0, 265598, "SMART", True, 100.0), ib_cond.TimeCondition(True, "20260101 10:00:00"),
        ib_cond.MarginCondition(True, 30), ib_cond.ExecutionCondition("STK", "SMART", "AAPL"),
        ib_cond.VolumeCondition(265598, "SMART", True, 1000),
        ib_cond.PercentChangeCondition(265598, "SMART", True, 2.0),
    ]  # fmt: skip
    cases = [
        (bag, _ib_order("BUY", 1, "LMT", lmtPrice=2.5, smartComboRoutingParams=[IbTagValue("NonGuaranteed", "1")])),
        (_ib_stock(), conditioned),
        (_ib_stock(), _ib_order("BUY", 1, "LMT", lmtPrice=2.5, algoStrategy="Adaptive",
                                algoParams=[IbTagValue("adaptivePriority", "Normal")])),
        (_ib_stock(), _ib_order("BUY", 1, "PEG BENCH", lmtPrice=2.5, referenceContractId=4)),
        (_ib_stock(), _ib_order("BUY", 1, "VOL", volatility=0.3, volatilityType=2, deltaNeutralOrderType="LMT")),
    ]  # fmt: skip
    for contract, order in cases:
        [fields] = ibapi_sends(placing(23, contract, order))
        decoded = _decoded_order(fields, 157)
        assert (decoded.order_id, decoded.order_type) == (23, order.orderType)


@pytest.mark.parametrize("version", CLIENT_VERSIONS)
def test_ib_async_other_requests(version: int) -> None:
    stock = ib_async.Stock("AAPL", "SMART", "USD")
    exec_filter = ib_async.ExecutionFilter(
        clientId=1, acctCode="DU1", time="20260101-00:00:00", symbol="AAPL"
    )
    cases: list[tuple[Callable[[AsyncClient], None], p.Request]] = [
        (start_api_as(3), p.StartApi(3, "")),
        (lambda c: c.reqIds(-1), p.ReqIds(-1)),
        (lambda c: c.reqCurrentTime(), p.ReqCurrentTime()),
        (lambda c: c.reqManagedAccts(), p.ReqManagedAccts()),
        (lambda c: c.reqContractDetails(3, stock),
         p.ReqContractDetails(3, ContractQuery(symbol="AAPL", sec_type="STK", exchange="SMART", currency="USD"))),
        (lambda c: c.reqMktData(4, _async_stock(), "", True, False, []), p.ReqMktData(4, AAPL_QUERY, "", True)),
        (lambda c: c.reqMktData(4, _async_stock(), "233", False, False, []), p.ReqMktData(4, AAPL_QUERY, "233")),
        (lambda c: c.cancelMktData(4), p.CancelMktData(4)),
        (lambda c: c.reqMarketDataType(3), p.ReqMarketDataType(3)),
        (lambda c: c.cancelOrder(5), p.CancelOrder(5)),
        (lambda c: c.reqOpenOrders(), p.ReqOpenOrders()),
        (lambda c: c.reqAllOpenOrders(), p.ReqAllOpenOrders()),
        (lambda c: c.reqAutoOpenOrders(True), p.ReqAutoOpenOrders(True)),
        (lambda c: c.reqCompletedOrders(False), p.ReqCompletedOrders(False)),
        (lambda c: c.reqExecutions(2, ib_async.ExecutionFilter()), p.ReqExecutions(2, ExecutionFilter())),
        (lambda c: c.reqExecutions(2, exec_filter),
         p.ReqExecutions(2, ExecutionFilter(client_id=1, account="DU1", time="20260101-00:00:00", symbol="AAPL"))),
        (lambda c: c.reqPositions(), p.ReqPositions()),
        (lambda c: c.cancelPositions(), p.CancelPositions()),
        (lambda c: c.reqAccountUpdates(True, "DU1"), p.ReqAccountUpdates(True, "DU1")),
        (lambda c: c.reqAccountUpdatesMulti(1, "DU1", "", False), p.ReqAccountUpdatesMulti(1, "DU1", "", False)),
        (lambda c: c.cancelAccountUpdatesMulti(1), p.CancelAccountUpdatesMulti(1)),
        (lambda c: c.reqAccountSummary(9, "All", "NetLiquidation,$LEDGER:ALL"),
         p.ReqAccountSummary(9, "All", ("NetLiquidation", "$LEDGER:ALL"))),
        (lambda c: c.cancelAccountSummary(9), p.CancelAccountSummary(9)),
        (lambda c: c.reqPnL(10, "DU1", ""), p.ReqPnL(10, "DU1", "")),
        (lambda c: c.cancelPnL(10), p.CancelPnL(10)),
        (lambda c: c.reqPnLSingle(11, "DU1", "", 265598), p.ReqPnLSingle(11, "DU1", "", 265598)),
        (lambda c: c.cancelPnLSingle(11), p.CancelPnLSingle(11)),
        (lambda c: c.reqGlobalCancel(), p.ReqGlobalCancel()),
    ]  # fmt: skip
    for call, expected in cases:
        [fields] = ib_async_sends(version, call)
        assert p.decode_request(fields, version) == expected
        assert p.encode_request(expected, version) == fields


def test_ib_async_wire_examples_from_the_reference() -> None:
    [cd178] = ib_async_sends(
        178, lambda c: c.reqContractDetails(3, ib_async.Stock("AAPL", "SMART", "USD"))
    )
    [cd157] = ib_async_sends(
        157, lambda c: c.reqContractDetails(3, ib_async.Stock("AAPL", "SMART", "USD"))
    )
    assert "|".join(cd178) == "9|8|3|0|AAPL|STK||0.0|||SMART||USD|||0|||"
    assert "|".join(cd157) == "9|8|3|0|AAPL|STK||0.0|||SMART||USD|||0||"
    [cancel] = ib_async_sends(178, lambda c: c.cancelOrder(5))
    assert cancel == ["4", "1", "5", ""]


def test_ibapi_other_requests() -> None:
    exec_filter = IbExecutionFilter()
    exec_filter.clientId, exec_filter.symbol, exec_filter.side = 1, "AAPL", "BUY"
    stock = _ib_stock()
    stock.conId, stock.primaryExchange = 265598, "NASDAQ"
    cases: list[tuple[Callable[[EClient], None], p.Request]] = [
        (lambda c: c.reqContractDetails(7, _ib_stock()),
         p.ReqContractDetails(7, ContractQuery(symbol="AAPL", sec_type="STK", exchange="SMART", currency="USD"))),
        (lambda c: c.reqMktData(8, stock, "", True, False, []),
         p.ReqMktData(8, ContractQuery(con_id=265598, symbol="AAPL", sec_type="STK", exchange="SMART",
                                       primary_exchange="NASDAQ", currency="USD"), "", True, False)),
        (lambda c: c.reqExecutions(2, exec_filter),
         p.ReqExecutions(2, ExecutionFilter(client_id=1, symbol="AAPL", side="BUY"))),
        (lambda c: c.cancelOrder(5), p.CancelOrder(5)),
        (lambda c: c.reqIds(-1), p.ReqIds(-1)),
        (lambda c: c.reqPositions(), p.ReqPositions()),
        (lambda c: c.reqAccountSummary(9, "All", "NetLiquidation"), p.ReqAccountSummary(9, "All", ("NetLiquidation",))),
        (lambda c: c.reqPnLSingle(11, "DU1", "", 265598), p.ReqPnLSingle(11, "DU1", "", 265598)),
        (lambda c: c.reqCompletedOrders(True), p.ReqCompletedOrders(True)),
        (lambda c: c.reqAccountUpdates(True, "DU1"), p.ReqAccountUpdates(True, "DU1")),
    ]  # fmt: skip
    for call, expected in cases:
        [fields] = ibapi_sends(call)
        assert p.decode_request(fields, 157) == expected


# ============================================================ malformed and unsupported requests


def _real_place_order(version: int) -> list[str]:
    order = ib_async.LimitOrder("BUY", 100, 196.52, orderRef="bot-1")
    [fields] = ib_async_sends(version, lambda c: c.placeOrder(5, _async_stock(), order))
    return fields


MALFORMED = [
    [],
    [""],
    ["abc"],
    ["71"],
    ["71", "2", "x", ""],
    ["61", "1", "extra"],
    ["62", "1", "9", "All"],
    ["99"],
    ["92", "x", "DU1", ""],
    ["94", "1", "DU1", "", "AAPL"],
    ["6", "2", "yes", "DU1"],
    [
        "1",
        "11",
        "4",
        "0",
        "AAPL",
        "STK",
        "",
        "abc",
        "",
        "",
        "SMART",
        "",
        "USD",
        "",
        "",
        "0",
        "",
        "0",
        "0",
        "",
    ],
    [
        "1",
        "11",
        "4",
        "0",
        "AAPL",
        "BAG",
        "",
        "0.0",
        "",
        "",
        "SMART",
        "",
        "USD",
        "",
        "",
        "99",
        "0",
        "",
        "0",
        "0",
        "",
    ],
    ["3"],
    ["3", "5", "265598"],
]


@pytest.mark.parametrize("fields", MALFORMED, ids=str)
def test_malformed_requests(fields: list[str]) -> None:
    with pytest.raises(DecodeError):
        p.decode_request(fields, 178)


@pytest.mark.parametrize("version", CLIENT_VERSIONS)
def test_place_order_bad_values_name_the_field(version: int) -> None:
    fields = _real_place_order(version)
    bad = list(fields)
    bad[17] = "ten"
    with pytest.raises(DecodeError, match="PLACE_ORDER.totalQuantity"):
        p.decode_request(bad, version)
    bad = list(fields)
    bad[19] = "nan"
    with pytest.raises(DecodeError, match="PLACE_ORDER.lmtPrice"):
        p.decode_request(bad, version)


def _client_messages(version: int) -> list[list[str]]:
    return [_real_place_order(version)] + [p.encode_request(req, version) for req in REQUESTS]


@pytest.mark.parametrize("version", CLIENT_VERSIONS)
def test_truncated_or_garbled_requests_only_raise_decode_error(version: int) -> None:
    for fields in _client_messages(version):
        for cut in range(len(fields)):
            with pytest.raises(DecodeError):
                p.decode_request(fields[:cut], version)
        with pytest.raises(DecodeError):
            p.decode_request(fields + [""], version)
        for index in range(len(fields)):
            for junk in ("x", "-1", "99999", "1.5", "", "Infinite"):
                garbled = fields[:index] + [junk] + fields[index + 1 :]
                try:
                    p.decode_request(garbled, version)
                except DecodeError:
                    pass  # the one allowed failure mode


def test_bad_condition_type() -> None:
    from ib_async.order import TimeCondition

    order = ib_async.LimitOrder("BUY", 1, 2.5)
    order.conditions = [TimeCondition(time="20260101 10:00:00")]
    [fields] = ib_async_sends(178, lambda c: c.placeOrder(5, _async_stock(), order))
    index = fields.index("20260101 10:00:00") - 3
    assert fields[index] == "3"
    fields[index] = "2"
    with pytest.raises(DecodeError, match="condType"):
        p.decode_request(fields, 178)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (["54", "3", "42", "265598"], p.Unsupported(54, "REQ_CALC_IMPLIED_VOLAT", 42)),
        (["52", "2", "9", "265598"], p.Unsupported(52, "REQ_FUNDAMENTAL_DATA", 9)),
        (["88", "-3", "0"], p.Unsupported(88, "REQ_HISTOGRAM_DATA", -3)),
        (["80"], p.Unsupported(80, "REQ_FAMILY_CODES", -1)),
        (["52", "2"], p.Unsupported(52, "REQ_FUNDAMENTAL_DATA", -1)),
        (["96", "x"], p.Unsupported(96, "REQ_HISTORICAL_TICKS", -1)),
        (["250", "1", "2"], p.Unsupported(250, "UNKNOWN_250", -1)),
    ],
)
def test_unsupported(fields: list[str], expected: p.Unsupported) -> None:
    assert p.decode_request(fields, 178) == expected


def test_ib_async_unsupported_request_names_req_id() -> None:
    [fields] = ib_async_sends(178, lambda c: c.reqHistogramData(33, _async_stock(), True, "1 week"))
    assert p.decode_request(fields, 178) == p.Unsupported(88, "REQ_HISTOGRAM_DATA", 33)


# ============================================================ server messages → real decoders

AAPL = Contract(
    con_id=265598, symbol="AAPL", local_symbol="AAPL", trading_class="NMS", long_name="APPLE INC",
    industry="Technology", category="Computers", subcategory="Computers",
)  # fmt: skip
EURUSD = Contract(
    con_id=12087792, symbol="EUR", sec_type="CASH", exchange="IDEALPRO", primary_exchange="", currency="USD",
    local_symbol="EUR.USD", trading_class="EUR.USD", long_name="European Monetary Union Euro", min_tick=5e-05,
)  # fmt: skip
PLAIN = OrderView(
    order_id=6, client_id=1, perm_id=769143976, contract=AAPL, action="BUY", total_quantity=100.0,
    order_type="LMT", lmt_price=196.52, aux_price=None, tif="DAY", account="DU1234567", status="Submitted",
    remaining=100.0, order_ref="bot-1", oca_group="oca-1", oca_type=1, parent_id=5, outside_rth=True,
)  # fmt: skip
MARGINS: dict[str, Any] = dict(
    init_margin_before=1000.0, maint_margin_before=900.0, equity_with_loan_before=100000.0,
    init_margin_change=5000.5, maint_margin_change=4500.0, equity_with_loan_change=-1.0,
    init_margin_after=6000.5, maint_margin_after=5400.0, equity_with_loan_after=99999.0,
)  # fmt: skip
WHATIF = dataclasses.replace(
    PLAIN, what_if=True, status="PreSubmitted", commission=1.0, min_commission=1.0, max_commission=1.5,
    commission_currency="USD", **MARGINS,
)  # fmt: skip
FILLED = dataclasses.replace(
    PLAIN, status="Filled", filled=100.0, remaining=0.0, avg_fill_price=196.52, last_fill_price=196.52,
    commission=1.0, commission_currency="USD", completed_time="20261127 10:43:07 US/Eastern",
    completed_status="Filled Size: 100",
)  # fmt: skip
TRAIL = dataclasses.replace(
    PLAIN, order_type="TRAIL", lmt_price=None, aux_price=None, trailing_percent=1.5, trail_stop_price=190.0,
    contract=EURUSD, total_quantity=20000.0,
)  # fmt: skip
EXECUTION = Execution(
    exec_id="0000e0d5.6571a1b2.01.01", order_id=6, client_id=1, perm_id=769143976, contract=AAPL,
    time="20261127 10:43:07 US/Eastern", account="DU1234567", exchange="ISLAND", side="BOT", shares=100.0,
    price=196.52, cum_qty=100.0, avg_price=196.52, order_ref="bot-1",
)  # fmt: skip


class AsyncRecorder:
    """Stands in for ib_async's Wrapper: records every callback."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.ib = SimpleNamespace(TimezoneTWS=None)
        self.defaultTimezone = UTC

    def __getattr__(self, name: str) -> Callable[..., None]:
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args: self.calls.append((name, args))


def _client_fields(fields: list[str]) -> list[str]:
    """Frame the server message and read it back as a client would."""
    reader = ClientFrameReader()
    reader.feed(encode_frame(fields))
    event = reader.next_event()
    assert event is not None and reader.next_event() is None
    return event


def _no_log_problems(caplog: pytest.LogCaptureFixture) -> None:
    problems = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    caplog.clear()
    assert problems == []


def async_decode(
    fields: list[str], version: int, caplog: pytest.LogCaptureFixture
) -> list[tuple[str, tuple]]:
    """Feed one message to ib_async's Decoder; it must not log any error."""
    wrapper = AsyncRecorder()
    AsyncDecoder(wrapper, version).interpret(_client_fields(fields))  # type: ignore[arg-type]
    _no_log_problems(caplog)
    return wrapper.calls


def ibapi_decode(fields: list[str], caplog: pytest.LogCaptureFixture) -> list[tuple[str, tuple]]:
    """Feed one message to ibapi 9.81's decoder at v157; every field must be consumed."""
    wrapper = IbapiRecorder()
    decoder = IbDecoder(wrapper, 157)
    raw = comm.read_fields(comm.read_msg(encode_frame(fields))[1])
    info = decoder.msgId2handleInfo[int(raw[0])]
    if info.wrapperMeth is not None:
        decoder.interpretWithSignature(raw, info)
    else:
        remaining = iter(raw)
        info.processMeth(decoder, remaining)
        assert next(remaining, None) is None, "ibapi left fields unread"
    _no_log_problems(caplog)
    assert wrapper.calls, "no ibapi callback fired"
    return wrapper.calls


def _only(calls: list[tuple[str, tuple]], name: str) -> tuple:
    assert [call[0] for call in calls] == [name]
    return calls[0][1]


@pytest.mark.parametrize("version", ASYNC_VERSIONS)
def test_open_order_ib_async(version: int, caplog: pytest.LogCaptureFixture) -> None:
    fields = p.open_order(PLAIN, version)
    assert (
        len(fields)
        == {157: 128, 163: 131, 164: 131, 170: 136, 176: 136, 177: 135, 178: 135}[version]
    )
    order_id, contract, order, state = _only(async_decode(fields, version, caplog), "openOrder")
    assert order_id == order.orderId == 6
    assert (contract.conId, contract.symbol, contract.right, contract.exchange) == (
        265598,
        "AAPL",
        "?",
        "SMART",
    )
    assert (order.action, order.totalQuantity, order.orderType, order.lmtPrice) == (
        "BUY",
        100.0,
        "LMT",
        196.52,
    )
    assert (order.tif, order.account, order.orderRef, order.clientId, order.permId) == (
        "DAY", "DU1234567", "bot-1", 1, 769143976)  # fmt: skip
    assert (order.ocaGroup, order.ocaType, order.parentId, order.outsideRth) == (
        "oca-1",
        1,
        5,
        True,
    )
    assert order.whatIf is False and order.deltaNeutralOrderType == "None"
    assert (state.status, state.commission, state.commissionCurrency) == (
        "Submitted",
        ASYNC_UNSET_DOUBLE,
        "",
    )
    assert float(state.initMarginChange) == ASYNC_UNSET_DOUBLE
    if version >= 170:
        assert order.autoCancelParent is False


@pytest.mark.parametrize("version", ASYNC_VERSIONS)
def test_open_order_variants_ib_async(version: int, caplog: pytest.LogCaptureFixture) -> None:
    _, _, order, state = _only(
        async_decode(p.open_order(WHATIF, version), version, caplog), "openOrder"
    )
    assert order.whatIf is True and state.status == "PreSubmitted"
    assert float(state.initMarginChange) == 5000.5 and float(state.equityWithLoanAfter) == 99999.0
    assert (state.commission, state.minCommission, state.maxCommission) == (1.0, 1.0, 1.5)
    _, _, order, state = _only(
        async_decode(p.open_order(FILLED, version), version, caplog), "openOrder"
    )
    assert (state.status, state.commission, state.commissionCurrency) == ("Filled", 1.0, "USD")
    _, contract, order, _ = _only(
        async_decode(p.open_order(TRAIL, version), version, caplog), "openOrder"
    )
    assert (order.orderType, order.trailingPercent, order.trailStopPrice) == ("TRAIL", 1.5, 190.0)
    assert (contract.secType, contract.exchange, contract.localSymbol) == (
        "CASH",
        "IDEALPRO",
        "EUR.USD",
    )
    assert order.totalQuantity == 20000.0


def test_open_order_ibapi(caplog: pytest.LogCaptureFixture) -> None:
    order_id, contract, order, state = _only(
        ibapi_decode(p.open_order(PLAIN, 157), caplog), "openOrder"
    )
    assert (order_id, contract.conId, contract.right, order.lmtPrice, order.orderRef) == (
        6,
        265598,
        "?",
        196.52,
        "bot-1",
    )
    assert (order.parentId, order.ocaGroup, order.ocaType, order.outsideRth, order.permId) == (
        5,
        "oca-1",
        1,
        True,
        769143976,
    )
    assert (state.status, state.commission) == ("Submitted", UNSET_DOUBLE)
    _, _, order, state = _only(ibapi_decode(p.open_order(WHATIF, 157), caplog), "openOrder")
    assert order.whatIf and state.initMarginChange == "5000.5" and state.maxCommission == 1.5
    _, _, order, state = _only(ibapi_decode(p.open_order(FILLED, 157), caplog), "openOrder")
    assert (state.status, state.commission, state.commissionCurrency) == ("Filled", 1.0, "USD")
    _, contract, order, _ = _only(ibapi_decode(p.open_order(TRAIL, 157), caplog), "openOrder")
    assert (order.trailingPercent, order.trailStopPrice, contract.localSymbol) == (
        1.5,
        190.0,
        "EUR.USD",
    )


@pytest.mark.parametrize("version", ASYNC_VERSIONS)
def test_completed_order_ib_async(version: int, caplog: pytest.LogCaptureFixture) -> None:
    fields = p.completed_order(FILLED, version)
    assert len(fields) == (96 if version < 170 else 101 if version < 177 else 100)
    contract, order, state = _only(async_decode(fields, version, caplog), "completedOrder")
    assert (contract.conId, contract.right, order.permId, order.orderRef) == (
        265598,
        "?",
        769143976,
        "bot-1",
    )
    assert (order.filledQuantity, order.parentPermId) == (100.0, 2**63 - 1)
    assert (state.status, state.completedTime, state.completedStatus) == (
        "Filled", "20261127 10:43:07 US/Eastern", "Filled Size: 100")  # fmt: skip
    contract, order, _ = _only(
        async_decode(p.completed_order(TRAIL, version), version, caplog), "completedOrder"
    )
    assert (order.trailingPercent, order.trailStopPrice, contract.secType) == (1.5, 190.0, "CASH")


def test_completed_order_ibapi(caplog: pytest.LogCaptureFixture) -> None:
    contract, order, state = _only(
        ibapi_decode(p.completed_order(FILLED, 157), caplog), "completedOrder"
    )
    assert (contract.symbol, order.filledQuantity, state.completedStatus) == (
        "AAPL",
        100.0,
        "Filled Size: 100",
    )
    assert _only(ibapi_decode(p.completed_orders_end(), caplog), "completedOrdersEnd") == ()


@pytest.mark.parametrize("version", ASYNC_VERSIONS)
def test_order_status_and_ends_ib_async(version: int, caplog: pytest.LogCaptureFixture) -> None:
    args = _only(async_decode(p.order_status(FILLED), version, caplog), "orderStatus")
    assert args == (6, "Filled", 100.0, 0.0, 196.52, 769143976, 5, 196.52, 1, "", 0.0)
    assert _only(async_decode(p.open_order_end(), version, caplog), "openOrderEnd") == ()
    assert (
        _only(async_decode(p.completed_orders_end(), version, caplog), "completedOrdersEnd") == ()
    )


def test_order_status_ibapi(caplog: pytest.LogCaptureFixture) -> None:
    args = _only(ibapi_decode(p.order_status(FILLED), caplog), "orderStatus")
    assert args == (6, "Filled", 100.0, 0.0, 196.52, 769143976, 5, 196.52, 1, "", 0.0)
    assert _only(ibapi_decode(p.open_order_end(), caplog), "openOrderEnd") == ()


@pytest.mark.parametrize("version", ASYNC_VERSIONS)
def test_executions_ib_async(version: int, caplog: pytest.LogCaptureFixture) -> None:
    fields = p.exec_details(-1, EXECUTION, version)
    assert len(fields) == (32 if version >= 178 else 31)
    req_id, contract, ex = _only(async_decode(fields, version, caplog), "execDetails")
    assert (req_id, contract.conId, contract.exchange, contract.tradingClass) == (
        -1,
        265598,
        "ISLAND",
        "NMS",
    )
    assert (ex.execId, ex.orderId, ex.side, ex.shares, ex.price, ex.permId, ex.clientId) == (
        "0000e0d5.6571a1b2.01.01", 6, "BOT", 100.0, 196.52, 769143976, 1)  # fmt: skip
    assert (ex.cumQty, ex.avgPrice, ex.orderRef, ex.lastLiquidity, ex.acctNumber) == (
        100.0, 196.52, "bot-1", 2, "DU1234567")  # fmt: skip
    assert ex.time.isoformat() == "2026-11-27T15:43:07+00:00"
    assert _only(async_decode(p.exec_details_end(4), version, caplog), "execDetailsEnd") == (4,)
    (report,) = _only(async_decode(p.commission_report(CommissionReport("e1", 1.0, "USD")), version, caplog),
                      "commissionReport")  # fmt: skip
    assert (report.execId, report.commission, report.currency, report.realizedPNL) == (
        "e1",
        1.0,
        "USD",
        UNSET_DOUBLE,
    )
    (report,) = _only(async_decode(p.commission_report(CommissionReport("e2", 1.2, "USD", -35.5)), version, caplog),
                      "commissionReport")  # fmt: skip
    assert report.realizedPNL == -35.5


def test_executions_ibapi(caplog: pytest.LogCaptureFixture) -> None:
    req_id, contract, ex = _only(
        ibapi_decode(p.exec_details(7, EXECUTION, 157), caplog), "execDetails"
    )
    assert (req_id, contract.exchange, ex.execId, ex.shares, ex.price, ex.lastLiquidity) == (
        7, "ISLAND", "0000e0d5.6571a1b2.01.01", 100.0, 196.52, 2)  # fmt: skip
    assert ex.time == "20261127 10:43:07 US/Eastern"
    assert _only(ibapi_decode(p.exec_details_end(7), caplog), "execDetailsEnd") == (7,)
    fields = p.commission_report(CommissionReport("e1", 1.0, "USD"))
    assert fields[5] == "1.7976931348623157E308"
    (report,) = _only(ibapi_decode(fields, caplog), "commissionReport")
    assert (report.execId, report.commission, report.realizedPNL) == ("e1", 1.0, UNSET_DOUBLE)


@pytest.mark.parametrize("version", ASYNC_VERSIONS)
def test_contract_data_ib_async(version: int, caplog: pytest.LogCaptureFixture) -> None:
    for contract in (AAPL, EURUSD):
        fields = p.contract_data(3, contract, version)
        assert len(fields) == (39 if version < 163 else 40)
        req_id, details = _only(async_decode(fields, version, caplog), "contractDetails")
        c = details.contract
        assert (req_id, c.conId, c.symbol, c.secType, c.exchange, c.currency) == (
            3, contract.con_id, contract.symbol, contract.sec_type, contract.exchange, contract.currency)  # fmt: skip
        assert (c.primaryExchange, c.localSymbol, c.tradingClass) == (
            contract.primary_exchange, contract.local_symbol, contract.trading_class)  # fmt: skip
        assert (details.minTick, details.longName, details.timeZoneId) == (
            contract.min_tick, contract.long_name, "US/Eastern")  # fmt: skip
        assert details.stockType == ("COMMON" if contract.sec_type == "STK" else "")
        if version >= 164:
            assert (details.minSize, details.sizeIncrement) == (1.0, 1.0)
    assert _only(async_decode(p.contract_data_end(3), version, caplog), "contractDetailsEnd") == (
        3,
    )


def test_contract_data_ibapi(caplog: pytest.LogCaptureFixture) -> None:
    _, details = _only(ibapi_decode(p.contract_data(3, AAPL, 157), caplog), "contractDetails")
    assert (details.contract.conId, details.contract.primaryExchange, details.longName) == (
        265598,
        "NASDAQ",
        "APPLE INC",
    )
    req_id, details = _only(
        ibapi_decode(p.contract_data(4, EURUSD, 157), caplog), "contractDetails"
    )
    c = details.contract
    assert (req_id, c.secType, c.exchange, c.primaryExchange, c.localSymbol, details.minTick) == (
        4, "CASH", "IDEALPRO", "", "EUR.USD", 5e-05)  # fmt: skip
    assert _only(ibapi_decode(p.contract_data_end(4), caplog), "contractDetailsEnd") == (4,)


@pytest.mark.parametrize("version", ASYNC_VERSIONS)
def test_portfolio_and_account_ib_async(version: int, caplog: pytest.LogCaptureFixture) -> None:
    fields = p.position(Position("DU1234567", AAPL, -110.0, 201.88))
    assert len(fields) == 16
    account, contract, position, avg_cost = _only(async_decode(fields, version, caplog), "position")
    assert (account, contract.conId, contract.exchange, position, avg_cost) == (
        "DU1234567", 265598, "NASDAQ", -110.0, 201.88)  # fmt: skip
    _, contract, *_ = _only(async_decode(p.position(Position("DU1", EURUSD, 20000.0, 1.08)), version, caplog),
                            "position")  # fmt: skip
    assert (contract.secType, contract.exchange, contract.localSymbol) == ("CASH", "", "EUR.USD")
    assert _only(async_decode(p.position_end(), version, caplog), "positionEnd") == ()
    item = PortfolioItem("DU1234567", AAPL, 100.0, 200.0, 20000.0, 196.52, 348.0, 0.0)
    fields = p.portfolio_value(item)
    assert len(fields) == 20
    args = _only(async_decode(fields, version, caplog), "updatePortfolio")
    assert (args[0].conId, args[0].primaryExchange, args[0].exchange) == (265598, "NASDAQ", "")
    assert args[1:] == (100.0, 200.0, 20000.0, 196.52, 348.0, 0.0, "DU1234567")
    value = AccountValue("DU1234567", "NetLiquidation", "100000.00", "USD")
    assert _only(async_decode(p.account_value(value), version, caplog), "updateAccountValue") == (
        "NetLiquidation", "100000.00", "USD", "DU1234567")  # fmt: skip
    assert _only(
        async_decode(p.account_update_time("14:05"), version, caplog), "updateAccountTime"
    ) == ("14:05",)
    assert _only(
        async_decode(p.account_download_end("DU1"), version, caplog), "accountDownloadEnd"
    ) == ("DU1",)
    assert _only(async_decode(p.account_summary(9, value), version, caplog), "accountSummary") == (
        9, "DU1234567", "NetLiquidation", "100000.00", "USD")  # fmt: skip
    assert _only(async_decode(p.account_summary_end(9), version, caplog), "accountSummaryEnd") == (
        9,
    )
    assert _only(async_decode(p.account_update_multi(2, value), version, caplog), "accountUpdateMulti") == (
        2, "DU1234567", "", "NetLiquidation", "100000.00", "USD")  # fmt: skip
    assert _only(
        async_decode(p.account_update_multi_end(2), version, caplog), "accountUpdateMultiEnd"
    ) == (2,)
    assert _only(async_decode(p.pnl(5, PnL(12.5, -3.0, 0.0)), version, caplog), "pnl") == (
        5,
        12.5,
        -3.0,
        0.0,
    )
    assert _only(async_decode(p.pnl_single(6, PnLSingle(100.0, 1.5, 348.0, 0.0, 20000.0)), version, caplog),
                 "pnlSingle") == (6, 100.0, 1.5, 348.0, 0.0, 20000.0)  # fmt: skip


def test_portfolio_and_account_ibapi(caplog: pytest.LogCaptureFixture) -> None:
    account, contract, position, avg_cost = _only(
        ibapi_decode(p.position(Position("DU1234567", AAPL, -110.0, 201.88)), caplog), "position")  # fmt: skip
    assert (account, contract.exchange, contract.tradingClass, position, avg_cost) == (
        "DU1234567", "NASDAQ", "NMS", -110.0, 201.88)  # fmt: skip
    assert _only(ibapi_decode(p.position_end(), caplog), "positionEnd") == ()
    item = PortfolioItem("DU1234567", EURUSD, 20000.0, 1.08, 21600.0, 1.07, 200.0, 0.0)
    args = _only(ibapi_decode(p.portfolio_value(item), caplog), "updatePortfolio")
    assert (args[0].localSymbol, args[0].primaryExchange) == ("EUR.USD", "")
    assert args[1:] == (20000.0, 1.08, 21600.0, 1.07, 200.0, 0.0, "DU1234567")
    value = AccountValue("DU1234567", "AccountType", "INDIVIDUAL", "")
    assert _only(ibapi_decode(p.account_value(value), caplog), "updateAccountValue") == (
        "AccountType", "INDIVIDUAL", "", "DU1234567")  # fmt: skip
    assert _only(ibapi_decode(p.account_update_time("09:31"), caplog), "updateAccountTime") == (
        "09:31",
    )
    assert _only(ibapi_decode(p.account_download_end("DU1"), caplog), "accountDownloadEnd") == (
        "DU1",
    )
    assert _only(ibapi_decode(p.account_summary(9, value), caplog), "accountSummary") == (
        9, "DU1234567", "AccountType", "INDIVIDUAL", "")  # fmt: skip
    assert _only(ibapi_decode(p.account_summary_end(9), caplog), "accountSummaryEnd") == (9,)
    assert _only(ibapi_decode(p.account_update_multi(2, value, "M1"), caplog), "accountUpdateMulti") == (
        2, "DU1234567", "M1", "AccountType", "INDIVIDUAL", "")  # fmt: skip
    assert _only(ibapi_decode(p.account_update_multi_end(2), caplog), "accountUpdateMultiEnd") == (
        2,
    )
    assert _only(ibapi_decode(p.pnl(5, PnL(12.5, -3.0, 0.0)), caplog), "pnl") == (
        5,
        12.5,
        -3.0,
        0.0,
    )
    assert _only(ibapi_decode(p.pnl_single(6, PnLSingle(100.0, 1.5, 348.0, 0.0, 20000.0)), caplog),
                 "pnlSingle") == (6, 100, 1.5, 348.0, 0.0, 20000.0)  # fmt: skip


@pytest.mark.parametrize("version", ASYNC_VERSIONS)
def test_ticks_and_session_ib_async(version: int, caplog: pytest.LogCaptureFixture) -> None:
    fields = p.tick_price(1, 1, 196.52, 300.0)
    assert fields == ["1", "6", "1", "1", "196.52", "300", "0"]
    assert _only(async_decode(fields, version, caplog), "priceSizeTick") == (1, 1, 196.52, 300.0)
    assert _only(async_decode(p.tick_size(1, 8, 12345.0), version, caplog), "tickSize") == (
        1,
        8,
        12345.0,
    )
    assert _only(async_decode(p.tick_string(1, 45, "1764255787"), version, caplog), "tickString") == (
        1, 45, "1764255787")  # fmt: skip
    assert _only(async_decode(p.tick_generic(1, 49, 0.0), version, caplog), "tickGeneric") == (
        1,
        49,
        0.0,
    )
    assert _only(async_decode(p.tick_snapshot_end(1), version, caplog), "tickSnapshotEnd") == (1,)
    assert _only(async_decode(p.tick_req_params(1, 0.01, "SMART", 3), version, caplog), "tickReqParams") == (
        1, 0.01, "SMART", 3)  # fmt: skip
    assert _only(async_decode(p.market_data_type(1, 3), version, caplog), "marketDataType") == (
        1,
        3,
    )
    assert _only(async_decode(p.next_valid_id(17), version, caplog), "nextValidId") == (17,)
    assert _only(async_decode(p.managed_accounts(["DU1", "DU2"]), version, caplog), "managedAccounts") == (
        "DU1,DU2",)  # fmt: skip
    assert _only(async_decode(p.current_time(1764255787), version, caplog), "currentTime") == (
        1764255787,
    )


def test_ticks_and_session_ibapi(caplog: pytest.LogCaptureFixture) -> None:
    calls = ibapi_decode(p.tick_price(1, 1, 196.52, 300.0), caplog)
    assert [c[0] for c in calls] == ["tickPrice", "tickSize"]
    assert calls[0][1][:3] == (1, 1, 196.52) and calls[1][1] == (1, 0, 300)
    assert _only(ibapi_decode(p.tick_size(1, 8, 12345.0), caplog), "tickSize") == (1, 8, 12345)
    assert _only(ibapi_decode(p.tick_string(1, 45, "1764255787"), caplog), "tickString") == (
        1,
        45,
        "1764255787",
    )
    assert _only(ibapi_decode(p.tick_generic(1, 49, 0.0), caplog), "tickGeneric") == (1, 49, 0.0)
    assert _only(ibapi_decode(p.tick_snapshot_end(1), caplog), "tickSnapshotEnd") == (1,)
    assert _only(ibapi_decode(p.tick_req_params(1, 0.01, "SMART", 3), caplog), "tickReqParams") == (
        1,
        0.01,
        "SMART",
        3,
    )
    assert _only(ibapi_decode(p.market_data_type(1, 3), caplog), "marketDataType") == (1, 3)
    assert _only(ibapi_decode(p.next_valid_id(17), caplog), "nextValidId") == (17,)
    assert _only(ibapi_decode(p.managed_accounts(["DU1"]), caplog), "managedAccounts") == ("DU1",)
    assert _only(ibapi_decode(p.current_time(1764255787), caplog), "currentTime") == (1764255787,)


@pytest.mark.parametrize("version", ASYNC_VERSIONS)
def test_error_ib_async(version: int, caplog: pytest.LogCaptureFixture) -> None:
    fields = p.error(41, 202, "Order Canceled - reason:", version)
    assert len(fields) == (6 if version >= 166 else 5)
    assert _only(async_decode(fields, version, caplog), "error") == (
        41,
        202,
        "Order Canceled - reason:",
        "",
    )


def test_error_ibapi(caplog: pytest.LogCaptureFixture) -> None:
    assert _only(ibapi_decode(p.error(-1, 2104, "Market data farm connection is OK:usfarm", 157), caplog),
                 "error") == (-1, 2104, "Market data farm connection is OK:usfarm")  # fmt: skip


def test_ibapi_would_reject_a_wrong_field_count(caplog: pytest.LogCaptureFixture) -> None:
    """The ibapi harness really detects layout mistakes (v166 error sent to a v157 client)."""
    with pytest.raises(AssertionError):
        ibapi_decode(p.error(-1, 2104, "x", 166), caplog)
    with pytest.raises((AssertionError, ValueError)):
        ibapi_decode(p.open_order(PLAIN, 178), caplog)


def test_out_and_in_ids() -> None:
    assert p.Out.COMPLETED_ORDERS_END == 102 and p.Out.TICK_PRICE == 1
    assert p.In.REQ_COMPLETED_ORDERS == 99 and p.In.START_API == 71
    assert {int(m) for m in p.In} >= set(range(1, 26)) | {
        49,
        58,
        59,
        61,
        62,
        63,
        64,
        71,
        76,
        77,
        92,
        93,
        94,
        95,
        99,
    }


# ============================================================ real TWS captures (reference §2, rust-ibapi v164)


def _assert_same_values(ours: list[str], real: str) -> None:
    """Field-for-field equal, allowing Java/Python spellings of the same number ("0" vs "0.0")."""
    theirs = real.split("|")
    assert len(ours) == len(theirs)
    for index, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        assert a == b or (a and b and float(a) == float(b)), (index, a, b)


TSLA = Contract(con_id=76792991, symbol="TSLA", local_symbol="TSLA", trading_class="NMS")
TSLA_FILL = OrderView(
    order_id=13, client_id=100, perm_id=1376327563, contract=TSLA, action="BUY", total_quantity=100.0,
    order_type="MKT", lmt_price=None, aux_price=None, tif="DAY", account="DU1236109", status="Filled",
    filled=100.0, remaining=0.0, avg_fill_price=196.52, last_fill_price=196.52,
)  # fmt: skip


def test_matches_real_order_status_and_exec_details() -> None:
    _assert_same_values(
        p.order_status(TSLA_FILL), "3|13|Filled|100|0|196.52|1376327563|0|196.52|100||0"
    )
    pre = dataclasses.replace(TSLA_FILL, status="PreSubmitted", filled=0.0, remaining=100.0, avg_fill_price=0.0,
                              last_fill_price=0.0)  # fmt: skip
    _assert_same_values(p.order_status(pre), "3|13|PreSubmitted|0|100|0|1376327563|0|0|100||0")
    fill = Execution(
        exec_id="00025b46.63f8f39c.01.01", order_id=13, client_id=100, perm_id=1376327563, contract=TSLA,
        time="20230224  12:04:56", account="DU1236109", exchange="ISLAND", side="BOT", shares=100.0,
        price=196.52, cum_qty=100.0, avg_price=196.52,
    )  # fmt: skip
    _assert_same_values(
        p.exec_details(-1, fill, 164),
        "11|-1|13|76792991|TSLA|STK||0.0|||ISLAND|USD|TSLA|NMS|00025b46.63f8f39c.01.01|20230224  12:04:56|"
        "DU1236109|ISLAND|BOT|100|196.52|1376327563|100|0|100|196.52|||||2",
    )
    _assert_same_values(
        p.commission_report(CommissionReport("00025b46.63f8f39c.01.01", 1.0, "USD")),
        "59|1|00025b46.63f8f39c.01.01|1.0|USD|1.7976931348623157E308|1.7976931348623157E308|",
    )
    _assert_same_values(
        p.position(Position("ACCOUNT_ID", Contract(con_id=265598, symbol="AAPL", local_symbol="AAPL",
                                                   trading_class="NMS"), -110.0, 201.8829709)),
        "61|3|ACCOUNT_ID|265598|AAPL|STK||0.0|||NASDAQ|USD|AAPL|NMS|-110|201.8829709",
    )  # fmt: skip
    _assert_same_values(
        p.error(41, 202, "Order Canceled - reason:", 164), "4|2|41|202|Order Canceled - reason:"
    )
    _assert_same_values(
        p.error(41, 202, "Order Canceled - reason:", 173), "4|2|41|202|Order Canceled - reason:|"
    )


def test_matches_real_completed_order() -> None:
    view = OrderView(
        order_id=0, client_id=0, perm_id=1824933227, contract=Contract(con_id=265598, symbol="AAPL",
        local_symbol="AAPL", trading_class="NMS"), action="BUY", total_quantity=0.0, order_type="MKT",
        lmt_price=None, aux_price=None, tif="DAY", account="DU1236109", status="Filled", filled=100.0,
        completed_time="20230306 12:28:30 America/Los_Angeles", completed_status="Filled Size: 100",
    )  # fmt: skip
    _assert_same_values(
        p.completed_order(view, 164),
        "101|265598|AAPL|STK||0|?||SMART|USD|AAPL|NMS|BUY|0|MKT|0.0|0.0|DAY||DU1236109||0||1824933227|0|0|0|||"
        "||||||||0||-1||||||2147483647|0|0||3|0||0|None||0|0|0||0|0||||0|0|0|2147483647|2147483647||||IB|0|0||0|"
        "Filled|0|0|0|1.7976931348623157E308|1.7976931348623157E308|0|1|0||100|2147483647|0|"
        "Not an insider or substantial shareholder|0|0|9223372036854775807|20230306 12:28:30 America/Los_Angeles|"
        "Filled Size: 100",
    )


def test_cash_contracts_go_out_as_ib_shows_them() -> None:
    bare = Contract(con_id=12087792, symbol="EUR", sec_type="CASH")  # stock defaults left in place
    fields = p.contract_data(1, bare, 178)
    assert fields[6:10] == [
        "",
        "IDEALPRO",
        "USD",
        "EUR.USD",
    ]  # right, exchange, currency, localSymbol
    assert fields[20] == ""  # primaryExchange
    assert p.position(Position("DU1", bare, 1.0, 1.0))[10] == ""
    assert p.portfolio_value(PortfolioItem("DU1", bare, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0))[9:13] == [
        "", "USD", "EUR.USD", "EUR.USD"]  # fmt: skip
    assert p.open_order(dataclasses.replace(PLAIN, contract=bare), 178)[9:13] == [
        "IDEALPRO",
        "USD",
        "EUR.USD",
        "EUR.USD",
    ]


# ============================================================ instruments: options, futures, indices, depth, rules

AAPL_CALL = Contract(
    con_id=867545006, symbol="AAPL", sec_type="OPT", exchange="SMART", primary_exchange="",
    local_symbol="AAPL  261211C00190000", trading_class="AAPL", long_name="APPLE INC", multiplier="100",
    last_trade_date="20261211", strike=190.0, right="C", under_con_id=265598, under_symbol="AAPL",
    under_sec_type="STK", stock_type="",
)  # fmt: skip
ES = Contract(
    con_id=622083005, symbol="ES", sec_type="FUT", exchange="CME", primary_exchange="CME", local_symbol="ESZ6",
    trading_class="ES", long_name="E-mini S&P 500", min_tick=0.25, multiplier="50", last_trade_date="20261218",
    under_con_id=416904, under_symbol="ES", under_sec_type="IND", time_zone_id="US/Central", stock_type="",
)  # fmt: skip
ES_CONT = dataclasses.replace(ES, sec_type="CONTFUT")
SPX = Contract(
    con_id=416904, symbol="SPX", sec_type="IND", exchange="CBOE", primary_exchange="CBOE", local_symbol="SPX",
    trading_class="SPX", long_name="S&P 500 Stock Index", stock_type="",
)  # fmt: skip
CHAIN = Chain("SMART", 265598, "AAPL", "100", ("20261211", "20261218"), (185.0, 190.0, 195.0))
GREEKS = Greeks(0.25, 0.519, 3.35, 0.0, 0.049, 0.129, -0.162, 190.0)
NOT_COMPUTED = Greeks(-1.0, -2.0, 3.3, -1.0, 0.0, 0.0, 0.0, 190.0)


@pytest.mark.parametrize("version", CLIENT_VERSIONS)
def test_ib_async_instrument_requests(version: int) -> None:
    option = ib_async.Option("AAPL", "20261211", 190.0, "C", "SMART")
    option_query = ContractQuery(
        symbol="AAPL",
        sec_type="OPT",
        last_trade_date="20261211",
        strike=190.0,
        right="C",
        exchange="SMART",
    )
    cases: list[tuple[Callable[[AsyncClient], None], p.Request]] = [
        (lambda c: c.reqSecDefOptParams(3, "AAPL", "", "STK", 265598),
         im.ReqSecDefOptParams(3, "AAPL", "", "STK", 265598)),
        (lambda c: c.reqMktDepth(4, option, 10, False, None), im.ReqMktDepth(4, option_query, 10, False)),
        (lambda c: c.reqMktDepth(5, _async_stock(), 5, True, None), im.ReqMktDepth(5, AAPL_QUERY, 5, True)),
        (lambda c: c.cancelMktDepth(5, True), im.CancelMktDepth(5, True)),
        (lambda c: c.reqMktDepthExchanges(), im.ReqMktDepthExchanges()),
        (lambda c: c.reqMarketRule(26), im.ReqMarketRule(26)),
        (lambda c: c.reqContractDetails(6, ib_async.ContFuture("ES", "CME")),
         p.ReqContractDetails(6, ContractQuery(symbol="ES", sec_type="CONTFUT", exchange="CME"))),
        (lambda c: c.reqContractDetails(7, option), p.ReqContractDetails(7, option_query)),
    ]  # fmt: skip
    for call, expected in cases:
        [fields] = ib_async_sends(version, call)
        assert p.decode_request(fields, version) == expected
        assert p.encode_request(expected, version) == fields


def test_ibapi_instrument_requests() -> None:
    future = IbContract()
    future.symbol, future.secType, future.exchange, future.lastTradeDateOrContractMonth = (
        "ES",
        "FUT",
        "CME",
        "202612",
    )
    cases: list[tuple[Callable[[EClient], None], p.Request]] = [
        (lambda c: c.reqSecDefOptParams(3, "SPY", "", "STK", 756733),
         im.ReqSecDefOptParams(3, "SPY", "", "STK", 756733)),
        (lambda c: c.reqMktDepth(4, future, 10, False, []),
         im.ReqMktDepth(4, ContractQuery(symbol="ES", sec_type="FUT", last_trade_date="202612", exchange="CME"), 10)),
        (lambda c: c.cancelMktDepth(4, False), im.CancelMktDepth(4, False)),
        (lambda c: c.reqMktDepthExchanges(), im.ReqMktDepthExchanges()),
        (lambda c: c.reqMarketRule(67), im.ReqMarketRule(67)),
    ]  # fmt: skip
    for call, expected in cases:
        [fields] = ibapi_sends(call)
        assert p.decode_request(fields, 157) == expected


@pytest.mark.parametrize("version", ASYNC_VERSIONS)
def test_derivative_contract_data_ib_async(version: int, caplog: pytest.LogCaptureFixture) -> None:
    for contract in (AAPL_CALL, ES, ES_CONT, SPX):
        fields = p.contract_data(3, contract, version)
        assert len(fields) == (39 if version < 163 else 40)
        _, details = _only(async_decode(fields, version, caplog), "contractDetails")
        c = details.contract
        assert (c.conId, c.secType, c.lastTradeDateOrContractMonth, c.strike, c.right, c.multiplier) == (
            contract.con_id, contract.sec_type, contract.last_trade_date, contract.strike, contract.right,
            contract.multiplier)  # fmt: skip
        assert (c.exchange, c.localSymbol, c.tradingClass, details.underConId) == (
            contract.exchange, contract.local_symbol, contract.trading_class, contract.under_con_id)  # fmt: skip
        assert (details.underSymbol, details.underSecType, details.stockType) == (
            contract.under_symbol, contract.under_sec_type, "")  # fmt: skip
        assert details.realExpirationDate == contract.last_trade_date
    option = async_decode(p.contract_data(3, AAPL_CALL, version), version, caplog)[0][1][1]
    assert (option.marketRuleIds, option.validExchanges) == ("32", "SMART")
    future = async_decode(p.contract_data(3, ES, version), version, caplog)[0][1][1]
    assert (future.marketRuleIds, future.minTick, future.timeZoneId) == ("67", 0.25, "US/Central")
    stock = async_decode(p.contract_data(3, AAPL, version), version, caplog)[0][1][1]
    assert stock.marketRuleIds == "26,26"  # SMART and NASDAQ


def test_derivative_contract_data_ibapi(caplog: pytest.LogCaptureFixture) -> None:
    for contract in (AAPL_CALL, ES, ES_CONT, SPX):
        _, details = _only(
            ibapi_decode(p.contract_data(3, contract, 157), caplog), "contractDetails"
        )
        c = details.contract
        assert (c.conId, c.secType, c.lastTradeDateOrContractMonth, c.strike, c.right, c.multiplier) == (
            contract.con_id, contract.sec_type, contract.last_trade_date, contract.strike, contract.right,
            contract.multiplier)  # fmt: skip
        assert (details.underConId, details.underSymbol, details.marketRuleIds) == (
            contract.under_con_id, contract.under_symbol, p.contract_data(3, contract, 157)[-3])  # fmt: skip


@pytest.mark.parametrize("version", ASYNC_VERSIONS)
def test_instrument_messages_ib_async(version: int, caplog: pytest.LogCaptureFixture) -> None:
    assert _only(async_decode(im.sec_def_opt_params(3, CHAIN), version, caplog),
                 "securityDefinitionOptionParameter") == (
        3, "SMART", "265598", "AAPL", "100", ["20261211", "20261218"], [185.0, 190.0, 195.0])  # fmt: skip
    assert _only(async_decode(im.sec_def_opt_params_end(3), version, caplog),
                 "securityDefinitionOptionParameterEnd") == (3,)  # fmt: skip
    assert _only(async_decode(im.tick_option_computation(4, 13, GREEKS), version, caplog),
                 "tickOptionComputation") == (4, 13, 0, *dataclasses.astuple(GREEKS))  # fmt: skip
    assert _only(async_decode(im.tick_option_computation(4, 10, NOT_COMPUTED), version, caplog),
                 "tickOptionComputation")[:5] == (4, 10, 0, -1.0, -2.0)  # fmt: skip
    op = depth.DepthOp(2, depth.UPDATE, depth.BID, 189.98, 300.0, "ARCA")
    assert _only(async_decode(im.market_depth(5, op), version, caplog), "updateMktDepth") == (
        5, 2, 1, 1, 189.98, 300.0)  # fmt: skip
    assert _only(async_decode(im.market_depth_l2(5, op, True), version, caplog), "updateMktDepthL2") == (
        5, 2, "ARCA", 1, 1, 189.98, 300.0, True)  # fmt: skip
    [descriptions] = _only(async_decode(im.mkt_depth_exchanges(depth.DEPTH_EXCHANGES), version, caplog),
                           "mktDepthExchanges")  # fmt: skip
    assert [(d.exchange, d.secType, d.listingExch) for d in descriptions][:2] == [
        ("ISLAND", "STK", "NASDAQ"), ("ARCA", "STK", "NYSE")]  # fmt: skip
    rule_id, increments = _only(async_decode(im.market_rule(32, ((0.0, 0.01), (3.0, 0.05))), version, caplog),
                                "marketRule")  # fmt: skip
    assert (rule_id, [(i.lowEdge, i.increment) for i in increments]) == (
        32,
        [(0.0, 0.01), (3.0, 0.05)],
    )


def test_instrument_messages_ibapi(caplog: pytest.LogCaptureFixture) -> None:
    req_id, exchange, under, trading_class, multiplier, expirations, strikes = _only(
        ibapi_decode(im.sec_def_opt_params(3, CHAIN), caplog), "securityDefinitionOptionParameter"
    )
    assert (req_id, exchange, under, trading_class, multiplier) == (
        3,
        "SMART",
        265598,
        "AAPL",
        "100",
    )
    assert (expirations, strikes) == ({"20261211", "20261218"}, {185.0, 190.0, 195.0})
    assert _only(
        ibapi_decode(im.sec_def_opt_params_end(3), caplog), "securityDefinitionOptionParameterEnd"
    ) == (3,)
    args = _only(
        ibapi_decode(im.tick_option_computation(4, 13, GREEKS), caplog), "tickOptionComputation"
    )
    assert args == (4, 13, 0, *dataclasses.astuple(GREEKS))
    args = _only(
        ibapi_decode(im.tick_option_computation(4, 11, NOT_COMPUTED), caplog),
        "tickOptionComputation",
    )
    assert args[3:5] == (None, None)  # "not computed"
    op = depth.DepthOp(0, depth.INSERT, depth.ASK, 190.01, 100.0, "NSDQ")
    assert _only(ibapi_decode(im.market_depth(5, op), caplog), "updateMktDepth") == (
        5,
        0,
        0,
        0,
        190.01,
        100,
    )
    assert _only(ibapi_decode(im.market_depth_l2(5, op, True), caplog), "updateMktDepthL2") == (
        5, 0, "NSDQ", 0, 0, 190.01, 100, True)  # fmt: skip
    [descriptions] = _only(
        ibapi_decode(im.mkt_depth_exchanges(depth.DEPTH_EXCHANGES), caplog), "mktDepthExchanges"
    )
    assert (
        len(descriptions) == len(depth.DEPTH_EXCHANGES)
        and descriptions[0].serviceDataType == "Deep2"
    )
    rule_id, increments = _only(
        ibapi_decode(im.market_rule(67, ((0.0, 0.25),)), caplog), "marketRule"
    )
    assert (rule_id, [(i.lowEdge, i.increment) for i in increments]) == (67, [(0.0, 0.25)])


def test_derivative_positions_carry_their_contract_fields(caplog: pytest.LogCaptureFixture) -> None:
    fields = p.position(Position("DU1", ES, 1.0, 275375.85))
    _, contract, position, avg_cost = _only(async_decode(fields, 178, caplog), "position")
    assert (contract.secType, contract.multiplier, contract.lastTradeDateOrContractMonth) == (
        "FUT",
        "50",
        "20261218",
    )
    assert (contract.exchange, position, avg_cost) == ("CME", 1.0, 275375.85)
    item = PortfolioItem("DU1", AAPL_CALL, 2.0, 3.35, 670.0, 345.65, -21.3, 0.0)
    calls = async_decode(p.portfolio_value(item), 178, caplog)
    [portfolio] = [args for name, args in calls if name == "updatePortfolio"]
    assert (portfolio[0].right, portfolio[0].strike, portfolio[0].multiplier) == ("C", 190.0, "100")
