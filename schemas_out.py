"""What the API answers: the response models (pydantic) the OpenAPI document describes and the
contract tests check every answer against. ``schemas`` holds what it takes.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
)

from ib_connection import ConnectionState
from order_records import Lifecycle
from reader_rows import ExecutionRow, OrderRow, PositionRow


# --------------------------------------------------------------- responses
# What the API answers. Rows are the snapshot's own dataclasses, so the documented shape
# follows them; extra="forbid" makes the document say (and the fuzzer check) that nothing
# else is sent.
class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(_Out):
    """The one error shape's inner object."""

    status: int
    code: str
    message: str
    field: str | None = None
    details: list[dict[str, Any]] | None = None


class ErrorOut(_Out):
    """Every error of the API."""

    error: ErrorBody


class HealthOut(_Out):
    ok: bool
    reason: str | None = Field(
        None, description="why not ok: no gateway connection, or IB's servers unreachable (1100)"
    )


class BarOut(_Out):
    time: float
    open: float
    high: float
    low: float
    close: float
    volume: float


class BarsOut(_Out):
    symbol: str
    duration: str
    bar_size: str
    what: str
    cached: bool = Field(description="served from the app's cache (no request to IB)")
    fetched_at: float
    gateway_time: float | None = Field(
        description="the gateway's clock now (epoch s): where the last bar is live"
    )
    bars: list[BarOut]


class FarmOut(_Out):
    name: str
    kind: str = Field(description="market data | historical data | security definitions")
    state: Literal["ok", "broken", "inactive"]
    since: float
    code: int


class IbServersOut(_Out):
    """IB's servers and data farms, as the gateway's notices (1100/1101/1102, 2103...) said."""

    reachable: bool
    since: float | None
    code: int | None
    message: str
    reason: str
    farms: list[FarmOut]


class GatewayOut(_Out):
    host: str
    port: int | None


class DisabledConnection(_Out):
    state: Literal["disabled"]


class ConnectionsOut(_Out):
    reader: ConnectionState
    orders: ConnectionState | DisabledConnection


class ThreadsOut(_Out):
    reader: bool
    orders: bool | None


class JournalOut(_Out):
    """Whether the order journal saves. Not ``ok`` (a full disk, an I/O error): new orders
    are refused and the changes of ``unsaved`` orders live only in memory until a write
    succeeds again (then it is ``ok`` again by itself)."""

    ok: bool
    since: float | None = Field(description="the first failed write of this run of failures")
    error: str | None = Field(description="the database's error, e.g. 'database or disk is full'")
    unsaved: int = Field(description="orders whose latest changes are not saved yet")


class StatusOut(_Out):
    """Both connections, threads, account, queue depth, data age."""

    ok: bool
    now: float
    simulator: bool
    sim_clock: str = Field(
        description="the embedded simulator's clock, e.g. 'simulated clock, "
        "market open' (empty against a real gateway)"
    )
    gateway: GatewayOut
    ib_servers: IbServersOut
    journal: JournalOut
    connections: ConnectionsOut
    threads: ThreadsOut
    server_version: int | None
    account: str | None
    paper: bool | None
    mode: Literal["paper", "live"] | None
    read_only: bool
    trading_halted: bool
    halt_reason: str | None
    queue_depth: int
    in_flight: int
    data_age: float | None
    orders_age: float | None
    streams: int
    risk_limits: dict[str, Any] | None


class AccountOut(_Out):
    """Account figures (None until the gateway sent them) and every raw value."""

    account: str
    paper: bool
    currency: str
    figures: dict[str, float | None]
    values: dict[str, str]
    data_age: float | None


class PositionsOut(_Out):
    positions: list[PositionRow]
    data_age: float | None


class ExecutionsOut(_Out):
    executions: list[ExecutionRow]
    data_age: float | None


class ChangeOutcome(_Out):
    """The last word on an order's last change."""

    at: float = Field(description="when")
    text: str = Field(
        description="'change sent: …', 'broker confirmed the change: …', "
        "'change refused by the broker: Error 201: …' or 'change not sent: …'"
    )


