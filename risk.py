"""Pre-trade risk gate: every order (browser, API, webhook) passes it before the queue.

The rules run in a fixed order from a table; the first that fails rejects
the order, naming the rule and the numbers. Limits come from config with safe
defaults. Counters (orders per minute, notional per UTC day) are reserved
under a lock, so concurrent requests cannot slip past a limit together, and
given back if the order is then not queued.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from config import Settings, is_paper_account
from order_records import OrderIntent
from risk_quotes import QUOTE_TTL as QUOTE_TTL
from risk_quotes import (
    QuoteKey,
    QuoteSource,
    RiskQuote,
    RiskQuotes,
    Valuation,
    exits_at_once,
    num_text,
    spread_allowance,
)

PER_ORDER_RULES = 10  # the first rules look at the order alone; the rest at the account's flow


@dataclass(frozen=True)
class ClassLimit:
    """Per-order limits of one asset class, in place of the global quantity and notional
    limits (quantity in contracts; notional = price x quantity x multiplier)."""

    max_quantity: float
    max_notional: float


def class_limits(s: Settings) -> dict[str, ClassLimit]:
    """The asset classes with limits of their own (secType -> limits); the rest use
    RISK_MAX_QUANTITY and RISK_MAX_NOTIONAL."""
    return {
        "OPT": ClassLimit(s.risk_opt_max_contracts, s.risk_opt_max_notional),
        "FUT": ClassLimit(s.risk_fut_max_contracts, s.risk_fut_max_notional),
    }


@dataclass(frozen=True)
class AssetLimits:
    """The limits of one asset class (``sec_type``) and the unit its quantity counts."""

    max_quantity: float
    unit: str


# Per asset class: the settings field of its quantity limit and the unit it counts in. A new
# asset class (OPT, FUT) is one more row (and its setting in config.Settings).
ASSET_LIMITS: dict[str, tuple[str, str]] = {
    "STK": ("risk_max_quantity", "shares"),
    "CASH": ("risk_max_quantity_fx", "units of the base currency"),
}


def asset_limits(settings: Settings) -> dict[str, AssetLimits]:
    """The configured limits of every asset class (``ASSET_LIMITS``)."""
    return {
        kind: AssetLimits(getattr(settings, field), unit)
        for kind, (field, unit) in ASSET_LIMITS.items()
    }


@dataclass(frozen=True)
class RiskDecision:
    """The gate's answer for one order."""

    accepted: bool
    rule: str | None = None
    message: str = "accepted"
    figures: dict[str, Any] = field(default_factory=dict)
    reference_price: float | None = None
    notional: float | None = None
    at: float = 0.0
    orders: int = 1  # the orders IB gets (a bracket: its entry and exits)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (journaled with the order)."""
        return asdict(self)


class RiskRejected(Exception):
    """The order broke a risk rule."""

    def __init__(self, decision: RiskDecision) -> None:
        super().__init__(decision.message)
        self.decision = decision


@dataclass
class _Check:
    """What the rules look at for one order."""

    intent: OrderIntent
    price: float | None  # reference price: limit/stop price, else the quote
    quote_mid: float | None
    notional: float | None  # in the account's base currency (the limits' currency)
    quote: RiskQuote = RiskQuote(None, None, None)
    value: Valuation = Valuation(None, "USD", 1.0)  # the notional's currency and FX rate


Clock = Callable[[], float]


def configured_limits(s: Settings) -> dict[str, Any]:
    """The limits the settings configure (``RiskGate.limits`` adds the day's notional)."""
    classes = {kind: asdict(limits) for kind, limits in asset_limits(s).items()}
    classes |= {
        kind: {**asdict(limit), "unit": "contracts"} for kind, limit in class_limits(s).items()
    }
    return {
        "max_quantity": s.risk_max_quantity,
        "asset_classes": classes,
        "max_notional": s.risk_max_notional,
        "price_collar_pct": s.risk_price_collar_pct,
        "symbol_allowlist": list(s.risk_symbol_allowlist),
        "symbol_denylist": list(s.risk_symbol_denylist),
        "max_open_orders": s.risk_max_open_orders,
        "max_orders_per_minute": s.risk_max_orders_per_minute,
        "daily_notional_cap": s.risk_daily_notional_cap,
        "allow_live_trading": s.allow_live_trading,
        "live_confirm_notional": s.live_confirm_notional,
    }


