"""Reads from the snapshots: account, positions, executions (JSON and CSV), orders (pages,
filters, one order) and the one merge rule of our records with the reader's rows; quotes and
bars (the two reads that may ask the broker).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import time
from base64 import urlsafe_b64decode, urlsafe_b64encode
from datetime import datetime
from typing import Any, NamedTuple

from flask import (
    Response,
    url_for,
)

from history import BarsKey, HistoryBudgetSpent, HistoryRefused, HistoryTimeout
from openapi import documented
from order_handler import (
    Lifecycle,
)
from orders.view import order_view
from reader_rows import ExecutionRow, OrderRow, Snapshot
from schemas import ORDERS_PAGE, OrderIn, QuoteOut
from schemas_out import AccountOut, BarsOut, ExecutionsOut, OrderOut, OrdersOut, PositionsOut
from schemas_query import BarsQuery, OrdersQuery, QuoteQuery
from services import Services
from web.common import (
    ApiError,
    Records,
    _age,
    _cached,
    _conditional,
    _dumps,
    _json,
    _json_cached,
    _long_call,
    _object_json,
    _query,
    _records,
    _unknown_symbol,
    _validate,
    bp,
    services,
)
from wire import to_wire


@bp.get("/account")
@documented(AccountOut, 503, etag=True)
def account() -> Response:
    """Account figures and raw values from the snapshot."""
    snap = services().connector.snapshot()
    if snap.account is None:
        raise ApiError(503, "no_data", "no account data yet")
    return _conditional(
        snap.version,
        lambda: f'{_account_json(snap)[:-1]},"data_age":{_dumps(_age(snap.updated_at))}}}',
    )


@bp.get("/positions")
@documented(PositionsOut, etag=True)
def positions() -> Response:
    """Positions with market price, value and P&L."""
    snap = services().connector.snapshot()
    return _conditional(
        ("positions", snap.positions_version),
        lambda: _object_json(
            positions=_positions_json(snap), data_age=_dumps(_age(snap.updated_at))
        ),
    )


def _account_json(snap: Snapshot) -> str:
    return _json_cached(
        "account", snap.version, lambda: dataclasses.asdict(snap.account) if snap.account else None
    )


def _positions_json(snap: Snapshot) -> str:
    return _json_cached(
        "positions", snap.version, lambda: [dataclasses.asdict(p) for p in snap.positions]
    )


def _executions_json(snap: Snapshot) -> str:
    return _json_cached(
        "executions",
        snap.executions_version,
        lambda: [dataclasses.asdict(e) for e in snap.executions],
    )


def _orders_key(snap: Snapshot, records: Records) -> tuple:
    """What the merged order list depends on: both sides' order versions and the executions
    (a row's last activity, what ``since`` filters on, is its last fill's time), not the
    account's and positions' (they move with every price), each read no later than its data."""
    return (snap.orders_version, snap.executions_version, records.version, len(records.rows))


def _orders_key_now(svc: Services) -> tuple:
    """``_orders_key`` of the latest data, read without copying the snapshot or the records
    (a poller whose ETag is current gets its 304 without either). A snapshot taken after it
    is the same or newer: at worst an answer is tagged older than it is, and the next poll
    gets it again."""
    handler = svc.handler
    version, count = (handler.version, handler.record_count()) if handler else (0, 0)
    return (svc.connector.orders_version, svc.connector.executions_version, version, count)


@bp.get("/executions")
@documented(ExecutionsOut, etag=True)
def executions() -> Response:
    """Every client's executions with commissions."""
    snap = services().connector.snapshot()
    return _conditional(
        ("executions", snap.executions_version),
        lambda: _object_json(
            executions=_executions_json(snap), data_age=_dumps(_age(snap.orders_updated_at))
        ),
    )


