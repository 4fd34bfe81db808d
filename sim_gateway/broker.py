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
an order of their group arrives with transmit=True;
children work only once their parent is completely filled and shrink with each other's fills
(bracket = implicit OCA). ``validation_delay`` holds back the acknowledgement, ``fill_delay``
the fill of a marketable order, partial fills come one chunk per ``price_step_seconds``.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from . import errors, sessions
from .contracts import ContractTable, start_price, unresolved_text
from .derivatives import Derivatives
from .options_model import Greeks
from .prices import PriceBook, on_tick, round_to_tick
from .tape import Tape
from .types import (
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
    Quote,
)

EASTERN = ZoneInfo("America/New_York")
EPS = 1e-9
MAINT_MARGIN_RATE = 0.25
PERM_ID_BASE = 1_000_000_000
EXEC_ID_BASE = 0x6571A1B2
STATE_VERSION = 1
MAX_CATCH_UP_STEPS = 600
LIVE_STATUSES = frozenset({"PendingSubmit", "PreSubmitted", "Submitted"})
TIFS = ("DAY", "GTC", "IOC")
SIDES = {"BUY": "BOT", "SELL": "SLD"}
VENUES = {"NASDAQ": "ISLAND"}  # execution venue by primary exchange (else the primary itself)
WHOLE_UNITS = frozenset({"STK", "OPT", "FUT"})
OPTION_COMMISSION, FUTURE_COMMISSION = 0.65, 0.85  # per contract (options: at least min_commission)

NO_SECDEF = errors.text(200)
REJECTED = errors.text(201, reason="")
CANCELED = errors.text(202, reason="")
TIF_PRESET = errors.text(10349)
OFF_TICK = errors.text(110)
BY_TRADER = "Cancelled by Trader"
BY_SYSTEM = "Cancelled by System"


# ----------------------------------------------------------------------------- config, events


@dataclass(frozen=True)
class BrokerConfig:
    """Static settings of one simulated paper account."""

    account: str = "DU1234567"
    starting_cash: float = 1_000_000.0
    seed: int = 1
    price_step_seconds: float = 1.0
    volatility: float = 0.0005
    commission_per_share: float = 0.005
    min_commission: float = 1.0
    max_commission_pct: float = 0.01
    fx_commission_rate: float = 0.00002
    fx_min_commission: float = 2.0
    partial_fill_above: float = 0
    partial_fill_chunk: float = 100
    buying_power_multiplier: float = 4.0
    extra_contracts: tuple[Contract, ...] = ()
    master_client_id: int | None = None
    market_hours: bool = True  # False: every market always open (no 399, DAY never expires)
    live_account_drill: bool = False  # allow a live-looking (non-DU) account id, to drill a
    #                                   client's live-trading guard; still a simulated account

    def __post_init__(self) -> None:
        if not self.account.startswith("DU") and not self.live_account_drill:
            raise ValueError(f"paper account ids start with 'DU', got {self.account!r}")
        if self.price_step_seconds <= 0 or self.buying_power_multiplier <= 0:
            raise ValueError("price_step_seconds and buying_power_multiplier must be positive")
        if self.partial_fill_above > 0 and self.partial_fill_chunk <= 0:
            raise ValueError("partial_fill_chunk must be positive when partial fills are on")


@dataclass(frozen=True)
class OpenOrderEvent:
    order: OrderView


@dataclass(frozen=True)
class OrderStatusEvent:
    order: OrderView


@dataclass(frozen=True)
class ExecutionEvent:
    execution: Execution


@dataclass(frozen=True)
class CommissionEvent:
    client_id: int
    order_id: int
    report: CommissionReport


@dataclass(frozen=True)
class OrderErrorEvent:
    client_id: int
    order_id: int
    code: int
    text: str


@dataclass(frozen=True)
class WhatIfEvent:
    client_id: int
    order: OrderView


@dataclass(frozen=True)
class PositionEvent:
    position: Position


@dataclass(frozen=True)
class PortfolioEvent:
    item: PortfolioItem


@dataclass(frozen=True)
class AccountValuesEvent:
    values: tuple[AccountValue, ...]


@dataclass(frozen=True)
class PnLEvent:
    pnl: PnL


@dataclass(frozen=True)
class PnLSingleEvent:
    con_id: int
    pnl_single: PnLSingle


Event = (
    OpenOrderEvent
    | OrderStatusEvent
    | ExecutionEvent
    | CommissionEvent
    | OrderErrorEvent
    | WhatIfEvent
    | PositionEvent
    | PortfolioEvent
    | AccountValuesEvent
    | PnLEvent
    | PnLSingleEvent
)


# ----------------------------------------------------------------------------- internal state