class OrderOut(_Out):
    """One order. Ours: from its lifecycle record (the reader's row fills only what the record
    lacks, such as ``account``); another client's: the reader's row. ``avg_fill_price`` is null
    until the first fill."""

    id: str
    ours: bool
    url: str
    symbol: str
    sec_type: str
    action: str
    quantity: float
    order_type: str
    limit_price: float | None
    stop_price: float | None
    tif: str
    status: str | None
    perm_id: int | None
    order_id: int | None
    client_id: int | None
    order_ref: str
    filled: float
    open: bool
    account: str | None = None
    remaining: float | None = Field(
        None,
        description="the quantity not filled: while working, the broker's; once finished "
        "(filled, cancelled, rejected), quantity minus filled, after a restart too",
    )
    avg_fill_price: float | None = None
    description: str | None = Field(
        None,
        description="the contract in IB's words, e.g. "
        "'AAPL 20261218 200 C' (the symbol for stocks)",
    )
    currency: str | None = Field(
        None, description="the contract's (a stock's listing: AAPL in EUR is not the US one)"
    )
    verdict: str | None = None
    phase: str | None = None
    # ours only: the few fields of the lifecycle record the dashboard's tables show (the
    # optional ones only when set)
    trailing_amount: float | None = Field(None, description="TRAIL: trail by this amount")
    trailing_percent: float | None = Field(None, description="TRAIL: trail by this percentage")
    parent: str | None = Field(None, description="a bracket leg: our id of its parent")
    legs: list[str] | None = Field(None, description="a bracket parent: our ids of its legs")
    verdict_reason: str | None = None
    change_outcome: ChangeOutcome | None = Field(
        None, description="a changed order: the last word on its last change"
    )
    source: str | None = Field(
        None, description="where the order came from: api, dashboard, webhook, bracket..."
    )
    updated_at: float | None = Field(None, description="when our record last changed")
    lifecycle: Lifecycle | None = Field(
        None,
        description="the whole record (steps, status "
        "transitions, messages, fills): /orders/<id> only",
    )


class OrdersOut(_Out):
    """A page of orders, newest broker orders first; ``next_cursor`` gets the next page."""

    orders: list[OrderOut]
    data_age: float | None
    next_cursor: str | None


class StateOut(_Out):
    """Everything the dashboard shows (also every stream event's data). Its orders are brief
    rows, as in /orders: an order's lifecycle is at its ``url``."""

    version: int
    status: StatusOut
    account: dict[str, Any] | None
    positions: list[PositionRow]
    orders: list[OrderOut]
    executions: list[ExecutionRow]


class OrderAccepted(_Out):
    """An order taken (202), its verdict (200 with ?wait=1) or an idempotent replay (200)."""

    id: str
    url: str
    order: Lifecycle
    replayed: bool


class OrderActionOut(_Out):
    """A cancel or modify queued."""

    id: str
    url: str
    order: Lifecycle


class CancelAllOut(_Out):
    cancel_requested: bool
    ours_working: int


class KillSwitchOut(_Out):
    engaged: bool
    reason: str | None


class KillSwitchResult(_Out):
    """Released: ``{"engaged": false}``. Engaged: whether the broker confirmed the cancels."""

    engaged: bool
    reason: str | None = None
    cancel_confirmed: bool | None = None
    broker_view_fresh: bool | None = None
    still_open: list[OrderRow] | None = None
    persisted: bool | None = Field(
        None,
        description="engaged: whether it was saved to the journal (false: it halts and "
        "cancels all the same, but ends if the app restarts)",
    )


class RiskVerdictOut(_Out):
    """The risk gate's verdict on an order: accepted, or the rule it breaks, with the numbers."""

    accepted: bool
    rule: str | None
    message: str
    figures: dict[str, Any]
    reference_price: float | None
    notional: float | None
    at: float
    orders: int = Field(1, description="the orders IB gets for it: a bracket's entry and exits")


class PreviewOut(_Out):
    """What placing the order would do: the broker's what-if (margin, commission), the risk
    gate's verdict, and whether a stop would trigger at once."""

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
    risk: RiskVerdictOut | None
    immediate_trigger: str | None = Field(
        description="why this stop would trigger as soon as it arrives (the market has passed "
        "its stop price); placing it then needs accept_immediate_trigger"
    )