@bp.get("/orders")
@documented(OrdersOut, etag=True, query=OrdersQuery)
def orders() -> Response:
    """A page of every client's orders, merged with our lifecycle records.

    The broker's orders newest first, then ours it has not numbered yet. ``limit`` rows
    (default 100, at most 500); ``next_cursor`` (null on the last page) is the ``cursor`` of
    the next page: the pages give each order of the first page's list once, however orders
    change between them. ``symbol``, ``status`` (all, open, completed) and ``since`` filter the list."""
    svc = services()
    query = _query(OrdersQuery)
    after = _decode_cursor(query.cursor)
    key = _orders_key_now(svc)

    first_page = (query.cursor, query.symbol, query.since, query.limit) == (
        None,
        None,
        None,
        ORDERS_PAGE,
    )

    def build() -> bytes:
        snap = svc.connector.snapshot()
        records = _records(svc)
        if first_page:
            # the page every poller asks for: serialised once per change
            page = _cached(
                f"orders-page-{query.status}",
                key,
                lambda: _orders_page(svc, snap, records, key, query, after),
            )
        else:
            page = _orders_page(svc, snap, records, key, query, after)
        age = _dumps(_age(snap.orders_updated_at)).encode()
        return b'{"orders":' + page[0] + b',"data_age":' + age + b',"next_cursor":' + page[1] + b"}"

    return _conditional(key, build, shared=f"orders-{query.status}" if first_page else None)


class _Row(NamedTuple):
    """One merged order with its JSON text, its last activity (epoch s; None: unknown) and
    where it stands in the list (``_rank``)."""

    data: dict[str, Any]
    text: bytes
    at: float | None
    perm: int | None  # the broker's permId (None: ours, not numbered by the broker yet)
    created: float  # ours: when our record was made (others: 0)


# A place in the list (see ``_rank``): (0,) new at the broker, (1, -permId) at the broker,
# (2, -created, id) ours the broker had not numbered when the first page was read.
Rank = tuple[Any, ...]


def _order_rows(svc: Services, snap: Snapshot, records: Records, key: tuple) -> list[_Row]:
    """The merged order list, each row serialised once per change."""

    def build() -> list[_Row]:
        by_id = {r.id: r for r in records.rows}
        fills: dict[int, float] = {}
        for ex in snap.executions:
            at = _epoch(ex.time)
            if at is not None and at > fills.get(ex.perm_id, 0.0):
                fills[ex.perm_id] = at
        rows = []
        for row in merged_orders(snap, records):
            record = by_id.get(row["id"]) if row["ours"] else None
            at = (record.updated_at or record.created_at) if record else fills.get(row["perm_id"])
            created = record.created_at if record else 0.0
            rows.append(_Row(row, _dumps(row).encode(), at, row["perm_id"] or None, created))
        return sorted(rows, key=lambda r: _rank(r, None))  # the order pages follow

    return _cached("orders-rows", key, build)


def _rank(row: _Row, horizon: int | None) -> Rank:
    """Where ``row`` stands in the list as paged from a first page that saw permIds up to
    ``horizon`` (None: now). The broker's orders newest first (by permId, which it gives in
    order), then ours it has not numbered yet, newest first. One of ours numbered after the
    first page keeps its place among those, and another client's order new since then comes
    before the first page (the next first page has it): no order moves past a cursor, so
    none is given twice or skipped however orders change between pages."""
    new = row.perm is None or (horizon is not None and row.perm > horizon)
    if new and row.data["ours"]:
        return (2, -row.created, row.data["id"])
    if new and row.perm is not None:
        return (0,)
    return (1, -(row.perm or 0))  # another client's order without a permId: the broker's last


def _epoch(stamp: str) -> float | None:
    try:
        return datetime.fromisoformat(stamp).timestamp() if stamp else None
    except ValueError:
        return None


def _orders_page(
    svc: Services,
    snap: Snapshot,
    records: Records,
    key: tuple,
    query: OrdersQuery,
    after: _Cursor | None,
) -> tuple[bytes, bytes]:
    """(JSON array of one page of rows, JSON of the next page's cursor)."""
    since = query.since_epoch()
    symbol = query.symbol.upper() if query.symbol else None
    every = _order_rows(svc, snap, records, key)
    horizon = after.horizon if after else max((r.perm or 0 for r in every), default=0)
    rows = [
        r
        for r in (every if after is None else _after(every, after))
        if (query.status == "all" or r.data["open"] == (query.status == "open"))
        and (symbol is None or str(r.data["symbol"]).upper() == symbol)
        and (since is None or (r.at is not None and r.at >= since))
    ]
    page = rows[: query.limit]
    last = _Cursor(horizon, _rank(page[-1], horizon)) if len(rows) > len(page) else None
    return b"[" + b",".join(r.text for r in page) + b"]", _dumps(last and last.text()).encode()