@dataclass
class _Order:
    """A live or finished order (mutable; snapshots are ``view()``)."""

    client_id: int
    order_id: int
    perm_id: int
    contract: Contract
    action: str
    account: str
    total_quantity: float = 0.0
    order_type: str = "MKT"
    lmt_price: float | None = None
    aux_price: float | None = None
    tif: str = "DAY"
    order_ref: str = ""
    oca_group: str = ""
    oca_type: int = 0
    parent_id: int = 0
    parent_perm_id: int = 0
    transmit: bool = True
    outside_rth: bool = False
    trailing_percent: float | None = None
    trail_stop_price: float | None = None
    status: str = "PendingSubmit"  # internal until acknowledged: never sent
    filled: float = 0.0
    avg_fill_price: float = 0.0
    last_fill_price: float = 0.0
    commission: float | None = None  # cumulative, USD
    held: bool = False  # transmit=False and not yet released
    triggered: bool = False
    fill_due: float | None = None
    warn_tif: bool = False
    opens_at: float | None = None  # held outside market hours until then (warning 399 sent)
    expires_at: float | None = None  # DAY: the close of the session it works in
    completed_time: str = ""
    completed_status: str = ""

    @property
    def live(self) -> bool:
        return self.status in LIVE_STATUSES

    @property
    def remaining(self) -> float:
        return self.total_quantity - self.filled

    @property
    def sign(self) -> float:
        return 1.0 if self.action == "BUY" else -1.0

    def view(self) -> OrderView:
        """Immutable snapshot."""
        return OrderView(
            order_id=self.order_id,
            client_id=self.client_id,
            perm_id=self.perm_id,
            contract=self.contract,
            action=self.action,
            total_quantity=self.total_quantity,
            order_type=self.order_type,
            lmt_price=self.lmt_price,
            aux_price=self.aux_price,
            tif=self.tif,
            account=self.account,
            status=self.status,
            filled=self.filled,
            remaining=self.remaining,
            avg_fill_price=self.avg_fill_price,
            last_fill_price=self.last_fill_price,
            order_ref=self.order_ref,
            oca_group=self.oca_group,
            oca_type=self.oca_type,
            parent_id=self.parent_id,
            outside_rth=self.outside_rth,
            trailing_percent=self.trailing_percent,
            trail_stop_price=self.trail_stop_price,
            commission=self.commission,
            commission_currency="USD" if self.commission is not None else "",
            completed_time=self.completed_time,
            completed_status=self.completed_status,
            parent_perm_id=self.parent_perm_id,
        )


def _apply_request(order: _Order, req: OrderRequest) -> None:
    """Copy the modifiable fields of a placeOrder onto an order ("" tif keeps the current)."""
    order.total_quantity = req.total_quantity
    order.order_type = req.order_type.upper()
    order.lmt_price, order.aux_price = req.lmt_price, req.aux_price
    order.tif = req.tif.upper() or order.tif
    order.order_ref, order.oca_group, order.oca_type = req.order_ref, req.oca_group, req.oca_type
    order.outside_rth, order.transmit = req.outside_rth, req.transmit
    order.trailing_percent = req.trailing_percent


@dataclass
class _Position:
    contract: Contract
    qty: float = 0.0
    avg_cost: float = 0.0  # per unit, contract currency, commissions included
    realized: float = 0.0  # contract currency
    realized_base: float = 0.0  # USD at the fills' rates


def _apply_fill(pos: _Position, delta: float, price: float, commission: float) -> float | None:
    """Book a fill of signed ``delta`` units; realized P&L (contract ccy) if it closed any."""
    closing = min(abs(delta), abs(pos.qty)) if pos.qty * delta < 0 else 0.0
    opening = abs(delta) - closing
    sign = math.copysign(1.0, delta)
    realized = None
    if closing:
        realized = (price - pos.avg_cost) * closing * -sign - commission * closing / abs(delta)
        pos.qty += sign * closing
    if opening > EPS:
        held = abs(pos.qty)
        cost = pos.avg_cost * held + price * opening + sign * commission * opening / abs(delta)
        pos.avg_cost, pos.qty = cost / (held + opening), pos.qty + sign * opening
    if abs(pos.qty) < EPS:
        pos.qty, pos.avg_cost = 0.0, 0.0
    return realized


@dataclass(frozen=True)
class _Fill:
    execution: Execution
    report: CommissionReport
    at: float


@dataclass(frozen=True)
class _Metrics:
    """Account aggregates in USD."""

    cash: float
    securities: float  # signed value of non-CASH positions
    gross: float  # Σ|value| of non-CASH positions
    exposure: float  # Σ|value| of all positions: the margin base
    unrealized: float
    realized: float

    @property
    def net_liq(self) -> float:
        return self.cash + self.securities


@dataclass(frozen=True)
class _Margin:
    equity: float
    init: float
    maint: float


def _margin_text(before: _Margin, after: _Margin) -> str:
    """IB's rejection text when an exposure-increasing order exceeds the equity, else ""."""
    if after.init <= before.init + EPS or after.init <= after.equity:
        return ""
    return (
        "YOUR ORDER IS NOT ACCEPTED. IN ORDER TO OBTAIN THE DESIRED POSITION YOUR EQUITY WITH LOAN VALUE "
        f"[{after.equity:.2f} USD] MUST EXCEED THE INITIAL MARGIN [{after.init:.2f} USD]"
    )


# ----------------------------------------------------------------------------- order-type rules


def _touch(action: str, quote: Quote) -> float:
    """The price a marketable order takes: ask to buy, bid to sell."""
    return quote.ask if action == "BUY" else quote.bid


def _market(order: _Order, quote: Quote) -> float | None:
    return _touch(order.action, quote)


def _limit(order: _Order, quote: Quote) -> float | None:
    """The touch if it is at or better than the limit (the better of the two), else None."""
    touch, limit = _touch(order.action, quote), order.lmt_price or 0.0
    marketable = touch <= limit + EPS if order.action == "BUY" else touch >= limit - EPS
    return touch if marketable else None


def _crossed(action: str, stop: float | None, last: float) -> bool:
    """Whether last has reached a buy (from below) or sell (from above) stop."""
    if stop is None:
        return False
    return last >= stop - EPS if action == "BUY" else last <= stop + EPS


def _positive(field: str, label: str) -> Callable[[OrderRequest], str | None]:
    def check(req: OrderRequest) -> str | None:
        value = getattr(req, field)
        return None if value is not None and value > 0 else f"{label} is missing or not positive"

    return check


def _trail_offset(req: OrderRequest) -> str | None:
    if (req.aux_price or 0) > 0 or (req.trailing_percent or 0) > 0:
        return None
    return "Trailing amount or trailing percent is missing"


