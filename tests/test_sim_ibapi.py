"""The simulated gateway driven by IB's official Python client, ``ibapi`` 9.81.1.post1.

ibapi 9.81 announces ``v100..157`` so the simulator must negotiate version 157 for it.
The client is the stock ``EClient`` + an ``EWrapper`` subclass whose ``run()`` loop is on a
daemon thread (ibapi's own ``EReader`` thread feeds it). Every callback is recorded; tests
wait on a condition variable, never on bare sleeps.

ibapi reports decoding trouble only through ``logging`` (``"diff len fields and params"``
when a signature-decoded message has the wrong field count, ``"unhandled exception in
EReader thread"``), and its run loop dies on a malformed int such as ``"100.0"``. So every
test ends with ``app.assert_healthy()``: zero WARNING+ records from the ``ibapi`` loggers,
no exception out of ``run()``, and both threads still alive.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from ibapi.client import EClient
from ibapi.commission_report import CommissionReport
from ibapi.contract import Contract, ContractDetails
from ibapi.execution import Execution, ExecutionFilter
from ibapi.order import Order
from ibapi.order_state import OrderState
from ibapi.wrapper import EWrapper

TIMEOUT = 5.0
CLIENT_ID = 11
AAPL_CON_ID = 265598
ACCOUNT = "DU1234567"  # BrokerConfig's default paper account (the fixture keeps it)


@dataclass(frozen=True, eq=False)
class Call:
    """One wrapper callback: its name and keyword arguments."""

    name: str
    args: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.args[key]


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class App(EWrapper, EClient):
    """EClient + EWrapper that records every callback it cares about."""

    def __init__(self) -> None:
        EWrapper.__init__(self)
        EClient.__init__(self, wrapper=self)
        self.calls: list[Call] = []
        self._cond = threading.Condition()
        self._next_order_id = 0
        self._next_req_id = 1000
        self.run_error: BaseException | None = None
        self.run_thread: threading.Thread | None = None

    # ------------------------------------------------------------ recording
    def _record(self, name: str, **args: Any) -> None:
        with self._cond:
            self.calls.append(Call(name, args))
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[list[Call]], Any], timeout: float = TIMEOUT) -> Any:
        """Wait until ``predicate(calls)`` is truthy and return its value."""
        with self._cond:
            value = self._cond.wait_for(lambda: predicate(self.calls), timeout)
            if not value:
                tail = "\n  ".join(f"{c.name} {c.args}" for c in self.calls[-15:])
                raise AssertionError(f"condition not met within {timeout}s; last calls:\n  {tail}")
            return value

    def wait_call(self, name: str, timeout: float = TIMEOUT, **match: Any) -> Call:
        """The first recorded ``name`` callback whose args equal ``match``."""
        return self.wait_for(
            lambda calls: next(iter(self.find(name, calls, **match)), None), timeout
        )

    def find(self, name: str, calls: list[Call] | None = None, **match: Any) -> list[Call]:
        with self._cond:
            calls = list(self.calls if calls is None else calls)
        return [
            c for c in calls if c.name == name and all(c.args.get(k) == v for k, v in match.items())
        ]

    def order_calls(self, order_id: int) -> list[Call]:
        """openOrder / orderStatus / error callbacks of one order, in arrival order."""
        with self._cond:
            calls = list(self.calls)
        keys = {"openOrder": "orderId", "orderStatus": "orderId", "error": "reqId"}
        return [c for c in calls if c.name in keys and c.args[keys[c.name]] == order_id]

    def errors(self, code: int | None = None) -> list[Call]:
        return [c for c in self.find("error") if code is None or c["errorCode"] == code]

    def next_order_id(self) -> int:
        self._next_order_id += 1
        return self._next_order_id - 1

    def next_req_id(self) -> int:
        self._next_req_id += 1
        return self._next_req_id

    # ------------------------------------------------------------ run loop
    def start_loop(self) -> None:
        def loop() -> None:
            try:
                self.run()
            except BaseException as exc:  # noqa: BLE001 - reported by assert_healthy
                self.run_error = exc

        self.run_thread = threading.Thread(target=loop, name="ibapi-run", daemon=True)
        self.run_thread.start()

    # ------------------------------------------------------------ callbacks
    def nextValidId(self, orderId: int) -> None:
        self._next_order_id = max(self._next_order_id, orderId)
        self._record("nextValidId", orderId=orderId)

    def managedAccounts(self, accountsList: str) -> None:
        self._record("managedAccounts", accountsList=accountsList)

    def error(self, reqId: int, errorCode: int, errorString: str) -> None:
        self._record("error", reqId=reqId, errorCode=errorCode, errorString=errorString)

    def completedOrder(self, contract: Contract, order: Order, orderState: OrderState) -> None:
        self._record("completedOrder", order=order, status=orderState.status)

    def completedOrdersEnd(self) -> None:
        self._record("completedOrdersEnd")

    def currentTime(self, time: int) -> None:
        self._record("currentTime", time=time)

    def connectionClosed(self) -> None:
        self._record("connectionClosed")

    def contractDetails(self, reqId: int, contractDetails: ContractDetails) -> None:
        self._record("contractDetails", reqId=reqId, contractDetails=contractDetails)

    def contractDetailsEnd(self, reqId: int) -> None:
        self._record("contractDetailsEnd", reqId=reqId)

    def openOrder(
        self, orderId: int, contract: Contract, order: Order, orderState: OrderState
    ) -> None:
        self._record(
            "openOrder",
            orderId=orderId,
            contract=contract,
            order=order,
            orderState=orderState,
            status=orderState.status,
        )

    def openOrderEnd(self) -> None:
        self._record("openOrderEnd")

    def orderStatus(
        self,
        orderId: int,
        status: str,
        filled: float,
        remaining: float,
        avgFillPrice: float,
        permId: int,
        parentId: int,
        lastFillPrice: float,
        clientId: int,
        whyHeld: str,
        mktCapPrice: float,
    ) -> None:
        self._record(
            "orderStatus",
            orderId=orderId,
            status=status,
            filled=filled,
            remaining=remaining,
            avgFillPrice=avgFillPrice,
            permId=permId,
            lastFillPrice=lastFillPrice,
            clientId=clientId,
            whyHeld=whyHeld,
        )

    def execDetails(self, reqId: int, contract: Contract, execution: Execution) -> None:
        self._record(
            "execDetails",
            reqId=reqId,
            contract=contract,
            execution=execution,
            orderId=execution.orderId,
            execId=execution.execId,
        )

    def execDetailsEnd(self, reqId: int) -> None:
        self._record("execDetailsEnd", reqId=reqId)

    def commissionReport(self, commissionReport: CommissionReport) -> None:
        self._record("commissionReport", report=commissionReport, execId=commissionReport.execId)

    def position(self, account: str, contract: Contract, position: float, avgCost: float) -> None:
        self._record(
            "position",
            account=account,
            contract=contract,
            position=position,
            avgCost=avgCost,
            conId=contract.conId,
        )

    def positionEnd(self) -> None:
        self._record("positionEnd")

    def updateAccountValue(self, key: str, val: str, currency: str, accountName: str) -> None:
        self._record(
            "updateAccountValue", key=key, val=val, currency=currency, accountName=accountName
        )

    def updatePortfolio(
        self,
        contract: Contract,
        position: float,
        marketPrice: float,
        marketValue: float,
        averageCost: float,
        unrealizedPNL: float,
        realizedPNL: float,
        accountName: str,
    ) -> None:
        self._record(
            "updatePortfolio",
            contract=contract,
            position=position,
            marketPrice=marketPrice,
            marketValue=marketValue,
            averageCost=averageCost,
            accountName=accountName,
            conId=contract.conId,
        )

    def updateAccountTime(self, timeStamp: str) -> None:
        self._record("updateAccountTime", timeStamp=timeStamp)

    def accountDownloadEnd(self, accountName: str) -> None:
        self._record("accountDownloadEnd", accountName=accountName)

    # instruments: option chains and computations, quotes, market rules, depth
    def securityDefinitionOptionParameter(
        self,
        reqId: int,
        exchange: str,
        underlyingConId: int,
        tradingClass: str,
        multiplier: str,
        expirations: set[str],
        strikes: set[float],
    ) -> None:
        self._record(
            "securityDefinitionOptionParameter",
            reqId=reqId,
            exchange=exchange,
            underlyingConId=underlyingConId,
            tradingClass=tradingClass,
            multiplier=multiplier,
            expirations=expirations,
            strikes=strikes,
        )

    def securityDefinitionOptionParameterEnd(self, reqId: int) -> None:
        self._record("securityDefinitionOptionParameterEnd", reqId=reqId)

    def tickPrice(self, reqId: int, tickType: int, price: float, attrib: Any) -> None:
        self._record("tickPrice", reqId=reqId, tickType=tickType, price=price)

    def tickOptionComputation(
        self,
        reqId: int,
        tickType: int,
        tickAttrib: int,
        impliedVol: float | None,
        delta: float | None,
        optPrice: float | None,
        pvDividend: float | None,
        gamma: float,
        vega: float,
        theta: float,
        undPrice: float,
    ) -> None:
        self._record(
            "tickOptionComputation",
            reqId=reqId,
            tickType=tickType,
            impliedVol=impliedVol,
            delta=delta,
            optPrice=optPrice,
            gamma=gamma,
            vega=vega,
            theta=theta,
            undPrice=undPrice,
        )

    def marketRule(self, marketRuleId: int, priceIncrements: list[Any]) -> None:
        self._record(
            "marketRule",
            marketRuleId=marketRuleId,
            increments=[(i.lowEdge, i.increment) for i in priceIncrements],
        )

    def updateMktDepth(
        self, reqId: int, position: int, operation: int, side: int, price: float, size: int
    ) -> None:
        self._record(
            "updateMktDepth",
            reqId=reqId,
            position=position,
            operation=operation,
            side=side,
            price=price,
            size=size,
        )

    def updateMktDepthL2(
        self,
        reqId: int,
        position: int,
        marketMaker: str,
        operation: int,
        side: int,
        price: float,
        size: int,
        isSmartDepth: bool,
    ) -> None:
        self._record(
            "updateMktDepthL2",
            reqId=reqId,
            position=position,
            marketMaker=marketMaker,
            operation=operation,
            side=side,
            price=price,
            size=size,
            isSmartDepth=isSmartDepth,
        )

    def mktDepthExchanges(self, depthMktDataDescriptions: list[Any]) -> None:
        self._record(
            "mktDepthExchanges", rows=[(d.exchange, d.secType) for d in depthMktDataDescriptions]
        )


# ------------------------------------------------------------------ fixtures and helpers


@pytest.fixture
def ibapi_log():
    """Every WARNING+ record of ibapi's loggers (``ibapi.decoder``, ``ibapi.reader``…)."""
    handler = _ListHandler()
    logger = logging.getLogger("ibapi")
    old_level = logger.level
    logger.setLevel(logging.WARNING)  # keeps ibapi's INFO/DEBUG chatter from being formatted
    logger.addHandler(handler)
    yield handler.records
    logger.removeHandler(handler)
    logger.setLevel(old_level)


