"""JSON API (blueprint ``api`` under /api/v1).

Reads are served from the IBConnector's snapshot and the OrderHandler's
records: no broker round trip per GET (the quote endpoint is the one
exception, and says so). Writes are validated, then handed to the
OrderHandler's queue. Every error uses one shape, built by ``api_error``:
``{"error": {"status": 400, "code": "validation_error", "message": ..., "field": ...}}``.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import json
import math
import re
import secrets
import threading
import time
from base64 import urlsafe_b64decode, urlsafe_b64encode
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, NamedTuple

from flask import (
    Blueprint,
    Response,
    current_app,
    g,
    jsonify,
    request,
    stream_with_context,
    url_for,
)
from pydantic import BaseModel
from werkzeug.exceptions import HTTPException

import auth
import webhook
from bodies import BodyError, parse_json_object
from history import BarsKey, HistoryBudgetSpent, HistoryRefused
from ib_connection import NotConnectedError, ServersUnreachable
from ib_link import LinkState
from instruments import DERIVATIVES, ContractError, ContractSpec, Resolved, off_tick
from journal import JournalError
from openapi import documented
from order_handler import (
    FINAL_VERDICTS,
    IdempotencyConflict,
    Lifecycle,
    OrderHandler,
    OrderIntent,
    OrderStateError,
    TradingHaltedError,
    UnknownOrderError,
)
from orders.view import order_view
from reader_rows import ExecutionRow, OrderRow, Snapshot
from risk import RiskRejected
from schemas import (
    CONTRACT_FIELDS,
    DERIVATIVE_FIELDS,
    ORDERS_PAGE,
    AccountOut,
    BarsOut,
    BarsQuery,
    CancelAllOut,
    ExecutionsOut,
    HealthOut,
    KillSwitchIn,
    KillSwitchOut,
    KillSwitchResult,
    ModifyIn,
    OrderAccepted,
    OrderActionOut,
    OrderIn,
    OrderOut,
    OrdersOut,
    OrdersQuery,
    PositionsOut,
    PreviewOut,
    QuoteOut,
    QuoteQuery,
    StateOut,
    StatusOut,
    StreamQuery,  # the screen's stream parameter (screen_api)
    ValidationError,
    first_error,
    looks_like_fx,
)
from services import GatewayNotAnswering, Services
from wire import to_wire

bp = Blueprint("api", __name__, url_prefix="/api/v1")
WAIT_SLACK = 5.0
STREAM_KEEPALIVE = 2.0  # seconds between pulses (the status) on an idle stream; also finds dead clients
KILL_SWITCH_CONFIRM = 10.0  # seconds to wait for the broker to confirm the cancels
PRICE_FIELDS = ("limit_price", "stop_price", "take_profit", "stop_loss", "trailing_amount")
IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9._:-]{1,128}")
RETRY_AFTER = 1  # seconds a client waits before retrying a 503
SHARED_FOR = 1.0  # seconds a shared answer (/state, the first page of /orders) is reused
COMPRESS_FROM = 8192  # bytes: smaller answers are sent as they are
GZIP_LEVEL = 6
IDEMPOTENCY_HEADER = {"name": "Idempotency-Key", "in": "header", "required": False,
                      "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"}}
WAIT_PARAM = {"name": "wait", "in": "query", "required": False, "schema": {"type": "string"},
              "description": "1, true or yes: answer once the order has a verdict"}
WEBHOOK_HEADERS = (
    {"name": "X-Webhook-Secret", "in": "header", "required": False, "schema": {"type": "string"}},
    {"name": "X-Signature", "in": "header", "required": False, "schema": {"type": "string"},
     "description": "sha256=<hex HMAC-SHA256 of the body>"})
RULE_FIELDS = {"max_quantity": "quantity", "max_notional": "quantity",
               "price_collar": "limit_price", "symbol_not_allowed": "symbol",
               "no_reference_price": "symbol", "asset_class_limit": "quantity",
               "option_market_order": "market_order_ack"}


class ApiError(Exception):
    """An error answered with the API's one JSON error shape."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 details: list[dict] | None = None, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.field, self.details, self.retry_after = field, details, retry_after


def api_error(status: int, code: str, message: str, field: str | None = None,
              details: list[dict] | None = None,
              retry_after: int | None = None) -> tuple[Response, int]:
    """The single JSON error response of the whole API (``Retry-After`` on retryable ones)."""
    body: dict[str, Any] = {"status": status, "code": code, "message": message}
    if field is not None:
        body["field"] = field
    if details:
        body["details"] = details
    response = jsonify(to_wire({"error": body}))
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response, status


@bp.errorhandler(ApiError)
def _on_api_error(exc: ApiError) -> tuple[Response, int]:
    return api_error(exc.status, exc.code, exc.message, exc.field, exc.details, exc.retry_after)


@bp.errorhandler(NotConnectedError)
def _on_not_connected(exc: NotConnectedError) -> tuple[Response, int]:
    code = "gateway_not_answering" if isinstance(exc, GatewayNotAnswering) else \
        "ib_servers_unreachable" if isinstance(exc, ServersUnreachable) else "gateway_unavailable"
    return api_error(503, code, str(exc), retry_after=RETRY_AFTER)


@bp.errorhandler(TimeoutError)
def _on_timeout(exc: TimeoutError) -> tuple[Response, int]:
    return api_error(504, "gateway_timeout", "the gateway did not answer in time")


@bp.errorhandler(IdempotencyConflict)
def _on_idempotency_conflict(exc: IdempotencyConflict) -> tuple[Response, int]:
    return api_error(422, "idempotency_conflict", str(exc), "Idempotency-Key")


@bp.errorhandler(TradingHaltedError)
def _on_halted(exc: TradingHaltedError) -> tuple[Response, int]:
    return api_error(423, "trading_halted", str(exc))


@bp.errorhandler(JournalError)
def _on_journal_error(exc: JournalError) -> tuple[Response, int]:
    return api_error(503, "journal_unavailable", f"order refused, not sent: {exc}")


@bp.errorhandler(HTTPException)
def _on_http_error(exc: HTTPException) -> tuple[Response, int]:
    return api_error(exc.code or 500, exc.name.lower().replace(" ", "_"), exc.description or "")


def services() -> Services:
    """The app's running services."""
    return current_app.extensions["trading"]


def _json_body(source: str | None = None) -> dict[str, Any]:
    """The request's JSON object (UTF-8 application/json, bounded nesting), else 400/415."""
    try:
        return parse_json_object(request.content_type, request.get_data(cache=True))
    except BodyError as exc:
        if source is not None:
            _audit(source, None, None, f"invalid: {exc.message}")
        raise ApiError(exc.status, exc.code, exc.message) from None


