"""The trader's screen in the JSON API: P&L today, watchlist, quotes, symbol search and price
alerts (a blueprint of its own; registered next to ``common.bp``, sharing its error shape).

* ``GET /api/v1/pnl`` — the account's and every position's P&L today, from IB's pnl /
  pnlSingle of one instant (the rows in the account's currency add up to the account);
* ``GET/PUT /api/v1/watchlist`` — kept in the data folder (``screen_store``);
* ``GET /api/v1/quotes`` — the quote hub's latest quotes (the event stream pushes the same as
  ``quotes`` events);
* ``GET /api/v1/symbols?q=`` — IB's symbol search (stocks and FX pairs);
* ``/api/v1/alerts`` — price alerts: list, create, read, delete.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

from flask import Blueprint, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from werkzeug.exceptions import HTTPException

from openapi import documented
from quote_hub import HubSnapshot, QuoteHub, QuoteRow
from reader_rows import PositionRow
from schemas import SYMBOL_PATTERN
from schemas_query import StreamQuery
from screen_store import MAX_WATCHLIST, FiredAlert, PriceAlert, ScreenStore, WatchItem
from web import common
from wire import to_wire

log = logging.getLogger(__name__)

bp = Blueprint("screen", __name__, url_prefix="/api/v1")
common.answer_gateway_errors(bp)
bp.register_error_handler(HTTPException, common._on_http_error)

SYMBOL_CACHE_SECONDS = 60.0
SYMBOL_QUERY = r"^[A-Za-z0-9][A-Za-z0-9./ -]{0,19}$"
MAX_SEARCH_RESULTS = 16


def _upper(value: object) -> object:
    return value.strip().upper() if isinstance(value, str) else value


class WatchItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    symbol: Annotated[str, Field(pattern=SYMBOL_PATTERN)]
    sec_type: Literal["STK", "CASH"] = "STK"

    @field_validator("symbol", "sec_type", mode="before")
    @classmethod
    def _up(cls, value: object) -> object:
        return _upper(value)


class WatchlistIn(BaseModel):
    """PUT /watchlist: the whole list, in display order."""

    model_config = ConfigDict(extra="forbid")

    symbols: Annotated[list[WatchItemIn], Field(max_length=MAX_WATCHLIST)]


class SymbolsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    q: Annotated[str, Field(pattern=SYMBOL_QUERY, description="the start of a symbol or name")]


class PriceAlertIn(BaseModel):
    """POST /alerts: fire once when ``symbol``'s last price crosses ``level`` (see the route)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    symbol: Annotated[str, Field(pattern=SYMBOL_PATTERN)]
    sec_type: Literal["STK", "CASH"] = "STK"
    condition: Literal["above", "below"]
    level: Annotated[float, Field(gt=0, lt=1e9, allow_inf_nan=False)]
    note: Annotated[str, Field(max_length=200)] = ""

    @field_validator("symbol", "sec_type", mode="before")
    @classmethod
    def _up(cls, value: object) -> object:
        return _upper(value)


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PnlRowOut(_Out):
    symbol: str
    sec_type: str
    con_id: int
    description: str = Field(
        description="the contract in IB's words, e.g. 'AAPL 20261218 200 C' (the symbol for stocks)"
    )
    quantity: float
    avg_cost: float
    market_price: float | None
    market_value: float | None
    daily_pnl: float | None = Field(description="P&L today, in the account's currency")
    unrealized_pnl: float | None
    realized_pnl: float | None
    currency: str = Field(
        description="the contract's: avg_cost, market_price, market_value, unrealized_pnl and "
        "realized_pnl are in it (IB's portfolio figures; USD.JPY: yen), daily_pnl is not"
    )


class PnlOut(_Out):
    account: str | None
    daily_pnl: float | None = Field(description="P&L today of the account (IB's reqPnL)")
    unrealized_pnl: float | None
    realized_pnl: float | None
    positions: list[PnlRowOut]
    data_age: float | None


class WatchlistOut(_Out):
    symbols: list[WatchItem]


class QuotesOut(_Out):
    quotes: list[QuoteRow]
    lines_used: int
    lines_limit: int
    refused: list[str]
    message: str | None
    watchers: int
    alerts: list[FiredAlert] = Field(
        description="recently fired alerts (as in the stream): a page that polls announces them"
    )
    alerts_version: int = Field(
        description="changes when the list of alerts (or the watchlist) changes: ask /alerts again"
    )


class SymbolOut(_Out):
    symbol: str
    sec_type: str
    currency: str
    exchange: str
    description: str
    con_id: int


