"""Validation of order requests from outside (HTTP JSON, the form, scripts).

pydantic does the typing and ranges; the cross-field rules (which prices an
order type needs) are model validators. A request that fails here is never
queued.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from instruments import DERIVATIVES, ContractSpec, off_tick
from order_records import OrderIntent
from reader_rows import Quote
from wire import plain_number

MAX_QUANTITY = 1_000_000
Number = StrictInt | StrictFloat
Price = Annotated[Number, Field(gt=0, le=10_000_000)]
NEEDS = {  # order type -> (needs limit price, needs stop price)
    "MKT": (False, False),
    "LMT": (True, False),
    "STP": (False, True),
    "STP LMT": (True, True),
    "TRAIL": (False, False),
}
# Minimum price variation, first match wins: (sec_type, symbol contains, price below, tick).
PRICE_TICKS: tuple[tuple[str, str, float | None, float], ...] = (
    ("CASH", "JPY", None, 0.005),
    ("CASH", "", None, 0.00005),
    ("STK", "", 1.0, 0.0001),
    ("STK", "", None, 0.01),
)
TICK_FIELDS = ("limit_price", "stop_price", "take_profit", "stop_loss", "trailing_amount")
# A bracket's prices on the right side: (field, compared with, side of it for a BUY); a SELL
# is the mirror image. A stop entry's legs are on their sides of its stop (an exit past it
# would fill or trigger the moment the entry does); a market entry's, of the quote (risk.py).
SIDE_RULES: tuple[tuple[str, str, str], ...] = (
    ("take_profit", "limit_price", "above"),
    ("stop_loss", "limit_price", "below"),
    ("take_profit", "stop_price", "above"),
    ("stop_loss", "stop_price", "below"),
    ("stop_loss", "take_profit", "below"),
)
PRICE_WORDS = {"limit_price": "the limit price", "stop_price": "the stop price"}
WHOLE_QUANTITY = ("STK",)  # asset classes traded in whole units
# ISO codes of the currencies IB trades as FX pairs (IDEALPRO): a symbol made of two of them
# (EUR.USD, EURUSD) is an FX pair, found without sec_type.
FX_CURRENCIES = frozenset(
    {
        "USD",
        "EUR",
        "GBP",
        "JPY",
        "CHF",
        "AUD",
        "CAD",
        "NZD",
        "SEK",
        "NOK",
        "DKK",
        "HKD",
        "SGD",
        "CNH",
        "MXN",
        "ZAR",
        "PLN",
        "CZK",
        "HUF",
        "TRY",
        "ILS",
        "KRW",
        "RUB",
    }
)
SYMBOL_PATTERN = r"^[A-Za-z][A-Za-z0-9.]{0,14}$"
EXPIRY_PATTERN = r"^20[0-9]{2}(0[1-9]|1[0-2])([0-2][0-9]|3[01])?$"
LOCAL_SYMBOL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9. ]{0,31}$"
DERIVATIVE_FIELDS = (
    "expiry",
    "strike",
    "right",
    "exchange",
    "multiplier",
    "trading_class",
    "local_symbol",
    "market_order_ack",
)
CONTRACT_FIELDS = {  # the contract fields each secType takes
    "STK": (),
    "CASH": (),
    "OPT": ("expiry", "strike", "right", "exchange", "multiplier", "trading_class", "local_symbol"),
    "FUT": ("expiry", "exchange", "multiplier", "trading_class", "local_symbol"),
}
SYMBOL_WORDS = "letters, digits and dots, starting with a letter (at most 15)"
BRACKET_TIFS_REFUSED = ("IOC",)
ORDERS_PAGE, ORDERS_PAGE_MAX = 100, 500
__all__ = [
    "OrderIn",
    "ModifyIn",
    "KillSwitchIn",
    "ValidationError",
    "first_error",
    "looks_like_fx",
]


def looks_like_fx(symbol: str) -> bool:
    """EUR.USD or EURUSD: two currency codes IB trades against each other."""
    letters = symbol.strip().upper().replace(".", "")
    return (
        len(letters) == 6
        and letters[:3] != letters[3:]
        and letters[:3] in FX_CURRENCIES
        and letters[3:] in FX_CURRENCIES
        and symbol.count(".") <= 1
    )


def _infer_sec_type(data: Any) -> Any:
    """A request without ``sec_type`` for a symbol that looks like an FX pair is about that
    pair (CASH); anything else keeps the default (STK)."""
    if not isinstance(data, dict) or data.get("sec_type") is not None:
        return data
    symbol = data.get("symbol")
    fx = isinstance(symbol, str) and looks_like_fx(symbol)
    return {**data, "sec_type": "CASH" if fx else "STK"}


def _rules_schema(schema: dict[str, Any]) -> None:
    """The cross-field rules, as data in the JSON schema: the dashboard checks a ticket with
    the same tables (served in /api/v1/openapi.json) before asking the server."""
    schema["x-needs"] = {
        t: {"limit_price": lim, "stop_price": stp, "trailing": t == "TRAIL"}
        for t, (lim, stp) in NEEDS.items()
    }
    schema["x-price-ticks"] = [
        {"sec_type": k, "symbol_contains": c, "below": b, "tick": t} for k, c, b, t in PRICE_TICKS
    ]
    schema["x-tick-fields"] = list(TICK_FIELDS)
    schema["x-side-rules"] = [
        {"field": f, "than": o, "buy": side, "than_words": PRICE_WORDS.get(o, o)}
        for f, o, side in SIDE_RULES
    ]
    schema["x-whole-quantity"] = list(WHOLE_QUANTITY)
    schema["x-bracket-tifs-refused"] = list(BRACKET_TIFS_REFUSED)


class OrderIn(BaseModel):
    """A new order as the JSON API and the dashboard send it. Without ``sec_type`` a symbol
    such as EUR.USD is an FX pair (CASH), anything else a stock."""

    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, json_schema_extra=_rules_schema
    )

    symbol: Annotated[str, Field(pattern=SYMBOL_PATTERN, description=SYMBOL_WORDS)]
    action: Literal["BUY", "SELL"]
    quantity: Annotated[Number, Field(gt=0, le=MAX_QUANTITY)]
    order_type: Literal["MKT", "LMT", "STP", "STP LMT", "TRAIL"] = "MKT"
    limit_price: Price | None = None
    stop_price: Price | None = None
    trailing_amount: Price | None = None
    trailing_percent: Annotated[Number, Field(gt=0, lt=100)] | None = None
    take_profit: Price | None = None
    stop_loss: Price | None = None
    tif: Literal["DAY", "GTC", "IOC"] = "DAY"
    outside_rth: StrictBool = False
    sec_type: Literal["STK", "CASH", "OPT", "FUT"] = "STK"
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "USD"
    client_order_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9._:-]{1,128}$")] | None = None
    # derivatives: the contract's fields (checked against the broker's contract details)
    expiry: (
        Annotated[
            str,
            Field(
                pattern=EXPIRY_PATTERN,
                description=(
                    "OPT: YYYYMMDD; FUT: the contract month YYYYMM or the last trading day YYYYMMDD"
                ),
            ),
        ]
        | None
    ) = None
    strike: Price | None = None
    right: Literal["C", "P"] | None = None
    exchange: Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9.]{0,15}$")] | None = None
    multiplier: Annotated[Number, Field(gt=0, le=1_000_000)] | None = None
    trading_class: Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9. ]{0,15}$")] | None = None
    local_symbol: (
        Annotated[
            str,
            Field(
                pattern=LOCAL_SYMBOL_PATTERN,
                description=(
                    "IB's local symbol, an alternative to the fields above (e.g. 'AAPL  261218C00200000', "
                    "'ESZ6')"
                ),
            ),
        ]
        | None
    ) = None
    market_order_ack: StrictBool = Field(
        False,
        description=(
            "OPT: a market order on an option, or one that becomes a market order when it "
            "triggers (STP, TRAIL, a bracket's stop_loss), is refused unless this is true "
            "(options default to LMT)"
        ),
    )
    accept_immediate_trigger: StrictBool = Field(
        False,
        description="a STP / STP LMT whose stop the market has already passed triggers "
        "at once: refused (422 stop_triggers_immediately) unless this is true",
    )

    _sec_type_of_fx = model_validator(mode="before")(_infer_sec_type)

    @model_validator(mode="before")
    @classmethod
    def _option_default_type(cls, data: object) -> object:
        """Options default to limit orders (a market order must be asked for)."""
        if (
            isinstance(data, dict)
            and "order_type" not in data
            and str(data.get("sec_type", "")).strip().upper() == "OPT"
        ):
            return {**data, "order_type": "LMT"}
        return data

    @field_validator(
        "symbol",
        "action",
        "order_type",
        "tif",
        "sec_type",
        "currency",
        "right",
        "exchange",
        "trading_class",
        "local_symbol",
        mode="before",
    )
    @classmethod
    def _upper(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().upper() in ("CALL", "PUT"):
            return value.strip().upper()[0]
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator(
        "quantity",
        "limit_price",
        "stop_price",
        "trailing_amount",
        "trailing_percent",
        "take_profit",
        "stop_loss",
    )
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @model_validator(mode="after")
    def _cross_fields(self) -> OrderIn:
        needs_limit, needs_stop = NEEDS[self.order_type]
        _require(self.limit_price, needs_limit, "limit_price", self.order_type)
        _require(self.stop_price, needs_stop, "stop_price", self.order_type)
        self._check_trailing()
        self._check_bracket()
        self._check_ticks()
        self._check_contract_fields()
        if self.sec_type in WHOLE_QUANTITY and float(self.quantity) != int(self.quantity):
            raise _field_error("quantity", "must be a whole number of shares for stocks")
        if self.sec_type in DERIVATIVES and float(self.quantity) != int(self.quantity):
            raise _field_error("quantity", "must be a whole number of contracts")
        if self.sec_type == "CASH" and len(self.symbol.replace(".", "")) != 6:
            raise _field_error("symbol", "an FX pair looks like EUR.USD or EURUSD")
        return self

    def _check_contract_fields(self) -> None:
        """Which contract fields each secType takes; the broker decides the rest."""
        allowed = CONTRACT_FIELDS[self.sec_type]
        for name in (
            "expiry",
            "strike",
            "right",
            "exchange",
            "multiplier",
            "trading_class",
            "local_symbol",
        ):
            if getattr(self, name) is not None and name not in allowed:
                raise _field_error(name, f"is not used by {self.sec_type} orders")
        if self.sec_type == "OPT" and self.expiry is not None and len(self.expiry) != 8:
            raise _field_error("expiry", "an option's expiry is a date, YYYYMMDD")
        if self.market_order_ack and self.sec_type != "OPT":
            raise _field_error("market_order_ack", "is only used by OPT orders")

    def contract_spec(self) -> ContractSpec | None:
        """The derivative this order names (None for stocks and FX)."""
        if self.sec_type not in DERIVATIVES:
            return None
        return ContractSpec(
            symbol=self.symbol,
            sec_type=self.sec_type,
            currency=self.currency,
            expiry=self.expiry or "",
            strike=_opt(self.strike),
            right=self.right or "",
            exchange=self.exchange or "",
            trading_class=self.trading_class or "",
            multiplier=_opt(self.multiplier),
            local_symbol=self.local_symbol or "",
        )

    def _check_ticks(self) -> None:
        if self.sec_type in DERIVATIVES:
            return  # the broker's market rule decides (instruments.Resolved.tick_at)
        for name in TICK_FIELDS:
            price = getattr(self, name)
            if price is None:
                continue
            tick = price_tick(self.sec_type, self.symbol, float(price))
            if off_tick(float(price), tick):
                raise _field_error(
                    name,
                    f"{plain_number(price)} is not a multiple of the price tick {plain_number(tick)}",
                )

    def _check_trailing(self) -> None:
        given = [n for n in ("trailing_amount", "trailing_percent") if getattr(self, n) is not None]
        if self.order_type == "TRAIL" and len(given) != 1:
            raise _field_error(
                "trailing_amount",
                "TRAIL orders need exactly one of trailing_amount or trailing_percent",
            )
        if self.order_type != "TRAIL" and given:
            raise _field_error(given[0], f"is not used by {self.order_type} orders")

    def _check_bracket(self) -> None:
        tp, sl = self.take_profit, self.stop_loss
        if tp is None and sl is None:
            return
        if self.tif in BRACKET_TIFS_REFUSED:
            raise _field_error("tif", f"a bracket cannot be {self.tif}")
        mirror = {"above": "below", "below": "above"}
        for name, other, buy_side in SIDE_RULES:
            price, than = getattr(self, name), getattr(self, other)
            if price is None or than is None:
                continue
            side = buy_side if self.action == "BUY" else mirror[buy_side]
            if (price - than) * (1 if side == "above" else -1) <= 0:
                what = PRICE_WORDS.get(other, other)
                raise _field_error(name, f"must be {side} {what} for a {self.action}")

    def fingerprint(self) -> str:
        """A hash of the order's content (what an idempotent retry must repeat); fields a
        stock order leaves unset are left out, so its hash is the same as before they existed."""
        unset = {name for name in DERIVATIVE_FIELDS if getattr(self, name) in (None, False)}
        body = self.model_dump(exclude={"client_order_id", "accept_immediate_trigger"} | unset)
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()

    def intent(self, account: str = "") -> OrderIntent:
        """The handler's order intent for this request."""
        return OrderIntent(
            symbol=self.symbol,
            action=self.action,
            quantity=float(self.quantity),
            order_type=self.order_type,
            limit_price=_opt(self.limit_price),
            stop_price=_opt(self.stop_price),
            tif=self.tif,
            outside_rth=self.outside_rth,
            sec_type=self.sec_type,
            currency=self.currency,
            account=account,
            trailing_amount=_opt(self.trailing_amount),
            trailing_percent=_opt(self.trailing_percent),
            take_profit=_opt(self.take_profit),
            stop_loss=_opt(self.stop_loss),
            expiry=self.expiry or "",
            strike=_opt(self.strike),
            right=self.right or "",
            exchange=self.exchange or "",
            trading_class=self.trading_class or "",
            local_symbol=self.local_symbol or "",
            multiplier=float(self.multiplier) if self.multiplier is not None else 1.0,
            market_order_ack=self.market_order_ack,
        )