class _Cursor(NamedTuple):
    """Where a page ended: the highest permId at the broker when the first page was read and
    the ``_rank`` of the page's last row."""

    horizon: int
    rank: Rank

    def text(self) -> str:
        """Opaque to clients: URL-safe base64 of JSON."""
        raw = json.dumps([self.horizon, *self.rank], separators=(",", ":")).encode()
        return urlsafe_b64encode(raw).decode().rstrip("=")


def _after(rows: list[_Row], cursor: _Cursor) -> list[_Row]:
    """The rows after the cursor's, in its first page's order."""
    ranked = sorted(((_rank(r, cursor.horizon), r) for r in rows), key=lambda p: p[0])
    return [row for rank, row in ranked if rank > cursor.rank]


def _decode_cursor(cursor: str | None) -> _Cursor | None:
    """The place a next_cursor names; 400 naming ``cursor`` if it is not one of ours."""
    if cursor is None:
        return None
    try:
        parts = json.loads(urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError):
        parts = None
    if not (
        isinstance(parts, list) and len(parts) > 2 and _whole(parts[0]) and _rank_ok(parts[1:])
    ):
        raise ApiError(400, "validation_error", "cursor: not a next_cursor of this API", "cursor")
    return _Cursor(parts[0], tuple(parts[1:]))


def _rank_ok(rank: list[Any]) -> bool:
    """A ``_rank`` of a row at the broker (1, -permId) or of ours (2, -created, id)."""
    if not _whole(rank[0]):
        return False  # a bool would match 1
    match rank:
        case [1, perm]:
            return _whole(perm)
        case [2, created, str()]:
            return _whole(created) or (isinstance(created, float) and math.isfinite(created))
    return False


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@bp.get("/executions.csv")
@documented(str, etag=True, media="text/csv")
def executions_csv() -> Response:
    """The fills ledger as CSV."""
    snap = services().connector.snapshot()

    def build() -> str:
        out = io.StringIO()
        fields = [f.name for f in dataclasses.fields(ExecutionRow)]
        writer = csv.DictWriter(out, fieldnames=fields)
        writer.writeheader()
        for row in snap.executions:  # the API's times (and no NaN), as in /executions
            writer.writerow({k: _cell(v) for k, v in to_wire(dataclasses.asdict(row)).items()})
        return out.getvalue()

    return _conditional(
        ("executions.csv", snap.executions_version),
        build,
        "text/csv",
        {"Content-Disposition": "attachment; filename=fills.csv"},
    )


def _cell(value: object) -> object:
    """A text cell a spreadsheet would run as a formula (another client's order reference
    ``=HYPERLINK(...)``) gets a leading ' (OWASP's CSV injection advice); numbers stay."""
    if isinstance(value, str) and value[:1] in FORMULA_STARTS:
        return "'" + value
    return value


@bp.get("/orders/<order_id>")
@documented(OrderOut, 404, etag=True)
def order(order_id: str) -> Response:
    """One order: our lifecycle record (if ours) and the broker's view."""
    svc = services()
    key = _orders_key_now(svc)  # before the data it tags (see _orders_key_now)
    snap = svc.connector.snapshot()
    record = svc.handler.get(order_id) if svc.handler else None
    row = _find_row(snap, order_id, record)
    if record is None and row is None:
        raise ApiError(404, "not_found", f"no order {order_id!r}")
    return _conditional(key, lambda: _dumps(_order_json(row, record)))