@pytest.fixture
def app(gateway, ibapi_log):
    """An ibapi client connected (START_API done, nextValidId + managedAccounts seen)."""
    application = App()
    application.log_records = ibapi_log
    application.connect("127.0.0.1", gateway.port, CLIENT_ID)
    assert application.isConnected(), "ibapi could not connect to the simulator"
    application.start_loop()
    application.wait_call("nextValidId")
    application.wait_call("managedAccounts")
    yield application
    application.disconnect()
    if application.run_thread is not None:
        application.run_thread.join(TIMEOUT)
    if application.reader is not None:
        application.reader.join(TIMEOUT)


def assert_healthy(app: App) -> None:
    """No ibapi decode problems, no dead run loop, reader thread alive."""
    problems = [f"{r.name} {r.levelname}: {r.getMessage()}" for r in app.log_records]
    assert problems == [], "ibapi logged problems:\n" + "\n".join(problems)
    assert not [r for r in app.log_records if "diff len fields" in r.getMessage()]
    assert app.run_error is None, f"ibapi run() raised {app.run_error!r}"
    assert app.run_thread is not None and app.run_thread.is_alive(), "ibapi run loop died"
    assert app.reader is not None and app.reader.is_alive(), "ibapi EReader thread died"
    assert app.isConnected()


