"""Alerts from TradingView (and any sender): reading, authenticating, and the order they mean.

TradingView's alert sets only a URL and a message body (no headers), so the
shared secret may come in four places: ``X-Webhook-Secret``, ``X-Signature``
(HMAC-SHA256 of the body), the URL (``/api/v1/webhook/<secret>``) or the body's
``secret`` / ``passphrase`` field. Every one given must match (compared in
constant time); the body's is removed before the alert is audited or logged,
and the URL's is cut out of every log line and audit row (``redact``).

The body is TradingView's placeholders as they are filled: ``{{ticker}}`` with
or without its ``EXCHANGE:`` prefix, numbers as numbers or quoted, ``buy`` /
``sell``. It names either an order (``action`` + ``quantity`` / ``contracts``)
or a target position (``market_position`` long / flat / short with
``market_position_size``), which ``plan`` turns into the order that moves the
current position there, flattening and reversing included.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import math
import re
import time
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    StrictBool,
    model_validator,
)
from pydantic_core import PydanticCustomError
from werkzeug.datastructures import Headers

import alert_times
from alert_times import NUMBER
from bodies import parse_json_object
from order_records import WEBHOOK_KEY_PREFIX, Lifecycle
from reader_rows import ExecutionRow, PositionRow
from schemas import SYMBOL_PATTERN, looks_like_fx, price_tick

SECRET_FIELDS = ("secret", "passphrase")
ALSO_ACCEPT = ("text/plain",)  # TradingView's content type when it does not see JSON
TOKEN_IN_PATH = re.compile(r"(/webhook/)[^\s?#\"'<>]+")
SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,100}")
DEDUP_WINDOW = 60  # seconds: an alert without an id or a time is one alert a minute
# TradingView's exchange prefixes of stocks IB routes in USD ("AMEX" is also NYSE Arca's ETFs)
US_LISTINGS = frozenset({"NASDAQ", "NYSE", "AMEX", "ARCA", "NYSEARCA", "BATS", "CBOE", "OTC"})
DELAYED = re.compile(r"_DLY?$")  # {{exchange}} of a delayed-data symbol: LSE_DLY, NYMEX_DL
ORDER_FIELDS = (
    "order_type",
    "limit_price",
    "stop_price",
    "trailing_amount",
    "trailing_percent",
    "take_profit",
    "stop_loss",
    "tif",
    "outside_rth",
    "sec_type",
    "currency",
)

log = logging.getLogger(__name__)


class AlertError(ValueError):
    """An alert that names no order: 400 naming ``field``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, f"{field}: {message}"


# ------------------------------------------------------------------ the alert
def _number(value: Any) -> Any:
    """A quoted number ("10", "187.25", as a quoted placeholder gives it) as a number; never
    true / false (pydantic would take them for 1 and 0)."""
    if isinstance(value, bool):
        raise PydanticCustomError("number_type", "Input should be a number, not true or false")
    if isinstance(value, int) and value.bit_length() > 1023:  # JSON keeps any integer exact
        raise PydanticCustomError("number_too_large", "Input should be a number a float can hold")
    if isinstance(value, str) and NUMBER.fullmatch(value.strip()):
        number = float(value)
        return (
            int(number)
            if number.is_integer() and "." not in value and "e" not in value.lower()
            else number
        )
    if isinstance(value, str):  # not a number as TradingView writes one ("1_0" was 10)
        raise PydanticCustomError("number_parsing", "Input should be a number like 10 or 187.25")
    return value


def _ticker(value: Any) -> Any:
    """``NASDAQ:AAPL`` -> ``AAPL`` (TradingView's ``{{exchange}}:{{ticker}}``)."""
    return value.rpartition(":")[2].strip().upper() if isinstance(value, str) else value


