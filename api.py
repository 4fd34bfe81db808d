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
import io
import json
import re
import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request, stream_with_context, url_for
from werkzeug.exceptions import HTTPException

from ib_connection import NotConnectedError
from ib_connector import ExecutionRow, OrderRow, Snapshot
from journal import JournalError
from order_handler import (FINAL_VERDICTS, IdempotencyConflict, Lifecycle, OrderStateError,
                           TradingHaltedError, UnknownOrderError)
from schemas import ModifyIn, OrderIn, ValidationError, first_error
from services import Services

bp = Blueprint("api", __name__, url_prefix="/api/v1")
WAIT_SLACK = 5.0
STREAM_KEEPALIVE = 5.0  # seconds between comments on an idle stream (finds dead clients)
STREAM_MIN_GAP = 0.05  # coalesce bursts of changes into one event
KILL_SWITCH_CONFIRM = 10.0  # seconds to wait for the broker to confirm the cancels
IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class ApiError(Exception):
    """An error answered with the API's one JSON error shape."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 details: list[dict] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.field, self.details = field, details


def api_error(status: int, code: str, message: str, field: str | None = None,
              details: list[dict] | None = None) -> tuple[Response, int]:
    """The single JSON error response of the whole API."""
    body: dict[str, Any] = {"status": status, "code": code, "message": message}
    if field is not None:
        body["field"] = field
    if details:
        body["details"] = details
    return jsonify({"error": body}), status


@bp.errorhandler(ApiError)
def _on_api_error(exc: ApiError) -> tuple[Response, int]:
    return api_error(exc.status, exc.code, exc.message, exc.field, exc.details)


@bp.errorhandler(NotConnectedError)
def _on_not_connected(exc: NotConnectedError) -> tuple[Response, int]:
    return api_error(503, "gateway_unavailable", str(exc))


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


def _json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", "the request body must be a JSON object")
    return body


def _validate(model: type, body: dict[str, Any]) -> Any:
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


# ------------------------------------------------------------------- reads
@bp.get("/status")
def status() -> Response:
    """Health of both connections, the threads, the account and the queue."""
    return jsonify(status_payload(services(), services().connector.snapshot()))


def status_payload(svc: Services, snap: Snapshot) -> dict[str, Any]:
    """The body of /status (also part of the stream's state events)."""
    orders = svc.handler.state()
    account = snap.account
    healthy = snap.connection.state == "connected" and orders.state == "connected"
    return {
        "ok": healthy,
        "simulator": svc.simulator is not None,
        "gateway": {"host": svc.host, "port": svc.port},
        "connections": {"reader": _as_dict(snap.connection), "orders": _as_dict(orders)},
        "threads": {"reader": snap.connection.thread_alive, "orders": orders.thread_alive},
        "server_version": snap.connection.server_version or orders.server_version,
        "account": account.account if account else None,
        "paper": account.paper if account else None,
        "mode": None if account is None else ("paper" if account.paper else "live"),
        "queue_depth": svc.handler.queue_depth(),
        "in_flight": svc.handler.in_flight(),
        "data_age": _age(snap.updated_at),
        "orders_age": _age(snap.orders_updated_at),
        "streams": svc.feed.open_streams,
    }


def state_payload(svc: Services) -> dict[str, Any]:
    """Everything the dashboard shows, from the snapshots (GET /state and the stream)."""
    snap = svc.connector.snapshot()
    return {
        "version": svc.feed.version,
        "status": status_payload(svc, snap),
        "account": dataclasses.asdict(snap.account) if snap.account else None,
        "positions": [dataclasses.asdict(p) for p in snap.positions],
        "orders": merged_orders(snap, svc.handler.records(), detail=True),
        "executions": [dataclasses.asdict(e) for e in snap.executions],
    }


@bp.get("/state")
def state() -> Response:
    """The whole dashboard state in one answer (the polling fallback of the stream)."""
    return jsonify(state_payload(services()))


@bp.get("/stream")
def stream() -> Response | tuple[Response, int]:
    """Server-Sent Events: a ``state`` event after every change, comments while idle."""
    svc = services()
    if not svc.feed.open_stream():
        return api_error(503, "too_many_streams", f"at most {svc.feed.max_streams} live streams; "
                         "poll /api/v1/state instead")
    return Response(stream_with_context(_events(svc)), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _events(svc: Services) -> Iterator[str]:
    feed = svc.feed
    try:
        yield "retry: 1000\n\n"
        seen = -1
        while not feed.closed:
            version = feed.wait(seen, STREAM_KEEPALIVE)
            if feed.closed:
                break
            if version == seen:
                yield ": keep-alive\n\n"
                continue
            seen = version
            body = json.dumps(state_payload(svc), separators=(",", ":"))
            yield f"id: {version}\nevent: state\ndata: {body}\n\n"
            time.sleep(STREAM_MIN_GAP)
    finally:
        feed.close_stream()


@bp.get("/health")
def health() -> tuple[Response, int]:
    """200 when both connections are up, else 503 (for monitors)."""
    svc = services()
    up = svc.connector.connected and svc.handler.connected
    return jsonify({"ok": up}), 200 if up else 503


@bp.get("/account")
def account() -> Response:
    """Account figures and raw values from the snapshot."""
    snap = services().connector.snapshot()
    if snap.account is None:
        raise ApiError(503, "no_data", "no account data yet")
    return jsonify({**dataclasses.asdict(snap.account), "data_age": _age(snap.updated_at)})


@bp.get("/positions")
def positions() -> Response:
    """Positions with market price, value and P&L."""
    snap = services().connector.snapshot()
    return jsonify({"positions": [dataclasses.asdict(p) for p in snap.positions],
                    "data_age": _age(snap.updated_at)})


@bp.get("/executions")
def executions() -> Response:
    """Every client's executions with commissions."""
    snap = services().connector.snapshot()
    return jsonify({"executions": [dataclasses.asdict(e) for e in snap.executions],
                    "data_age": _age(snap.orders_updated_at)})


@bp.get("/orders")
def orders() -> Response:
    """Open and completed orders of every client, merged with our lifecycle records."""
    svc = services()
    snap = svc.connector.snapshot()
    rows = merged_orders(snap, svc.handler.records())
    which = request.args.get("status", "all")
    if which not in ("all", "open", "completed"):
        raise ApiError(400, "validation_error", "status: must be all, open or completed",
                       "status")
    if which != "all":
        rows = [r for r in rows if r["open"] == (which == "open")]
    return jsonify({"orders": rows, "data_age": _age(snap.orders_updated_at)})


@bp.get("/executions.csv")
def executions_csv() -> Response:
    """The fills ledger as CSV."""
    snap = services().connector.snapshot()
    out = io.StringIO()
    fields = [f.name for f in dataclasses.fields(ExecutionRow)]
    writer = csv.DictWriter(out, fieldnames=fields)
    writer.writeheader()
    for row in snap.executions:
        writer.writerow(dataclasses.asdict(row))
    return Response(out.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": "attachment; filename=fills.csv"})


@bp.get("/orders/<order_id>")
def order(order_id: str) -> Response:
    """One order: our lifecycle record (if ours) and the broker's view."""
    svc = services()
    snap = svc.connector.snapshot()
    record = svc.handler.get(order_id)
    row = _find_row(snap, order_id, record)
    if record is None and row is None:
        raise ApiError(404, "not_found", f"no order {order_id!r}")
    return jsonify(_order_json(row, record))


@bp.get("/quote")
def quote() -> Response:
    """A snapshot quote (one broker round trip on the reader's loop)."""
    symbol = (request.args.get("symbol") or "").strip().upper()
    sec_type = (request.args.get("sec_type") or "STK").strip().upper()
    try:
        OrderIn.model_validate({"symbol": symbol, "action": "BUY", "quantity": 1,
                                "sec_type": sec_type})
    except ValidationError as exc:
        field, message, details = first_error(exc)
        raise ApiError(400, "validation_error", f"{field}: {message}", field, details) from None
    try:
        q = services().connector.quote(symbol, sec_type)
    except LookupError as exc:
        raise ApiError(404, "unknown_symbol", str(exc), "symbol") from None
    except TimeoutError:
        raise ApiError(504, "gateway_timeout", "the gateway did not answer in time") from None
    return jsonify(dataclasses.asdict(q))


# ------------------------------------------------------------------ writes
@bp.post("/orders")
def place_order() -> tuple[Response, int]:
    """Validate and queue an order: 202 with its id and URL (or wait for the verdict)."""
    order_in = _validate(OrderIn, _json_body())
    svc = services()
    wait = request.args.get("wait", "").lower() in ("1", "true", "yes")
    key = _idempotency_key(order_in)
    try:
        record, created = svc.handler.submit(
            order_in.intent(svc.settings.account), source="api", idem_key=key,
            request_hash=order_in.fingerprint(), remote=request.remote_addr)
    except IdempotencyConflict as exc:
        raise ApiError(422, "idempotency_conflict", str(exc), "Idempotency-Key") from None
    if wait:
        s = svc.settings
        timeout = s.settle_first + s.settle_validation + s.settle_final + s.monitor_timeout
        record = svc.handler.wait(record.id, timeout + WAIT_SLACK)
    body = {"id": record.id, "url": url_for("api.order", order_id=record.id),
            "order": _as_dict(record), "replayed": not created}
    response = jsonify(body)
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return response, 200 if (wait and record.verdict) or not created else 202


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


@bp.get("/kill-switch")
def kill_switch_state() -> Response:
    """Whether new orders are halted."""
    handler = services().handler
    return jsonify({"engaged": handler.halted, "reason": handler.journal.flag("kill_switch")})


@bp.post("/kill-switch")
def kill_switch() -> tuple[Response, int]:
    """Engage (halt new orders, persisted; cancel every working order and confirm it from
    the broker) or release the kill switch."""
    body = _json_body()
    engage = body.get("engaged")
    if not isinstance(engage, bool):
        raise ApiError(400, "validation_error", "engaged: must be true or false", "engaged")
    svc = services()
    if not engage:
        svc.handler.release_kill_switch()
        return jsonify({"engaged": False}), 200
    reason = str(body.get("reason") or "engaged from the API")[:200]
    started = time.time()
    svc.handler.engage_kill_switch(reason)
    still_open = _await_no_open_orders(svc, started, KILL_SWITCH_CONFIRM)
    return jsonify({"engaged": True, "reason": reason,
                    "cancel_confirmed": not still_open,
                    "still_open": [dataclasses.asdict(r) for r in still_open]}), 200


def _await_no_open_orders(svc: Services, since: float, timeout: float) -> list[OrderRow]:
    """Wait until a broker refresh newer than ``since`` shows no open order."""
    deadline = time.monotonic() + timeout
    while True:
        svc.connector.request_refresh()
        snap = svc.connector.snapshot()
        fresh = (snap.orders_updated_at or 0) > since
        still_open = [o for o in snap.orders if o.open]
        if fresh and not still_open:
            return []
        if time.monotonic() > deadline:
            return still_open if fresh else list(snap.orders)
        svc.feed.wait(svc.feed.version, 0.2)


@bp.post("/orders/preview")
def preview_order() -> Response:
    """What-if: the broker's margin and commission preview of an order; places nothing."""
    order_in = _validate(OrderIn, _json_body())
    svc = services()
    try:
        answer = svc.handler.preview(order_in.intent(svc.settings.account))
    except LookupError as exc:
        raise ApiError(422, "no_preview", str(exc), "symbol") from None
    except TimeoutError:
        raise ApiError(504, "gateway_timeout", "the gateway did not answer in time") from None
    return jsonify(dataclasses.asdict(answer))


@bp.post("/orders/cancel-all")
def cancel_all() -> tuple[Response, int]:
    """Global cancel: every working order of every client."""
    working = services().handler.cancel_all()
    return jsonify({"cancel_requested": True, "ours_working": working}), 202


@bp.post("/orders/<order_id>/cancel")
def cancel_order(order_id: str) -> tuple[Response, int]:
    """Queue a cancel of one of our orders."""
    return _order_action(lambda h: h.cancel(order_id), order_id)


@bp.post("/orders/<order_id>/modify")
def modify_order(order_id: str) -> tuple[Response, int]:
    """Queue a change of quantity and/or prices of one of our working orders."""
    change = _validate(ModifyIn, _json_body())
    return _order_action(lambda h: h.modify(
        order_id, quantity=None if change.quantity is None else float(change.quantity),
        limit_price=change.limit_price, stop_price=change.stop_price), order_id)


def _order_action(action: Any, order_id: str) -> tuple[Response, int]:
    try:
        record = action(services().handler)
    except UnknownOrderError:
        raise ApiError(404, "not_found", f"no order {order_id!r} placed by this app (orders of "
                       "other clients can only be cancelled by them, or by a global cancel)"
                       ) from None
    except OrderStateError as exc:
        raise ApiError(409, "order_state", str(exc)) from None
    return jsonify({"id": record.id, "url": url_for("api.order", order_id=record.id),
                    "order": _as_dict(record)}), 202


# ----------------------------------------------------------------- merging
def merged_orders(snap: Snapshot, records: list[Lifecycle],
                  detail: bool = False) -> list[dict[str, Any]]:
    """Broker rows joined with our records by orderRef, then permId; our unsent ones too."""
    by_id = {r.id: r for r in records}
    by_perm = {r.perm_id: r for r in records if r.perm_id}
    used: set[str] = set()
    rows = []
    for row in snap.orders:
        record = by_id.get(row.order_ref) or by_perm.get(row.perm_id)
        if record is not None:
            used.add(record.id)
        rows.append(_order_json(row, record, brief=not detail))
    for record in records:
        if record.id not in used:
            rows.append(_order_json(None, record, brief=not detail))
    return rows


def _find_row(snap: Snapshot, order_id: str, record: Lifecycle | None) -> OrderRow | None:
    for row in snap.orders:
        if row.order_ref == order_id or str(row.perm_id) == order_id or (
                record is not None and record.perm_id and row.perm_id == record.perm_id):
            return row
    return None


def _order_json(row: OrderRow | None, record: Lifecycle | None,
                brief: bool = False) -> dict[str, Any]:
    """One order for the API: the broker's row, plus our lifecycle when it is ours."""
    out: dict[str, Any] = dataclasses.asdict(row) if row is not None else {}
    if record is not None:
        intent = record.intent
        out.setdefault("symbol", intent.symbol)
        out.setdefault("sec_type", intent.sec_type)
        out.setdefault("action", intent.action)
        out.setdefault("quantity", intent.quantity)
        out.setdefault("order_type", intent.order_type)
        out.setdefault("limit_price", intent.limit_price)
        out.setdefault("stop_price", intent.stop_price)
        out.setdefault("tif", intent.tif)
        out.setdefault("status", record.status)
        out.setdefault("perm_id", record.perm_id)
        out.setdefault("order_id", record.order_id)
        out.setdefault("client_id", record.client_id)
        out.setdefault("order_ref", record.id)
        out.setdefault("filled", record.filled)
        out.setdefault("open", record.verdict not in FINAL_VERDICTS)
        out["id"] = record.id
        out["ours"] = True
        out["verdict"] = record.verdict
        out["phase"] = record.phase
        if not brief:
            out["lifecycle"] = dataclasses.asdict(record)
    else:
        out["id"] = str(row.perm_id) if row else None
        out["ours"] = False
    out["url"] = url_for("api.order", order_id=out["id"]) if out.get("id") else None
    return out