class RiskGate(RiskQuotes):
    """Checks orders against the configured limits."""

    def __init__(
        self,
        settings: Settings,
        quotes: QuoteSource,
        open_orders: Callable[[], int],
        accounts: Callable[[], tuple[str, ...]],
        notional_today: float = 0.0,
        *,
        wall: Clock = time.time,
        monotonic: Clock = time.monotonic,
        base_currency: Callable[[], str] = lambda: "USD",
    ) -> None:
        self.settings = settings
        self._wall, self._monotonic = wall, monotonic  # injectable clocks (tests)
        self._quotes = quotes
        self._open_orders = open_orders
        self._accounts = accounts
        self._base_currency = base_currency  # the account's: the limits are amounts in it
        self._lock = threading.Lock()
        self._recent: collections.deque[float] = collections.deque()
        self._day = _utc_day(wall())
        self._notional_today = notional_today
        self._days: dict[str, float] = {}  # the last days' totals (the clock may step back)
        self._quote_cache: dict[QuoteKey, tuple[float, RiskQuote]] = {}
        self._unregistered = 0  # accepted, not yet counted by open_orders()
        self._rules: tuple[tuple[str, Callable[[_Check], str | None]], ...] = (
            ("live_trading_disabled", self._live_guard),
            ("symbol_not_allowed", self._symbol_lists),
            ("max_quantity", self._max_quantity),
            ("option_market_order", _option_market_order),
            ("no_reference_price", _has_price),
            ("price_collar", self._price_collar),
            ("bracket_sides", lambda check: exits_at_once(check.intent, check.quote)),
            ("no_fx_rate", lambda check: check.value.problem),
            ("max_notional", self._max_notional),
            ("asset_class_limit", self._asset_class_limit),
            ("max_open_orders", self._max_open_orders),
            ("max_orders_per_minute", self._per_minute),
            ("daily_notional_cap", self._daily_cap),
        )

    # ------------------------------------------------------------------ api
    def reserve(self, intent: OrderIntent) -> RiskDecision:
        """Check a new order and, if accepted, count it; raise RiskRejected otherwise.

        Call ``registered`` once the order is counted by ``open_orders``, or
        ``release`` if it is not queued after all.
        """
        check = self._prepare(intent)
        with self._lock:
            self._roll_day()
            self._apply(self._rules, check)
            self._recent.extend([self._monotonic()] * intent.order_count)
            self._notional_today += check.notional or 0.0
            self._unregistered += intent.order_count
        return RiskDecision(
            accepted=True,
            figures=self._figures(check),
            reference_price=check.price,
            notional=check.notional,
            at=self._wall(),
            orders=intent.order_count,
        )

    def check(self, intent: OrderIntent) -> RiskDecision:
        """The per-order rules only (a modified order): counts nothing."""
        check = self._prepare(intent)
        with self._lock:
            self._apply(self._rules[:PER_ORDER_RULES], check)
        return RiskDecision(
            accepted=True,
            figures=self._figures(check),
            reference_price=check.price,
            notional=check.notional,
            at=self._wall(),
        )

    def reserve_change(self, intent: OrderIntent, before: OrderIntent) -> float:
        """Check a modified order (``before``: as it works now): the per-order rules, and the
        daily cap on what the change adds to its notional, which is counted if accepted and
        returned (``give_back`` returns it); raise RiskRejected otherwise."""
        check = self._prepare(intent)
        added = max(0.0, (check.notional or 0.0) - (self._prepare(before).notional or 0.0))
        cap = ("daily_notional_cap", lambda _check: self._over_cap(added) if added else None)
        with self._lock:
            self._roll_day()
            self._apply((*self._rules[:PER_ORDER_RULES], cap), check)
            self._notional_today += added
        return added

    def give_back(self, notional: float) -> None:
        """Un-count notional whose change was not sent after all."""
        with self._lock:
            self._notional_today = max(0.0, self._notional_today - notional)

    def evaluate(self, intent: OrderIntent) -> RiskDecision:
        """Every rule, as if the order were placed now, counting nothing (a preview): the
        verdict, accepted or not, with the rule and the numbers."""
        check = self._prepare(intent)
        with self._lock:
            self._roll_day()
            try:
                self._apply(self._rules, check)
            except RiskRejected as exc:
                return exc.decision
        return RiskDecision(
            accepted=True,
            figures=self._figures(check),
            reference_price=check.price,
            notional=check.notional,
            at=self._wall(),
        )

    def registered(self, decision: RiskDecision) -> None:
        """The accepted order (a bracket: its orders) now counts among the open orders."""
        with self._lock:
            self._unregistered = max(0, self._unregistered - decision.orders)

    def release(self, decision: RiskDecision) -> None:
        """Give back a reservation whose order was not queued after all."""
        with self._lock:
            for _ in range(min(decision.orders, len(self._recent))):
                self._recent.pop()
            self._notional_today = max(0.0, self._notional_today - (decision.notional or 0.0))
            self._unregistered = max(0, self._unregistered - decision.orders)

    def _apply(self, rules: tuple, check: _Check) -> None:
        for rule, test in rules:
            problem = test(check)
            if problem is not None:
                raise RiskRejected(
                    RiskDecision(
                        accepted=False,
                        rule=rule,
                        message=f"{rule}: {problem}",
                        figures=self._figures(check),
                        reference_price=check.price,
                        notional=check.notional,
                        at=self._wall(),
                    )
                )

    def limits(self) -> dict[str, Any]:
        """The configured limits and the day's notional, 0 once a new UTC day began before any
        order of it (for the UI and the status endpoint)."""
        with self._lock:
            self._roll_day()
            today = round(self._notional_today, 2)
        return {**configured_limits(self.settings), "notional_today": today}

    # -------------------------------------------------------------- inputs
    def _prepare(self, intent: OrderIntent) -> _Check:
        quote = self._quote(intent)
        bid, ask, last = quote.bid, quote.ask, quote.last
        quote_ref = {"BUY": ask, "SELL": bid}[intent.action] or last
        # one side only (an option nobody bids for): that side, not a last or close from long ago
        mid = (bid + ask) / 2 if bid and ask else (ask or bid or last)
        own_price = intent.limit_price or intent.stop_price
        price = own_price or quote_ref
        # a price of 0 or less values it at 0 (a buy is refused by _has_price, a sell counts 0)
        notional = (
            intent.quantity * max(price, 0.0) * intent.multiplier if price is not None else None
        )
        value = self.value(intent, notional)
        return _Check(intent, price, mid, value.notional, quote, value)

    def _figures(self, check: _Check) -> dict[str, Any]:
        return {
            "quantity": check.intent.quantity,
            "reference_price": check.price,
            "multiplier": check.intent.multiplier,
            "quote_mid": check.quote_mid,
            "quote_delayed": check.quote.delayed,
            "notional": _round(check.notional),
            "currency": check.value.currency,
            "fx_rate": check.value.fx_rate,
            "open_orders": self._open_orders(),
            "orders_last_minute": len(self._recent),
            "notional_today": _round(self._notional_today),
        }

    def _roll_day(self) -> None:
        day = _utc_day(self._wall())
        if day != self._day:  # each day keeps its total: a clock stepped back over midnight
            self._days = {**dict(list(self._days.items())[-6:]), self._day: self._notional_today}
            self._day, self._notional_today = day, self._days.pop(day, 0.0)
        horizon = self._monotonic() - 60.0
        while self._recent and self._recent[0] < horizon:
            self._recent.popleft()

    # --------------------------------------------------------------- rules
    def _live_guard(self, check: _Check) -> str | None:
        accounts = self._accounts()
        if not accounts:
            return "no account is known yet, so live trading cannot be ruled out"
        live = [a for a in accounts if not is_paper_account(a)]
        if live and not self.settings.allow_live_trading:
            return (
                f"account {live[0]} is a live account and ALLOW_LIVE_TRADING is off; "
                "orders are refused"
            )
        return None

    def _symbol_lists(self, check: _Check) -> str | None:
        s, intent = self.settings, check.intent
        if _listed(intent, s.risk_symbol_denylist):
            return f"{intent.symbol} is on the deny list"
        if s.risk_symbol_allowlist and not _listed(intent, s.risk_symbol_allowlist):
            return (
                f"{intent.symbol} is not on the allow list ({', '.join(s.risk_symbol_allowlist)})"
            )
        return None

    def _max_quantity(self, check: _Check) -> str | None:
        kind = check.intent.sec_type
        if kind in class_limits(self.settings):
            return None  # its asset class has its own limits (asset_class_limit)
        limits = asset_limits(self.settings).get(kind)
        if limits is None:
            return f"no quantity limit is configured for asset class {kind}"
        if check.intent.quantity > limits.max_quantity:
            return (
                f"quantity {num_text(check.intent.quantity)} exceeds the limit of "
                f"{num_text(limits.max_quantity)} {limits.unit} for {_CLASS_NAMES.get(kind, kind)}"
            )
        return None

    def _asset_class_limit(self, check: _Check) -> str | None:
        intent = check.intent
        limit = class_limits(self.settings).get(intent.sec_type)
        if limit is None:
            return None
        if intent.quantity > limit.max_quantity:
            return (
                f"{num_text(intent.quantity)} {intent.sec_type} contracts exceed the limit of "
                f"{num_text(limit.max_quantity)}"
            )
        if check.notional is not None and check.notional > limit.max_notional:
            return (
                f"{intent.sec_type} notional {check.notional:,.2f} (price x "
                f"{num_text(intent.quantity)} x multiplier {num_text(intent.multiplier)}) exceeds the "
                f"limit of {limit.max_notional:,.2f}"
            )
        return None

    def _price_collar(self, check: _Check) -> str | None:
        own = check.intent.limit_price or check.intent.stop_price
        mid, pct = check.quote_mid, self.settings.risk_price_collar_pct
        delayed = check.quote.delayed
        if delayed and self.settings.risk_delayed_collar_pct is not None:
            pct = self.settings.risk_delayed_collar_pct
        if own is None:
            return None
        if not mid:
            return (
                f"no quote for {check.intent.symbol} to check the {num_text(pct)}% price collar"
                + _cause(check)
            )
        away = abs(own - mid) / mid * 100
        spread = spread_allowance(check.quote, check.intent, mid)  # the touch and a tick
        if away > pct and abs(own - mid) > spread + 1e-9:
            kind = "delayed quote" if delayed else "quote"
            wide = spread > pct / 100 * mid  # the spread allows more than the percentage
            wider = f", or {num_text(round(spread, 6))} across the spread" if wide else ""
            return (
                f"price {num_text(own)} is {away:.1f}% from the {kind} {num_text(mid)} "
                f"({'delayed-data ' if delayed else ''}collar {num_text(pct)}%{wider})"
            )
        return None

    def _max_notional(self, check: _Check) -> str | None:
        limit = self.settings.risk_max_notional
        if check.intent.sec_type in class_limits(self.settings):
            return None  # its asset class has its own limit (asset_class_limit)
        if check.notional is not None and check.notional > limit:
            return f"notional {check.notional:,.2f} exceeds the limit of {limit:,.2f}"
        return None

    def _max_open_orders(self, check: _Check) -> str | None:
        count, limit = self._open_orders() + self._unregistered, self.settings.risk_max_open_orders
        return _past("orders are working", count, check.intent.order_count, limit)

    def _per_minute(self, check: _Check) -> str | None:
        limit = self.settings.risk_max_orders_per_minute
        return _past("orders in the last 60 s", len(self._recent), check.intent.order_count, limit)

    def _daily_cap(self, check: _Check) -> str | None:
        return self._over_cap(check.notional or 0.0)

    def _over_cap(self, notional: float) -> str | None:
        cap = self.settings.risk_daily_notional_cap
        if self._notional_today + notional > cap:
            return (
                f"today's notional would be {self._notional_today + notional:,.2f}, over "
                f"the cap of {cap:,.2f}"
            )
        return None