def aapl() -> Contract:
    contract = Contract()
    contract.symbol = "AAPL"
    contract.secType = "STK"
    contract.exchange = "SMART"
    contract.currency = "USD"
    return contract


def order(
    action: str,
    qty: float,
    order_type: str = "MKT",
    lmt_price: float | None = None,
    api_defaults: bool = False,
) -> Order:
    """An ibapi Order; ``api_defaults`` keeps 9.81's eTradeOnly/firmQuoteOnly = True."""
    o = Order()
    o.action, o.totalQuantity, o.orderType, o.tif = action, qty, order_type, "DAY"
    if lmt_price is not None:
        o.lmtPrice = lmt_price
    if not api_defaults:
        o.eTradeOnly = False
        o.firmQuoteOnly = False
    return o


def place(app: App, o: Order, contract: Contract | None = None) -> int:
    order_id = app.next_order_id()
    app.placeOrder(order_id, contract or aapl(), o)
    return order_id


def buy_filled(app: App, qty: float = 100) -> int:
    """Place a MKT BUY and wait for its commissionReport (the last order callback)."""
    order_id = place(app, order("BUY", qty))
    app.wait_call("orderStatus", orderId=order_id, status="Filled")
    execution = app.wait_call("execDetails", orderId=order_id)
    app.wait_call("commissionReport", execId=execution["execId"])
    return order_id


