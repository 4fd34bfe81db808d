"""Typed application settings read from the environment and a ``.env`` file.

Importing this module has no side effects: nothing is read, parsed or
validated until :func:`load_settings` is called. Every setting is one row of
``_SPECS`` (field, env key, parser, default); an unset or empty variable means
"use the default". Bad values raise one :class:`ConfigError` listing every
problem, one per line, each naming the key, the bad value and what is expected.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = ["ConfigError", "Settings", "is_paper_account", "load_settings"]

MAX_CLIENT_ID = 999_999_999
PAPER_PREFIX = "DU"


class ConfigError(ValueError):
    """Invalid configuration; ``problems`` holds one message per bad key."""

    def __init__(self, problems: list[str] | tuple[str, ...]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


def is_paper_account(account_id: str) -> bool:
    """True iff ``account_id`` is an IB paper-trading account (starts with "DU")."""
    return account_id.startswith(PAPER_PREFIX)


@dataclass(frozen=True)
class Settings:
    """Validated settings; build with :func:`load_settings`."""

    ib_mode: str  # auto | sim | gateway
    ib_host: str | None
    ib_port: int
    client_id: int
    order_client_id: int
    account: str  # "" = first managed account
    connect_timeout: float
    settle_first: float
    settle_validation: float
    settle_final: float
    monitor_timeout: float
    dashboard_host: str
    dashboard_port: int
    sim_seed: int
    sim_account: str
    sim_port: int  # 0 = any free loopback port
    sim_validation_delay: float
    sim_master_client_id: int | None
    log_level: str
    journal_path: str  # SQLite order journal
    reconcile_grace: float  # seconds an order whose placement answer was lost may take to appear
    secret_key: str | None  # Flask session key; None = generated and kept in the data folder
    api_token: str | None  # bearer token of the JSON API; None = generated on first run
    dashboard_password: str | None  # optional login password of the browser dashboard
    trusted_hosts: tuple[str, ...]  # Host headers accepted (besides the bind address)
    max_body_bytes: int
    read_only: bool  # no order thread: the dashboard only reads
    allow_live_trading: bool  # orders on a non-paper (live) account are refused unless set
    live_confirm_notional: float  # the UI asks for a typed confirmation above this (live only)
    risk_max_quantity: float
    risk_max_notional: float
    risk_price_collar_pct: float
    risk_symbol_allowlist: tuple[str, ...]  # empty = every symbol
    risk_symbol_denylist: tuple[str, ...]
    risk_max_open_orders: int
    risk_max_orders_per_minute: int
    risk_daily_notional_cap: float
    webhook_secret: str | None  # None = webhook endpoint disabled
    webhook_rate_per_minute: int

    @property
    def use_simulator(self) -> bool:
        """Whether to run against the embedded simulated paper gateway."""
        return self.ib_mode == "sim" or (self.ib_mode == "auto" and not self.ib_host)


# --- parsers: str (stripped, non-empty) -> value, or ValueError(reason) --------

Parser = Callable[[str], Any]

_INT_RE = re.compile(r"[+-]?[0-9]+")
_FLOAT_RE = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def _integer(lo: int, hi: int) -> Parser:
    expected = f"(expected {lo}..{hi})"

    def parse(text: str) -> int:
        if not _INT_RE.fullmatch(text):
            raise ValueError(f"is not a valid integer {expected}")
        value = int(text)
        if not lo <= value <= hi:
            raise ValueError(f"is out of range {expected}")
        return value

    return parse


def _seconds(lo: float, *, allow_equal: bool) -> Parser:
    expected = f"(expected seconds {'>=' if allow_equal else '>'} {lo:g})"

    def parse(text: str) -> float:
        if not _FLOAT_RE.fullmatch(text):
            raise ValueError(f"is not a valid number {expected}")
        value = float(text)
        if not math.isfinite(value) or value < lo or (value == lo and not allow_equal):
            raise ValueError(f"is out of range {expected}")
        return value

    return parse


def _choice(*allowed: str, upper: bool = False) -> Parser:
    expected = f"(expected {'|'.join(allowed)})"

    def parse(text: str) -> str:
        value = text.upper() if upper else text.lower()
        if value not in allowed:
            raise ValueError(f"is not a valid choice {expected}")
        return value

    return parse


def _text(text: str) -> str:
    return text


def _boolean(text: str) -> bool:
    value = text.lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("is not a valid boolean (expected true|false)")


def _number(lo: float) -> Parser:
    expected = f"(expected a number > {lo:g})"

    def parse(text: str) -> float:
        if not _FLOAT_RE.fullmatch(text) or not math.isfinite(float(text)):
            raise ValueError(f"is not a valid number {expected}")
        value = float(text)
        if value <= lo:
            raise ValueError(f"is out of range {expected}")
        return value

    return parse


def _symbols(text: str) -> tuple[str, ...]:
    items = tuple(sorted({part.strip().upper() for part in text.split(",") if part.strip()}))
    for item in items:
        if not re.fullmatch(r"[A-Z][A-Z0-9.]{0,14}", item):
            raise ValueError(f"has an invalid symbol {item!r} (expected e.g. AAPL,MSFT)")
    return items


def _hosts(text: str) -> tuple[str, ...]:
    items = tuple(part.strip().lower() for part in text.split(",") if part.strip())
    for item in items:
        if not re.fullmatch(r"[a-z0-9.:\[\]-]{1,253}", item):
            raise ValueError(f"has an invalid host name {item!r}")
    return items


def _secret(text: str) -> str:
    if len(text) < 16:
        raise ValueError("is too short (expected at least 16 characters)")
    return text


def _paper_account(text: str) -> str:
    if not is_paper_account(text):
        raise ValueError(f"is not a paper account (expected an id starting with {PAPER_PREFIX!r})")
    return text


class _Spec(NamedTuple):
    field: str
    env: str
    parse: Parser
    default: Any  # used when the variable is unset or empty


_CLIENT_ID = _integer(0, MAX_CLIENT_ID)
_PORT = _integer(1, 65535)
_WAIT = _seconds(0.0, allow_equal=True)
_TIMEOUT = _seconds(0.0, allow_equal=False)

_SPECS: tuple[_Spec, ...] = (
    _Spec("ib_mode", "IB_MODE", _choice("auto", "sim", "gateway"), "auto"),
    _Spec("ib_host", "IB_HOST", _text, None),
    _Spec("ib_port", "IB_PORT", _PORT, 4002),
    _Spec("client_id", "IB_CLIENT_ID", _CLIENT_ID, 999),
    _Spec("order_client_id", "IB_ORDER_CLIENT_ID", _CLIENT_ID, None),  # None -> client_id + 1
    _Spec("account", "IB_ACCOUNT", _text, ""),
    _Spec("connect_timeout", "IB_CONNECT_TIMEOUT", _TIMEOUT, 10.0),
    _Spec("settle_first", "SETTLE_FIRST_WAIT", _WAIT, 1.0),
    _Spec("settle_validation", "SETTLE_VALIDATION_WAIT", _WAIT, 2.0),
    _Spec("settle_final", "SETTLE_FINAL_WAIT", _WAIT, 1.0),
    _Spec("monitor_timeout", "ORDER_MONITOR_TIMEOUT", _TIMEOUT, 15.0),
    _Spec("dashboard_host", "DASHBOARD_HOST", _text, "127.0.0.1"),
    _Spec("dashboard_port", "DASHBOARD_PORT", _PORT, 5000),
    _Spec("sim_seed", "SIM_SEED", _integer(0, 2**32 - 1), 1),
    _Spec("sim_account", "SIM_ACCOUNT", _paper_account, "DU1234567"),
    _Spec("sim_port", "SIM_PORT", _integer(0, 65535), 0),
    _Spec("sim_validation_delay", "SIM_VALIDATION_DELAY", _WAIT, 0.0),
    _Spec("sim_master_client_id", "SIM_MASTER_CLIENT_ID", _CLIENT_ID, None),
    _Spec("log_level", "LOG_LEVEL", _choice("DEBUG", "INFO", "WARNING", "ERROR", upper=True), "INFO"),
    _Spec("journal_path", "JOURNAL_PATH", _text, "data/orders.db"),
    _Spec("reconcile_grace", "RECONCILE_GRACE", _WAIT, 5.0),
    _Spec("secret_key", "SECRET_KEY", _secret, None),
    _Spec("api_token", "API_TOKEN", _secret, None),
    _Spec("dashboard_password", "DASHBOARD_PASSWORD", _text, None),
    _Spec("trusted_hosts", "TRUSTED_HOSTS", _hosts, ("127.0.0.1", "localhost", "[::1]")),
    _Spec("max_body_bytes", "MAX_BODY_BYTES", _integer(1024, 10_000_000), 65536),
    _Spec("read_only", "READ_ONLY", _boolean, False),
    _Spec("allow_live_trading", "ALLOW_LIVE_TRADING", _boolean, False),
    _Spec("live_confirm_notional", "LIVE_CONFIRM_NOTIONAL", _number(0), 10_000.0),
    _Spec("risk_max_quantity", "RISK_MAX_QUANTITY", _number(0), 10_000.0),
    _Spec("risk_max_notional", "RISK_MAX_NOTIONAL", _number(0), 250_000.0),
    _Spec("risk_price_collar_pct", "RISK_PRICE_COLLAR_PCT", _number(0), 10.0),
    _Spec("risk_symbol_allowlist", "RISK_SYMBOL_ALLOWLIST", _symbols, ()),
    _Spec("risk_symbol_denylist", "RISK_SYMBOL_DENYLIST", _symbols, ()),
    _Spec("risk_max_open_orders", "RISK_MAX_OPEN_ORDERS", _integer(1, 100_000), 100),
    _Spec("risk_max_orders_per_minute", "RISK_MAX_ORDERS_PER_MINUTE", _integer(1, 1_000_000), 120),
    _Spec("risk_daily_notional_cap", "RISK_DAILY_NOTIONAL_CAP", _number(0), 1_000_000.0),
    _Spec("webhook_secret", "WEBHOOK_SECRET", _secret, None),
    _Spec("webhook_rate_per_minute", "WEBHOOK_RATE_PER_MINUTE", _integer(1, 100_000), 30),
)

ENV_KEYS: dict[str, str] = {spec.field: spec.env for spec in _SPECS}


def _read_dotenv(path: str | os.PathLike[str]) -> dict[str, str]:
    """Values of the .env file at ``path`` ({} if it does not exist)."""
    from dotenv import dotenv_values  # imported lazily: import must stay side-effect free

    if not os.path.isfile(path):
        return {}
    try:
        values = dotenv_values(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"cannot read {os.fspath(path)!r}: {exc}"]) from exc
    return {key: value for key, value in values.items() if value is not None}


def load_settings(
    env: Mapping[str, str] | None = None,
    dotenv_path: str | os.PathLike[str] | None = ".env",
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build :class:`Settings` from ``env`` (default ``os.environ``) over the .env file.

    ``dotenv_path=None`` skips the file; a missing file is fine. ``overrides``
    maps field names to values (str or typed; ``None`` = default), applied last
    and validated like the environment. Raises :class:`ConfigError`.
    """
    source: dict[str, str] = _read_dotenv(dotenv_path) if dotenv_path is not None else {}
    source.update(os.environ if env is None else env)
    overrides = dict(overrides or {})

    problems = [f"unknown setting {name!r} in overrides" for name in overrides if name not in ENV_KEYS]
    values: dict[str, Any] = {}
    labels: dict[str, str] = {}
    for spec in _SPECS:
        if spec.field in overrides:
            raw: Any = overrides[spec.field]
            label = f"override {spec.field}"
            text = "" if raw is None else str(raw).strip()
        else:
            raw = source.get(spec.env)
            label = spec.env
            text = (raw or "").strip()
        labels[spec.field] = label
        try:
            values[spec.field] = spec.parse(text) if text else spec.default
        except ValueError as exc:
            problems.append(f"{label}={raw!r} {exc}")

    if "client_id" in values and "order_client_id" in values:
        if values["order_client_id"] is None:
            values["order_client_id"] = values["client_id"] + 1
        elif values["order_client_id"] == values["client_id"]:
            problems.append(
                f"{labels['order_client_id']}={values['order_client_id']!r} must differ from "
                f"{labels['client_id']}={values['client_id']!r} (orders use their own connection)"
            )
    if values.get("ib_mode") == "gateway" and "ib_host" in values and not values["ib_host"]:
        problems.append(f"{labels['ib_mode']}='gateway' requires {labels['ib_host']} to be set")

    if problems:
        raise ConfigError(problems)
    return Settings(**values)