@bp.get("/quote")
@documented(QuoteOut, 404, 422, 503, 504, query=QuoteQuery)
def quote() -> Response:
    """A snapshot quote (one broker round trip on the reader's loop).

    No ETag: every call asks the broker for a fresh quote."""
    query = _query(QuoteQuery)
    symbol = query.symbol.upper()
    checked = _validate(
        OrderIn, {"symbol": symbol, "action": "BUY", "quantity": 1, "sec_type": query.sec_type}
    )
    sec_type = checked.sec_type  # without sec_type: CASH for EUR.USD, else STK
    if query.currency is not None and sec_type != "STK":
        raise ApiError(
            400,
            "validation_error",
            "currency: an FX pair's currency is in its symbol (EUR.USD: USD); give it for stocks",
            "currency",
        )
    try:
        with _long_call(required=True):
            q = services().connector.quote(symbol, sec_type, query.currency or "USD")
    except LookupError as exc:
        raise _unknown_symbol(404, exc, symbol, sec_type) from None
    return _json(dataclasses.asdict(q))


@bp.get("/bars")
@documented(BarsOut, 404, 422, 429, 502, 503, 504, query=BarsQuery)
def bars() -> Response:
    """Historical bars (one broker round trip, or the cache: identical requests within 20 s
    and more are answered from it; requests are paced below IB's limits, 429 past them)."""
    query = _query(BarsQuery)
    symbol = query.symbol.upper()
    sec_type = _validate(
        OrderIn, {"symbol": symbol, "action": "BUY", "quantity": 1, "sec_type": query.sec_type}
    ).sec_type
    key = BarsKey(symbol, sec_type, query.duration, query.bar_size, query.what)
    try:
        with _long_call(required=True):
            answer, cached = services().connector.bars(key)
    except LookupError as exc:
        raise _unknown_symbol(404, exc, symbol, sec_type) from None
    except HistoryBudgetSpent as exc:
        raise ApiError(
            429, "history_paced", str(exc), retry_after=math.ceil(exc.retry_after)
        ) from None
    except HistoryRefused as exc:
        raise ApiError(502, "history_refused", str(exc)) from None
    except HistoryTimeout as exc:
        raise ApiError(504, "history_timeout", str(exc)) from None
    offset = services().connector.gateway_clock_offset
    return _json(
        {
            "symbol": symbol,
            "duration": key.duration,
            "bar_size": key.bar_size,
            "what": key.what_to_show,
            "cached": cached,
            "fetched_at": answer.fetched_at,
            "gateway_time": None if offset is None else time.time() + offset,
            "bars": [dataclasses.asdict(bar) for bar in answer.bars],
        }
    )


# ----------------------------------------------------------------- merging
def merged_orders(snap: Snapshot, records: Records) -> list[dict[str, Any]]:
    """Broker rows joined with our records, brief (cached until either side changes)."""
    return _cached("orders-brief", _orders_key(snap, records), lambda: _merge(snap, records.rows))


def _merge(snap: Snapshot, records: list[Lifecycle]) -> list[dict[str, Any]]:
    """Broker rows joined with our records by orderRef, then permId; our unsent ones too."""
    by_id = {r.id: r for r in records}
    by_perm = {r.perm_id: r for r in records if r.perm_id}
    used: set[str] = set()
    rows = []
    for row in snap.orders:
        record = by_id.get(row.order_ref) or by_perm.get(row.perm_id)
        if record is not None:
            used.add(record.id)
        rows.append(_order_json(row, record, brief=True))
    for record in records:
        if record.id not in used:
            rows.append(_order_json(None, record, brief=True))
    return rows


def _find_row(snap: Snapshot, order_id: str, record: Lifecycle | None) -> OrderRow | None:
    for row in snap.orders:
        if (
            row.order_ref == order_id
            or str(row.perm_id) == order_id
            or (record is not None and record.perm_id and row.perm_id == record.perm_id)
        ):
            return row
    return None


def _order_json(
    row: OrderRow | None, record: Lifecycle | None, brief: bool = False
) -> dict[str, Any]:
    """One order for the API: ours from its lifecycle record (the reader's row fills gaps),
    another client's from the reader's row (``orders.view``, the one merge rule)."""
    out = order_view(row, record, brief)
    out["url"] = url_for("api.order", order_id=out["id"]) if out.get("id") else None
    return out
