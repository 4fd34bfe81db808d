"""What the API's GET endpoints take in their query strings (pydantic models: the OpenAPI
document lists them as parameters, bad ones answer 400 naming the parameter).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from schemas import ORDERS_PAGE, ORDERS_PAGE_MAX, SYMBOL_PATTERN, _field_error

LAST_EPOCH = 253_402_300_800  # 10000-01-01T00:00:00Z: no time of the API is later


# ----------------------------------------------------------------- queries


class OrdersQuery(BaseModel):
    """GET /orders: a page of the merged order list, optionally filtered.

    ``since`` (epoch seconds or ISO 8601; naive times are UTC) keeps the orders with
    activity at or after it: our orders by their last change, other clients' orders by
    their latest fill (other clients' orders without a fill carry no time and are left out).
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    limit: Annotated[int, Field(ge=1, le=ORDERS_PAGE_MAX)] = ORDERS_PAGE
    cursor: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,200}$")] | None = None
    symbol: Annotated[str, Field(pattern=SYMBOL_PATTERN)] | None = None
    status: Literal["all", "open", "completed"] = "all"
    since: (
        Annotated[
            float,
            Field(ge=0, allow_inf_nan=False, json_schema_extra={"exclusiveMaximum": LAST_EPOCH}),
        ]
        | datetime
        | None
    ) = None

    @field_validator("since", mode="before")
    @classmethod
    def _number_or_time(cls, value: object) -> object:
        """A text that is neither a number nor an ISO time is refused in words that say both
        (pydantic reported only 'a valid number'); a '+' sent unescaped arrives as a space."""
        if not isinstance(value, str) or not value.strip():
            return value
        text = value.strip()
        try:
            float(text)
            return text
        except ValueError:
            pass
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            hint = " (a + in the offset must be sent as %2B)" if " " in text else ""
            raise ValueError(
                "must be epoch seconds or an ISO 8601 time such as 2026-12-01T14:30:00Z" + hint
            ) from None

    @field_validator("since")
    @classmethod
    def _after_1970(cls, value: float | datetime | None) -> float | datetime | None:
        if isinstance(value, datetime) and _epoch(value) < 0:
            raise ValueError("must be epoch seconds or an ISO 8601 time after 1970")
        if isinstance(value, float | int) and value >= LAST_EPOCH:
            # epoch milliseconds (a JavaScript Date.now()) would silently match no order
            raise ValueError("must be epoch seconds (this is after the year 9999: milliseconds?)")
        return value

    def since_epoch(self) -> float | None:
        """``since`` as epoch seconds."""
        if self.since is None or isinstance(self.since, float | int):
            return self.since
        return _epoch(self.since)


def _epoch(stamp: datetime) -> float:
    """Epoch seconds of ``stamp`` (naive: UTC)."""
    if stamp.tzinfo is None:
        return (stamp - datetime(1970, 1, 1)).total_seconds()
    return stamp.timestamp()


CHART_BARS = {"1m": "1 min", "5m": "5 mins", "15m": "15 mins", "1h": "1 hour", "1D": "1 day"}


class BarsQuery(BaseModel):
    """GET /bars: historical bars, cached and paced below IB's limits."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    symbol: Annotated[str, Field(pattern=SYMBOL_PATTERN)]
    sec_type: Literal["STK", "CASH"] | None = Field(
        None, description="STK or CASH; without it EUR.USD is an FX pair, anything else a stock"
    )
    duration: Annotated[
        str,
        Field(
            pattern=r"^[1-9][0-9]{0,3} [SDWMY]$",
            description="IB's duration, e.g. '1 D', '3600 S', '1 M'",
        ),
    ] = "1 D"
    bar_size: Literal[
        "5 secs",
        "10 secs",
        "15 secs",
        "30 secs",
        "1 min",
        "2 mins",
        "3 mins",
        "5 mins",
        "15 mins",
        "30 mins",
        "1 hour",
        "1 day",
    ] = "5 mins"
    what: Literal["TRADES", "MIDPOINT", "BID", "ASK", "BID_ASK"] = "TRADES"
    bar: Annotated[
        Literal["1m", "5m", "15m", "1h", "1D"] | None,
        Field(description="the chart's bar size; sets bar_size"),
    ] = None

    @field_validator("sec_type", "what", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("duration", mode="before")
    @classmethod
    def _spaced(cls, value: object) -> object:
        """ "1D" → "1 D" (the chart's short form of IB's durations)."""
        if isinstance(value, str) and (m := re.fullmatch(r"\s*(\d+)\s*([SDWMY])\s*", value)):
            return f"{m.group(1)} {m.group(2)}"
        return value

    @model_validator(mode="after")
    def _chart_defaults(self) -> BarsQuery:
        if self.bar is not None:
            if "bar_size" in self.model_fields_set and self.bar_size != CHART_BARS[self.bar]:
                raise _field_error("bar", "give bar or bar_size, not both")
            self.bar_size = CHART_BARS[self.bar]  # type: ignore[assignment]  # a member of its Literal
        if self.sec_type == "CASH" and "what" not in self.model_fields_set:
            self.what = "MIDPOINT"  # IB has no TRADES for FX pairs
        return self


class StreamQuery(BaseModel):
    """GET /stream: symbols streamed to this client besides the watchlist (its chart's)."""

    model_config = ConfigDict(extra="forbid")

    watch: Annotated[
        str,
        Field(
            pattern=r"^([A-Za-z][A-Za-z0-9.]{0,14}(:(STK|CASH))?"
            r"(,[A-Za-z][A-Za-z0-9.]{0,14}(:(STK|CASH))?){0,4})?$",
            description="up to 5 SYMBOL[:STK|CASH], comma-separated",
        ),
    ] = ""


class QuoteQuery(BaseModel):
    """GET /quote."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    symbol: Annotated[str, Field(pattern=SYMBOL_PATTERN)]
    sec_type: Literal["STK", "CASH"] | None = Field(
        None, description="STK or CASH; without it EUR.USD is an FX pair, anything else a stock"
    )
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] | None = Field(
        None,
        description="a stock's listing currency (default USD: the US listing); an FX pair's "
        "is in its symbol",
    )

    @field_validator("sec_type", "currency", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value
