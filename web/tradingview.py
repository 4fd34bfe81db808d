"""The webhook (TradingView alerts and the like): the secret or signature checked, the alert
turned into an order through the same path as POST /orders.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from flask import (
    Response,
    request,
)

import auth
import webhook
from bodies import BodyError
from openapi import documented
from order_handler import (
    FINAL_VERDICTS,
    Lifecycle,
)
from schemas import CONTRACT_FIELDS, DERIVATIVE_FIELDS, OrderIn
from services import Services
from web.common import (
    RETRY_AFTER,
    ApiError,
    _audit,
    _handler,
    _json,
    _records,
    _whole,
    bp,
    services,
)
from web.trading import _order_response, _validated_order, submit_order
from wire import plain_number

WEBHOOK_HEADERS = (
    {"name": "X-Webhook-Secret", "in": "header", "required": False, "schema": {"type": "string"}},
    {
        "name": "X-Signature",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "sha256=<hex HMAC-SHA256 of the body>",
    },
)


@bp.post("/webhook")
@bp.post("/webhook/<token>")
@documented(
    webhook.AlertOut,
    401,
    403,
    404,
    409,
    422,
    423,
    429,
    503,
    ok=202,
    body=webhook.AlertIn,
    headers=WEBHOOK_HEADERS,
    public=True,
    extra_ok={200: "an idempotent replay, or the target position is already held"},
)
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
        raise ApiError(
            403, "forbidden_source", f"{request.remote_addr} is not in WEBHOOK_ALLOWED_IPS"
        )
    refused = auth.refused_attempt("webhook")
    if refused is not None:
        return refused
    body, given = _webhook_body(token)
    if not webhook.authentic(secret, request.get_data(cache=True), request.headers, token, given):
        auth.secret_failed("webhook")
        raise ApiError(
            401,
            "unauthorized",
            "bad or missing webhook secret (body 'secret', "
            "URL /webhook/<secret>, X-Webhook-Secret or X-Signature)",
        )
    if not svc.webhook_limiter.allow():
        _audit("webhook", None, None, "rate_limited")
        raise ApiError(
            429,
            "rate_limited",
            f"more than {svc.settings.webhook_rate_per_minute} webhook calls in 60 s",
        )
    alert = _validated_order(webhook.AlertIn, body, "webhook")
    return _place_alert(svc, alert, body)


def _webhook_body(token: str | None) -> tuple[dict[str, Any], list[object]]:
    """The alert without its secrets. A body that is not a JSON object is answered (400/415)
    once a header or URL secret is right, or at once when the secret could only be in it."""
    try:
        return webhook.read(request.content_type, request.get_data(cache=True))
    except BodyError as exc:
        if webhook.header_secret_given(request.headers, token) and not webhook.authentic(
            services().settings.webhook_secret or "",
            request.get_data(cache=True),
            request.headers,
            token,
            (),
        ):
            auth.secret_failed("webhook")
            raise ApiError(401, "unauthorized", "bad webhook secret") from None
        _audit("webhook", None, None, f"invalid: {exc.message}")
        raise ApiError(exc.status, exc.code, exc.message) from None


def _place_alert(
    svc: Services, alert: webhook.AlertIn, body: dict[str, Any]
) -> tuple[Response, int]:
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
            message = f"the {alert.symbol} position is already {plain_number(held)}: nothing to do"
            _audit("webhook", body, None, f"nothing to do: position {plain_number(held)}")
            return _json(
                {"id": None, "url": None, "order": None, "replayed": False, "message": message}
            ), 200
        fields = planned
    order_in = _validated_order(OrderIn, fields, "webhook")
    record, created = submit_order(order_in, "webhook", key, webhook.fingerprint(body), body)
    return _order_response(record, created, 202)


def _held_position(svc: Services, alert: webhook.AlertIn, body: dict[str, Any]) -> float:
    """The position the reader holds now (503 while it is not connected: it may be stale;
    409 while one of our orders for the symbol is unfinished: it will still move it)."""
    _handler()  # READ_ONLY: 403 before anything is looked up
    sec_type = alert.sec_type or "STK"
    unfinished = [
        r.id
        for r in _records(svc).rows
        if r.verdict not in FINAL_VERDICTS
        and r.intent.sec_type == sec_type
        and r.intent.symbol.replace(".", "") == alert.symbol.replace(".", "")
    ]
    if unfinished:
        _audit("webhook", body, None, f"refused: order in flight {', '.join(unfinished)}")
        raise ApiError(
            409,
            "order_in_flight",
            f"{alert.symbol}: order {', '.join(unfinished)} "
            "is not finished; a target position is ordered once the orders that "
            "move it are filled or cancelled",
        )
    snap = svc.connector.snapshot()
    if snap.connection.state != "connected":
        raise ApiError(
            503,
            "gateway_unavailable",
            "positions unknown while the reader is "
            f"{snap.connection.state}; a target-position alert needs them",
            retry_after=RETRY_AFTER,
        )
    return webhook.position_of(
        snap.positions, alert.symbol, alert.sec_type or "STK", svc.settings.account
    )


def _replayed_fields(record: Lifecycle) -> dict[str, Any]:
    """The order fields of a journaled order (what a replayed target alert reports)."""
    intent = dataclasses.asdict(record.intent)
    unused = set(DERIVATIVE_FIELDS) - set(CONTRACT_FIELDS.get(intent["sec_type"], ()))
    fields = {
        name: intent[name]
        for name in OrderIn.model_fields
        if intent.get(name) not in (None, "") and name not in unused
    }
    return {**fields, "quantity": _whole(intent["quantity"])}