@dataclass(frozen=True)
class _Rule:
    """How one order type is checked, valued, triggered, priced and shown while it waits."""

    checks: tuple[Callable[[OrderRequest], str | None], ...]
    estimate: Callable[[OrderRequest, Quote], float]  # price for margin checks and what-if
    fill: Callable[[_Order, Quote], float | None]  # once triggered; None = not marketable
    stop: Callable[[_Order], float | None] | None = None  # trigger level of stop-like types
    waits_as: str = "PreSubmitted"  # status while working and unfilled


def _at_touch(req: OrderRequest, quote: Quote) -> float:
    return _touch(req.action.upper(), quote)


def _at_limit(req: OrderRequest, quote: Quote) -> float:
    return req.lmt_price or 0.0


def _at_stop(req: OrderRequest, quote: Quote) -> float:
    return req.aux_price or 0.0


_LIMIT, _STOP = _positive("lmt_price", "Limit price"), _positive("aux_price", "Stop price")
_RULES: dict[str, _Rule] = {
    "MKT": _Rule((), _at_touch, _market),
    "LMT": _Rule((_LIMIT,), _at_limit, _limit, waits_as="Submitted"),
    "STP": _Rule((_STOP,), _at_stop, _market, stop=lambda o: o.aux_price),
    "STP LMT": _Rule((_LIMIT, _STOP), _at_limit, _limit, stop=lambda o: o.aux_price, waits_as="Submitted"),
    "TRAIL": _Rule((_trail_offset,), _at_touch, _market, stop=lambda o: o.trail_stop_price),
}
_TIGHTEN = {"BUY": min, "SELL": max}  # a trailing stop only ever moves this way


def _stock_commission(config: BrokerConfig, shares: float, value: float) -> float:
    """0.005/share, at least 1.00, at most 1 % of the trade value (the cap wins)."""
    per_share = max(shares * config.commission_per_share, config.min_commission)
    return min(per_share, value * config.max_commission_pct)


def _fx_commission(config: BrokerConfig, units: float, value: float) -> float:
    """0.2 bp of the trade value, at least 2.00."""
    return max(value * config.fx_commission_rate, config.fx_min_commission)


def _option_commission(config: BrokerConfig, contracts: float, value: float) -> float:
    return max(contracts * OPTION_COMMISSION, config.min_commission)


def _future_commission(config: BrokerConfig, contracts: float, value: float) -> float:
    return contracts * FUTURE_COMMISSION


def units_per_contract(contract: Contract) -> float:
    """Units per contract: 100 for an option, 50 for ES, 1 for stocks and FX."""
    try:
        return float(contract.multiplier or 1)
    except ValueError:
        return 1.0


_COMMISSIONS = {"CASH": _fx_commission, "OPT": _option_commission, "FUT": _future_commission}
# by secType; anything else pays the stock schedule


# ----------------------------------------------------------------------------- formatting


def _ib_time(now: float) -> str:
    """IB's "yyyymmdd hh:mm:ss US/Eastern"."""
    return datetime.fromtimestamp(now, EASTERN).strftime("%Y%m%d %H:%M:%S") + " US/Eastern"


def _parse_filter_time(text: str) -> float:
    """"yyyymmdd-hh:mm:ss" (UTC) or "yyyymmdd hh:mm:ss [zone]" (default US/Eastern) → epoch."""
    text = text.strip()
    if text[8:9] == "-":
        return datetime.strptime(text, "%Y%m%d-%H:%M:%S").replace(tzinfo=UTC).timestamp()
    day, clock, *zone = text.split()
    try:
        zone_info = ZoneInfo(zone[0]) if zone else EASTERN
    except (KeyError, ValueError) as exc:  # ZoneInfoNotFoundError is a KeyError
        raise ValueError(f"unknown time zone {zone[0]!r}") from exc
    return datetime.strptime(f"{day} {clock}", "%Y%m%d %H:%M:%S").replace(tzinfo=zone_info).timestamp()


def _rejection(reason: str) -> tuple[int, str]:
    """(code, text) of a rejection: 110 for an off-tick price (IB's own code), else 201."""
    return (110, OFF_TICK) if reason == OFF_TICK else (201, REJECTED + reason)


def _listing(contract: Contract) -> str:
    """"NASDAQ.NMS" / "NYSE" / "IDEALPRO" as in IB's order messages."""
    if contract.sec_type != "STK":
        return contract.exchange
    return f"{contract.primary_exchange}.NMS" if contract.primary_exchange == "NASDAQ" else contract.primary_exchange


def _qty_text(qty: float) -> str:
    return str(int(qty)) if float(qty).is_integer() else repr(qty)


def _amount(value: float) -> str:
    return f"{value:.2f}"


def _venue(contract: Contract) -> str:
    if contract.sec_type == "CASH":
        return contract.exchange
    if contract.sec_type == "OPT":
        return "CBOE"
    return VENUES.get(contract.primary_exchange, contract.primary_exchange or contract.exchange)


def _exec_matches(fill: _Fill, flt: ExecutionFilter, since: float | None) -> bool:
    execution, side = fill.execution, flt.side.upper()
    checks = (
        not flt.client_id or execution.client_id == flt.client_id,
        not flt.account or execution.account.upper() == flt.account.upper(),
        not flt.symbol or execution.contract.symbol.upper() == flt.symbol.upper(),
        not flt.sec_type or execution.contract.sec_type == flt.sec_type.upper(),
        not flt.exchange or execution.exchange.upper() == flt.exchange.upper(),
        not side or execution.side == SIDES.get(side, side),
        since is None or fill.at >= since - EPS,
    )
    return all(checks)


# ----------------------------------------------------------------------------- the broker


