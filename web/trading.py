"""Writes: place, preview, modify and cancel orders, cancel all (the kill switch is in
``web.killswitch``). Each is validated (schema, contract, risk gate) before it is handed to the
OrderHandler's queue.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from flask import (
    Response,
    current_app,
    g,
    jsonify,
    request,
    url_for,
)

from ib_connection import ServersUnreachable
from instruments import DERIVATIVES, ContractError, ContractSpec, Resolved, off_tick
from openapi import documented
from order_handler import (
    WEBHOOK_KEY_PREFIX,
    Lifecycle,
    OrderIntent,
    OrderStateError,
    UnknownOrderError,
)
from risk import RiskRejected
from schemas import ModifyIn, OrderIn
from schemas_out import (
    CancelAllOut,
    OrderAccepted,
    OrderActionOut,
    PreviewOut,
)
from services import GatewayNotAnswering, Services
from web.amend_checks import Lookup, checked_change, leg_prices
from web.common import (
    ApiError,
    _as_dict,
    _audit,
    _handler,
    _json,
    _json_body,
    _long_call,
    _unknown_symbol,
    _validate,
    bp,
    ib_servers,
    services,
)
from wire import plain_number

WAIT_SLACK = 5.0
STOP_TYPES = ("STP", "STP LMT")
PRICE_FIELDS = ("limit_price", "stop_price", "take_profit", "stop_loss", "trailing_amount")
IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9._:-]{1,128}")
IDEMPOTENCY_HEADER = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
}
WAIT_PARAM = {
    "name": "wait",
    "in": "query",
    "required": False,
    "schema": {"type": "string"},
    "description": "1, true or yes: answer once the order has a verdict",
}
RULE_FIELDS = {
    "max_quantity": "quantity",
    "max_notional": "quantity",
    "price_collar": "limit_price",
    "symbol_not_allowed": "symbol",
    "no_reference_price": "symbol",
    "asset_class_limit": "quantity",
    "option_market_order": "market_order_ack",
}


# ------------------------------------------------------------------ writes
@bp.post("/orders")
@documented(
    OrderAccepted,
    403,
    404,
    409,
    422,
    423,
    503,
    ok=202,
    body=OrderIn,
    headers=(IDEMPOTENCY_HEADER, WAIT_PARAM),
    extra_ok={200: "the verdict (?wait=1) or an idempotent replay"},
)
def place_order() -> tuple[Response, int]:
    """Validate, risk-check, journal and queue an order: 202 with its id and URL.

    ``?wait=1`` waits for the verdict (200). A repeated Idempotency-Key (or
    client_order_id) answers 200 with the original order and places nothing.
    """
    source = "dashboard" if g.get("auth") == "browser" else "api"
    body = _json_body(source)
    order_in = _validated_order(OrderIn, body, source)
    key = _idempotency_key(order_in)
    checked = None  # a stop's intent as resolved for the check: submit_order needs no second
    if _stop_to_check(order_in) and not _key_used(key):  # a retry answers with its order
        checked = _stop_check_intent(order_in, source, body)
        _refuse_immediate_trigger(checked, source, body)
    record, created = submit_order(order_in, source, key, prepared=checked)
    if request.args.get("wait", "").lower() in ("1", "true", "yes"):
        s = services().settings
        timeout = s.settle_first + s.settle_validation + s.settle_final + s.monitor_timeout
        with _long_call(required=False) as may_wait:  # busy: answer now, the client polls
            if may_wait:
                record = _handler().wait(record.id, timeout + WAIT_SLACK)
        return _order_response(record, created, 200 if record.verdict else 202)
    return _order_response(record, created, 202 if created else 200)


def _stop_to_check(order_in: OrderIn) -> bool:
    """A stop (STP, STP LMT) that must not trigger the moment it arrives."""
    return order_in.order_type in STOP_TYPES and not order_in.accept_immediate_trigger


def _stop_check_intent(order_in: OrderIn, source: str, body: dict[str, Any]) -> OrderIntent:
    """The intent the stop check quotes, as ``resolved_contract`` completes it: a derivative
    stop's own contract (by conId), not the stock of its symbol (an unknown contract is the
    order's 400, audited)."""
    svc = services()
    intent = order_in.intent(svc.settings.account)
    if order_in.sec_type not in DERIVATIVES:
        return intent
    try:
        return resolved_contract(svc, order_in, intent)
    except ApiError as exc:
        _audit(source, body, None, f"invalid: {exc.message}")
        raise


def _key_used(key: str | None) -> bool:
    """An order was placed under this idempotency key (the request is its retry, or a 422)."""
    journal = services().journal
    return key is not None and journal is not None and journal.find_by_key(key) is not None


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