@contextmanager
def _long_call(required: bool) -> Iterator[bool]:
    """Hold one of the long-call slots while a call waits for seconds. Without a free slot a
    required one answers 503 (retry); an optional one yields False and the caller does not
    wait. The slots leave threads for the kill switch, /health and /status."""
    slots = services().long_calls
    held = slots.acquire(blocking=False)
    if not held and required:
        raise ApiError(503, "busy", "every long-call slot is taken (open streams and waiting "
                       "calls); retry shortly", retry_after=RETRY_AFTER)
    try:
        yield held
    finally:
        if held:
            slots.release()


def _validate(model: type[BaseModel], body: dict[str, Any]) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        field, message, details = first_error(exc)
        raise ApiError(400, "validation_error", f"{field}: {message}" if field else message,
                       field, details) from None


def _age(stamp: float | None) -> float | None:
    return None if stamp is None else round(time.time() - stamp, 3)


def _as_dict(obj: Any) -> Any:
    return dataclasses.asdict(obj) if obj is not None else None


def _flat_dict(obj: Any) -> dict[str, Any]:
    """A dataclass of plain fields as a dict, without asdict's deep copy (/status is hot)."""
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


# ------------------------------------------------------------------- reads
@bp.get("/status")
@documented(StatusOut, etag=True)
def status() -> Response:
    """Health of both connections, the threads, the account and the queue."""
    svc = services()
    return _conditional(svc.feed.version,
                        lambda: _dumps(status_payload(svc, svc.connector.snapshot())))


def _conditional(version: object, build: Callable[[], str | bytes],
                 mimetype: str = "application/json",
                 headers: dict[str, str] | None = None, shared: str | None = None) -> Response:
    """A GET answer tagged with its data version (a weak ETag: times such as ``now`` and
    ``data_age`` move on without a new version): 304 without a body when the client's
    If-None-Match already names it, else ``build()``.

    A ``shared`` answer (the big ones every poller asks for) is built once per data version
    and second, for everyone, and sent gzip-compressed (also built once) to a client that
    accepts it."""
    etag = _etag(version)
    if _client_has(etag):
        return Response(status=304, headers={"ETag": etag})
    headers = {"ETag": etag, **(headers or {})}
    if shared is None:
        return Response(build(), mimetype=mimetype, headers=headers)
    key = (version, int(time.monotonic() / SHARED_FOR))
    body: bytes = _cached(shared, key, lambda: _as_bytes(build()))
    headers["Vary"] = "Accept-Encoding"
    if len(body) >= COMPRESS_FROM and request.accept_encodings["gzip"]:
        plain = body
        body = _cached(f"{shared}.gz", key, lambda: gzip.compress(plain, GZIP_LEVEL))
        headers["Content-Encoding"] = "gzip"
    return Response(body, mimetype=mimetype, headers=headers)


def _as_bytes(body: str | bytes) -> bytes:
    return body.encode() if isinstance(body, str) else body


def _etag(version: object) -> str:
    boot = current_app.extensions.get("etag_boot")
    if boot is None:  # once per app (setdefault's argument would read urandom every GET)
        boot = current_app.extensions.setdefault("etag_boot", secrets.token_hex(4))
    parts = version if isinstance(version, tuple) else (version,)
    return f'W/"{boot}-{"-".join(str(p) for p in parts)}"'


def _client_has(etag: str) -> bool:
    """If-None-Match (weak comparison) names ``etag``, or is ``*``."""
    header = request.headers.get("If-None-Match")
    if not header:
        return False
    opaque = etag[2:]
    return any(tag.strip() == "*" or tag.strip().removeprefix("W/") == opaque
               for tag in header.split(","))


def status_payload(svc: Services, snap: Snapshot) -> dict[str, Any]:
    """The body of /status (also part of the stream's state events)."""
    orders = svc.handler.state() if svc.handler else None
    account = snap.account
    link = ib_servers(svc)
    healthy = snap.connection.state == "connected" and (orders is None
                                                       or orders.state == "connected")
    return {
        "ok": healthy and link.reachable,
        "ib_servers": link.as_dict(),
        "now": time.time(),
        "simulator": svc.simulator is not None,
        "sim_clock": svc.simulator.clock_label() if svc.simulator else "",
        "gateway": {"host": svc.host, "port": svc.port},
        "connections": {"reader": _flat_dict(snap.connection),
                        "orders": _flat_dict(orders) if orders else {"state": "disabled"}},
        "threads": {"reader": snap.connection.thread_alive,
                    "orders": orders.thread_alive if orders else None},
        "server_version": snap.connection.server_version,
        "account": account.account if account else None,
        "paper": account.paper if account else None,
        "mode": None if account is None else ("paper" if account.paper else "live"),
        "read_only": svc.handler is None,
        "trading_halted": bool(svc.handler and svc.handler.halted),
        "halt_reason": svc.handler.halt_reason if svc.handler else None,
        "queue_depth": svc.handler.queue_depth() if svc.handler else 0,
        "in_flight": svc.handler.in_flight() if svc.handler else 0,
        "data_age": _age(_confirmed(snap, snap.updated_at)),
        "orders_age": _age(_confirmed(snap, snap.orders_updated_at)),
        "streams": svc.feed.open_streams,
        "risk_limits": svc.gate.limits() if svc.gate else None,
    }


def _confirmed(snap: Snapshot, changed_at: float | None) -> float | None:
    """When the reader's data were last confirmed current: the subscriptions push every
    change, so while the connection answers its heartbeat the data are as fresh as that
    heartbeat, however long ago a value last changed."""
    beat = snap.connection.last_heartbeat if snap.connection.state == "connected" else None
    stamps = [t for t in (changed_at, beat) if t is not None]
    if changed_at is None:
        return None  # nothing received yet: no age to show
    return max(stamps)


def state_json(svc: Services) -> str:
    """Everything the dashboard shows, from the snapshots (GET /state and the stream), as
    JSON text: each part is serialised once per data version, whoever asks."""
    snap = svc.connector.snapshot()
    records = _records(svc)
    return _object_json(
        version=_dumps(svc.feed.version),
        status=_dumps(status_payload(svc, snap)),
        account=_account_json(snap),
        positions=_positions_json(snap),
        orders=_state_orders_json(svc, snap, records),
        executions=_executions_json(snap))