def _text(value: Any) -> Any:
    """A number sent for a text field (an epoch ``time``, a numeric ``alert_id``) as its text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _folded(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


Num = Annotated[float | int, BeforeValidator(_number)]
Positive = Annotated[Num, Field(gt=0)]
Text = Annotated[str, Field(max_length=200)]


class AlertIn(BaseModel):
    """An alert: an order (action + quantity) or a target position; unknown keys are ignored.

    Numbers may be quoted. ``secret`` / ``passphrase`` carry WEBHOOK_SECRET when the
    sender cannot set a header (TradingView). ``price`` ({{close}}) is the limit price of
    a LMT / STP LMT alert that names none (rounded to the tick); ``order_id``,
    ``alert_message`` and ``time`` are kept with the audit and deduplicate an alert that
    has no ``alert_id``; ``time`` also orders target alerts (``alert_times``).
    """

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, allow_inf_nan=False)

    symbol: Annotated[
        str,
        BeforeValidator(_ticker),
        Field(pattern=SYMBOL_PATTERN, validation_alias=AliasChoices("symbol", "ticker")),
    ]
    action: Annotated[Literal["BUY", "SELL"], BeforeValidator(_upper)] | None = Field(
        None, validation_alias=AliasChoices("action", "side")
    )
    quantity: Positive | None = Field(
        None, validation_alias=AliasChoices("quantity", "contracts", "qty")
    )
    market_position: (
        Annotated[Literal["long", "flat", "short"], BeforeValidator(_folded)] | None
    ) = None
    market_position_size: Annotated[Num, Field(ge=0)] | None = None
    position_size: Num | None = None  # {{strategy.position_size}}: signed
    price: Positive | None = Field(None, validation_alias=AliasChoices("price", "close"))
    order_type: Annotated[str, BeforeValidator(_upper)] | None = None
    limit_price: Num | None = None
    stop_price: Num | None = None
    trailing_amount: Num | None = None
    trailing_percent: Num | None = None
    take_profit: Num | None = None
    stop_loss: Num | None = None
    tif: Annotated[str, BeforeValidator(_upper)] | None = None
    outside_rth: StrictBool | None = None
    sec_type: Annotated[str, BeforeValidator(_upper)] | None = None
    currency: Annotated[str, BeforeValidator(_upper)] | None = None
    alert_id: Annotated[str, BeforeValidator(_text), Field(min_length=1, max_length=200)] | None = (
        None
    )
    order_id: Annotated[Text, BeforeValidator(_text)] | None = None  # {{strategy.order.id}}
    alert_message: Text | None = None  # {{strategy.order.alert_message}}
    time: Annotated[str, BeforeValidator(_text), Field(max_length=64)] | None = Field(
        None, validation_alias=AliasChoices("time", "timenow", "timestamp")
    )
    _listing: str = PrivateAttr("")  # the ticker's EXCHANGE: prefix ("" without one)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_listing(cls, data: Any, handler: ModelWrapValidatorHandler[AlertIn]) -> AlertIn:
        alert = handler(data)
        raw = data.get("symbol", data.get("ticker")) if isinstance(data, dict) else None
        if isinstance(raw, str) and ":" in raw:
            alert._listing = DELAYED.sub("", raw.rpartition(":")[0].strip().upper())
        return alert

    @property
    def listing(self) -> str:
        """The exchange the ticker named (``LSE`` of ``LSE:BP`` and of delayed ``LSE_DLY:BP``);
        "" when it named none."""
        return self._listing

    @property
    def contract_type(self) -> str:
        """``sec_type`` as given, else as ``schemas.OrderIn`` infers it (EURUSD is CASH)."""
        return self.sec_type or ("CASH" if looks_like_fx(self.symbol) else "STK")


class AlertOut(BaseModel):
    """The order an alert placed (202), an idempotent replay (200), or nothing to do (200)."""

    model_config = ConfigDict(extra="forbid")

    id: str | None
    url: str | None
    order: Lifecycle | None
    replayed: bool
    message: str | None = None


def read(content_type: str | None, raw: bytes) -> tuple[dict[str, Any], list[object]]:
    """The alert body without its secret fields, and the secrets it carried (BodyError)."""
    body = parse_json_object(content_type, raw, also_accept=ALSO_ACCEPT)
    given = [body.pop(name) for name in SECRET_FIELDS if name in body]
    return body, given


def authentic(
    secret: str,
    raw: bytes,
    headers: Headers | Mapping[str, str],
    url_token: str | None,
    body_secrets: Iterable[object],
) -> bool:
    """At least one secret given, and every one given right (constant-time compares)."""
    checks = [_same(value, secret) for value in body_secrets]
    if url_token is not None:
        checks.append(_same(url_token, secret))
    header = headers.get("X-Webhook-Secret")
    if header is not None:
        checks.append(_same(header, secret))
    signature = headers.get("X-Signature")
    if signature is not None:
        checks.append(_signed(raw, signature, secret))
    return bool(checks) and all(checks)


def _same(given: object, secret: str) -> bool:
    if not isinstance(given, str):
        return False
    try:
        candidate = given.strip().encode()
    except UnicodeEncodeError:  # a lone surrogate (JSON's "\ud800"): no secret's text
        return False
    return hmac.compare_digest(candidate, secret.encode())


def _signed(raw: bytes, signature: str, secret: str) -> bool:
    scheme, _, digest = signature.partition("=")
    if scheme.strip().lower() != "sha256" or not digest:
        return False
    expected = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return hmac.compare_digest(digest.strip().lower().encode(), expected.encode())


def header_secret_given(headers: Headers | Mapping[str, str], url_token: str | None) -> bool:
    """A secret outside the body (header, signature or URL): checkable without the body."""
    return url_token is not None or any(
        headers.get(name) is not None for name in ("X-Webhook-Secret", "X-Signature")
    )


def source_allowed(remote: str | None, networks: tuple[str, ...]) -> bool:
    """The client address is in WEBHOOK_ALLOWED_IPS (any address when the list is empty)."""
    if not networks:
        return True
    try:
        address = ipaddress.ip_address((remote or "").strip("[]"))
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net) for net in networks)


# ----------------------------------------------------------------- the order
def fingerprint(body: Mapping[str, Any]) -> str:
    """Hash of the alert as sent (secrets removed): what a retried alert repeats."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def dedup_key(alert: AlertIn, body: Mapping[str, Any], now: float | None = None) -> str:
    """By ``alert_id``; else by the body and its ``time``; else by the body and the minute."""
    if alert.alert_id is not None:
        if SAFE_ID.fullmatch(alert.alert_id):
            return f"{WEBHOOK_KEY_PREFIX}{alert.alert_id}"
        return f"{WEBHOOK_KEY_PREFIX}id:" + hashlib.sha256(alert.alert_id.encode()).hexdigest()[:40]
    key = WEBHOOK_KEY_PREFIX + fingerprint(body)[:40]
    if alert.time is None:
        key += f":{int((time.time() if now is None else now) // DEDUP_WINDOW)}"
    return key