def _refuse_immediate_trigger(
    intent: OrderIntent, source: str | None, body: dict[str, Any] | None
) -> None:
    """422 for a stop the market has already passed, unless the request acknowledged it."""
    reason = _immediate_trigger(intent)
    if reason is None:
        return
    message = f"{reason}; send accept_immediate_trigger: true to place it anyway"
    if source is not None:
        _audit(source, body, None, "refused: stop_triggers_immediately")
    raise ApiError(422, "stop_triggers_immediately", message, "stop_price")


def _order_response(record: Lifecycle, created: bool, status: int) -> tuple[Response, int]:
    body = {
        "id": record.id,
        "url": url_for("api.order", order_id=record.id),
        "order": _as_dict(record),
        "replayed": not created,
    }
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


def submit_order(
    order_in: OrderIn,
    source: str,
    key: str | None,
    request_hash: str | None = None,
    alert: dict[str, Any] | None = None,
    prepared: OrderIntent | None = None,
) -> tuple[Lifecycle, bool]:
    """The one way an order enters: risk gate, journal, queue — and an audit record.
    ``request_hash`` (default: the order's fingerprint) is what a replay must repeat;
    ``alert`` (the webhook's body, secrets removed) is audited with the order; ``prepared``
    is the intent ``resolved_contract`` already gave (not asked of the broker again)."""
    svc = services()
    outcome, decision, record = "error", None, None
    try:
        link = ib_servers(svc)  # either connection told of 1100: no order can reach IB
        if not link.reachable and not _key_used(key):  # a retry still gets its order
            raise ServersUnreachable(link.reason())
        record, created = _handler().submit(
            order_in.intent(svc.settings.account),
            source=source,
            idem_key=key,
            request_hash=request_hash or order_in.fingerprint(),
            remote=request.remote_addr,
            gate=svc.gate,
            prepare=lambda intent: prepared or resolved_contract(svc, order_in, intent),
        )
        outcome = "queued" if created else "replayed"
        decision = _journaled_decision(svc, record.id)
        return record, created
    except RiskRejected as exc:
        decision, outcome = exc.decision.as_dict(), f"risk_rejected: {exc.decision.rule}"
        raise ApiError(
            422,
            "risk_rejected",
            exc.decision.message,
            RULE_FIELDS.get(exc.decision.rule or ""),
            [decision],
        ) from None
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
        audited = (
            order_in.model_dump()
            if alert is None
            else {"alert": alert, "order": order_in.model_dump()}
        )
        _audit(source, audited, decision, outcome, record.id if record else None)


def resolved_contract(svc: Services, order_in: OrderIn, intent: OrderIntent) -> OrderIntent:
    """A derivative's intent completed from the broker's contract details (conId,
    multiplier, IB's fields), its prices checked against the market rule; stocks and FX as
    they are. 400 naming the field for an unknown or ambiguous contract or an off-tick price."""
    spec = order_in.contract_spec()
    if spec is None:
        return intent
    if not spec.expiry and not spec.local_symbol:  # IB would list every expiry: thousands
        raise ApiError(
            400,
            "ambiguous_contract",
            f"every {spec.symbol} {spec.sec_type} expiry matches: give expiry (or local_symbol)",
            "expiry",
        )
    found = _broker_contract(svc, spec)
    _check_increments(found, {name: getattr(intent, name) for name in PRICE_FIELDS})
    return dataclasses.replace(
        intent,
        symbol=found.symbol,
        con_id=found.con_id,
        multiplier=found.multiplier,
        expiry=found.expiry,
        strike=found.strike or None,
        right=found.right,
        exchange=found.exchange,
        trading_class=found.trading_class,
        local_symbol=found.local_symbol,
    )


def _broker_contract(svc: Services, spec: ContractSpec) -> Resolved:
    """The one contract ``spec`` names at the broker, or a 400 naming the field (503 when the
    gateway does not answer)."""
    try:
        return svc.connector.contract(spec)
    except ContractError as exc:
        raise ApiError(400, exc.code, exc.message, exc.field) from None
    except TimeoutError as exc:
        raise GatewayNotAnswering(
            f"the gateway is not answering (no contract details for "
            f"{spec.symbol}: {exc}); nothing was sent, retry shortly"
        ) from None


def _check_increments(found: Resolved, prices: dict[str, float | None]) -> None:
    """400 naming the first price that is off the contract's market rule."""
    for name, price in prices.items():
        if price is not None and off_tick(price, tick := found.tick_at(price)):
            raise ApiError(
                400,
                "validation_error",
                f"{name}: {plain_number(price)} is not a multiple of "
                f"{found.description}'s price increment {plain_number(tick)} at that price "
                "(the broker's market rule)",
                name,
            )