# ------------------------------------------------------------------ tests


def test_connect_negotiates_157_and_sends_ids_and_accounts(app: App) -> None:
    assert app.serverVersion() == 157
    assert app.connTime.endswith(b"Greenwich Mean Time")  # ibapi keeps it as bytes
    assert app.wait_call("nextValidId")["orderId"] >= 1
    assert app.wait_call("managedAccounts")["accountsList"] == ACCOUNT
    notice = app.wait_call("error", errorCode=2104)  # farm notices arrive as 5-field errors
    assert notice["reqId"] == -1 and "farm connection is OK" in notice["errorString"]
    assert_healthy(app)


def test_contract_details_known_and_unknown(app: App) -> None:
    req_id = app.next_req_id()
    app.reqContractDetails(req_id, aapl())
    end = app.wait_call("contractDetailsEnd", reqId=req_id)
    rows = app.find("contractDetails", reqId=req_id)
    assert len(rows) == 1 and app.calls.index(end) > app.calls.index(rows[0])
    details: ContractDetails = rows[0]["contractDetails"]
    assert details.contract.conId == AAPL_CON_ID
    assert details.contract.symbol == "AAPL" and details.contract.primaryExchange == "NASDAQ"
    assert details.longName == "APPLE INC" and details.minTick == 0.01
    assert "MKT" in details.orderTypes.split(",")

    unknown = Contract()
    unknown.symbol, unknown.secType, unknown.exchange, unknown.currency = (
        "NOSUCH",
        "STK",
        "SMART",
        "USD",
    )
    bad_id = app.next_req_id()
    app.reqContractDetails(bad_id, unknown)
    err = app.wait_call("error", reqId=bad_id)
    assert err["errorCode"] == 200
    assert err["errorString"] == "No security definition has been found for the request"
    assert not app.find("contractDetails", reqId=bad_id)
    assert not app.find("contractDetailsEnd", reqId=bad_id)
    assert_healthy(app)


def test_ibapi_981_default_order_flags_are_rejected(app: App, gateway) -> None:
    """9.81's Order() has eTradeOnly=firmQuoteOnly=True: rejected like real TWS (10268/10269)."""
    etrade_id = place(app, order("BUY", 10, api_defaults=True))
    err = app.wait_call("error", reqId=etrade_id)
    assert (err["errorCode"], err["errorString"]) == (
        10268,
        "The 'EtradeOnly' order attribute is not supported.",
    )

    firm = order("BUY", 10, api_defaults=True)
    firm.eTradeOnly = False
    firm_id = place(app, firm)
    err = app.wait_call("error", reqId=firm_id)
    assert (err["errorCode"], err["errorString"]) == (
        10269,
        "The 'firmQuoteOnly' order attribute is not supported.",
    )

    # Neither order exists: no openOrder/orderStatus, nothing open at the gateway.
    fine_id = buy_filled(app, 1)  # a later order on the same connection still works
    for order_id in (etrade_id, firm_id):
        assert [c.name for c in app.order_calls(order_id)] == ["error"]
    assert [o.order_id for o in gateway.open_orders()] == []
    assert app.find("orderStatus", orderId=fine_id, status="Filled")
    assert_healthy(app)