class Broker:
    """A paper account at a simulated IB gateway (see the module docstring)."""

    def __init__(self, config: BrokerConfig, now: float) -> None:
        self.config = config
        spots = {c.con_id: start_price(c) for c in ContractTable(config.extra_contracts)}
        self.derivatives = Derivatives(now, spots)
        self._contracts = ContractTable((*self.derivatives.contracts, *config.extra_contracts))
        self._fx = self._fx_sources()
        starts = {c.con_id: (start_price(c), c.min_tick) for c in self._contracts
                  if not self.derivatives.derived(c.con_id)}
        starts.update(self.derivatives.drivers)
        self._book = PriceBook(starts, config.seed, config.volatility, config.price_step_seconds, now)
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

    def _last(self, con_id: int) -> float:
        return self.quote(con_id).last if self.derivatives.derived(con_id) else self._book.last(con_id)

    def option_greeks(self, con_id: int) -> dict[int, Greeks]:
        """tickOptionComputation rows of an option by tick type; {} for anything else."""
        return self.derivatives.greeks(con_id, self._book.quote, self._clock)

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
                events += [e for order in list(self._live.values()) for e in self._work(order, step_at)]
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
        wanted = {"ack": order.status == "PendingSubmit", "fill": order.fill_due == at,
                  "open": order.opens_at == at, "expire": order.expires_at == at}
        return order.live and wanted[kind]

    def _run_due(self, entry: tuple[float, int, str, int]) -> list[Event]:
        if not self._pending(entry):
            return []
        order = self._orders[entry[3]]
        actions = {"ack": self._ack, "fill": self._due_fill, "open": self._open, "expire": self._expire}
        return actions[entry[2]](order, entry[0])

    def _schedule(self, order: _Order, at: float, kind: str) -> None:
        self._counters["due"] += 1
        heapq.heappush(self._dues, (at, self._counters["due"], kind, order.perm_id))
        if kind == "fill":
            order.fill_due = at

    def _rate(self, currency: str) -> float:
        """USD value of one unit of ``currency``."""
        if currency == "USD":
            return 1.0
        con_id, inverted = self._fx[currency]
        last = self._book.last(con_id)
        return 1.0 / last if inverted else last

    # --------------------------------------------------------------- switches

    def reject_next_order(self, reason: str = "Simulated rejection") -> None:
        """The next placed (non-what-if) order gets 201 with ``reason`` and goes Inactive."""
        self._reject_reason = reason

    def roll_back_order_ids(self) -> None:
        """Forget the per-client max order ids (a gateway restart); live orders keep theirs."""
        self._index = {key: perm for key, perm in self._index.items() if self._orders[perm].live}
        self._max_ids = {}
        for client_id, order_id in self._index:
            self._max_ids[client_id] = max(self._max_ids.get(client_id, 0), order_id)

    # --------------------------------------------------------------- placing and modifying

    def next_valid_id(self, client_id: int) -> int:
        return self._max_ids.get(client_id, 0) + 1

    def place_order(self, client_id: int, request: OrderRequest, now: float) -> list[Event]:
        """New order, modification of a live order id of this client, or a what-if.

        Order of checks: 103/104 (id), 200 (contract), 10268/10269, then 201 + Inactive for
        reject_next_order, bad fields, unknown parent, insufficient margin.
        """
        events = self.advance(now)
        return events + self._place(client_id, request, self._clock)

    def _place(self, client_id: int, req: OrderRequest, now: float) -> list[Event]:
        if req.what_if:
            return self._what_if(client_id, req)
        existing = self._lookup(client_id, req.order_id)
        if existing is not None and existing.live:
            return self._modify(existing, req, now)
        if existing is not None and existing.status == "Filled":
            return [OrderErrorEvent(client_id, req.order_id, 104, errors.text(104))]
        if existing is not None or req.order_id <= self._max_ids.get(client_id, 0):
            return [OrderErrorEvent(client_id, req.order_id, 103, errors.text(103))]
        self._max_ids[client_id] = req.order_id
        contract = self._resolve(req.contract)
        if contract is None:
            return [self._unresolved(client_id, req)]
        unsupported = self._unsupported(client_id, req)
        if unsupported is not None:
            return [unsupported]
        order = self._new_order(client_id, req, contract, self._next_perm_id())
        self._register(order)
        reason = (
            self._take_rejection()
            or self._request_reason(req, contract)
            or self._parent_reason(client_id, req)
            or self._margin_reason(contract, req, req.total_quantity)
        )
        if reason:
            return self._reject(order, reason, now)
        if self.validation_delay > 0:
            self._schedule(order, now + self.validation_delay, "ack")
            return []
        return self._ack(order, now)

    def _lookup(self, client_id: int, order_id: int) -> _Order | None:
        perm_id = self._index.get((client_id, order_id))
        return None if perm_id is None else self._orders[perm_id]

    def _resolve(self, query: ContractQuery) -> Contract | None:
        """The one contract the query names (a continuous future: its front month), else None."""
        rows = self._contracts.find(query)
        return self._contracts.by_id(rows[0].con_id) if len(rows) == 1 else None

    def _unresolved(self, client_id: int, req: OrderRequest) -> OrderErrorEvent:
        text = unresolved_text(req.contract, len(self._contracts.find(req.contract)))
        return OrderErrorEvent(client_id, req.order_id, 200, text)

    def _unsupported(self, client_id: int, req: OrderRequest) -> OrderErrorEvent | None:
        flags = (
            (req.e_trade_only, 10268, errors.text(10268)),
            (req.firm_quote_only, 10269, errors.text(10269)),
        )
        return next(
            (OrderErrorEvent(client_id, req.order_id, code, text) for on, code, text in flags if on), None
        )

    def _take_rejection(self) -> str | None:
        reason, self._reject_reason = self._reject_reason, None
        return reason

    def _request_reason(self, req: OrderRequest, contract: Contract) -> str | None:
        """Why the order's own fields are unacceptable, or None."""
        rule = _RULES.get(req.order_type.upper())
        if req.action.upper() not in SIDES:
            return f"Invalid action {req.action!r}"
        if rule is None:
            return f"Unsupported order type {req.order_type!r}"
        if req.total_quantity <= 0:
            return "Order quantity must be positive"
        if contract.sec_type == "IND":
            return "Index contracts are not tradable"
        if contract.sec_type in WHOLE_UNITS and not float(req.total_quantity).is_integer():
            return "Fractional-sized order is not supported for this contract"
        if req.tif.upper() not in ("", *TIFS):
            return f"Unsupported time in force {req.tif!r}"
        if req.account and req.account != self.config.account:
            return f"Account {req.account} is not managed by this gateway"
        why = next(filter(None, (check(req) for check in rule.checks)), None)
        if why:
            return why
        prices = [p for p in (req.lmt_price, req.aux_price) if p]
        if not all(on_tick(p, contract.min_tick) for p in prices):
            return OFF_TICK
        return None

    def _parent_reason(self, client_id: int, req: OrderRequest) -> str | None:
        parent = self._lookup(client_id, req.parent_id) if req.parent_id else None
        if req.parent_id and (parent is None or parent.status in ("Cancelled", "Inactive")):
            return f"Parent order {req.parent_id} is not active"
        return None

    def _modify_reason(self, order: _Order, req: OrderRequest) -> str | None:
        if req.action.upper() != order.action:
            return "The order action cannot be modified"
        if req.total_quantity <= order.filled + EPS:
            return "The order quantity cannot be reduced to or below the filled quantity"
        return None

    def _margin_effect(
        self, contract: Contract, delta: float, price: float, commission: float
    ) -> tuple[_Margin, _Margin]:
        """Margins now and after a fill of signed ``delta`` at ``price`` (open orders ignored)."""
        metrics = self._metrics()
        multiplier = self.config.buying_power_multiplier
        before = _Margin(metrics.net_liq, metrics.exposure / multiplier, metrics.exposure * MAINT_MARGIN_RATE)
        held = self._positions[contract.con_id].qty if contract.con_id in self._positions else 0.0
        extra = (abs(held + delta) - abs(held)) * price * units_per_contract(contract) * self._rate(contract.currency)
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
        return _margin_text(*self._margin_effect(contract, delta, self._estimate(req, contract), 0.0)) or None

    def _next_perm_id(self) -> int:
        self._counters["perm"] += 1
        return PERM_ID_BASE + self._counters["perm"]

    def _new_order(self, client_id: int, req: OrderRequest, contract: Contract, perm_id: int) -> _Order:
        parent = self._lookup(client_id, req.parent_id) if req.parent_id else None
        order = _Order(
            client_id=client_id,
            order_id=req.order_id,
            perm_id=perm_id,
            contract=contract,
            action=req.action.upper(),
            account=self.config.account,
            parent_id=req.parent_id,
            parent_perm_id=parent.perm_id if parent else 0,
            trail_stop_price=req.trail_stop_price,
            held=not req.transmit,
            warn_tif=not req.tif and self.tif_preset_warning,
        )
        _apply_request(order, req)
        return order

    def _register(self, order: _Order) -> None:
        self._orders[order.perm_id] = order
        self._live[order.perm_id] = order
        self._index[(order.client_id, order.order_id)] = order.perm_id

    def _reject(self, order: _Order, reason: str, now: float) -> list[Event]:
        self._finish(order, "Inactive", now, f"Rejected: {reason}")
        view = order.view()
        error = OrderErrorEvent(order.client_id, order.order_id, *_rejection(reason))
        return [error, OpenOrderEvent(view), OrderStatusEvent(view)]

    def _modify(self, order: _Order, req: OrderRequest, now: float) -> list[Event]:
        """Re-placing a live order id: new price/quantity/type, re-acknowledged, may then fill."""
        reason = (
            self._request_reason(req, order.contract)
            or self._modify_reason(order, req)
            or self._margin_reason(order.contract, req, req.total_quantity - order.filled)
        )
        if reason:
            return [OrderErrorEvent(order.client_id, order.order_id, *_rejection(reason))]
        retrigger = (req.order_type.upper(), req.aux_price, req.trailing_percent) != (
            order.order_type,
            order.aux_price,
            order.trailing_percent,
        )
        _apply_request(order, req)
        if retrigger:
            order.triggered, order.trail_stop_price = False, req.trail_stop_price
        if order.status == "PendingSubmit":
            return []
        return self._show(order) + (self._release(order, now) if order.transmit else self._work(order, now))

    def _what_if(self, client_id: int, req: OrderRequest) -> list[Event]:
        """Margin and commission preview; nothing is created, consumed or stored."""
        contract = self._resolve(req.contract)
        if contract is None:
            return [self._unresolved(client_id, req)]
        unsupported = self._unsupported(client_id, req)
        reason = None if unsupported else self._request_reason(req, contract)
        if unsupported or reason:
            return [unsupported or OrderErrorEvent(client_id, req.order_id, *_rejection(str(reason)))]
        order = self._new_order(client_id, req, contract, perm_id=0)
        order.status = "PreSubmitted"
        price = self._estimate(req, contract)
        value = req.total_quantity * price * units_per_contract(contract) * self._rate(contract.currency)
        commission = round(self._commission(contract, req.total_quantity, value), 6)
        before, after = self._margin_effect(contract, order.sign * req.total_quantity, price, commission)
        view = replace(
            order.view(),
            what_if=True,
            commission=commission,
            min_commission=commission,
            max_commission=commission,
            commission_currency="USD",
            init_margin_before=round(before.init, 2),
            maint_margin_before=round(before.maint, 2),
            equity_with_loan_before=round(before.equity, 2),
            init_margin_change=round(after.init - before.init, 2),
            maint_margin_change=round(after.maint - before.maint, 2),
            equity_with_loan_change=round(after.equity - before.equity, 2),
            init_margin_after=round(after.init, 2),
            maint_margin_after=round(after.maint, 2),
            equity_with_loan_after=round(after.equity, 2),
            warning_text=_margin_text(before, after),
        )
        return [WhatIfEvent(client_id, view)]

    # --------------------------------------------------------------- working orders

    def _show(self, order: _Order) -> list[Event]:
        view = order.view()
        return [OpenOrderEvent(view), OrderStatusEvent(view)]

    def _set_status(self, order: _Order, status: str) -> list[Event]:
        if order.status == status:
            return []
        order.status = status
        return self._show(order)

    def _ack(self, order: _Order, now: float) -> list[Event]:
        """Acknowledge (PreSubmitted), then release the bracket group or start working."""
        order.status = "PreSubmitted"
        if order.order_type == "TRAIL" and self._can_work(order):  # so the ack shows the stop
            self._trail(order, self._last(order.contract.con_id))
        events: list[Event] = []
        if order.warn_tif:
            events.append(OrderErrorEvent(order.client_id, order.order_id, 10349, TIF_PRESET))
            order.warn_tif = False
        events += self._hold_until_open(order, now)
        events += self._show(order)
        return events + (self._release(order, now) if order.transmit else self._work(order, now))

    def _hold_until_open(self, order: _Order, now: float) -> list[Event]:
        """Outside the order's hours: hold it until the open (warning 399); DAY: expire at close."""
        if not self.config.market_hours:
            return []
        contract, rth = order.contract, order.outside_rth
        opens = sessions.opens_at(contract, now, rth)
        if order.tif == "DAY":
            closes = sessions.closes_at(contract, now, rth)
            if closes is not None:
                order.expires_at = closes
                self._schedule(order, closes, "expire")
        if opens is None or opens <= now:
            return []
        order.opens_at = opens
        self._schedule(order, opens, "open")
        text = errors.text(399, action=order.action, quantity=_qty_text(order.total_quantity),
                           symbol=contract.symbol, listing=_listing(contract),
                           until=sessions.held_until_text(contract, opens))
        return [OrderErrorEvent(order.client_id, order.order_id, 399, text)]

    def _open(self, order: _Order, now: float) -> list[Event]:
        """The market opened for a held order: it works from now on."""
        order.opens_at = None
        return self._work(order, now)

    def _expire(self, order: _Order, now: float) -> list[Event]:
        """A DAY order at the close of its session: cancelled by the system."""
        order.expires_at = None
        return self._cancel(order, now, BY_SYSTEM)

    def _due_fill(self, order: _Order, now: float) -> list[Event]:
        order.fill_due = None
        return self._work(order, now, due=True)

    def _children(self, order: _Order) -> list[_Order]:
        return [child for child in self._live.values() if child.parent_perm_id == order.perm_id]

    def _release(self, order: _Order, now: float) -> list[Event]:
        """Transmit the order's group: its parent (or itself) and every child of that."""
        root = self._orders[order.parent_perm_id] if order.parent_perm_id else order
        group = [root, *self._children(root)]
        for member in group:
            member.held = False
        return [event for member in group for event in self._work(member, now)]

    def _can_work(self, order: _Order) -> bool:
        parent_ready = not order.parent_perm_id or self._orders[order.parent_perm_id].status == "Filled"
        ready = order.live and order.status != "PendingSubmit" and not order.held and parent_ready
        return ready and order.opens_at is None and self._in_hours(order)

    def _in_hours(self, order: _Order) -> bool:
        """Whether the order's market is open now (GTC orders rest while it is closed)."""
        return not self.config.market_hours or sessions.is_open(order.contract, self._clock, order.outside_rth)

    def _work(self, order: _Order, now: float, due: bool = False) -> list[Event]:
        """Trigger, fill (now, after fill_delay, or a chunk) or let the order wait."""
        if not self._can_work(order) or (order.fill_due is not None and not due):
            return []
        rule = _RULES[order.order_type]
        quote = self.quote(order.contract.con_id)
        if rule.stop is not None and not order.triggered:
            if order.order_type == "TRAIL":
                self._trail(order, quote.last)
            order.triggered = _crossed(order.action, rule.stop(order), quote.last)
            if not order.triggered:
                return self._wait(order, "PreSubmitted", now)
        price = rule.fill(order, quote)
        if price is None:
            return self._wait(order, rule.waits_as, now)
        if self.fill_delay > 0 and not due:
            self._schedule(order, now + self.fill_delay, "fill")
            return self._set_status(order, "Submitted" if order.filled else rule.waits_as)
        events = self._fill(order, self._chunk(order), price, now)
        if order.live and order.tif == "IOC":
            events += self._cancel(order, now, BY_SYSTEM)
        elif order.live:
            self._schedule(order, now + self.config.price_step_seconds, "fill")
        return events

    def _wait(self, order: _Order, status: str, now: float) -> list[Event]:
        """Not fillable now: IOC cancels, anything else rests."""
        if order.tif == "IOC":
            return self._cancel(order, now, BY_SYSTEM)
        return self._set_status(order, "Submitted" if order.filled else status)

    def _trail(self, order: _Order, last: float) -> None:
        offset = order.aux_price or last * (order.trailing_percent or 0.0) / 100.0
        level = round_to_tick(last + order.sign * offset, order.contract.min_tick)
        current = order.trail_stop_price
        order.trail_stop_price = level if current is None else _TIGHTEN[order.action](current, level)

    def _chunk(self, order: _Order) -> float:
        above, chunk = self.config.partial_fill_above, self.config.partial_fill_chunk
        return min(chunk, order.remaining) if 0 < above < order.total_quantity else order.remaining

    def _commission(self, contract: Contract, qty: float, value: float) -> float:
        return _COMMISSIONS.get(contract.sec_type, _stock_commission)(self.config, qty, value)

    def _fill(self, order: _Order, qty: float, price: float, now: float) -> list[Event]:
        """One execution: order, position, cash, then the owner's and the account's events."""
        rate = self._rate(order.contract.currency)
        cum = order.filled + qty
        avg = (order.avg_fill_price * order.filled + price * qty) / cum
        notional = cum * avg * units_per_contract(order.contract) * rate
        total = round(self._commission(order.contract, cum, notional), 6)  # per-order min/max
        commission = round(total - (order.commission or 0.0), 6)
        order.filled, order.avg_fill_price, order.last_fill_price, order.commission = cum, avg, price, total
        if order.remaining <= EPS:
            self._finish(order, "Filled", now, f"Filled Size: {_qty_text(cum)}")
        else:
            order.status = "Submitted"
        realized = self._book_fill(order.contract, order.sign * qty, price, commission, rate)
        execution = self._execution(order, qty, price, now)
        report = CommissionReport(execution.exec_id, commission, "USD", realized)
        self._fills.append(_Fill(execution, report, now))
        bare = replace(order.view(), commission=None, commission_currency="")
        events: list[Event] = [
            ExecutionEvent(execution),
            OpenOrderEvent(bare),
            OrderStatusEvent(bare),
            OpenOrderEvent(order.view()),
            CommissionEvent(order.client_id, order.order_id, report),
        ]
        events += self._account_events(order.contract.con_id)
        events += self._oca_effects(order, qty, now)
        if order.status == "Filled":
            events += [event for child in self._children(order) for event in self._work(child, now)]
        return events

    def _execution(self, order: _Order, qty: float, price: float, now: float) -> Execution:
        self._counters["exec"] += 1
        venue = _venue(order.contract)
        return Execution(
            exec_id=f"0000e0d5.{EXEC_ID_BASE + self._counters['exec']:08x}.01.01",
            order_id=order.order_id,
            client_id=order.client_id,
            perm_id=order.perm_id,
            contract=replace(order.contract, exchange=venue),
            time=_ib_time(now),
            account=order.account,
            exchange=venue,
            side=SIDES[order.action],
            shares=qty,
            price=price,
            cum_qty=order.filled,
            avg_price=order.avg_fill_price,
            order_ref=order.order_ref,
        )

    def _book_fill(
        self, contract: Contract, delta: float, price: float, commission: float, rate: float
    ) -> float | None:
        """Update position and cash balances; the realized P&L in USD of a closing fill."""
        position = self._positions.setdefault(contract.con_id, _Position(contract))
        unit = price * units_per_contract(contract)  # positions keep IB's avgCost: per contract, multiplier applied
        realized = _apply_fill(position, delta, unit, commission / rate)
        self._credit(contract.currency, -delta * unit)
        if contract.sec_type == "CASH":
            self._credit(contract.symbol, delta)
        self._credit("USD", -commission)
        if realized is None:
            return None
        position.realized += realized
        position.realized_base += realized * rate
        return round(realized * rate, 6)

    def _credit(self, currency: str, amount: float) -> None:
        self._cash[currency] = self._cash.get(currency, 0.0) + amount

    def _oca_linked(self, order: _Order, other: _Order) -> bool:
        siblings = bool(order.parent_perm_id) and other.parent_perm_id == order.parent_perm_id
        group = (order.oca_group, order.client_id)
        same_group = bool(order.oca_group) and (other.oca_group, other.client_id) == group
        return other is not order and (siblings or same_group)

    def _oca_effects(self, order: _Order, qty: float, now: float) -> list[Event]:
        """Bracket siblings and OCA types 2/3 shrink by the fill; OCA type 1 (and 0) cancels."""
        events: list[Event] = []
        for other in [o for o in self._live.values() if self._oca_linked(order, o)]:
            shrink = other.parent_perm_id == order.parent_perm_id != 0 or order.oca_type in (2, 3)
            events += self._reduce(other, qty, now) if shrink else self._cancel(other, now, BY_SYSTEM)
        return events

    def _reduce(self, order: _Order, qty: float, now: float) -> list[Event]:
        if not order.live:
            return []
        if qty >= order.remaining - EPS:
            return self._cancel(order, now, BY_SYSTEM)
        order.total_quantity -= qty
        return [] if order.status == "PendingSubmit" else self._show(order)

    # --------------------------------------------------------------- cancelling

    def cancel_order(self, client_id: int, order_id: int, now: float) -> list[Event]:
        """Cancel one of the client's own orders (10147 unknown, 10148 already done)."""
        events = self.advance(now)
        order = self._lookup(client_id, order_id)
        if order is None:
            return events + [OrderErrorEvent(client_id, order_id, 10147, errors.text(10147, order_id=order_id))]
        if not order.live:
            text = errors.text(10148, order_id=order_id, state=order.status)
            return events + [OrderErrorEvent(client_id, order_id, 10148, text)]
        return events + self._cancel(order, self._clock, BY_TRADER)

    def global_cancel(self, now: float) -> list[Event]:
        """Cancel every live order of every client."""
        events = self.advance(now)
        for order in list(self._live.values()):
            if order.live:
                events += self._cancel(order, self._clock, BY_TRADER)
        return events

    def _cancel(self, order: _Order, now: float, why: str) -> list[Event]:
        """OrderStatus Cancelled + 202, then the same for the order's children."""
        self._finish(order, "Cancelled", now, why)
        events: list[Event] = [
            OrderStatusEvent(order.view()),
            OrderErrorEvent(order.client_id, order.order_id, 202, CANCELED),
        ]
        for child in self._children(order):
            events += self._cancel(child, now, why)
        return events

    def _finish(self, order: _Order, status: str, now: float, note: str) -> None:
        order.status, order.fill_due = status, None
        order.completed_time, order.completed_status = _ib_time(now), note
        self._live.pop(order.perm_id, None)
        self._completed.append(order.perm_id)

    # --------------------------------------------------------------- queries

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

    def executions(self, flt: ExecutionFilter) -> list[tuple[Execution, CommissionReport]]:
        """Fills matching the filter (client id 0 = all clients); ValueError on a bad time."""
        since = _parse_filter_time(flt.time) if flt.time.strip() else None
        return [(fill.execution, fill.report) for fill in self._fills if _exec_matches(fill, flt, since)]

    def _value(self, position: _Position) -> float:
        """Market value in USD."""
        contract = position.contract
        return position.qty * self._last(contract.con_id) * units_per_contract(contract) * self._rate(contract.currency)

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
            rows.append(AccountValue(account, "ExchangeRate", f"{self._rate(currency):.6f}", currency))
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
        ratios = {"Cushion": excess / net if net else 0.0, "Leverage": metrics.gross / net if net else 0.0}
        return rows + [AccountValue(account, key, f"{value:.6f}", "") for key, value in ratios.items()]

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
        return [
            PositionEvent(self._position_row(position)),
            PortfolioEvent(self._portfolio_item(position)),
            AccountValuesEvent(tuple(self.account_values())),
            PnLEvent(self.pnl()),
            PnLSingleEvent(con_id, self._pnl_single(position)),
        ]

    # --------------------------------------------------------------- persistence

    def to_state(self) -> dict:
        """JSON-serialisable state (switches included)."""
        return {
            **self._small_state(),
            "orders": [asdict(o) for o in self._orders.values()],
            "index": [[*key, perm_id] for key, perm_id in self._index.items()],
            "completed": list(self._completed),
            "fills": [asdict(fill) for fill in self._fills],
            # only work still to do (a filled order's expiry stays in the heap until its time)
            "dues": [list(entry) for entry in self._dues if self._pending(entry)],
        }

    def marks(self) -> tuple[int, int]:
        """(fills, completed orders) so far: where the next ``changes`` starts."""
        return len(self._fills), len(self._completed)

    def perm_id_of(self, client_id: int, order_id: int) -> int | None:
        """The permId of a client's order id, if known."""
        return self._index.get((client_id, order_id))

    def changes(self, perm_ids: set[int], marks: tuple[int, int]) -> dict:
        """A write-ahead entry: the orders ``perm_ids`` as they are now, the fills and completed
        orders since ``marks``, and the small parts of ``to_state`` in full. The work due for
        these orders replaces theirs (``dues``)."""
        orders = [self._orders[p] for p in sorted(perm_ids) if p in self._orders]
        return {
            **self._small_state(),
            "orders": [asdict(o) for o in orders],
            "index": [[o.client_id, o.order_id, o.perm_id] for o in orders],
            "completed": self._completed[marks[1]:],
            "fills": [asdict(fill) for fill in self._fills[marks[0]:]],
            "dues": [list(entry) for entry in self._dues if entry[3] in perm_ids],
        }

    def _small_state(self) -> dict:
        """The parts of the state that do not grow with the number of orders."""
        return {
            "version": STATE_VERSION,
            "clock": self._clock,
            "prices": self._book.to_state(),
            "cash": dict(self._cash),
            "start_net_liq": self._start_net_liq,
            "positions": [asdict(p) for p in self._positions.values()],
            "max_ids": [[client_id, max_id] for client_id, max_id in self._max_ids.items()],
            "counters": dict(self._counters),
            "switches": {
                "validation_delay": self.validation_delay,
                "fill_delay": self.fill_delay,
                "tif_preset_warning": self.tif_preset_warning,
                "reject_reason": self._reject_reason,
            },
        }

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

    def _restore(self, state: dict) -> None:
        self._book.restore(state["prices"])
        self._cash = dict(state["cash"])
        self._start_net_liq = state["start_net_liq"]
        positions = [_Position(**{**p, "contract": Contract(**p["contract"])}) for p in state["positions"]]
        self._positions = {p.contract.con_id: p for p in positions}
        orders = [_Order(**{**o, "contract": Contract(**o["contract"])}) for o in state["orders"]]
        self._orders = {o.perm_id: o for o in orders}
        self._live = {o.perm_id: o for o in orders if o.live}
        self._index = {(client_id, order_id): perm_id for client_id, order_id, perm_id in state["index"]}
        self._max_ids = {client_id: max_id for client_id, max_id in state["max_ids"]}
        self._completed = list(state["completed"])
        self._fills = [
            _Fill(
                Execution(**{**f["execution"], "contract": Contract(**f["execution"]["contract"])}),
                CommissionReport(**f["report"]),
                f["at"],
            )
            for f in state["fills"]
        ]
        self._dues = [(at, seq, kind, perm_id) for at, seq, kind, perm_id in state["dues"]]
        heapq.heapify(self._dues)
        self._counters = dict(state["counters"])
        switches = state["switches"]
        self.validation_delay, self.fill_delay = switches["validation_delay"], switches["fill_delay"]
        self.tif_preset_warning = switches["tif_preset_warning"]
        self._reject_reason = switches["reject_reason"]

    def _shift(self, offset: float) -> None:
        """Move the model's timeline by ``offset`` seconds."""
        self._book.origin += offset
        self._clock += offset
        self._dues = [(at + offset, seq, kind, perm_id) for at, seq, kind, perm_id in self._dues]
        for order in self._live.values():
            if order.fill_due is not None:
                order.fill_due += offset
            if order.opens_at is not None:
                order.opens_at += offset
            if order.expires_at is not None:
                order.expires_at += offset


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
