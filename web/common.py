"""The API blueprint (``api`` under /api/v1), its one JSON error shape and the helpers every view
uses: the request body, validation, long-call slots, conditional and cached answers.

Every error is built by ``api_error``:
``{"error": {"status": 400, "code": "validation_error", "message": ..., "field": ...}}``.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

from flask import (
    Blueprint,
    Response,
    current_app,
    g,
    jsonify,
    request,
)
from pydantic import BaseModel
from werkzeug.exceptions import HTTPException

import auth
from bodies import BodyError, parse_json_object
from ib_connection import NotConnectedError, ServersUnreachable
from ib_link import LinkState
from journal import JournalError
from order_handler import (
    IdempotencyConflict,
    Lifecycle,
    OrderHandler,
    Reconciling,
    TradingHaltedError,
)
from read_cache import ReadCache
from schemas import ValidationError, first_error, looks_like_fx
from services import GatewayNotAnswering, Services
from wire import to_wire

bp = Blueprint("api", __name__, url_prefix="/api/v1")
RETRY_AFTER = 1  # seconds a client waits before retrying a 503
SHARED_FOR = 1.0  # seconds a shared answer (/state, the first page of /orders) is reused
COMPRESS_FROM = 8192  # bytes: smaller answers are sent as they are
GZIP_LEVEL = 6


class ApiError(Exception):
    """An error answered with the API's one JSON error shape."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        details: list[dict] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.field, self.details, self.retry_after = field, details, retry_after


def api_error(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    details: list[dict] | None = None,
    retry_after: int | None = None,
) -> tuple[Response, int]:
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


def _on_api_error(exc: ApiError) -> tuple[Response, int]:
    return api_error(exc.status, exc.code, exc.message, exc.field, exc.details, exc.retry_after)


def _on_not_connected(exc: NotConnectedError) -> tuple[Response, int]:
    code = (
        "gateway_not_answering"
        if isinstance(exc, GatewayNotAnswering)
        else "ib_servers_unreachable"
        if isinstance(exc, ServersUnreachable)
        else "reconciling"
        if isinstance(exc, Reconciling)
        else "gateway_unavailable"
    )
    return api_error(503, code, str(exc), retry_after=RETRY_AFTER)


def _on_connection_lost(exc: ConnectionError) -> tuple[Response, int]:
    """The gateway's socket closed while a read waited on it (ib_async fails every pending
    request with "Socket disconnect"): the app reconnects, the caller retries."""
    return api_error(
        503,
        "gateway_disconnected",
        f"the gateway connection closed before it answered ({exc}); retry shortly",
        retry_after=RETRY_AFTER,
    )


def _on_timeout(exc: TimeoutError) -> tuple[Response, int]:
    return api_error(504, "gateway_timeout", "the gateway did not answer in time")


def answer_gateway_errors(api_bp: Blueprint) -> None:
    """Have ``api_bp`` (this module's blueprint, and each API blueprint of its own) answer the
    API's errors and the gateway's failures alike: a 400-class ApiError, 503 when the gateway
    is down, not answering or dropped the connection, 504 when it timed out."""
    for exc, handler in (
        (ApiError, _on_api_error),
        (NotConnectedError, _on_not_connected),
        (ConnectionError, _on_connection_lost),
        (TimeoutError, _on_timeout),
    ):
        api_bp.register_error_handler(exc, handler)


answer_gateway_errors(bp)


@bp.errorhandler(IdempotencyConflict)
def _on_idempotency_conflict(exc: IdempotencyConflict) -> tuple[Response, int]:
    return api_error(422, "idempotency_conflict", str(exc), exc.field)


@bp.errorhandler(TradingHaltedError)
def _on_halted(exc: TradingHaltedError) -> tuple[Response, int]:
    return api_error(423, "trading_halted", str(exc))


@bp.errorhandler(JournalError)
def _on_journal_error(exc: JournalError) -> tuple[Response, int]:
    return api_error(503, "journal_unavailable", f"order refused, not sent: {exc}")


@bp.errorhandler(HTTPException)
def _on_http_error(exc: HTTPException) -> tuple[Response, int]:
    """werkzeug's own errors (404, 405, 413 ...) in the one shape, with their headers (a 405's
    Allow)."""
    code = exc.name.lower().replace(" ", "_")
    response, status = api_error(exc.code or 500, code, exc.description or exc.name)
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response, status


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
        raise ApiError(
            503,
            "busy",
            "every long-call slot is taken (open streams and waiting calls); retry shortly",
            retry_after=RETRY_AFTER,
        )
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
        raise ApiError(
            400, "validation_error", f"{field}: {message}" if field else message, field, details
        ) from None


def _query(model: type[BaseModel]) -> Any:
    """The request's query string, validated; a parameter given twice is a 400 naming it (to
    take one of them would answer for a filter the client did not ask for)."""
    args = request.args
    repeated = [name for name in args if len(args.getlist(name)) > 1]
    if repeated:
        name = repeated[0]
        raise ApiError(400, "validation_error", f"{name}: given more than once; give it once", name)
    return _validate(model, args.to_dict())