def test_market_buy_fills_with_open_order_execution_and_commission(app: App) -> None:
    order_id = place(app, order("BUY", 100))
    filled = app.wait_call("orderStatus", orderId=order_id, status="Filled")
    assert (filled["filled"], filled["remaining"]) == (100, 0)
    assert filled["avgFillPrice"] > 0 and filled["lastFillPrice"] == filled["avgFillPrice"]
    assert filled["clientId"] == CLIENT_ID and filled["permId"] > 0

    execution_call = app.wait_call("execDetails", orderId=order_id)
    report_call = app.wait_call("commissionReport", execId=execution_call["execId"])

    # openOrder arrives before the first orderStatus; the last openOrder carries the commission.
    sequence = app.order_calls(order_id)
    assert sequence[0].name == "openOrder"
    statuses = [c["status"] for c in sequence if c.name == "orderStatus"]
    assert statuses[0] == "PreSubmitted" and statuses[-1] == "Filled"
    first_open = sequence[0]
    assert first_open["contract"].conId == AAPL_CON_ID and first_open["contract"].symbol == "AAPL"
    sent: Order = first_open["order"]
    assert (sent.action, sent.totalQuantity, sent.orderType, sent.tif) == ("BUY", 100, "MKT", "DAY")
    assert (
        sent.account == ACCOUNT and sent.clientId == CLIENT_ID and sent.permId == filled["permId"]
    )
    assert not sent.eTradeOnly and not sent.firmQuoteOnly
    # Fields near the end of the 128-field v157 openOrder: any misalignment shows up here.
    assert (sent.ocaType, sent.exemptCode, sent.clearingIntent) == (3, -1, "IB")
    assert sent.dontUseAutoPriceForHedge and not sent.whatIf and sent.adjustedOrderType == "None"
    assert (first_open["contract"].localSymbol, first_open["contract"].tradingClass) == (
        "AAPL",
        "NMS",
    )
    final_open = [c for c in sequence if c.name == "openOrder"][-1]
    assert final_open["status"] == "Filled"
    assert final_open["orderState"].commission == pytest.approx(1.0)
    assert final_open["orderState"].commissionCurrency == "USD"

    execution: Execution = execution_call["execution"]
    assert execution_call["reqId"] == -1
    assert (execution.side, execution.shares, execution.cumQty) == ("BOT", 100, 100)
    assert execution.price == pytest.approx(filled["avgFillPrice"])
    assert execution.acctNumber == ACCOUNT and execution.permId == filled["permId"]
    assert execution.clientId == CLIENT_ID and execution.exchange == "ISLAND"
    assert execution_call["contract"].conId == AAPL_CON_ID

    report: CommissionReport = report_call["report"]
    assert report.commission == pytest.approx(1.0)  # 100 sh * 0.005 -> the 1.00 minimum
    assert report.currency == "USD"
    assert report.realizedPNL > 1e300  # UNSET_DOUBLE for an opening fill
    assert_healthy(app)


def test_positions_and_account_updates_after_fill(app: App) -> None:
    buy_filled(app, 100)

    app.reqPositions()
    app.wait_call("positionEnd")
    rows = app.find("position", conId=AAPL_CON_ID)
    assert len(rows) == 1
    row = rows[0]
    assert row["account"] == ACCOUNT and row["position"] == 100
    assert row["contract"].symbol == "AAPL" and row["contract"].exchange == "NASDAQ"
    assert 150 < row["avgCost"] < 250
    end_index = app.calls.index(app.find("positionEnd")[0])
    assert app.calls.index(row) < end_index

    app.reqAccountUpdates(True, ACCOUNT)
    app.wait_call("accountDownloadEnd", accountName=ACCOUNT)
    values = {(c["key"], c["currency"]): c["val"] for c in app.find("updateAccountValue")}
    assert values[("AccountCode", "")] == ACCOUNT
    assert float(values[("NetLiquidation", "USD")]) > 900_000
    assert float(values[("StockMarketValue", "USD")]) > 0
    portfolio = app.find("updatePortfolio", conId=AAPL_CON_ID)
    assert len(portfolio) == 1 and portfolio[0]["position"] == 100
    assert portfolio[0]["accountName"] == ACCOUNT
    assert portfolio[0]["contract"].primaryExchange == "NASDAQ"
    assert app.find("updateAccountTime")

    # The position subscription stays live: a second fill pushes a new position row.
    buy_filled(app, 50)
    app.wait_call("position", conId=AAPL_CON_ID, position=150)
    app.wait_call("updatePortfolio", conId=AAPL_CON_ID, position=150)
    app.reqAccountUpdates(False, ACCOUNT)
    app.cancelPositions()
    assert_healthy(app)