def _option_market_order(check: _Check) -> str | None:
    intent = check.intent
    if intent.sec_type != "OPT" or intent.market_order_ack:
        return None
    # a stop and a trailing stop become market orders when they trigger, a stop loss too
    how = {"MKT": "a market order", "STP": "a stop", "TRAIL": "a trailing stop"}
    kind = how.get(intent.order_type) or ("a stop loss" if intent.stop_loss else None)
    if kind is None:
        return None
    return (
        f"{kind} on an option fills at market (when it triggers), possibly far from its "
        "value (wide spreads); use a limit (STP LMT), or send market_order_ack: true"
    )


def _has_price(check: _Check) -> str | None:
    if check.price is None:
        return f"no quote for {check.intent.symbol} to value the order" + _cause(check)
    if check.price <= 0 and check.intent.action == "BUY":  # no ask, no last: unbounded
        return f"no price above 0 for {check.intent.symbol} to value the buy" + _cause(check)
    return None


_CLASS_NAMES = {"STK": "stocks", "CASH": "FX pairs"}


def _listed(intent: OrderIntent, symbols: tuple[str, ...]) -> bool:
    """``intent``'s symbol is one of ``symbols``; an FX pair however it is written (EUR.USD,
    EURUSD: one contract, see ``ib_compat.make_contract``)."""
    if intent.sec_type != "CASH":
        return intent.symbol in symbols
    pair = intent.symbol.replace(".", "")
    return any(symbol.replace(".", "") == pair for symbol in symbols)


def _cause(check: _Check) -> str:
    """IB's reason for the missing quote, and what to do, when the gateway gave one."""
    return f": {check.quote.notice}" if check.quote.notice else ""


def _round(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 2)


def _utc_day(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d")


def _past(what: str, count: int, more: int, limit: int) -> str | None:
    """Why ``more`` orders (a bracket: its entry and exits) on top of ``count`` pass ``limit``."""
    if count + more <= limit:
        return None
    adds = f"; this one adds {more}" if more > 1 else ""
    return f"{count} {what}{adds}; the limit is {limit}"
