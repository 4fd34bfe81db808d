"""The broker's constants, its config and the events it reports (re-exported by ``broker``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from . import errors
from .types import (
    AccountValue,
    CommissionReport,
    Contract,
    Execution,
    OrderView,
    PnL,
    PnLSingle,
    PortfolioItem,
    Position,
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
RTH_IGNORED = errors.text(2109)
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
    delayed_data_seconds: float = 900.0  # how old delayed quotes are (IB: 15-20 minutes)
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
        if not (math.isfinite(self.delayed_data_seconds) and self.delayed_data_seconds >= 0):
            raise ValueError("delayed_data_seconds must be a number of seconds, 0 or more")
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