def _state_orders_json(svc: Services, snap: Snapshot, records: list[Lifecycle]) -> str:
    """The orders of /state and the stream: every brief row (as /orders serves them, each
    serialised once per change); an order's lifecycle is at its url (/orders/<id>)."""
    key = _orders_key(svc, snap, records)
    return _cached("state-orders", key, lambda: "[" + ",".join(
        r.text.decode() for r in _order_rows(svc, snap, records, key)) + "]")


@bp.get("/state")
@documented(StateOut, etag=True)
def state() -> Response:
    """The whole dashboard state in one answer (the polling fallback of the stream).

    The same JSON as ``state_json``, built once per data version and second (the status's
    clock and ages move on between versions), whoever asks."""
    svc = services()
    version = svc.feed.version

    def build() -> bytes:
        snap = svc.connector.snapshot()
        records = _records(svc)
        rest = _cached("state-rest", version, lambda: ("," + _object_json(
            account=_account_json(snap), positions=_positions_json(snap),
            orders=_state_orders_json(svc, snap, records),
            executions=_executions_json(snap))[1:]).encode())
        return (f'{{"version":{_dumps(version)},'
                f'"status":{_dumps(status_payload(svc, snap))}').encode() + rest

    return _conditional(version, build, shared="state")


@bp.get("/stream")
@documented(str, 503, media="text/event-stream", query=StreamQuery)
def stream() -> Response | tuple[Response, int]:
    """Server-Sent Events: a ``state`` event after every change, ``quotes`` events as the
    watchlist's (and ``watch``'s) prices move, comments while idle."""
    svc = services()
    import screen_api  # the trader's screen (its own blueprint; imports this module)
    extra = screen_api.stream_symbols()  # 400 naming ``watch`` before a slot is taken
    if not svc.long_calls.acquire(blocking=False):
        return api_error(503, "too_many_streams", "the server's long-call slots are all taken; "
                         "poll /api/v1/state instead", retry_after=RETRY_AFTER)
    if not svc.feed.open_stream():
        svc.long_calls.release()
        return api_error(503, "too_many_streams", f"at most {svc.feed.max_streams} live streams; "
                         "poll /api/v1/state instead", retry_after=RETRY_AFTER)
    slot = _StreamSlot(svc, screen_api.stream_watch(extra))  # its quotes, until it closes
    response = Response(stream_with_context(_events(svc, slot)), mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    response.call_on_close(slot.release)  # also when the body never runs (HEAD, errors)
    return response


class _StreamSlot:
    """One taken stream slot, given back exactly once."""

    def __init__(self, svc: Services, on_release: Callable[[], None] | None = None) -> None:
        self._svc = svc
        self._lock = threading.Lock()
        self._held = True
        self._on_release = on_release

    def release(self) -> None:
        with self._lock:
            held, self._held = self._held, False
        if held:
            self._svc.feed.close_stream()
            self._svc.long_calls.release()
            if self._on_release is not None:
                self._on_release()


def _events(svc: Services, slot: _StreamSlot) -> Iterator[str]:
    feed = svc.feed
    try:
        yield "retry: 1000\n\n"
        seen, seen_quotes = -1, -1
        told = time.monotonic()  # when the page last had the state or the status from us
        while not feed.closed:
            wait = max(0.0, told + STREAM_KEEPALIVE - time.monotonic())
            version, quotes = feed.wait_any(seen, seen_quotes, wait)
            if feed.closed:
                break
            if quotes != seen_quotes:  # the screen's quotes: a small frame of their own
                seen_quotes = quotes
                if svc.quotes is not None:
                    yield _cached("stream-quotes", quotes, lambda: _screen_frame(svc))
            if version != seen:
                seen, told = version, time.monotonic()
                # one frame per version, however many dashboards are watching
                yield _cached("stream-frame", version, lambda v=version: (
                    f"id: {v}\nevent: state\ndata: {state_json(svc)}\n\n").encode())
            elif time.monotonic() - told >= STREAM_KEEPALIVE:
                # the status again (its heartbeats and ages), so an idle page shows how fresh
                # its data are, however often quotes move; also finds a vanished browser
                told = time.monotonic()
                yield f"event: pulse\ndata: {_dumps(status_payload(svc, svc.connector.snapshot()))}\n\n"
    finally:
        slot.release()


def _screen_frame(svc: Services) -> bytes:
    import screen_api
    assert svc.quotes is not None
    return screen_api.stream_frame(svc.quotes.snapshot()).encode()


@bp.get("/openapi.json")
@documented(dict, etag=True, public=True)
def openapi_document() -> Response:
    """The OpenAPI document of this API (generated from its routes and models)."""
    from openapi import document
    return _conditional("openapi", lambda: _cached("openapi", 0, lambda: _dumps(
        document(current_app))))


@bp.get("/health")
@documented(HealthOut, 503, etag=True, public=True)
def health() -> Response | tuple[Response, int]:
    """200 when both connections are up, else 503 (for monitors)."""
    svc = services()
    up = svc.connector.connected and (svc.handler is None or svc.handler.connected)
    if not up:
        down = [c.name for c in (svc.connector, svc.handler) if c is not None and not c.connected]
        return jsonify({"ok": False, "reason": f"not connected to the gateway: {', '.join(down)}"}), 503
    link = ib_servers(svc)
    if not link.reachable:
        return jsonify({"ok": False, "reason": link.reason()}), 503
    return _conditional(svc.feed.version, lambda: _dumps({"ok": True}))


def ib_servers(svc: Services) -> LinkState:
    """IB's servers as the gateway tells them: unreachable when either connection was told so
    (the order connection's view first: it decides whether orders can reach IB)."""
    views = [c.link_state() for c in (svc.handler, svc.connector) if c is not None]
    return next((v for v in views if not v.reachable), views[-1] if views else LinkState())


@bp.get("/account")
@documented(AccountOut, 503, etag=True)
def account() -> Response:
    """Account figures and raw values from the snapshot."""
    snap = services().connector.snapshot()
    if snap.account is None:
        raise ApiError(503, "no_data", "no account data yet")
    return _conditional(snap.version, lambda: (
        f'{_account_json(snap)[:-1]},"data_age":{_dumps(_age(snap.updated_at))}}}'))


@bp.get("/positions")
@documented(PositionsOut, etag=True)
def positions() -> Response:
    """Positions with market price, value and P&L."""
    snap = services().connector.snapshot()
    return _conditional(snap.version, lambda: _object_json(
        positions=_positions_json(snap), data_age=_dumps(_age(snap.updated_at))))


def _cached(name: str, version: object, build: Any) -> Any:
    """A value built once per data version (read endpoints are polled hard). Two threads may
    both build it after a change; either result is right."""
    cache = services().read_cache
    entry = cache.get(name)
    if entry is None or entry[0] != version:
        entry = (version, build())
        cache[name] = entry
    return entry[1]


def _json_cached(name: str, version: object, build: Any) -> str:
    """JSON text of ``build()``, serialised once per data version."""
    return _cached(name, version, lambda: _dumps(build()))


def _dumps(value: Any) -> str:
    """JSON text of an answer (times as ISO 8601 UTC, see ``wire``)."""
    return json.dumps(to_wire(value), separators=(",", ":"))


def _json(value: Any) -> Response:
    """A JSON answer (times as ISO 8601 UTC, see ``wire``)."""
    return jsonify(to_wire(value))


def _object_json(**parts: str) -> str:
    """A JSON object from members that are already JSON text."""
    return "{" + ",".join(f'"{name}":{text}' for name, text in parts.items()) + "}"


def _account_json(snap: Snapshot) -> str:
    return _json_cached("account", snap.version,
                        lambda: dataclasses.asdict(snap.account) if snap.account else None)


def _positions_json(snap: Snapshot) -> str:
    return _json_cached("positions", snap.version,
                        lambda: [dataclasses.asdict(p) for p in snap.positions])


def _executions_json(snap: Snapshot) -> str:
    return _json_cached("executions", snap.version,
                        lambda: [dataclasses.asdict(e) for e in snap.executions])


def _orders_key(svc: Services, snap: Snapshot, records: list[Lifecycle]) -> tuple:
    """What the merged order list depends on: both sides' versions."""
    return (snap.version, svc.handler.version if svc.handler else 0, len(records))


@bp.get("/executions")
@documented(ExecutionsOut, etag=True)
def executions() -> Response:
    """Every client's executions with commissions."""
    snap = services().connector.snapshot()
    return _conditional(snap.version, lambda: _object_json(
        executions=_executions_json(snap), data_age=_dumps(_age(snap.orders_updated_at))))


@bp.get("/orders")
@documented(OrdersOut, etag=True, query=OrdersQuery)
def orders() -> Response:
    """A page of every client's orders, merged with our lifecycle records.

    Newest broker orders first, then ours not at the broker (yet). ``limit`` rows (default
    100, at most 500); ``next_cursor`` (null on the last page) is the ``cursor`` of the next
    page. ``symbol``, ``status`` (all, open, completed) and ``since`` filter the list."""
    svc = services()
    query = _validate(OrdersQuery, request.args.to_dict())
    after = _decode_cursor(query.cursor)
    snap = svc.connector.snapshot()
    records = _records(svc)
    key = _orders_key(svc, snap, records)

    first_page = (query.cursor, query.symbol, query.since, query.limit) == (None, None, None,
                                                                          ORDERS_PAGE)

    def build() -> bytes:
        if first_page:
            # the page every poller asks for: serialised once per change
            page = _cached(f"orders-page-{query.status}", key,
                           lambda: _orders_page(svc, snap, records, key, query, after))
        else:
            page = _orders_page(svc, snap, records, key, query, after)
        age = _dumps(_age(snap.orders_updated_at)).encode()
        return b'{"orders":' + page[0] + b',"data_age":' + age + b',"next_cursor":' + \
            page[1] + b"}"

    return _conditional(key, build, shared=f"orders-{query.status}" if first_page else None)


class _Row(NamedTuple):
    """One merged order with its JSON text and its last activity (epoch s; None: unknown)."""

    data: dict[str, Any]
    text: bytes
    at: float | None


def _order_rows(svc: Services, snap: Snapshot, records: list[Lifecycle],
                key: tuple) -> list[_Row]:
    """The merged order list, each row serialised once per change."""
    def build() -> list[_Row]:
        by_id = {r.id: r for r in records}
        fills: dict[int, float] = {}
        for ex in snap.executions:
            at = _epoch(ex.time)
            if at is not None and at > fills.get(ex.perm_id, 0.0):
                fills[ex.perm_id] = at
        rows = []
        for row in merged_orders(snap, records):
            record = by_id.get(row["id"]) if row["ours"] else None
            at = (record.updated_at or record.created_at) if record else fills.get(row["perm_id"])
            rows.append(_Row(row, _dumps(row).encode(), at))
        return rows
    return _cached("orders-rows", key, build)


def _epoch(stamp: str) -> float | None:
    try:
        return datetime.fromisoformat(stamp).timestamp() if stamp else None
    except ValueError:
        return None


def _orders_page(svc: Services, snap: Snapshot, records: list[Lifecycle], key: tuple,
                 query: OrdersQuery, after: tuple[str, int] | None) -> tuple[bytes, bytes]:
    """(JSON array of one page of rows, JSON of the next page's cursor)."""
    since = query.since_epoch()
    symbol = query.symbol.upper() if query.symbol else None
    rows = [r for r in _order_rows(svc, snap, records, key)
            if (query.status == "all" or r.data["open"] == (query.status == "open"))
            and (symbol is None or str(r.data["symbol"]).upper() == symbol)
            and (since is None or (r.at is not None and r.at >= since))]
    start = _cursor_start(rows, after)
    page = rows[start:start + query.limit]
    end = start + len(page)
    cursor = _dumps(_cursor(page[-1].data["id"], end) if page and end < len(rows) else None)
    return b"[" + b",".join(r.text for r in page) + b"]", cursor.encode()


def _cursor(last_id: str, offset: int) -> str:
    """An opaque cursor: the last row given and how many rows came before the next page."""
    raw = json.dumps([last_id, offset], separators=(",", ":")).encode()
    return urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> tuple[str, int] | None:
    """(last row id, offset) of a cursor; 400 naming ``cursor`` if it is not one of ours."""
    if cursor is None:
        return None
    try:
        last_id, offset = json.loads(urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError):
        last_id = offset = None
    if not isinstance(last_id, str) or not isinstance(offset, int) or offset < 0:
        raise ApiError(400, "validation_error", "cursor: not a next_cursor of this API",
                       "cursor")
    return last_id, offset


def _cursor_start(rows: list[_Row], after: tuple[str, int] | None) -> int:
    """Where the page after ``after`` starts: after its last row, or at its offset if that
    row has left the list."""
    if after is None:
        return 0
    last_id, offset = after
    for index, row in enumerate(rows):
        if row.data["id"] == last_id:
            return index + 1
    return min(offset, len(rows))


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
        for row in snap.executions:
            writer.writerow(dataclasses.asdict(row))
        return out.getvalue()

    return _conditional(snap.version, build, "text/csv",
                        {"Content-Disposition": "attachment; filename=fills.csv"})


@bp.get("/orders/<order_id>")
@documented(OrderOut, 404, etag=True)
def order(order_id: str) -> Response:
    """One order: our lifecycle record (if ours) and the broker's view."""
    svc = services()
    snap = svc.connector.snapshot()
    record = svc.handler.get(order_id) if svc.handler else None
    row = _find_row(snap, order_id, record)
    if record is None and row is None:
        raise ApiError(404, "not_found", f"no order {order_id!r}")
    return _conditional(_orders_key(svc, snap, _records(svc)),
                        lambda: _dumps(_order_json(row, record)))


@bp.get("/quote")
@documented(QuoteOut, 404, 422, 503, 504, query=QuoteQuery)
def quote() -> Response:
    """A snapshot quote (one broker round trip on the reader's loop).

    No ETag: every call asks the broker for a fresh quote."""
    query = _validate(QuoteQuery, request.args.to_dict())
    symbol = query.symbol.upper()
    checked = _validate(OrderIn, {"symbol": symbol, "action": "BUY", "quantity": 1,
                                  "sec_type": query.sec_type})
    sec_type = checked.sec_type  # without sec_type: CASH for EUR.USD, else STK
    try:
        with _long_call(required=True):
            q = services().connector.quote(symbol, sec_type)
    except LookupError as exc:
        raise _unknown_symbol(404, exc, symbol, sec_type) from None
    return _json(dataclasses.asdict(q))


@bp.get("/bars")
@documented(BarsOut, 404, 422, 429, 502, 503, 504, query=BarsQuery)
def bars() -> Response:
    """Historical bars (one broker round trip, or the cache: identical requests within 20 s
    and more are answered from it; requests are paced below IB's limits, 429 past them)."""
    query = _validate(BarsQuery, request.args.to_dict())
    symbol = query.symbol.upper()
    sec_type = _validate(OrderIn, {"symbol": symbol, "action": "BUY", "quantity": 1,
                                   "sec_type": query.sec_type}).sec_type
    key = BarsKey(symbol, sec_type, query.duration, query.bar_size, query.what)
    try:
        with _long_call(required=True):
            answer, cached = services().connector.bars(key)
    except LookupError as exc:
        raise _unknown_symbol(404, exc, symbol, sec_type) from None
    except HistoryBudgetSpent as exc:
        raise ApiError(429, "history_paced", str(exc), retry_after=math.ceil(exc.retry_after)) \
            from None
    except HistoryRefused as exc:
        raise ApiError(502, "history_refused", str(exc)) from None
    offset = services().connector.gateway_clock_offset
    return _json({"symbol": symbol, "duration": key.duration, "bar_size": key.bar_size,
                    "what": key.what_to_show, "cached": cached, "fetched_at": answer.fetched_at,
                    "gateway_time": None if offset is None else time.time() + offset,
                    "bars": [dataclasses.asdict(bar) for bar in answer.bars]})


# ------------------------------------------------------------------ writes
@bp.post("/orders")
@documented(OrderAccepted, 403, 404, 409, 422, 423, 503, ok=202, body=OrderIn,
            headers=(IDEMPOTENCY_HEADER, WAIT_PARAM),
            extra_ok={200: "the verdict (?wait=1) or an idempotent replay"})
def place_order() -> tuple[Response, int]:
    """Validate, risk-check, journal and queue an order: 202 with its id and URL.

    ``?wait=1`` waits for the verdict (200). A repeated Idempotency-Key (or
    client_order_id) answers 200 with the original order and places nothing.
    """
    source = "dashboard" if g.get("auth") == "browser" else "api"
    body = _json_body(source)
    order_in = _validated_order(OrderIn, body, source)
    if not order_in.accept_immediate_trigger:
        _refuse_immediate_trigger(order_in.intent(services().settings.account), source, body)
    record, created = submit_order(order_in, source, _idempotency_key(order_in))
    if request.args.get("wait", "").lower() in ("1", "true", "yes"):
        s = services().settings
        timeout = s.settle_first + s.settle_validation + s.settle_final + s.monitor_timeout
        with _long_call(required=False) as may_wait:  # busy: answer now, the client polls
            if may_wait:
                record = _handler().wait(record.id, timeout + WAIT_SLACK)
        return _order_response(record, created, 200 if record.verdict else 202)
    return _order_response(record, created, 202 if created else 200)


def _immediate_trigger(intent: OrderIntent) -> str | None:
    """Why this stop would trigger at once (see ``RiskGate.immediate_trigger``), or None
    (also when no quote can say: the risk gate then answers for the order)."""
    gate = services().gate
    if gate is None:
        return None
    try:
        return gate.immediate_trigger(intent)
    except LookupError:
        return None  # unknown symbol: the order's own checks say so


def _refuse_immediate_trigger(intent: OrderIntent, source: str | None,
                              body: dict[str, Any] | None) -> None:
    """422 for a stop the market has already passed, unless the request acknowledged it."""
    reason = _immediate_trigger(intent)
    if reason is None:
        return
    message = f"{reason}; send accept_immediate_trigger: true to place it anyway"
    if source is not None:
        _audit(source, body, None, "refused: stop_triggers_immediately")
    raise ApiError(422, "stop_triggers_immediately", message, "stop_price")


def _order_response(record: Lifecycle, created: bool, status: int) -> tuple[Response, int]:
    body = {"id": record.id, "url": url_for("api.order", order_id=record.id),
            "order": _as_dict(record), "replayed": not created}
    response = _json(body)
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return response, 200 if not created else status


def _validated_order(model: type, body: dict[str, Any], source: str) -> Any:
    try:
        return _validate(model, body)
    except ApiError as exc:
        _audit(source, body, None, f"invalid: {exc.message}")
        raise


def submit_order(order_in: OrderIn, source: str, key: str | None,
                 request_hash: str | None = None,
                 alert: dict[str, Any] | None = None) -> tuple[Lifecycle, bool]:
    """The one way an order enters: risk gate, journal, queue — and an audit record.
    ``request_hash`` (default: the order's fingerprint) is what a replay must repeat;
    ``alert`` (the webhook's body, secrets removed) is audited with the order."""
    svc = services()
    outcome, decision, record = "error", None, None
    try:
        link = ib_servers(svc)  # either connection told of 1100: no order can reach IB
        if not link.reachable:
            raise ServersUnreachable(link.reason())
        record, created = _handler().submit(
            order_in.intent(svc.settings.account), source=source, idem_key=key,
            request_hash=request_hash or order_in.fingerprint(), remote=request.remote_addr,
            gate=svc.gate, prepare=lambda intent: resolved_contract(svc, order_in, intent))
        outcome = "queued" if created else "replayed"
        decision = _journaled_decision(svc, record.id)
        return record, created
    except RiskRejected as exc:
        decision, outcome = exc.decision.as_dict(), f"risk_rejected: {exc.decision.rule}"
        raise ApiError(422, "risk_rejected", exc.decision.message,
                       RULE_FIELDS.get(exc.decision.rule or ""), [decision]) from None
    except ApiError as exc:
        outcome = f"invalid: {exc.message}"
        raise
    except LookupError as exc:
        outcome = "unknown_symbol"
        raise _unknown_symbol(422, exc, order_in.symbol, order_in.sec_type) from None
    except Exception as exc:
        outcome = f"refused: {type(exc).__name__}: {exc}"
        raise
    finally:  # the audit never raises: an order already queued must not turn into a 500
        audited = order_in.model_dump() if alert is None else {
            "alert": alert, "order": order_in.model_dump()}
        _audit(source, audited, decision, outcome, record.id if record else None)


def resolved_contract(svc: Services, order_in: OrderIn, intent: OrderIntent) -> OrderIntent:
    """A derivative's intent completed from the broker's contract details (conId,
    multiplier, IB's fields), its prices checked against the market rule; stocks and FX as
    they are. 400 naming the field for an unknown or ambiguous contract or an off-tick price."""
    spec = order_in.contract_spec()
    if spec is None:
        return intent
    if not spec.expiry and not spec.local_symbol:  # IB would list every expiry: thousands
        raise ApiError(400, "ambiguous_contract", f"every {spec.symbol} {spec.sec_type} expiry "
                       "matches: give expiry (or local_symbol)", "expiry")
    found = _broker_contract(svc, spec)
    _check_increments(found, {name: getattr(intent, name) for name in PRICE_FIELDS})
    return dataclasses.replace(
        intent, symbol=found.symbol, con_id=found.con_id, multiplier=found.multiplier,
        expiry=found.expiry, strike=found.strike or None, right=found.right,
        exchange=found.exchange, trading_class=found.trading_class,
        local_symbol=found.local_symbol)


def _broker_contract(svc: Services, spec: ContractSpec) -> Resolved:
    """The one contract ``spec`` names at the broker, or a 400 naming the field (503 when the
    gateway does not answer)."""
    try:
        return svc.connector.contract(spec)
    except ContractError as exc:
        raise ApiError(400, exc.code, exc.message, exc.field) from None
    except TimeoutError as exc:
        raise GatewayNotAnswering(f"the gateway is not answering (no contract details for "
                                  f"{spec.symbol}: {exc}); nothing was sent, retry shortly") \
            from None


def _check_increments(found: Resolved, prices: dict[str, float | None]) -> None:
    """400 naming the first price that is off the contract's market rule."""
    for name, price in prices.items():
        if price is not None and off_tick(price, tick := found.tick_at(price)):
            raise ApiError(400, "validation_error", f"{name}: {price:g} is not a multiple of "
                           f"{found.description}'s price increment {tick:g} at that price "
                           "(the broker's market rule)", name)


def _modified_increments(svc: Services, order_id: str, change: ModifyIn) -> None:
    """A derivative's new prices, checked against its market rule (stocks: the schema did)."""
    record = svc.handler.get(order_id) if svc.handler else None
    if record is None or record.intent.sec_type not in DERIVATIVES or (
            change.limit_price is None and change.stop_price is None):
        return
    i = record.intent
    found = _broker_contract(svc, ContractSpec(
        symbol=i.symbol, sec_type=i.sec_type, currency=i.currency, expiry=i.expiry,
        strike=i.strike, right=i.right, exchange=i.exchange, trading_class=i.trading_class,
        local_symbol=i.local_symbol))
    _check_increments(found, {"limit_price": change.limit_price,
                              "stop_price": change.stop_price})


def _unknown_symbol(status: int, exc: Exception, symbol: str, sec_type: str) -> ApiError:
    """An unknown symbol; one that looks like an FX pair asked as a stock says so."""
    if sec_type == "STK" and looks_like_fx(symbol):
        return ApiError(status, "unknown_symbol", f"{exc}; {symbol} looks like an FX pair: "
                        "ask with sec_type CASH (Asset: FX pair)", "sec_type",
                        [{"field": "sec_type", "message": "looks like an FX pair",
                          "suggested": "CASH"}])
    return ApiError(status, "unknown_symbol", str(exc), "symbol")


def _journaled_decision(svc: Services, order_id: str) -> Any:
    """The risk decision journaled with an order (None if it cannot be read)."""
    try:
        entry = svc.journal.get(order_id) if svc.journal else None
    except Exception:  # log and carry on: the order is queued; only the audit loses detail
        current_app.logger.exception("risk decision of %s not readable", order_id)
        return None
    return entry.risk if entry else None


def _audit(source: str, body: Any, decision: Any, outcome: str,
           order_id: str | None = None) -> None:
    g.audited = True  # security's after-request audit of refusals has nothing to add
    journal = services().journal
    if journal is not None:
        journal.audit(source, request.remote_addr, body, decision, outcome, order_id)


def _handler() -> OrderHandler:
    handler = services().handler
    if handler is None:
        raise ApiError(403, "read_only", "READ_ONLY is set: this dashboard places no orders")
    return handler


def _records(svc: Services) -> list[Lifecycle]:
    return svc.handler.records() if svc.handler else []


def _idempotency_key(order_in: OrderIn) -> str | None:
    """The request's idempotency key: the header, else the client order id field."""
    header = request.headers.get("Idempotency-Key")
    if header is not None:
        header = header.strip()
        if not IDEMPOTENCY_KEY.fullmatch(header):
            raise ApiError(400, "validation_error", "Idempotency-Key: 1 to 128 characters of "
                           "letters, digits and ._:-", "Idempotency-Key")
        if order_in.client_order_id and order_in.client_order_id != header:
            raise ApiError(400, "validation_error", "client_order_id: differs from the "
                           "Idempotency-Key header", "client_order_id")
        return header
    return order_in.client_order_id


@bp.post("/webhook")
@bp.post("/webhook/<token>")
@documented(webhook.AlertOut, 401, 403, 404, 409, 422, 423, 429, 503, ok=202,
            body=webhook.AlertIn, headers=WEBHOOK_HEADERS, public=True,
            extra_ok={200: "an idempotent replay, or the target position is already held"})
def webhook_alert(token: str | None = None) -> tuple[Response, int]:
    """Alerts (TradingView and others), authenticated by WEBHOOK_SECRET.

    The secret goes in the body (``secret`` or ``passphrase``: TradingView sets no headers),
    in the URL (``/webhook/<secret>``), in ``X-Webhook-Secret`` or as ``X-Signature:
    sha256=<hex HMAC of the body>``. The body is JSON, sent as application/json or
    text/plain. An order (``action``, ``quantity``/``contracts``) or a target position
    (``market_position`` long/flat/short, ``market_position_size``). Deduplicated by
    ``alert_id`` (else by the body and its ``time``), rate-limited, and sent through the
    same risk gate and queue as every other order.
    """
    svc = services()
    secret = svc.settings.webhook_secret
    if not secret:
        raise ApiError(404, "not_found", "the webhook is disabled (set WEBHOOK_SECRET)")
    if not webhook.source_allowed(request.remote_addr, svc.settings.webhook_allowed_ips):
        _audit("webhook", None, None, "refused: source not in WEBHOOK_ALLOWED_IPS")
        raise ApiError(403, "forbidden_source", f"{request.remote_addr} is not in "
                       "WEBHOOK_ALLOWED_IPS")
    refused = auth.refused_attempt("webhook")
    if refused is not None:
        return refused
    body, given = _webhook_body(token)
    if not webhook.authentic(secret, request.get_data(cache=True), request.headers, token,
                             given):
        auth.secret_failed("webhook")
        raise ApiError(401, "unauthorized", "bad or missing webhook secret (body 'secret', "
                       "URL /webhook/<secret>, X-Webhook-Secret or X-Signature)")
    if not svc.webhook_limiter.allow():
        _audit("webhook", None, None, "rate_limited")
        raise ApiError(429, "rate_limited", f"more than {svc.settings.webhook_rate_per_minute} "
                       "webhook calls in 60 s")
    alert = _validated_order(webhook.AlertIn, body, "webhook")
    return _place_alert(svc, alert, body)


def _webhook_body(token: str | None) -> tuple[dict[str, Any], list[object]]:
    """The alert without its secrets. A body that is not a JSON object is answered (400/415)
    once a header or URL secret is right, or at once when the secret could only be in it."""
    try:
        return webhook.read(request.content_type, request.get_data(cache=True))
    except BodyError as exc:
        if webhook.header_secret_given(request.headers, token) and not webhook.authentic(
                services().settings.webhook_secret or "", request.get_data(cache=True),
                request.headers, token, ()):
            auth.secret_failed("webhook")
            raise ApiError(401, "unauthorized", "bad webhook secret") from None
        _audit("webhook", None, None, f"invalid: {exc.message}")
        raise ApiError(exc.status, exc.code, exc.message) from None


def _place_alert(svc: Services, alert: webhook.AlertIn,
                 body: dict[str, Any]) -> tuple[Response, int]:
    key = webhook.dedup_key(alert, body)
    existing = svc.journal.find_by_key(key) if svc.journal else None
    if existing is not None and webhook.is_target(alert):
        fields = _replayed_fields(existing.record)  # its first order, whatever is held now
    else:
        held = _held_position(svc, alert, body) if webhook.is_target(alert) else 0.0
        try:
            planned = webhook.plan(alert, held)
        except webhook.AlertError as exc:
            _audit("webhook", body, None, f"invalid: {exc.message}")
            raise ApiError(400, "validation_error", exc.message, exc.field) from None
        if planned is None:
            message = f"the {alert.symbol} position is already {held:g}: nothing to do"
            _audit("webhook", body, None, f"nothing to do: position {held:g}")
            return _json({"id": None, "url": None, "order": None, "replayed": False,
                            "message": message}), 200
        fields = planned
    order_in = _validated_order(OrderIn, fields, "webhook")
    record, created = submit_order(order_in, "webhook", key, webhook.fingerprint(body), body)
    return _order_response(record, created, 202)


def _held_position(svc: Services, alert: webhook.AlertIn, body: dict[str, Any]) -> float:
    """The position the reader holds now (503 while it is not connected: it may be stale;
    409 while one of our orders for the symbol is unfinished: it will still move it)."""
    _handler()  # READ_ONLY: 403 before anything is looked up
    sec_type = alert.sec_type or "STK"
    unfinished = [r.id for r in _records(svc) if r.verdict not in FINAL_VERDICTS
                  and r.intent.sec_type == sec_type
                  and r.intent.symbol.replace(".", "") == alert.symbol.replace(".", "")]
    if unfinished:
        _audit("webhook", body, None, f"refused: order in flight {', '.join(unfinished)}")
        raise ApiError(409, "order_in_flight", f"{alert.symbol}: order {', '.join(unfinished)} "
                       "is not finished; a target position is ordered once the orders that "
                       "move it are filled or cancelled")
    snap = svc.connector.snapshot()
    if snap.connection.state != "connected":
        raise ApiError(503, "gateway_unavailable", "positions unknown while the reader is "
                       f"{snap.connection.state}; a target-position alert needs them",
                       retry_after=RETRY_AFTER)
    return webhook.position_of(snap.positions, alert.symbol, alert.sec_type or "STK",
                               svc.settings.account)


def _replayed_fields(record: Lifecycle) -> dict[str, Any]:
    """The order fields of a journaled order (what a replayed target alert reports)."""
    intent = dataclasses.asdict(record.intent)
    unused = set(DERIVATIVE_FIELDS) - set(CONTRACT_FIELDS.get(intent["sec_type"], ()))
    fields = {name: intent[name] for name in OrderIn.model_fields
              if intent.get(name) not in (None, "") and name not in unused}
    return {**fields, "quantity": _whole(intent["quantity"])}


def _whole(quantity: float) -> float | int:
    return int(quantity) if float(quantity).is_integer() else quantity


@bp.get("/kill-switch")
@documented(KillSwitchOut, 403, etag=True)
def kill_switch_state() -> Response:
    """Whether new orders are halted."""
    handler = _handler()
    return _conditional(services().feed.version, lambda: _dumps(
        {"engaged": handler.halted, "reason": handler.halt_reason}))


@bp.post("/kill-switch")
@documented(KillSwitchResult, 403, 503, body=KillSwitchIn)
def kill_switch() -> tuple[Response, int]:
    """Engage (halt new orders, persisted; cancel every working order and confirm it from
    the broker) or release the kill switch."""
    change = _validate(KillSwitchIn, _json_body())
    svc = services()
    if not change.engaged:
        _handler().release_kill_switch()
        return jsonify({"engaged": False}), 200
    reason = change.reason or "engaged from the API"
    started = time.time()
    _handler().engage_kill_switch(reason)  # halted from here on, whatever follows
    with _long_call(required=False) as may_wait:  # busy: answer now, unconfirmed
        fresh, still_open = _await_no_open_orders(svc, started, KILL_SWITCH_CONFIRM if may_wait
                                                  else 0.0)
    return _json({"engaged": True, "reason": reason,
                    "cancel_confirmed": fresh and not still_open, "broker_view_fresh": fresh,
                    "still_open": [dataclasses.asdict(r) for r in still_open]}), 200


def _await_no_open_orders(svc: Services, since: float,
                          timeout: float) -> tuple[bool, list[OrderRow]]:
    """Wait until a broker refresh newer than ``since`` shows no open order. Returns
    (whether the broker view is newer than ``since``, the orders it still shows open)."""
    deadline = time.monotonic() + timeout
    while True:
        svc.connector.request_refresh()
        snap = svc.connector.snapshot()
        fresh = (snap.orders_updated_at or 0) > since
        still_open = [o for o in snap.orders if o.open]
        if (fresh and not still_open) or time.monotonic() > deadline:
            return fresh, still_open
        svc.feed.wait(svc.feed.version, 0.2)


@bp.post("/orders/preview")
@documented(PreviewOut, 403, 422, 503, 504, body=OrderIn)
def preview_order() -> Response:
    """What-if: the risk gate's verdict and the broker's margin and commission preview of an
    order; places nothing.

    An order the risk gate would refuse answers 422 ``risk_rejected`` (rule and numbers in
    ``details``), as placing it would. ``immediate_trigger`` says why a stop would trigger the
    moment it arrives (placing it then needs ``accept_immediate_trigger``)."""
    order_in = _validate(OrderIn, _json_body())
    svc = services()
    intent = order_in.intent(svc.settings.account)
    handler = _handler()
    try:
        with _long_call(required=True):
            intent = resolved_contract(svc, order_in, intent)
            verdict = svc.gate.evaluate(intent) if svc.gate else None
            if verdict is not None and not verdict.accepted:
                raise ApiError(422, "risk_rejected", verdict.message,
                               RULE_FIELDS.get(verdict.rule or ""), [verdict.as_dict()])
            answer = handler.preview(intent)
    except LookupError as exc:
        raise _unknown_symbol(422, exc, order_in.symbol, order_in.sec_type) from None
    return _json({**dataclasses.asdict(answer),
                  "risk": verdict.as_dict() if verdict else None,
                  "immediate_trigger": _immediate_trigger(intent)})


@bp.post("/orders/cancel-all")
@documented(CancelAllOut, 403, 503, ok=202)
def cancel_all() -> tuple[Response, int]:
    """Global cancel: every working order of every client."""
    working = _handler().cancel_all()
    return jsonify({"cancel_requested": True, "ours_working": working}), 202


@bp.post("/orders/<order_id>/cancel")
@documented(OrderActionOut, 403, 404, 409, 503, ok=202)
def cancel_order(order_id: str) -> tuple[Response, int]:
    """Queue a cancel of one of our orders."""
    return _order_action(lambda h: h.cancel(order_id), order_id)


@bp.post("/orders/<order_id>/modify")
@documented(OrderActionOut, 403, 404, 409, 422, 503, ok=202, body=ModifyIn)
def modify_order(order_id: str) -> tuple[Response, int]:
    """Queue a change of quantity and/or prices of one of our working orders.

    The changed order passes the checks of a new one before anything is sent: the schema
    (400 naming the field: ranges, price ticks, a bracket's sides), a stop the market has
    passed (422 unless ``accept_immediate_trigger``), the risk gate's per-order rules and the
    live-trading guard (422)."""
    change = _validate(ModifyIn, _json_body())
    handler = _handler()
    record = handler.get(order_id)
    if record is not None:
        changed = _validate(OrderIn, _modified_fields(record, change))
        if change.stop_price is not None and not change.accept_immediate_trigger:
            _refuse_immediate_trigger(changed.intent(record.intent.account), None, None)
    _modified_increments(services(), order_id, change)
    return _order_action(lambda h: h.modify(
        order_id, quantity=None if change.quantity is None else float(change.quantity),
        limit_price=change.limit_price, stop_price=change.stop_price,
        gate=services().gate), order_id)


def _modified_fields(record: Lifecycle, change: ModifyIn) -> dict[str, Any]:
    """The fields of a new order equal to ``record``'s with ``change`` applied."""
    intent = dataclasses.asdict(record.intent)
    takes = CONTRACT_FIELDS.get(intent["sec_type"], ())
    fields = {name: intent[name] for name in OrderIn.model_fields
              if intent.get(name) not in (None, "")
              and (name not in DERIVATIVE_FIELDS or name in takes or name == "market_order_ack")}
    fields["quantity"] = _whole(intent["quantity"])
    for name in ("quantity", "limit_price", "stop_price"):
        value = getattr(change, name)
        if value is not None:
            fields[name] = value
    return fields


def _order_action(action: Any, order_id: str) -> tuple[Response, int]:
    try:
        record = action(_handler())
    except UnknownOrderError:
        raise ApiError(404, "not_found", f"no order {order_id!r} placed by this app (orders of "
                       "other clients can only be cancelled by them, or by a global cancel)"
                       ) from None
    except OrderStateError as exc:
        raise ApiError(409, "order_state", str(exc)) from None
    except RiskRejected as exc:
        raise ApiError(422, "risk_rejected", exc.decision.message,
                       RULE_FIELDS.get(exc.decision.rule or ""), [exc.decision.as_dict()]) from None
    return _json({"id": record.id, "url": url_for("api.order", order_id=record.id),
                  "order": _as_dict(record)}), 202


# ----------------------------------------------------------------- merging
def merged_orders(snap: Snapshot, records: list[Lifecycle]) -> list[dict[str, Any]]:
    """Broker rows joined with our records, brief (cached until either side changes)."""
    svc = services()
    return _cached("orders-brief", _orders_key(svc, snap, records),
                   lambda: _merge(snap, records))


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
        if row.order_ref == order_id or str(row.perm_id) == order_id or (
                record is not None and record.perm_id and row.perm_id == record.perm_id):
            return row
    return None


def _order_json(row: OrderRow | None, record: Lifecycle | None,
                brief: bool = False) -> dict[str, Any]:
    """One order for the API: ours from its lifecycle record (the reader's row fills gaps),
    another client's from the reader's row (``orders.view``, the one merge rule)."""
    out = order_view(row, record, brief)
    out["url"] = url_for("api.order", order_id=out["id"]) if out.get("id") else None
    return out

