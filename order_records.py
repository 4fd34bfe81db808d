"""Value types of our orders: the validated intent and the lifecycle record.

Shared by the OrderHandler (which builds records), the journal (which stores
them) and the API (which shows them). All frozen: a record is replaced, never
mutated, so other threads can read the current one at any time.
"""

from __future__ import annotations

from dataclasses import dataclass

from instruments import describe

WEBHOOK_KEY_PREFIX = "webhook:"  # the webhook's idempotency keys; an API client's may not start so


@dataclass(frozen=True)
class OrderIntent:
    """A validated order request (built by the API layer)."""

    symbol: str
    action: str  # BUY / SELL
    quantity: float
    order_type: str  # MKT LMT STP "STP LMT" TRAIL
    limit_price: float | None = None
    stop_price: float | None = None
    tif: str = "DAY"
    outside_rth: bool = False
    sec_type: str = "STK"
    currency: str = "USD"
    account: str = ""
    trailing_amount: float | None = None  # TRAIL: trail by this many currency units ...
    trailing_percent: float | None = None  # ... or by this percentage
    take_profit: float | None = None  # bracket: limit price of the profit-taking child
    stop_loss: float | None = None  # bracket: stop price of the protective child
    # derivatives (OPT, FUT): the contract as named, and what the broker resolved it to
    expiry: str = ""  # YYYYMMDD (options), YYYYMM or YYYYMMDD (futures)
    strike: float | None = None
    right: str = ""  # C / P
    exchange: str = ""
    trading_class: str = ""
    local_symbol: str = ""
    multiplier: float = 1.0  # the broker's: notional = price x quantity x multiplier
    con_id: int = 0  # the broker's conId (0: qualified from the symbol at placement)
    market_order_ack: bool = False  # a market order on an option, acknowledged by the trader

    @property
    def is_bracket(self) -> bool:
        """True when the order carries take-profit and/or stop-loss children."""
        return self.take_profit is not None or self.stop_loss is not None

    @property
    def order_count(self) -> int:
        """The orders IB gets for it: the entry and each of a bracket's exits."""
        return 1 + (self.take_profit is not None) + (self.stop_loss is not None)

    @property
    def description(self) -> str:
        """The contract in IB's words ("AAPL 20261218 200 C"); the symbol for stocks."""
        return describe(
            self.symbol,
            self.sec_type,
            self.expiry,
            self.strike or 0.0,
            self.right,
            self.local_symbol,
        )


@dataclass(frozen=True)
class StatusChange:
    """One status transition reported by the broker."""

    at: float
    old: str | None
    new: str
    filled: float
    remaining: float


@dataclass(frozen=True)
class IBMessage:
    """An error or warning IB sent about the order (``about_change``: it refused a change of
    the order, which works on: never the reason of the order's own verdict)."""

    at: float
    code: int
    text: str
    about_change: bool = False


@dataclass(frozen=True)
class FillRecord:
    """One execution of the order."""

    exec_id: str
    at: float
    shares: float
    price: float
    commission: float | None = None


@dataclass(frozen=True)
class Step:
    """A step of our own handling (queued, sent, settle phase, verdict...)."""

    at: float
    text: str


@dataclass(frozen=True)
class Preview:
    """What-if answer of the broker: margin and commission impact of an order."""

    init_margin_change: float | None
    maint_margin_change: float | None
    equity_with_loan_change: float | None
    init_margin_after: float | None
    maint_margin_after: float | None
    commission: float | None
    min_commission: float | None
    max_commission: float | None
    commission_currency: str
    warning_text: str


@dataclass(frozen=True)
class Lifecycle:
    """Everything we know about one of our orders (a frozen snapshot)."""

    id: str
    intent: OrderIntent
    source: str
    created_at: float
    phase: str  # queued | sending | settling | monitoring | tracking | done
    order_id: int | None = None
    perm_id: int | None = None
    client_id: int | None = None
    status: str | None = None
    filled: float = 0.0
    remaining: float | None = None
    avg_fill_price: float | None = None
    transitions: tuple[StatusChange, ...] = ()
    messages: tuple[IBMessage, ...] = ()
    fills: tuple[FillRecord, ...] = ()
    steps: tuple[Step, ...] = ()
    verdict: str | None = None  # filled cancelled rejected working stuck_pending_submit not_sent
    verdict_reason: str | None = None
    updated_at: float = 0.0
    parent: str | None = None  # our id of the bracket parent, for its children
    children: tuple[str, ...] = ()  # our ids of the bracket children
    cancel_requested: bool = False  # sent again if the broker shows the order after a restart