def minute_keyed(alert: AlertIn) -> bool:
    """The alert has neither an id nor a time: its duplicate key is its body and the minute."""
    return alert.alert_id is None and alert.time is None


def previous_window_key(alert: AlertIn, body: Mapping[str, Any], now: float) -> str | None:
    """The key the same alert had in the previous window, for one without an id or a time (a
    copy sent just after the minute turned); None for the others."""
    if not minute_keyed(alert):
        return None
    return dedup_key(alert, body, now - DEDUP_WINDOW)


def is_target(alert: AlertIn) -> bool:
    """The alert names a position to reach rather than an order."""
    return alert.market_position is not None


def plan(alert: AlertIn, position: float) -> dict[str, Any] | None:
    """The order's fields (``schemas.OrderIn``) the alert means, or None when a target
    position is already held. AlertError names a missing field. For an alert ``check``
    passed (the webhook checks it before it reads the position)."""
    if is_target(alert):
        delta = _target(alert) - position
        if abs(delta) < 1e-9:
            return None
        action, quantity = ("BUY" if delta > 0 else "SELL"), _whole(abs(delta))
    else:
        if alert.action is None:
            raise AlertError(
                "action", "buy or sell is required (or market_position for a target position)"
            )
        if alert.quantity is None:
            raise AlertError("quantity", "required (quantity or contracts)")
        action, quantity = alert.action, alert.quantity
    order: dict[str, Any] = {"symbol": alert.symbol, "action": action, "quantity": quantity}
    order.update(
        {name: getattr(alert, name) for name in ORDER_FIELDS if getattr(alert, name) is not None}
    )
    if (
        alert.price is not None
        and order.get("order_type") in ("LMT", "STP LMT")
        and "limit_price" not in order
    ):
        order["limit_price"] = _on_tick(alert.price, alert.contract_type, alert.symbol)
    return order


def check(alert: AlertIn) -> None:
    """AlertError for an alert no position makes right: a stock listed outside the US
    without its currency, a target with exits or with a ``time`` that is no time."""
    _check_listing(alert)
    if is_target(alert):
        _no_bracket(alert)
        sent_at(alert)


def sent_at(alert: AlertIn) -> float | None:
    """When the alert was sent (epoch s; None without a ``time``): what orders target alerts.
    AlertError for a ``time`` that is no time."""
    if alert.time is None:
        return None
    try:
        return alert_times.sent_at(alert.time)
    except ValueError:
        raise AlertError(
            "time",
            f"{alert.time!r} is not a time: a target alert's time is TradingView's {{{{timenow}}}} "
            "(2026-11-27T15:00:00Z) or epoch seconds or milliseconds; leave it out to have "
            "target alerts taken in the order they arrive",
        ) from None