def test_req_executions_replays_fills_with_commissions(app: App) -> None:
    first = buy_filled(app, 10)
    second = buy_filled(app, 20)

    req_id = app.next_req_id()
    app.reqExecutions(req_id, ExecutionFilter())
    app.wait_call("execDetailsEnd", reqId=req_id)
    replies = app.find("execDetails", reqId=req_id)
    assert sorted(c["orderId"] for c in replies) == [first, second]
    shares = {c["orderId"]: c["execution"].shares for c in replies}
    assert shares == {first: 10, second: 20}
    reports = [c["execId"] for c in app.find("commissionReport")]
    for reply in replies:  # each replayed execution is followed by its commission again
        assert reports.count(reply["execId"]) == 2

    symbol_filter = ExecutionFilter()
    symbol_filter.symbol = "MSFT"
    empty_id = app.next_req_id()
    app.reqExecutions(empty_id, symbol_filter)
    app.wait_call("execDetailsEnd", reqId=empty_id)
    assert app.find("execDetails", reqId=empty_id) == []
    assert_healthy(app)


def test_req_open_orders_lists_resting_limit(app: App) -> None:
    app.reqOpenOrders()  # nothing open yet
    app.wait_call("openOrderEnd")
    assert app.find("openOrder") == []

    order_id = place(app, order("BUY", 10, "LMT", lmt_price=100.0))  # far below the market
    app.wait_call("orderStatus", orderId=order_id, status="Submitted")
    ends_before = len(app.find("openOrderEnd"))
    opens_before = len(app.find("openOrder", orderId=order_id))

    app.reqOpenOrders()
    app.wait_for(lambda calls: sum(c.name == "openOrderEnd" for c in calls) > ends_before)
    listed = app.find("openOrder", orderId=order_id)[opens_before:]
    assert len(listed) == 1
    assert listed[0]["status"] == "Submitted"
    assert listed[0]["order"].orderType == "LMT" and listed[0]["order"].lmtPrice == 100.0
    assert listed[0]["order"].totalQuantity == 10
    assert_healthy(app)


def test_cancel_resting_limit_gives_cancelled_and_202(app: App, gateway) -> None:
    order_id = place(app, order("BUY", 10, "LMT", lmt_price=100.0))
    app.wait_call("orderStatus", orderId=order_id, status="Submitted")
    assert [o.order_id for o in gateway.open_orders()] == [order_id]

    app.cancelOrder(order_id)
    cancelled = app.wait_call("orderStatus", orderId=order_id, status="Cancelled")
    assert (cancelled["filled"], cancelled["remaining"]) == (0, 10)
    err = app.wait_call("error", reqId=order_id, errorCode=202)
    assert err["errorString"].startswith("Order Canceled - reason:")
    assert app.calls.index(cancelled) < app.calls.index(err)  # status first, then 202
    assert gateway.open_orders() == []

    # Cancelling again: the order is done -> 10148, the run loop survives it.
    app.cancelOrder(order_id)
    assert app.wait_call("error", reqId=order_id, errorCode=10148)
    assert not app.find("execDetails", orderId=order_id)
    assert_healthy(app)


def test_full_session_leaves_client_healthy(app: App, gateway) -> None:
    """Everything in one session; the client is still alive and decoded everything."""
    buy_filled(app, 5)
    resting = place(app, order("SELL", 5, "LMT", lmt_price=400.0))
    app.wait_call("orderStatus", orderId=resting, status="Submitted")
    app.reqPositions()
    app.reqAccountUpdates(True, ACCOUNT)
    req_id = app.next_req_id()
    app.reqExecutions(req_id, ExecutionFilter())
    app.reqOpenOrders()
    app.cancelOrder(resting)
    app.wait_call("positionEnd")
    app.wait_call("accountDownloadEnd", accountName=ACCOUNT)
    app.wait_call("execDetailsEnd", reqId=req_id)
    app.wait_call("openOrderEnd")
    app.wait_call("error", reqId=resting, errorCode=202)
    stats = gateway.stats()
    assert stats.decode_errors == 0 and stats.pacing_violations == 0
    # ibapi reported no client-side errors other than the expected notices and the 202.
    unexpected = [c.args for c in app.errors() if c["errorCode"] not in (202, 2104, 2106, 2158)]
    assert unexpected == []
    assert_healthy(app)


