"""Pure broker model of the simulated IB gateway (a paper account).

No sockets, threads or wall clock: time comes in as ``now`` (epoch seconds). Every mutating
call first advances the model to ``now`` and returns the events a real gateway would send, in
the order it sends them (TWS API reference §4.4). Order-scoped events carry the owning client
id; routing them to connections (owner, master) is the server's job.

Money model: one USD base account with a cash balance per currency. Stocks are positions valued
at last; an FX fill moves both currencies' cash balances (the FX "position" row, in base-currency
units, is reported too but its value is already in the cash). Margin: initial
``1 / buying_power_multiplier`` and maintenance 25 % of the absolute value of every position.

Orders: MKT/LMT/STP/STP LMT/TRAIL with DAY/GTC/IOC. Market hours (``sessions``): an order
without outsideRth outside regular hours (or any order outside extended hours) is acknowledged
PreSubmitted with warning 399 and works from the next open; DAY orders expire (Cancelled) at the
close of the session they work in, GTC orders carry over. transmit=False orders are held until
an order of their group arrives with transmit=True (a transmit=False change to a transmitted order
is never applied: it waits for a Transmit click in TWS);
children work only once their parent is completely filled and shrink with each other's fills
(bracket = implicit OCA). ``validation_delay`` holds back the acknowledgement, ``fill_delay``
the fill of a marketable order, ``cancel_delay`` a cancel (the order shows PendingCancel and can
still fill meanwhile), partial fills come one chunk per ``price_step_seconds``.

Layout: ``Broker`` (this module: contracts, prices, the work queue, switches) is composed of
mixins, ``broker_orders`` (order entry, cancels), ``broker_matching`` (working orders, fills),
``broker_accounts`` (queries, positions, account values, P&L, margin) and
``broker_persistence``; the records they share are in ``broker_state``, the order-type rules,
commissions and formatting in ``broker_rules``, the config, events and constants in
``broker_types`` (re-exported here).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import replace

from .broker_accounts import AccountBook
from .broker_cancels import OrderCancels
from .broker_matching import OrderMatching
from .broker_orders import OrderEntry
from .broker_persistence import BrokerPersistence
from .broker_state import (
    _Fill,
    _Order,
    _Position,
)
from .broker_types import (
    MAX_CATCH_UP_STEPS,
    STATE_VERSION,
    AccountValuesEvent,
    BrokerConfig,
    CommissionEvent,
    Event,
    ExecutionEvent,
    OpenOrderEvent,
    OrderErrorEvent,
    OrderStatusEvent,
    PnLEvent,
    PnLSingleEvent,
    PortfolioEvent,
    PositionEvent,
    WhatIfEvent,
)
from .contracts import ContractTable, start_price
from .derivatives import Derivatives
from .options_model import Greeks
from .prices import PriceBook
from .tape import Tape
from .types import (
    Contract,
    ContractQuery,
    Quote,
)

# ----------------------------------------------------------------------------- the broker


class Broker(OrderEntry, OrderCancels, OrderMatching, AccountBook, BrokerPersistence):
    """A paper account at a simulated IB gateway (see the module docstring)."""

    def __init__(self, config: BrokerConfig, now: float) -> None:
        self.config = config
        spots = {c.con_id: start_price(c) for c in ContractTable(config.extra_contracts)}
        self.derivatives = Derivatives(now, spots)
        self._contracts = ContractTable((*self.derivatives.contracts, *config.extra_contracts))
        self._fx = self._fx_sources()
        starts = {
            c.con_id: (start_price(c), c.min_tick)
            for c in self._contracts
            if not self.derivatives.derived(c.con_id)
        }
        starts.update(self.derivatives.drivers)
        self._book = PriceBook(
            starts,
            config.seed,
            config.volatility,
            config.price_step_seconds,
            now,
            round(config.delayed_data_seconds / config.price_step_seconds),
        )
        self.tape = Tape(config.seed, config.volatility * math.sqrt(60 / config.price_step_seconds))
        self._clock = now
        self._cash: dict[str, float] = {"USD": config.starting_cash}
        self._start_net_liq = config.starting_cash
        self._positions: dict[int, _Position] = {}
        self._orders: dict[int, _Order] = {}  # by perm id, every order ever
        self._live: dict[int, _Order] = {}
        self._index: dict[tuple[int, int], int] = {}  # (client id, order id) → perm id
        self._max_ids: dict[int, int] = {}
        self._completed: list[int] = []
        self._fills: list[_Fill] = []
        self._dues: list[tuple[float, int, str, int]] = []  # (at, seq, "ack"/"fill", perm id)
        self._counters = {"perm": 0, "exec": 0, "due": 0}
        self.validation_delay = 0.0
        self.fill_delay = 0.0
        self.filled_status = True  # orderStatus Filled for the fill that completes an order
        self.portfolio_first = False  # a fill's updatePortfolio before its position message
        self.hard_to_borrow: set[str] = set()  # symbols whose short sales wait for a locate
        self.cancel_delay = 0.0
        self.tif_preset_warning = True  # 10349 for a blank TIF, as an account's default preset does
        self._reject_reason: str | None = None

    def _fx_sources(self) -> dict[str, tuple[int, bool]]:
        """The CASH pair converting each currency in use into USD; ValueError if one lacks it."""
        currencies = {c.currency for c in self._contracts}
        currencies |= {c.symbol for c in self._contracts if c.sec_type == "CASH"}
        sources = {}
        for currency in sorted(currencies - {"USD"}):
            source = self._contracts.fx_source(currency)
            if source is None:
                raise ValueError(f"no FX pair converts {currency} into USD")
            sources[currency] = source
        return sources

    # --------------------------------------------------------------- contracts and prices

    def find_contracts(self, query: ContractQuery) -> list[Contract]:
        """By conId, or symbol+secType(+currency) with exchange SMART/""/listing; [] if unknown."""
        return self._contracts.find(query)

    def contract_by_id(self, con_id: int) -> Contract | None:
        return self._contracts.by_id(con_id)

    def all_contracts(self) -> list[Contract]:
        return list(self._contracts)

    def quote(self, con_id: int) -> Quote:
        """Current quote (options and futures derived from their underlying); KeyError if unknown."""
        if self.derivatives.derived(con_id):
            return self.derivatives.quote(con_id, self._book.quote, self._clock)
        return self._book.quote(con_id)

    def delayed_quote(self, con_id: int) -> Quote:
        """The quote as delayed market data show it: ``delayed_data_seconds`` old."""
        if self.derivatives.derived(con_id):
            return self.derivatives.quote(con_id, self._book.delayed_quote, self._clock)
        return self._book.delayed_quote(con_id)

    def _last(self, con_id: int) -> float:
        return (
            self.quote(con_id).last if self.derivatives.derived(con_id) else self._book.last(con_id)
        )

    def option_greeks(self, con_id: int, delayed: bool = False) -> dict[int, Greeks]:
        """tickOptionComputation rows of an option by tick type ({} for anything else), on
        the underlying's delayed price for delayed data."""
        source = self._book.delayed_quote if delayed else self._book.quote
        return self.derivatives.greeks(con_id, source, self._clock)

    def advance(self, now: float) -> list[Event]:
        """Step prices and run due work, in time order, up to ``now``."""
        events: list[Event] = []
        self._skip_long_gap(now)
        while True:
            step_at = self._book.next_step_time()
            due_at = self._dues[0][0] if self._dues else math.inf
            if min(step_at, due_at) > now:
                break
            if step_at <= due_at:
                self._book.step()
                self._clock = max(self._clock, step_at)
                self.tape.record(step_at, self.quote)
                events += [
                    e for order in list(self._live.values()) for e in self._work(order, step_at)
                ]
            else:
                entry = heapq.heappop(self._dues)
                self._clock = max(self._clock, entry[0])
                events += self._run_due(entry)
        self._clock = max(self._clock, now)
        return events

    def _skip_long_gap(self, now: float) -> None:
        """Over a long gap (a jump or a fast simulated clock) prices pause: only the last
        MAX_CATCH_UP_STEPS steps are taken, so a jump of days costs no more than one of minutes."""
        step = self.config.price_step_seconds
        behind = int((now - self._book.next_step_time()) / step)
        if behind > MAX_CATCH_UP_STEPS:
            self._book.origin += (behind - MAX_CATCH_UP_STEPS) * step

    def next_due(self) -> float | None:
        """Earliest scheduled acknowledgement or fill, or None."""
        return min((entry[0] for entry in self._dues if self._pending(entry)), default=None)

    def _pending(self, entry: tuple[float, int, str, int]) -> bool:
        at, _, kind, perm_id = entry
        order = self._orders[perm_id]
        wanted = {
            "ack": order.status == "PendingSubmit",
            "fill": order.fill_due == at,
            "open": order.opens_at == at,
            "expire": order.expires_at == at,
            "cancel": order.cancel_due == at,
        }
        return order.live and wanted[kind]

    def _run_due(self, entry: tuple[float, int, str, int]) -> list[Event]:
        if not self._pending(entry):
            return []
        order = self._orders[entry[3]]
        actions = {
            "ack": self._ack,
            "fill": self._due_fill,
            "open": self._open,
            "expire": self._expire,
            "cancel": self._due_cancel,
        }
        return actions[entry[2]](order, entry[0])

    def _schedule(self, order: _Order, at: float, kind: str) -> None:
        self._counters["due"] += 1
        heapq.heappush(self._dues, (at, self._counters["due"], kind, order.perm_id))
        if kind == "fill":
            order.fill_due = at
        if kind == "cancel":
            order.cancel_due = at

    def _rate(self, currency: str) -> float:
        """USD value of one unit of ``currency``."""
        if currency == "USD":
            return 1.0
        con_id, inverted = self._fx[currency]
        last = self._book.last(con_id)
        return 1.0 / last if inverted else last

    # --------------------------------------------------------------- switches

    def reject_next_order(self, reason: str = "Simulated rejection") -> None:
        """The next placed (non-what-if) order gets 201 with ``reason`` and goes Inactive; or,
        if a change of a working order comes first, the change gets it (the order stays as it
        was, as IB refuses a modification)."""
        self._reject_reason = reason

    def correct_execution(self, exec_id: str, price: float, now: float) -> list[Event]:
        """IB's correction of an execution: the same execDetails but for the price and the
        execId, whose part after the last period is raised (``…01.01`` -> ``…01.02``), and its
        commission report. Listed beside the original; the account is not booked again."""
        fill = next(f for f in self._fills if f.execution.exec_id == exec_id)
        base, _, number = exec_id.rpartition(".")
        ex = fill.execution
        corrected = replace(
            ex,
            exec_id=f"{base}.{int(number) + 1:02d}",
            price=price,
            avg_price=ex.avg_price + (price - ex.price) * ex.shares / ex.cum_qty,
        )
        report = replace(fill.report, exec_id=corrected.exec_id)
        self._fills.append(_Fill(corrected, report, now))
        return [ExecutionEvent(corrected), CommissionEvent(ex.client_id, ex.order_id, report)]

    def roll_back_order_ids(self) -> None:
        """Forget the per-client max order ids (a gateway restart); live orders keep theirs."""
        self._index = {key: perm for key, perm in self._index.items() if self._orders[perm].live}
        self._max_ids = {}
        for client_id, order_id in self._index:
            self._max_ids[client_id] = max(self._max_ids.get(client_id, 0), order_id)

    # --------------------------------------------------------------- placing and modifying

    # --------------------------------------------------------------- working orders

    # --------------------------------------------------------------- cancelling

    # --------------------------------------------------------------- queries

    # --------------------------------------------------------------- persistence

    @classmethod
    def from_state(cls, state: dict, config: BrokerConfig, now: float) -> Broker:
        """Restore ``to_state`` output. The downtime is skipped: prices and pending work resume
        at ``now`` where they stopped (nothing happened while the gateway was down)."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported broker state version {state.get('version')!r}")
        broker = cls(config, state["clock"])
        broker._restore(state)
        broker._shift(now - state["clock"])
        return broker


__all__ = [
    "AccountValuesEvent",
    "Broker",
    "BrokerConfig",
    "CommissionEvent",
    "Event",
    "ExecutionEvent",
    "OpenOrderEvent",
    "OrderErrorEvent",
    "OrderStatusEvent",
    "PnLEvent",
    "PnLSingleEvent",
    "PortfolioEvent",
    "PositionEvent",
    "WhatIfEvent",
]
