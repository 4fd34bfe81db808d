"""The webhook (TradingView alerts and the like): the secret or signature checked, the alert
turned into an order through the same path as POST /orders.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from flask import (
    Response,
    current_app,
    g,
    request,
)
from flask.blueprints import BlueprintSetupState

import auth
import webhook
from alert_times import Contract, NewestTargets, shown
from bodies import BodyError
from openapi import documented
from order_handler import (
    FINAL_VERDICTS,
    Lifecycle,
)
from reader_rows import Snapshot
from schemas import CONTRACT_FIELDS, DERIVATIVE_FIELDS, OrderIn
from services import Services
from web.common import (
    RETRY_AFTER,
    ApiError,
    _audit,
    _handler,
    _json,
    _long_call,
    _records,
    _whole,
    bp,
    services,
)
from web.trading import _order_response, _validated_order, submit_order
from wire import plain_number

# a target alert waits this long (holding a long-call slot) for the reader's position to
# include every fill of ours for the contract, then answers 503 position_unconfirmed
READER_CATCH_UP = 2.0  # TradingView gives up on an answer after about 3 s
CATCH_UP_POLL = 0.05  # s between looks at the reader's snapshot meanwhile
TURN_MARGIN = 0.5  # s a second alert for the contract may wait beyond the first one's wait
# one alert per contract at a time, of those that take turns (``_contract_turn``)
_TURNS: dict[tuple[str, str], threading.Lock] = {}
_TURNS_GUARD = threading.Lock()
NEWEST_TARGETS = "webhook_newest_targets"  # app.extensions: alert_times.NewestTargets
FUTURE_SLACK = 60.0  # s an alert's time may be ahead of this clock and still order later ones

log = logging.getLogger(__name__)

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
    same risk gate and queue as every other order. A target alert whose ``time`` is older
    than the newest one acted on for its contract is refused (409 ``stale_alert``).
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
    # TradingView sends every customer's alerts from the same few addresses: with them listed,
    # wrong secrets from there (anyone's alert) must not lock the trader's alerts out
    refused = auth.cross_site_refusal("webhook") or (
        auth.refused_attempt("webhook") if _failures_count() else None
    )
    if refused is not None:
        return refused
    body, given = _webhook_body(token)
    if not webhook.authentic(secret, request.get_data(cache=True), request.headers, token, given):
        auth.secret_failed("webhook", counted=_failures_count())
        raise ApiError(
            401,
            "unauthorized",
            "bad or missing webhook secret (body 'secret', "
            "URL /webhook/<secret>, X-Webhook-Secret or X-Signature)",
        )
    g.auth = auth.WEBHOOK_SIGNED  # its refusals from here on are audited whatever their rate
    if not svc.webhook_limiter.allow():
        _audit("webhook", None, None, "rate_limited")
        raise ApiError(
            429,
            "rate_limited",
            f"more than {svc.settings.webhook_rate_per_minute} webhook calls in 60 s",
            retry_after=svc.webhook_limiter.retry_after(),
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
            auth.secret_failed("webhook", counted=_failures_count())
            raise ApiError(401, "unauthorized", "bad webhook secret") from None
        _audit("webhook", None, None, f"invalid: {exc.message}")
        raise ApiError(exc.status, exc.code, exc.message) from None


def _failures_count() -> bool:
    """Whether wrong webhook secrets count towards their address's lockout: not with
    WEBHOOK_ALLOWED_IPS set (TradingView sends everyone's alerts from those addresses)."""
    return not services().settings.webhook_allowed_ips


def _place_alert(
    svc: Services, alert: webhook.AlertIn, body: dict[str, Any]
) -> tuple[Response, int]:
    _checked(alert, body)
    if not webhook.is_target(alert):
        # keyed by the minute: a copy chooses its key after the first one's order is
        # journaled, else one arriving as the minute turns finds nothing under the previous
        # minute's key yet and places a second order under the new minute's
        with _contract_turn(alert, body) if webhook.minute_keyed(alert) else nullcontext():
            return _place(alert, 0.0, _dedup_key(svc, alert, body, time.time()), body)
    with _contract_turn(alert, body):  # read and placed before the next alert for it is read
        key = _dedup_key(svc, alert, body, time.time())
        existing = svc.journal.find_by_key(key) if svc.journal else None
        if existing is not None:  # its first order, whatever is held now
            return _submit(_replayed_fields(existing.record), key, body)
        sent = webhook.sent_at(alert)
        _refuse_stale(svc, alert, body, sent)
        answer = _place(alert, _held_position(svc, alert, body), key, body)
        if sent is not None:  # acted on: an order placed, or nothing to do
            _acted(svc, alert, sent)
        return answer


def _acted(svc: Services, alert: webhook.AlertIn, sent: float) -> None:
    """Later target alerts of the contract must be newer than ``sent``; a time ahead of this
    machine's clock (a hand-written test alert) orders none: it would hold every real alert
    back until then."""
    if sent > time.time() + FUTURE_SLACK:
        log.warning(
            "⚠️ %s: alert time %s is in the future; later alerts not held to it",
            alert.symbol,
            shown(sent),
        )
        return
    _newest_targets().acted(_target_contract(svc, alert), sent)


@bp.record_once
def _keep_newest_targets(state: BlueprintSetupState) -> None:
    state.app.extensions[NEWEST_TARGETS] = NewestTargets()


def _newest_targets() -> NewestTargets:
    newest: NewestTargets = current_app.extensions[NEWEST_TARGETS]
    return newest


def _target_contract(svc: Services, alert: webhook.AlertIn) -> Contract:
    """The position a target alert moves: the account's, of the listing in its currency."""
    sec_type, symbol = _contract_key(alert)
    currency = "" if sec_type == "CASH" else alert.currency or "USD"
    return svc.settings.account, sec_type, symbol, currency


def _refuse_stale(
    svc: Services, alert: webhook.AlertIn, body: dict[str, Any], sent: float | None
) -> None:
    """409 for a target alert sent before the newest one acted on for its contract: applied
    now, it would undo that one (long 10 after flat). One without a ``time`` is taken."""
    if sent is None:
        return
    newest = _newest_targets().newer_than(_target_contract(svc, alert), sent)
    if newest is None:
        return
    _audit("webhook", body, None, f"refused: stale alert {shown(sent)} < {shown(newest)}")
    raise ApiError(
        409,
        "stale_alert",
        f"{alert.symbol}: this alert's time {shown(sent)} is before {shown(newest)}, the time "
        "of the newest target alert acted on for it; applied now it would undo that one, so "
        "nothing was sent",
        "time",
    )


def _dedup_key(svc: Services, alert: webhook.AlertIn, body: dict[str, Any], now: float) -> str:
    """The alert's duplicate key at ``now``. One without an id or a time has a key per minute;
    a copy that comes after the minute turned takes the previous minute's key while the order
    placed under it is less than DEDUP_WINDOW old: one order, not two."""
    key = webhook.dedup_key(alert, body, now)
    earlier = webhook.previous_window_key(alert, body, now)
    if earlier is None or svc.journal is None:
        return key
    entry = svc.journal.find_by_key(earlier)
    recent = entry is not None and now - entry.record.created_at < webhook.DEDUP_WINDOW
    return earlier if recent else key


def _place(
    alert: webhook.AlertIn, held: float, key: str, body: dict[str, Any]
) -> tuple[Response, int]:
    """The order the alert means from position ``held``; 200 and none when it is held."""
    planned = _planned(alert, held, body)
    if planned is None:
        message = f"the {alert.symbol} position is already {plain_number(held)}: nothing to do"
        _audit("webhook", body, None, f"nothing to do: position {plain_number(held)}")
        return _json(
            {"id": None, "url": None, "order": None, "replayed": False, "message": message}
        ), 200
    return _submit(planned, key, body)


def _planned(alert: webhook.AlertIn, held: float, body: dict[str, Any]) -> dict[str, Any] | None:
    """The order the alert means from position ``held`` (None: the target is held); 400."""
    with _invalid_is_400(body):
        return webhook.plan(alert, held)


def _checked(alert: webhook.AlertIn, body: dict[str, Any]) -> None:
    """400 for what no position makes right (before the position is read: not a 409 / 503)."""
    with _invalid_is_400(body):
        webhook.check(alert)


@contextmanager
def _invalid_is_400(body: dict[str, Any]) -> Iterator[None]:
    try:
        yield
    except webhook.AlertError as exc:
        _audit("webhook", body, None, f"invalid: {exc.message}")
        raise ApiError(400, "validation_error", exc.message, exc.field) from None


def _submit(fields: dict[str, Any], key: str, body: dict[str, Any]) -> tuple[Response, int]:
    order_in = _validated_order(OrderIn, fields, "webhook")
    record, created = submit_order(order_in, "webhook", key, webhook.fingerprint(body), body)
    return _order_response(record, created, 202)


def _contract_key(alert: webhook.AlertIn) -> tuple[str, str]:
    return _key(alert.contract_type, alert.symbol)


def _key(sec_type: str, symbol: str) -> tuple[str, str]:
    """One contract, however its symbol is written (BRK.B, BRKB)."""
    return sec_type, symbol.replace(".", "")


@contextmanager
def _contract_turn(alert: webhook.AlertIn, body: dict[str, Any]) -> Iterator[None]:
    """One alert per contract at a time (target alerts, and alerts keyed by the minute), from
    choosing its key (and reading the position) to creating the order: a second alert that
    arrives meanwhile sees the first one's order (a replay, or 409 for a target). One that
    waits longer than the first may take is refused (409) instead."""
    with _TURNS_GUARD:
        turn = _TURNS.setdefault(_contract_key(alert), threading.Lock())
    # waiting here holds no long-call slot: the alert taking its turn may need one
    if not turn.acquire(timeout=READER_CATCH_UP + TURN_MARGIN):
        _audit("webhook", body, None, "refused: another alert in progress")
        raise ApiError(
            409,
            "order_in_flight",
            f"{alert.symbol}: another alert for it is being placed; "
            "send this one again once it is done",
        )
    try:
        yield
    finally:
        turn.release()


def _held_position(svc: Services, alert: webhook.AlertIn, body: dict[str, Any]) -> float:
    """The position the reader holds, once it includes every fill of ours for the contract.

    409 while one of our orders for it is unfinished (it will still move it); 503 while the
    reader is not connected, or has not heard of one of our fills within READER_CATCH_UP
    (our connection hears of a fill before or after the reader's position moves: two sockets).
    """
    _handler()  # READ_ONLY: 403 before anything is looked up
    snap, unheard = _reader_view(svc, alert, body)
    if unheard:
        waited_for, started = ", ".join(unheard), time.monotonic()
        with _long_call(required=True):
            svc.connector.request_refresh()  # the reader asks for new executions now
            while unheard and time.monotonic() - started < READER_CATCH_UP:
                time.sleep(CATCH_UP_POLL)
                snap, unheard = _reader_view(svc, alert, body)
        _refuse_unconfirmed(svc, snap, unheard, alert, body)
        log.info(
            "webhook: %s target: the reader had the fills of %s after %.2f s",
            alert.symbol,
            waited_for,
            time.monotonic() - started,
        )
    return _position(svc, snap, alert)


def _reader_view(
    svc: Services, alert: webhook.AlertIn, body: dict[str, Any]
) -> tuple[Snapshot, list[str]]:
    """The reader's snapshot and our orders whose fills it may not include yet (409 while
    one of ours for the contract is unfinished, 503 while the reader is not connected)."""
    records = [r for r in _records(svc).rows if _contract_key(alert) == _record_key(r)]
    unfinished = [r.id for r in records if r.verdict not in FINAL_VERDICTS]
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
    return snap, webhook.unheard_fills(records, snap.executions, snap.executions_asked_at)


def _refuse_unconfirmed(
    svc: Services,
    snap: Snapshot,
    unheard: list[str],
    alert: webhook.AlertIn,
    body: dict[str, Any],
) -> None:
    """503 when the reader's position may still miss a fill of ``unheard`` orders."""
    if not unheard:
        return
    ids, shown = ", ".join(unheard), plain_number(_position(svc, snap, alert))
    log.warning(
        "⏳ webhook: %s target refused: the reader still shows %s and has not heard of the "
        "fills of %s after %g s; nothing was sent, the alert may be sent again",
        alert.symbol,
        shown,
        ids,
        READER_CATCH_UP,
    )
    _audit("webhook", body, None, f"refused: position unconfirmed {ids}")
    raise ApiError(
        503,
        "position_unconfirmed",
        f"{alert.symbol}: the position read ({shown}) does not include the fills of order "
        f"{ids} yet (waited {READER_CATCH_UP:g} s); nothing was sent, send the alert again "
        "shortly",
        retry_after=RETRY_AFTER,
    )


def _position(svc: Services, snap: Snapshot, alert: webhook.AlertIn) -> float:
    return webhook.position_of(
        snap.positions,
        alert.symbol,
        alert.contract_type,
        svc.settings.account,
        alert.currency or "USD",
    )


def _record_key(record: Lifecycle) -> tuple[str, str]:
    return _key(record.intent.sec_type, record.intent.symbol)


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