def _push_raw(gateway, fields: list[str]) -> None:
    """Send raw fields to this test's ibapi session (bypasses the simulator's encoders)."""
    gateway._run(lambda server: server._send(server._session_of(CLIENT_ID), fields))


def test_health_check_catches_wrong_field_count_and_float_int(app: App, gateway) -> None:
    """The detectors are not vacuous: a 3-field positionEnd and a "100.0" tick size are caught."""
    _push_raw(gateway, ["62", "1", "extra"])
    _push_raw(
        gateway, ["62", "1"]
    )  # a good one behind it: once it arrived, the bad one was decoded
    app.wait_call("positionEnd")
    assert "diff len fields" in app.log_records[0].getMessage()
    with pytest.raises(AssertionError, match="diff len fields"):
        assert_healthy(app)
    app.log_records.clear()

    _push_raw(gateway, ["2", "6", "1", "0", "100.0"])  # tickSize with a float size
    assert app.run_thread is not None
    app.run_thread.join(TIMEOUT)
    assert isinstance(app.run_error, ValueError)
    with pytest.raises(AssertionError, match="run\\(\\) raised"):
        assert_healthy(app)


# ------------------------------------------------------------------ instruments


def _contract(**fields: Any) -> Contract:
    contract = Contract()
    for name, value in fields.items():
        setattr(contract, name, value)
    return contract


def _details(app: App, contract: Contract) -> list[ContractDetails]:
    req_id = app.next_req_id()
    app.reqContractDetails(req_id, contract)
    app.wait_for(
        lambda calls: (
            app.find("contractDetailsEnd", calls, reqId=req_id)
            or app.find("error", calls, reqId=req_id)
        )
    )
    return [call["contractDetails"] for call in app.find("contractDetails", reqId=req_id)]


def test_option_chain_contract_quote_greeks_and_fill(app: App) -> None:
    req_id = app.next_req_id()
    app.reqSecDefOptParams(req_id, "AAPL", "", "STK", AAPL_CON_ID)
    app.wait_call("securityDefinitionOptionParameterEnd", reqId=req_id)
    [smart] = app.find("securityDefinitionOptionParameter", reqId=req_id, exchange="SMART")
    assert (smart["underlyingConId"], smart["tradingClass"], smart["multiplier"]) == (
        AAPL_CON_ID,
        "AAPL",
        "100",
    )
    expiry = sorted(smart["expirations"])[1]
    strike = min(smart["strikes"], key=lambda k: abs(k - 190))
    [details] = _details(
        app,
        _contract(
            symbol="AAPL",
            secType="OPT",
            exchange="SMART",
            currency="USD",
            lastTradeDateOrContractMonth=expiry,
            strike=strike,
            right="C",
        ),
    )
    option = details.contract
    assert (option.multiplier, option.right, option.strike, details.underConId) == (
        "100",
        "C",
        strike,
        AAPL_CON_ID,
    )
    assert details.marketRuleIds == "32" and details.realExpirationDate == expiry

    ticker_id = app.next_req_id()
    app.reqMktData(ticker_id, option, "", False, False, [])
    model = app.wait_call("tickOptionComputation", reqId=ticker_id, tickType=13)
    ask = app.wait_call("tickPrice", reqId=ticker_id, tickType=2)["price"]
    bid = app.wait_call("tickPrice", reqId=ticker_id, tickType=1)["price"]
    assert (
        0 < bid < ask and 0.3 < model["delta"] < 0.7 and model["gamma"] > 0 and model["theta"] < 0
    )
    assert abs(model["undPrice"] - 190) < 10 and 0.1 < model["impliedVol"] < 0.5
    app.cancelMktData(ticker_id)

    order_id = place(app, order("BUY", 1), option)
    app.wait_call("orderStatus", orderId=order_id, status="Filled")
    execution = app.wait_call("execDetails", orderId=order_id)["execution"]
    assert abs(execution.price - ask) < 0.1 * ask
    app.reqPositions()
    position = app.wait_call("position", conId=option.conId)
    assert position["avgCost"] == pytest.approx(execution.price * 100 + 1.0)  # 0.65, minimum 1.00
    assert_healthy(app)