class ModifyIn(BaseModel):
    """A modification of a working order: new quantity and/or prices."""

    model_config = ConfigDict(extra="forbid")

    quantity: Annotated[Number, Field(gt=0, le=MAX_QUANTITY)] | None = None
    limit_price: Price | None = None
    stop_price: Price | None = None
    accept_immediate_trigger: StrictBool = Field(
        False, description="as for a new order: a stop the market has passed triggers at once"
    )

    @model_validator(mode="after")
    def _something(self) -> ModifyIn:
        if self.quantity is None and self.limit_price is None and self.stop_price is None:
            raise _field_error("quantity", "give at least one of quantity, limit_price, stop_price")
        if self.quantity is not None and float(self.quantity) != int(self.quantity):
            raise _field_error("quantity", "must be a whole number")
        return self


class KillSwitchIn(BaseModel):
    """Engage (halt new orders, cancel every working order) or release the kill switch."""

    model_config = ConfigDict(extra="forbid")

    engaged: StrictBool
    reason: Annotated[str, Field(max_length=200)] | None = None


QuoteOut = Quote


class _FieldError(ValueError):
    """A cross-field rule failed; names the field it is about."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _field_error(field: str, message: str) -> _FieldError:
    return _FieldError(field, message)


def price_tick(sec_type: str, symbol: str, price: float) -> float:
    """Minimum price variation (``PRICE_TICKS``): US stocks 0.01 (0.0001 below $1), FX
    0.00005 (JPY 0.005)."""
    for kind, contains, below, tick in PRICE_TICKS:
        if kind == sec_type and contains in symbol and (below is None or price < below):
            return tick
    return 0.01


def _opt(value: float | None) -> float | None:
    return None if value is None else float(value)


def _require(value: object, needed: bool, name: str, order_type: str) -> None:
    if needed and value is None:
        raise _field_error(name, f"is required for {order_type} orders")
    if not needed and value is not None:
        raise _field_error(name, f"is not used by {order_type} orders")


def first_error(exc: ValidationError) -> tuple[str | None, str, list[dict[str, Any]]]:
    """(field, message, details) of a pydantic error, with our field names."""
    details: list[dict[str, Any]] = []
    seen: set[str | None] = set()
    for err in exc.errors(include_url=False, include_input=False):
        ctx_error = (err.get("ctx") or {}).get("error")
        loc = err["loc"]
        field = getattr(ctx_error, "field", None) or (str(loc[0]) if loc else None)
        message = str(ctx_error) if isinstance(ctx_error, _FieldError) else err["msg"]
        if len(loc) > 1 and loc[1] in ("int", "float") and err["type"].endswith("_type"):
            message = "must be a number"  # one member of the int | float union said it
        if field in seen:
            continue  # one error per field (a union reports each of its members)
        seen.add(field)
        details.append({"field": field, "message": message})
    first: dict[str, Any] = details[0] if details else {"field": None, "message": "invalid request"}
    return first["field"], first["message"], details