def _modified_increments(svc: Services, order_id: str, change: ModifyIn) -> None:
    """A derivative's new prices, checked against its market rule (stocks: the schema did)."""
    record = svc.handler.get(order_id) if svc.handler else None
    if (
        record is None
        or record.intent.sec_type not in DERIVATIVES
        or (change.limit_price is None and change.stop_price is None)
    ):
        return
    i = record.intent
    found = _broker_contract(
        svc,
        ContractSpec(
            symbol=i.symbol,
            sec_type=i.sec_type,
            currency=i.currency,
            expiry=i.expiry,
            strike=i.strike,
            right=i.right,
            exchange=i.exchange,
            trading_class=i.trading_class,
            local_symbol=i.local_symbol,
        ),
    )
    _check_increments(found, {"limit_price": change.limit_price, "stop_price": change.stop_price})


def _journaled_decision(svc: Services, order_id: str) -> Any:
    """The risk decision journaled with an order (None if it cannot be read)."""
    try:
        entry = svc.journal.get(order_id) if svc.journal else None
    except Exception:  # log and carry on: the order is queued; only the audit loses detail
        current_app.logger.exception("risk decision of %s not readable", order_id)
        return None
    return entry.risk if entry else None


def _idempotency_key(order_in: OrderIn) -> str | None:
    """The request's idempotency key: the header, else the client order id field."""
    header = request.headers.get("Idempotency-Key")
    if header is not None:
        header = header.strip()
        if not IDEMPOTENCY_KEY.fullmatch(header):
            raise ApiError(
                400,
                "validation_error",
                "Idempotency-Key: 1 to 128 characters of letters, digits and ._:-",
                "Idempotency-Key",
            )
        if order_in.client_order_id and order_in.client_order_id != header:
            raise ApiError(
                400,
                "validation_error",
                "client_order_id: differs from the Idempotency-Key header",
                "client_order_id",
            )
        key: str | None = header
    else:
        key = order_in.client_order_id
    if key is not None and key.startswith(WEBHOOK_KEY_PREFIX):
        field = "Idempotency-Key" if header is not None else "client_order_id"
        raise ApiError(
            400,
            "validation_error",
            f"{field}: may not start with {WEBHOOK_KEY_PREFIX!r} (the webhook's alerts' keys)",
            field,
        )
    return key


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
                raise ApiError(
                    422,
                    "risk_rejected",
                    verdict.message,
                    RULE_FIELDS.get(verdict.rule or ""),
                    [verdict.as_dict()],
                )
            answer = handler.preview(intent)
    except LookupError as exc:
        raise _unknown_symbol(422, exc, order_in.symbol, order_in.sec_type) from None
    return _json(
        {
            **dataclasses.asdict(answer),
            "risk": verdict.as_dict() if verdict else None,
            "immediate_trigger": _immediate_trigger(intent),
        }
    )


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
    _modified_increments(services(), order_id, change)

    def check(planned: Lookup) -> dict[str, Any] | None:
        record = planned(order_id)
        if record is None:
            return None
        changed = checked_change(record, change, planned, handler.get)
        if change.stop_price is not None and not change.accept_immediate_trigger:
            intent = changed.intent(record.intent.account)  # a derivative: quoted by its conId
            _refuse_immediate_trigger(
                dataclasses.replace(intent, con_id=record.intent.con_id), None, None
            )
        return leg_prices(record, planned)

    return _order_action(
        lambda h: h.modify(
            order_id,
            quantity=None if change.quantity is None else float(change.quantity),
            limit_price=change.limit_price,
            stop_price=change.stop_price,
            gate=services().gate,
            check=check,
        ),
        order_id,
    )


def _order_action(action: Any, order_id: str) -> tuple[Response, int]:
    try:
        record = action(_handler())
    except UnknownOrderError:
        raise ApiError(
            404,
            "not_found",
            f"no order {order_id!r} placed by this app (orders of "
            "other clients can only be cancelled by them, or by a global cancel)",
        ) from None
    except OrderStateError as exc:
        raise ApiError(409, "order_state", str(exc)) from None
    except RiskRejected as exc:
        raise ApiError(
            422,
            "risk_rejected",
            exc.decision.message,
            RULE_FIELDS.get(exc.decision.rule or ""),
            [exc.decision.as_dict()],
        ) from None
    except LookupError as exc:  # the gate's look-up of the contract (after a reconnect)
        raise ApiError(422, "unknown_symbol", f"the order's contract: {exc}") from None
    return _json(
        {
            "id": record.id,
            "url": url_for("api.order", order_id=record.id),
            "order": _as_dict(record),
        }
    ), 202