def _age(stamp: float | None) -> float | None:
    return None if stamp is None else round(time.time() - stamp, 3)


def _as_dict(obj: Any) -> Any:
    return dataclasses.asdict(obj) if obj is not None else None


def _flat_dict(obj: Any) -> dict[str, Any]:
    """A dataclass of plain fields as a dict, without asdict's deep copy (/status is hot)."""
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


def _conditional(
    version: object,
    build: Callable[[], str | bytes],
    mimetype: str = "application/json",
    headers: dict[str, str] | None = None,
    shared: str | None = None,
    reader_data: bool = True,
) -> Response:
    """A GET answer tagged with its data version (a weak ETag: times such as ``now`` and
    ``data_age`` move on without a new version): 304 without a body when the client's
    If-None-Match already names it, else ``build()``.

    An answer from the reader's data (``reader_data``) gets no 304 while the reader is not
    keeping them current (disconnected, or its gateway has lost IB's servers): nothing says
    so in a body such as /positions' but its ``data_age``, which a poller's kept copy would
    otherwise show frozen at the moment it was fetched.

    A ``shared`` answer (the big ones every poller asks for) is built once per data version
    and second, for everyone, and sent gzip-compressed (also built once) to a client that
    accepts it."""
    etag = _etag(version)
    if _client_has(etag) and (not reader_data or _reader_current()):
        return Response(status=304, headers={"ETag": etag})
    headers = {"ETag": etag, **(headers or {})}
    if shared is None:
        return Response(build(), mimetype=mimetype, headers=headers)
    key = (version, int(time.monotonic() / SHARED_FOR))
    cache = services().read_cache
    body: bytes = _cached(shared, key, lambda: _as_bytes(build()), cache)
    headers["Vary"] = "Accept-Encoding"
    if len(body) >= COMPRESS_FROM and request.accept_encodings["gzip"]:
        plain = body
        body = _cached(f"{shared}.gz", key, lambda: gzip.compress(plain, GZIP_LEVEL), cache)
        headers["Content-Encoding"] = "gzip"
    return Response(body, mimetype=mimetype, headers=headers)


def _reader_current() -> bool:
    """Whether the reader keeps its data current: connected, and its gateway in touch with
    IB's servers (while they are lost the gateway answers but pushes nothing)."""
    svc = services()
    return svc.connector.connected and ib_servers(svc).reachable


def ib_servers(svc: Services) -> LinkState:
    """IB's servers as the gateway tells them: unreachable when either connection was told so,
    since the earlier of their notices (each hears the outage a moment apart: the one that
    reconnects first must not move its start); else the reader's view (its farms)."""
    views = [c.link_state() for c in (svc.handler, svc.connector) if c is not None]
    lost = [v for v in views if not v.reachable]
    if lost:
        return min(lost, key=lambda v: v.since if v.since is not None else float("inf"))
    return views[-1] if views else LinkState()


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
    return any(
        tag.strip() == "*" or tag.strip().removeprefix("W/") == opaque for tag in header.split(",")
    )


def _cached(name: str, version: object, build: Any, cache: ReadCache | None = None) -> Any:
    """A value built once per data version (read endpoints are polled hard) in ``cache`` (the
    services' read cache unless given), by one thread while the others wait for it."""
    return (services().read_cache if cache is None else cache).get(name, version, build)


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


def _unknown_symbol(status: int, exc: Exception, symbol: str, sec_type: str) -> ApiError:
    """An unknown symbol; one that looks like an FX pair asked as a stock says so."""
    if sec_type == "STK" and looks_like_fx(symbol):
        return ApiError(
            status,
            "unknown_symbol",
            f"{exc}; {symbol} looks like an FX pair: ask with sec_type CASH (Asset: FX pair)",
            "sec_type",
            [{"field": "sec_type", "message": "looks like an FX pair", "suggested": "CASH"}],
        )
    return ApiError(status, "unknown_symbol", str(exc), "symbol")


def _audit(
    source: str, body: Any, decision: Any, outcome: str, order_id: str | None = None
) -> None:
    g.audited = True  # security's after-request audit of refusals has nothing to add
    journal = services().journal
    if journal is None:
        return
    told = auth.audited_outcome(outcome)  # a stranger's (a webhook call without its secret)
    if told is not None:
        journal.audit(source, request.remote_addr, body, decision, told, order_id)


def _handler() -> OrderHandler:
    handler = services().handler
    if handler is None:
        raise ApiError(403, "read_only", "READ_ONLY is set: this dashboard places no orders")
    return handler


class Records(NamedTuple):
    """Our records and the order handler's version read just before them. A record changes
    before the version moves, so the rows are at least that new: a cache key or ETag made
    from the version may label newer rows (the next poll gets them again), never older."""

    version: int
    rows: list[Lifecycle]


def _records(svc: Services) -> Records:
    handler = svc.handler
    if handler is None:
        return Records(0, [])
    version = handler.version  # first: see Records
    return Records(version, handler.records())


def _whole(quantity: float) -> float | int:
    return int(quantity) if float(quantity).is_integer() else quantity