def _check_listing(alert: AlertIn) -> None:
    """A stock listed outside the US (``LSE:BP``) would be ordered on its US listing in USD
    (BP's ADR: six shares each) unless the alert names its currency."""
    if (
        alert.listing
        and alert.listing not in US_LISTINGS
        and alert.contract_type == "STK"
        and alert.currency is None
    ):
        raise AlertError(
            "ticker",
            f"{alert.listing}:{alert.symbol} is not a US listing, and without a currency the "
            f'order would go to the US one in USD: give the alert its currency ("currency": '
            '"GBP") or send a US ticker',
        )


def _no_bracket(alert: AlertIn) -> None:
    """A target alert orders a difference: exits on it would be sized to that difference (a
    reversal's stop would reverse the position again), and while they work every later
    target alert for the symbol waits for them (409): the strategy's own exit is lost."""
    for name in ("take_profit", "stop_loss"):
        if getattr(alert, name) is not None:
            raise AlertError(
                name,
                "not taken with market_position: send the strategy's exits as target alerts, "
                "or a bracket as an order alert (action and contracts)",
            )


def _target(alert: AlertIn) -> float:
    if alert.market_position == "flat":
        return 0.0
    size = alert.market_position_size
    if size is None and alert.position_size is not None:
        size = abs(alert.position_size)
    if size is None:
        raise AlertError(
            "market_position_size", f"required for market_position {alert.market_position!r}"
        )
    return float(size) if alert.market_position == "long" else -float(size)


def _whole(quantity: float) -> float | int:
    return int(round(quantity)) if abs(quantity - round(quantity)) < 1e-9 else quantity


def _on_tick(price: float, sec_type: str, symbol: str) -> float:
    """``price`` rounded to the tick; one too large to round is left for OrderIn to refuse."""
    tick = price_tick(sec_type, symbol, price)
    if not math.isfinite(price / tick):
        return price
    return round(round(price / tick) * tick, 10)


def position_of(
    positions: Iterable[PositionRow],
    symbol: str,
    sec_type: str,
    account: str = "",
    currency: str = "USD",
) -> float:
    """The quantity held of ``symbol`` (signed; 0 when none), in ``account`` when named; of
    its listing in ``currency`` (SHOP in CAD is not the SHOP a USD order trades)."""
    if sec_type == "CASH":
        wanted = symbol.replace(".", "")
        rows = [
            p for p in positions if p.sec_type == "CASH" and p.symbol.replace(".", "") == wanted
        ]
    else:
        rows = [
            p
            for p in positions
            if p.sec_type == sec_type and p.symbol == symbol and p.currency == currency
        ]
    return sum(p.quantity for p in rows if not account or p.account == account)


def unheard_fills(
    records: Iterable[Lifecycle], listed: Iterable[ExecutionRow], asked_at: float | None
) -> list[str]:
    """Ids of our orders with a fill that the reader's position may not include yet: a fill
    its snapshot neither lists (``listed``) nor had reported to us before it asked for the
    executions it lists (``asked_at``, ``Snapshot.executions_asked_at``)."""
    seen = {row.exec_id for row in listed}
    return [
        record.id
        for record in records
        if any(
            fill.exec_id not in seen and (asked_at is None or fill.at >= asked_at)
            for fill in record.fills
        )
    ]


# --------------------------------------------------------------- redaction
def redact(text: str) -> str:
    """``text`` with any ``/webhook/<secret>`` URL's secret replaced: every segment after
    ``/webhook/``, since a URL with a segment or a slash too many carries it further along."""
    return TOKEN_IN_PATH.sub(r"\1<redacted>", text)


class RedactWebhookTokens(logging.Filter):
    """Cuts the secret out of ``/webhook/<secret>`` in a record's message and traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler to report
            return True
        if "/webhook/" in message:
            record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text and "/webhook/" in record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


REDACTION = RedactWebhookTokens()
ACCESS_LOGGERS = ("waitress", "werkzeug", "gunicorn.access", "gunicorn.error")


def install_redaction(*loggers: logging.Logger) -> None:
    """Redact webhook URLs in the servers' loggers, ``loggers`` and every root handler."""
    for logger in (*(logging.getLogger(name) for name in ACCESS_LOGGERS), *loggers):
        logger.addFilter(REDACTION)  # addFilter skips a filter already there
    for handler in logging.getLogger().handlers:
        handler.addFilter(REDACTION)