class SymbolsOut(_Out):
    q: str
    results: list[SymbolOut]


class PriceAlertsOut(_Out):
    alerts: list[PriceAlert]


# ------------------------------------------------------------------ helpers
def store() -> ScreenStore:
    return common.services().screen_store


def hub() -> QuoteHub:
    hub = common.services().quotes
    if hub is None:
        raise common.ApiError(503, "not_started", "the quote hub is not running")
    return hub


def _args(model: type[BaseModel]) -> Any:
    return common._query(model)


# ------------------------------------------------------------------ P&L
@bp.get("/pnl")
@documented(PnlOut)
def pnl() -> Response:
    """P&L today for the account and each position (IB's pnl / pnlSingle, ~1 s fresh)."""
    snap = common.services().connector.snapshot()
    figures = snap.account.figures if snap.account else {}
    return common._json(
        {
            "account": snap.account.account if snap.account else None,
            "daily_pnl": figures.get("daily_pnl"),
            "unrealized_pnl": figures.get("unrealized_pnl"),
            "realized_pnl": figures.get("realized_pnl"),
            "positions": [_pnl_row(p) for p in snap.positions],
            "data_age": None
            if snap.updated_at is None
            else round(time.time() - snap.updated_at, 3),
        }
    )


def _pnl_row(p: PositionRow) -> dict[str, Any]:
    return {
        "symbol": p.symbol,
        "sec_type": p.sec_type,
        "con_id": p.con_id,
        "description": p.description,
        "quantity": p.quantity,
        "avg_cost": p.avg_cost,
        "market_price": p.market_price,
        "market_value": p.market_value,
        "daily_pnl": p.daily_pnl,
        "unrealized_pnl": p.unrealized_pnl,
        "realized_pnl": p.realized_pnl,
        "currency": p.currency,
    }


# ------------------------------------------------------------------ watchlist and quotes
@bp.get("/watchlist")
@documented(WatchlistOut)
def get_watchlist() -> Response:
    """The watchlist (kept in the data folder)."""
    return common._json({"symbols": [dataclasses.asdict(i) for i in store().watchlist()]})


@bp.put("/watchlist")
@documented(WatchlistOut, 415, body=WatchlistIn)
def put_watchlist() -> Response:
    """Replace the watchlist; its quotes stream to every open dashboard."""
    body = common._validate(WatchlistIn, common._json_body())
    try:
        items = store().set_watchlist([WatchItem(i.symbol, i.sec_type) for i in body.symbols])
    except ValueError as exc:
        raise common.ApiError(400, "validation_error", str(exc), "symbols") from None
    except OSError as exc:
        raise common.ApiError(
            503, "not_saved", f"the watchlist could not be saved: {exc}"
        ) from None
    hub().resync()
    return common._json({"symbols": [dataclasses.asdict(i) for i in items]})


@bp.get("/quotes")
@documented(QuotesOut, query=StreamQuery)
def quotes() -> Response:
    """The latest streamed quotes (what the event stream pushes as ``quotes`` events).

    For a dashboard that polls instead of streaming: each call keeps the watchlist and the
    ``watch`` symbols streamed for 5 s more (lines released after the polls stop)."""
    quote_hub = hub()
    quote_hub.lease(stream_symbols())
    return Response(
        quotes_json(quote_hub.snapshot(), quote_hub.watchers()), mimetype="application/json"
    )


def quotes_json(snap: HubSnapshot, watchers: int) -> str:
    return json.dumps(
        to_wire(
            {
                "quotes": [dataclasses.asdict(q) for q in snap.quotes],
                "lines_used": snap.lines_used,
                "lines_limit": snap.lines_limit,
                "refused": list(snap.refused),
                "message": snap.message,
                "watchers": watchers,
                "alerts": _fired(snap),
                "alerts_version": snap.alerts_version,
            }
        ),
        separators=(",", ":"),
    )


def _fired(snap: HubSnapshot) -> list[dict[str, object]]:
    """The recently fired alerts, each with its ``seq``."""
    return [{"seq": seq, **dataclasses.asdict(a)} for seq, a in snap.alerts]


def stream_frame(snap: HubSnapshot) -> str:
    """The ``quotes`` event of the stream: quotes, lines and the recently fired alerts."""
    body = json.dumps(
        to_wire(
            {
                "quotes": [dataclasses.asdict(q) for q in snap.quotes],
                "lines_used": snap.lines_used,
                "lines_limit": snap.lines_limit,
                "message": snap.message,
                "alerts": _fired(snap),
                "alerts_version": snap.alerts_version,
            }
        ),
        separators=(",", ":"),
    )
    return f"event: quotes\ndata: {body}\n\n"


