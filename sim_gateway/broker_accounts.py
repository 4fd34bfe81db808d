"""Queries of the ``Broker`` (a mixin): orders, executions, positions, portfolio, account
values and P&L, the account events a fill causes and the margin effect of an order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .broker_rules import (
    _RULES,
    _amount,
    _exec_matches,
    _parse_filter_time,
    units_per_contract,
)
from .broker_state import (
    _Fill,
    _Margin,
    _margin_text,
    _Metrics,
    _Order,
    _Position,
)
from .broker_types import (
    MAINT_MARGIN_RATE,
    AccountValuesEvent,
    BrokerConfig,
    Event,
    PnLEvent,
    PnLSingleEvent,
    PortfolioEvent,
    PositionEvent,
)
from .types import (
    AccountValue,
    CommissionReport,
    Contract,
    Execution,
    ExecutionFilter,
    OrderRequest,
    OrderView,
    PnL,
    PnLSingle,
    PortfolioItem,
    Position,
    Quote,
)


class AccountBook:
    """What the account holds and is worth, as IB reports it."""

    config: BrokerConfig
    _cash: dict[str, float]
    _start_net_liq: float
    _positions: dict[int, _Position]
    _orders: dict[int, _Order]
    _live: dict[int, _Order]
    _completed: list[int]
    _fills: list[_Fill]
    portfolio_first: bool

    if TYPE_CHECKING:

        def quote(self, con_id: int) -> Quote: ...

        def _last(self, con_id: int) -> float: ...

        def _rate(self, currency: str) -> float: ...

        def _lookup(self, client_id: int, order_id: int) -> _Order | None: ...

    def _margin_effect(
        self, contract: Contract, delta: float, price: float, commission: float
    ) -> tuple[_Margin, _Margin]:
        """Margins now and after a fill of signed ``delta`` at ``price`` (open orders ignored)."""
        metrics = self._metrics()
        multiplier = self.config.buying_power_multiplier
        before = _Margin(
            metrics.net_liq, metrics.exposure / multiplier, metrics.exposure * MAINT_MARGIN_RATE
        )
        held = self._positions[contract.con_id].qty if contract.con_id in self._positions else 0.0
        extra = (
            (abs(held + delta) - abs(held))
            * price
            * units_per_contract(contract)
            * self._rate(contract.currency)
        )
        after = _Margin(
            before.equity - commission,
            before.init + extra / multiplier,
            before.maint + extra * MAINT_MARGIN_RATE,
        )
        return before, after

    def _estimate(self, req: OrderRequest, contract: Contract) -> float:
        return _RULES[req.order_type.upper()].estimate(req, self.quote(contract.con_id))

    def _margin_reason(self, contract: Contract, req: OrderRequest, qty: float) -> str | None:
        delta = qty if req.action.upper() == "BUY" else -qty
        return (
            _margin_text(*self._margin_effect(contract, delta, self._estimate(req, contract), 0.0))
            or None
        )

    def open_orders(self, client_id: int | None = None) -> list[OrderView]:
        """Acknowledged live orders of one client (None = all clients)."""
        return [
            order.view()
            for order in self._live.values()
            if order.status != "PendingSubmit" and client_id in (None, order.client_id)
        ]

    def order(self, client_id: int, order_id: int) -> OrderView | None:
        """The client's order with this id (status PendingSubmit while it is being validated)."""
        found = self._lookup(client_id, order_id)
        return None if found is None else found.view()

    def completed_orders(self) -> list[OrderView]:
        """Filled, cancelled and rejected orders of all clients, in completion order."""
        return [self._orders[perm_id].view() for perm_id in self._completed]

    def forget_completed(self) -> None:
        """Drop the list of completed orders (a gateway restarted since they finished: its
        completed orders are its session's); their fills stay among the day's executions."""
        self._completed.clear()

    def executions(self, flt: ExecutionFilter) -> list[tuple[Execution, CommissionReport]]:
        """Fills matching the filter (client id 0 = all clients); ValueError on a bad time."""
        since = _parse_filter_time(flt.time) if flt.time.strip() else None
        return [
            (fill.execution, fill.report) for fill in self._fills if _exec_matches(fill, flt, since)
        ]

    def _value(self, position: _Position) -> float:
        """Market value in USD."""
        contract = position.contract
        return (
            position.qty
            * self._last(contract.con_id)
            * units_per_contract(contract)
            * self._rate(contract.currency)
        )

    def _unrealized(self, position: _Position) -> float:
        unit = self._last(position.contract.con_id) * units_per_contract(position.contract)
        return (unit - position.avg_cost) * position.qty * self._rate(position.contract.currency)

    def _metrics(self) -> _Metrics:
        positions = list(self._positions.values())
        securities = [self._value(p) for p in positions if p.contract.sec_type != "CASH"]
        return _Metrics(
            cash=sum(amount * self._rate(currency) for currency, amount in self._cash.items()),
            securities=sum(securities),
            gross=sum(abs(value) for value in securities),
            exposure=sum(abs(self._value(p)) for p in positions),
            unrealized=sum(self._unrealized(p) for p in positions),
            realized=sum(p.realized_base for p in positions),
        )

    def _position_row(self, position: _Position) -> Position:
        return Position(self.config.account, position.contract, position.qty, position.avg_cost)

    def _portfolio_item(self, position: _Position) -> PortfolioItem:
        """Values in the contract's currency, like IB's updatePortfolio."""
        last = self._last(position.contract.con_id)
        unit = last * units_per_contract(position.contract)
        return PortfolioItem(
            account=self.config.account,
            contract=position.contract,
            position=position.qty,
            market_price=last,
            market_value=round(position.qty * unit, 2),
            avg_cost=position.avg_cost,
            unrealized_pnl=round((unit - position.avg_cost) * position.qty, 2),
            realized_pnl=round(position.realized, 2),
        )

    def positions(self) -> list[Position]:
        """Non-zero positions (a fill's PositionEvent does carry a row closed to 0)."""
        return [self._position_row(p) for p in self._positions.values() if p.qty]

    def portfolio(self) -> list[PortfolioItem]:
        """Non-zero rows (a fill's PortfolioEvent does carry a row closed to 0)."""
        return [self._portfolio_item(p) for p in self._positions.values() if p.qty]

    def account_values(self) -> list[AccountValue]:
        """The account keys of updateAccountValue / accountSummary."""
        metrics, account = self._metrics(), self.config.account
        net = metrics.net_liq
        init = metrics.exposure / self.config.buying_power_multiplier
        maint = metrics.exposure * MAINT_MARGIN_RATE
        available, excess = net - init, net - maint
        rows = [
            AccountValue(account, "AccountCode", account, ""),
            AccountValue(account, "AccountType", "INDIVIDUAL", ""),
            AccountValue(account, "Currency", "USD", "USD"),
            AccountValue(account, "Currency", "BASE", "BASE"),
        ]
        for currency, amount in sorted(self._cash.items()):
            rows.append(AccountValue(account, "CashBalance", _amount(amount), currency))
            rows.append(
                AccountValue(account, "ExchangeRate", f"{self._rate(currency):.6f}", currency)
            )
        rows += [
            AccountValue(account, "CashBalance", _amount(metrics.cash), "BASE"),
            AccountValue(account, "TotalCashBalance", _amount(metrics.cash), "BASE"),
            AccountValue(account, "NetLiquidationByCurrency", _amount(net), "BASE"),
        ]
        money = {
            "NetLiquidation": net,
            "TotalCashValue": metrics.cash,
            "SettledCash": metrics.cash,
            "AccruedCash": 0.0,
            "BuyingPower": available * self.config.buying_power_multiplier,
            "AvailableFunds": available,
            "ExcessLiquidity": excess,
            "EquityWithLoanValue": net,
            "GrossPositionValue": metrics.gross,
            "InitMarginReq": init,
            "MaintMarginReq": maint,
            "FullInitMarginReq": init,
            "FullMaintMarginReq": maint,
            "FullAvailableFunds": available,
            "FullExcessLiquidity": excess,
            "UnrealizedPnL": metrics.unrealized,
            "RealizedPnL": metrics.realized,
            "StockMarketValue": metrics.securities,
        }
        rows += [AccountValue(account, key, _amount(value), "USD") for key, value in money.items()]
        ratios = {
            "Cushion": excess / net if net else 0.0,
            "Leverage": metrics.gross / net if net else 0.0,
        }
        return rows + [
            AccountValue(account, key, f"{value:.6f}", "") for key, value in ratios.items()
        ]

    def pnl(self) -> PnL:
        """Daily P&L = change in net liquidation since the account started."""
        metrics = self._metrics()
        daily = metrics.net_liq - self._start_net_liq
        return PnL(round(daily, 2), round(metrics.unrealized, 2), round(metrics.realized, 2))

    def pnl_single(self, con_id: int) -> PnLSingle | None:
        """P&L of one contract ever traded (None if never); daily = unrealized + realized."""
        position = self._positions.get(con_id)
        return None if position is None else self._pnl_single(position)

    def _pnl_single(self, position: _Position) -> PnLSingle:
        unrealized = self._unrealized(position)
        return PnLSingle(
            position=position.qty,
            daily_pnl=round(unrealized + position.realized_base, 2),
            unrealized_pnl=round(unrealized, 2),
            realized_pnl=round(position.realized_base, 2),
            value=round(self._value(position), 2),
        )

    def _account_events(self, con_id: int) -> list[Event]:
        position = self._positions[con_id]
        told: list[Event] = [
            PositionEvent(self._position_row(position)),
            PortfolioEvent(self._portfolio_item(position)),
        ]
        return [
            *(told[::-1] if self.portfolio_first else told),  # IB orders neither first
            AccountValuesEvent(tuple(self.account_values())),
            PnLEvent(self.pnl()),
            PnLSingleEvent(con_id, self._pnl_single(position)),
        ]