def test_future_with_multiplier_in_position_and_portfolio(app: App) -> None:
    [front] = _details(app, _contract(symbol="ES", secType="CONTFUT", exchange="CME"))
    assert front.contract.secType == "CONTFUT" and front.contract.multiplier == "50"
    month = front.contract.lastTradeDateOrContractMonth[:6]
    [details] = _details(
        app,
        _contract(symbol="ES", secType="FUT", exchange="CME", lastTradeDateOrContractMonth=month),
    )
    future = details.contract
    assert (future.conId, future.secType, details.marketRuleIds) == (
        front.contract.conId,
        "FUT",
        "67",
    )

    app.reqAccountUpdates(True, ACCOUNT)
    app.wait_call("accountDownloadEnd")
    order_id = place(app, order("BUY", 2), future)
    app.wait_call("orderStatus", orderId=order_id, status="Filled")
    price = app.wait_call("execDetails", orderId=order_id)["execution"].price
    app.reqPositions()
    position = app.wait_call("position", conId=future.conId)
    assert (position["position"], position["contract"].multiplier) == (2, "50")
    assert position["avgCost"] == pytest.approx(price * 50 + 0.85)
    item = app.wait_call("updatePortfolio", conId=future.conId)
    assert item["marketValue"] == pytest.approx(2 * item["marketPrice"] * 50, abs=0.01)
    assert_healthy(app)


def test_index_quote_ambiguous_symbol_and_market_rule(app: App) -> None:
    [spx] = _details(app, _contract(symbol="SPX", secType="IND", exchange="CBOE", currency="USD"))
    ticker_id = app.next_req_id()
    app.reqMktData(ticker_id, spx.contract, "", True, False, [])
    last = app.wait_call("tickPrice", reqId=ticker_id, tickType=4)["price"]
    assert abs(last - 5500) < 100 and not app.find("tickPrice", reqId=ticker_id, tickType=1)

    futures = _details(app, _contract(symbol="ES", secType="FUT", exchange="CME"))
    assert len(futures) == 3
    ambiguous = app.next_req_id()
    app.reqMktData(
        ambiguous, _contract(symbol="ES", secType="FUT", exchange="CME"), "", False, False, []
    )
    error = app.wait_call("error", reqId=ambiguous)
    assert error["errorCode"] == 200
    assert error["errorString"] == "The contract description specified for ES is ambiguous."

    app.reqMarketRule(32)
    assert app.wait_call("marketRule", marketRuleId=32)["increments"] == [(0.0, 0.01), (3.0, 0.05)]
    assert_healthy(app)


def test_market_depth_levels_and_updates(app: App) -> None:
    app.reqMktDepthExchanges()
    assert ("CME", "FUT") in app.wait_call("mktDepthExchanges")["rows"]
    req_id = app.next_req_id()
    app.reqMktDepth(req_id, aapl(), 10, False, [])
    app.wait_for(
        lambda calls: len(app.find("updateMktDepth", calls, reqId=req_id, operation=0)) == 20
    )
    inserts = app.find("updateMktDepth", reqId=req_id, operation=0)
    bids = [c["price"] for c in inserts if c["side"] == 1]
    asks = [c["price"] for c in inserts if c["side"] == 0]
    assert bids == sorted(bids, reverse=True) and asks == sorted(asks) and bids[0] < asks[0]
    app.wait_call("updateMktDepth", reqId=req_id, operation=1)  # the book follows the price
    app.cancelMktDepth(req_id, False)

    smart = app.next_req_id()
    app.reqMktDepth(smart, aapl(), 3, True, [])
    level = app.wait_call("updateMktDepthL2", reqId=smart, position=0, side=1)
    assert level["isSmartDepth"] is True and level["marketMaker"]
    app.cancelMktDepth(smart, True)
    assert_healthy(app)