def stream_symbols() -> list[WatchItem]:
    """The ``watch`` symbols of the stream being opened (400 naming ``watch``)."""
    query = _args(StreamQuery)
    extra = []
    for part in filter(None, query.watch.split(",")):
        symbol, _, sec_type = part.partition(":")
        extra.append(WatchItem(symbol.upper(), sec_type or "STK"))
    return extra


def stream_watch(extra: list[WatchItem]) -> Callable[[], None]:
    """A watcher for an opened stream, and the call that ends it (made when the stream
    closes, outside any request context)."""
    svc_hub = common.services().quotes
    if svc_hub is None:
        return lambda: None
    watcher = svc_hub.watch(extra)
    return lambda: svc_hub.unwatch(watcher)


# ------------------------------------------------------------------ symbol search
@bp.get("/symbols")
@documented(SymbolsOut, 503, 504, query=SymbolsQuery)
def symbols() -> Response:
    """Symbol search: stocks and FX pairs matching ``q`` (IB's reqMatchingSymbols, cached 60 s)."""
    q = _args(SymbolsQuery).q.upper()
    searches = common.services().symbol_searches
    hit = searches.get(q)
    if hit is None or time.monotonic() - hit[0] > SYMBOL_CACHE_SECONDS:
        with common._long_call(required=True):  # a silent gateway: seconds of waiting
            found = common.services().connector.matching_symbols(q)
        rows = [_symbol_row(c) for c in found if c.secType in ("STK", "CASH")]
        hit = (time.monotonic(), rows[:MAX_SEARCH_RESULTS])
        if len(searches) > 256:
            searches.clear()
        searches[q] = hit
    return common._json({"q": q, "results": hit[1]})


def _symbol_row(c: Any) -> dict[str, Any]:
    pair = c.secType == "CASH"
    return {
        "symbol": f"{c.symbol}.{c.currency}" if pair else c.symbol,
        "sec_type": c.secType,
        "currency": c.currency,
        "exchange": c.primaryExchange or c.exchange,
        "description": c.description or "",
        "con_id": c.conId,
    }


# ------------------------------------------------------------------ alerts
@bp.get("/alerts")
@documented(PriceAlertsOut)
def list_alerts() -> Response:
    """Every price alert, armed and fired."""
    return common._json({"alerts": [dataclasses.asdict(a) for a in store().alerts()]})


@bp.post("/alerts")
@documented(PriceAlert, 415, ok=201, body=PriceAlertIn)
def create_alert() -> tuple[Response, int]:
    """A price alert: fires once when the symbol's last price crosses the level.

    Crossing means moving from the near side (under the level for ``above``, over it for
    ``below``) to at or beyond it after the alert was made. ``primed_at`` says when a price on
    the near side was seen; while it is null (the price was already at or beyond the level, or
    not known yet) the alert waits for the price to come back, then fires when it crosses."""
    body = common._validate(PriceAlertIn, common._json_body())
    now = next(
        (
            q.last
            for q in hub().snapshot().quotes
            if (q.symbol, q.sec_type) == (body.symbol, body.sec_type)
        ),
        None,
    )
    try:
        alert = store().add_alert(
            body.symbol, body.sec_type, body.condition, body.level, body.note, last=now
        )
    except ValueError as exc:
        raise common.ApiError(409, "too_many_alerts", str(exc)) from None
    except OSError as exc:
        raise common.ApiError(503, "not_saved", f"the alert could not be saved: {exc}") from None
    hub().resync()
    return common._json(dataclasses.asdict(alert)), 201


@bp.get("/alerts/<alert_id>")
@documented(PriceAlert, 404)
def get_alert(alert_id: str) -> Response:
    """One alert."""
    alert = store().alert(alert_id)
    if alert is None:
        raise common.ApiError(404, "not_found", f"no alert {alert_id!r}")
    return common._json(dataclasses.asdict(alert))


@bp.delete("/alerts/<alert_id>")
@documented(PriceAlert, 404, 503)
def delete_alert(alert_id: str) -> Response:
    """Delete an alert; answers the alert as it was."""
    alert = store().alert(alert_id)
    try:
        deleted = alert is not None and store().delete_alert(alert_id)
    except OSError as exc:
        raise common.ApiError(
            503, "not_saved", f"the alert could not be deleted (it stays armed): {exc}"
        ) from None
    if alert is None or not deleted:
        raise common.ApiError(404, "not_found", f"no alert {alert_id!r}")
    hub().resync()
    return common._json(dataclasses.asdict(alert))
