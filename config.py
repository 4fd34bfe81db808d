"""Typed application settings read from the environment and a ``.env`` file (pydantic-settings).

Importing this module reads nothing: the environment and the ``.env`` file are
read and validated only when :func:`load_settings` is called. Each setting is
one field of :class:`Settings`, named by its environment key (its alias); an
unset, empty or blank variable means "use the default". Bad values raise one
:class:`ConfigError` listing every problem, one per line, each naming the key.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable, Mapping
from difflib import get_close_matches
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    InitSettingsSource,
    NoDecode,
    SettingsConfigDict,
)

__all__ = ["ConfigError", "Settings", "is_paper_account", "load_settings"]

MAX_CLIENT_ID = 999_999_999
PAPER_PREFIX = "DU"
MAX_PROXY_HOPS = 5


class ConfigError(ValueError):
    """Invalid configuration; ``problems`` holds one message per bad key."""

    def __init__(self, problems: list[str] | tuple[str, ...]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


def is_paper_account(account_id: str) -> bool:
    """True iff ``account_id`` is an IB paper-trading account (starts with "DU")."""
    return account_id.startswith(PAPER_PREFIX)


# --- field types: pydantic does the parsing, these add what it does not --------


def _whole_number(value: Any) -> Any:
    """Refuse what pydantic would coerce to an int: True, "4002.0", "4_002"."""
    if isinstance(value, bool) or (
        isinstance(value, str) and not re.fullmatch(r"[+-]?[0-9]+", value)
    ):
        raise ValueError("Input should be a valid integer")
    return value


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("Input should be a valid number")
    return value


def _folded(case: Literal["lower", "upper"]) -> BeforeValidator:
    return BeforeValidator(lambda v: getattr(v, case)() if isinstance(v, str) else v)


def _items(value: Any) -> Any:
    """A comma-separated string as a list (blank items dropped); anything else unchanged."""
    return (
        [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, str)
        else value
    )


def _symbols(items: tuple[str, ...]) -> tuple[str, ...]:
    symbols = tuple(sorted({item.upper() for item in items}))
    for symbol in symbols:
        if not re.fullmatch(r"[A-Z][A-Z0-9.]{0,14}", symbol):
            raise ValueError(f"Input should be symbols such as AAPL,MSFT, not {symbol!r}")
    return symbols


def _hosts(items: tuple[str, ...]) -> tuple[str, ...]:
    hosts = tuple(item.lower() for item in items)
    for host in hosts:
        if not re.fullmatch(r"[a-z0-9.:\[\]-]{1,253}", host):
            raise ValueError(f"Input should be host names, not {host!r}")
    return hosts


def _networks(items: tuple[str, ...]) -> tuple[str, ...]:
    """Addresses or networks (CIDR), each normalised (``10.0.0.0/8``, ``::1/128``)."""
    return tuple(_network(item) for item in items)


def _network(item: str) -> str:
    """One address or network; an address with a prefix length (host bits set) is refused:
    ``52.89.214.238/1`` would silently mean ``0.0.0.0/1``, half of all addresses."""
    text = item.strip("[]")
    try:
        return str(ipaddress.ip_network(text))
    except ValueError:
        pass
    try:
        meant = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(
            f"Input should be IP addresses or networks such as 127.0.0.1,10.0.0.0/8, not {item!r}"
        ) from None
    raise ValueError(
        f"Input should be a network or an address, not {item!r} "
        f"(host bits set: {meant}, or {text.partition('/')[0]} alone?)"
    )


def _proxies(items: tuple[str, ...]) -> tuple[str, ...]:
    """A count of proxy hops (1..5, trusted whoever connects) or the proxies' addresses."""
    if len(items) == 1 and items[0].isdigit():
        if not 1 <= int(items[0]) <= MAX_PROXY_HOPS:
            raise ValueError(
                f"Input should be a count of 1..{MAX_PROXY_HOPS} proxies, or their addresses"
            )
        return (str(int(items[0])),)
    return _networks(items)


def _host_alone(port_key: str, normalise: bool) -> AfterValidator:
    """A host name or an IP address, nothing else (IPv6 brackets dropped when ``normalise``):
    a port, a scheme or a path in it (``127.0.0.1:4002``, ``http://gw``) made a name nobody
    resolves, retried for ever behind a resolver error that named no setting (IB_HOST), or a
    misleading 'exposes the dashboard' refusal (DASHBOARD_HOST)."""

    def check(host: str | None) -> str | None:
        if host is None:
            return None
        bare = host.removeprefix("[").removesuffix("]")
        try:
            address = str(ipaddress.ip_address(bare))
        except ValueError:
            if not re.fullmatch(r"[A-Za-z0-9_.-]{1,253}", host):
                raise ValueError(
                    "Input should be a host name or an IP address alone (the port goes in "
                    f"{port_key}), e.g. 127.0.0.1"
                ) from None
            return host
        return address if normalise else host

    return AfterValidator(check)


def _paper_account(account: str) -> str:
    if not is_paper_account(account):
        raise ValueError(f"Input should be a paper account id starting with {PAPER_PREFIX!r}")
    return account


ClientId: TypeAlias = Annotated[int, BeforeValidator(_whole_number), Field(ge=0, le=MAX_CLIENT_ID)]
Port: TypeAlias = Annotated[int, BeforeValidator(_whole_number), Field(ge=1, le=65535)]
AnyPort: TypeAlias = Annotated[  # 0 = any free loopback port
    int, BeforeValidator(_whole_number), Field(ge=0, le=65535)
]
Seed: TypeAlias = Annotated[int, BeforeValidator(_whole_number), Field(ge=0, le=2**32 - 1)]
BodyBytes: TypeAlias = Annotated[int, BeforeValidator(_whole_number), Field(ge=1024, le=10_000_000)]
Count: TypeAlias = Annotated[int, BeforeValidator(_whole_number), Field(ge=1, le=100_000)]
BigCount: TypeAlias = Annotated[int, BeforeValidator(_whole_number), Field(ge=1, le=1_000_000)]
Wait = Annotated[float, BeforeValidator(_no_bool), Field(ge=0)]  # seconds, 0 allowed
Positive = Annotated[float, BeforeValidator(_no_bool), Field(gt=0)]  # seconds or amounts
Secret = Annotated[str | None, Field(min_length=16)]
Password = Annotated[str | None, Field(min_length=12)]  # typed by a person, guarded by the lockout
Symbols = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_items), AfterValidator(_symbols)]
Hosts = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_items), AfterValidator(_hosts)]
Networks = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_items), AfterValidator(_networks)]
Proxies = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_items), AfterValidator(_proxies)]


def _nightly_reset(value: str) -> str:
    """ "off" or IB's nightly reset as HH:MM/SECONDS[/lost] (sim_gateway.bad_days)."""
    from sim_gateway.bad_days import parse_nightly

    if value.lower() == "off":
        return "off"
    parse_nightly(value)
    return value


def _env(key: str, default: Any, *, secret: bool = False) -> Any:
    """A field read from environment key ``key``; a secret never shows in repr or errors."""
    return Field(default, validation_alias=key, repr=not secret)


class Settings(BaseSettings):
    """Validated settings; build with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_file=".env",
        case_sensitive=True,
        extra="ignore",
        frozen=True,
        validate_by_name=True,
        validate_by_alias=True,
        allow_inf_nan=False,
    )

    ib_mode: Annotated[Literal["auto", "sim", "gateway"], _folded("lower")] = _env(
        "IB_MODE", "auto"
    )
    ib_host: Annotated[str | None, _host_alone("IB_PORT", normalise=True)] = _env("IB_HOST", None)
    ib_port: Port = _env("IB_PORT", 4002)
    client_id: ClientId = _env("IB_CLIENT_ID", 999)
    order_client_id: ClientId | None = Field(  # None -> client_id + 1 (never None once built)
        None, validation_alias="IB_ORDER_CLIENT_ID", validate_default=True
    )
    account: str = _env("IB_ACCOUNT", "")  # "" = first managed account
    connect_timeout: Positive = _env("IB_CONNECT_TIMEOUT", 10.0)
    settle_first: Wait = _env("SETTLE_FIRST_WAIT", 1.0)
    settle_validation: Wait = _env("SETTLE_VALIDATION_WAIT", 2.0)
    settle_final: Wait = _env("SETTLE_FINAL_WAIT", 1.0)
    monitor_timeout: Positive = _env("ORDER_MONITOR_TIMEOUT", 15.0)
    dashboard_host: Annotated[str, _host_alone("DASHBOARD_PORT", normalise=False)] = _env(
        "DASHBOARD_HOST", "127.0.0.1"
    )
    dashboard_port: AnyPort = _env("DASHBOARD_PORT", 5000)  # 0: any free port, printed
    sim_seed: Seed = _env("SIM_SEED", 1)
    sim_account: Annotated[str, AfterValidator(_paper_account)] = _env("SIM_ACCOUNT", "DU1234567")
    sim_port: AnyPort = _env("SIM_PORT", 0)
    sim_validation_delay: Wait = _env("SIM_VALIDATION_DELAY", 0.0)
    sim_master_client_id: ClientId | None = _env("SIM_MASTER_CLIENT_ID", None)
    log_level: Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR"], _folded("upper")] = _env(
        "LOG_LEVEL", "INFO"
    )
    journal_path: str = _env("JOURNAL_PATH", "data/orders.db")  # SQLite order journal
    reconcile_grace: Wait = _env(
        "RECONCILE_GRACE", 5.0
    )  # seconds a lost placement may take to appear
    secret_key: Secret = _env(
        "SECRET_KEY", None, secret=True
    )  # None = generated, kept in the data folder
    api_token: Secret = _env("API_TOKEN", None, secret=True)  # None = generated on first run
    dashboard_password: Password = _env("DASHBOARD_PASSWORD", None, secret=True)  # optional login
    trusted_hosts: Hosts = _env(
        "TRUSTED_HOSTS", ("127.0.0.1", "localhost", "[::1]")
    )  # besides the bind address
    max_body_bytes: BodyBytes = _env("MAX_BODY_BYTES", 65536)
    read_only: bool = _env("READ_ONLY", False)  # no order thread: the dashboard only reads
    allow_live_trading: bool = _env(
        "ALLOW_LIVE_TRADING", False
    )  # else orders on a live account are refused
    live_confirm_notional: Positive = _env(
        "LIVE_CONFIRM_NOTIONAL", 10_000.0
    )  # typed confirmation above
    risk_max_quantity: Positive = _env("RISK_MAX_QUANTITY", 10_000.0)  # stocks: shares
    # FX pairs: units of the base currency (20,000 EUR.USD is 20,000 euros); see risk.ASSET_LIMITS
    risk_max_quantity_fx: Positive = _env("RISK_MAX_QUANTITY_FX", 1_000_000.0)
    risk_max_notional: Positive = _env("RISK_MAX_NOTIONAL", 250_000.0)
    risk_price_collar_pct: Positive = _env("RISK_PRICE_COLLAR_PCT", 10.0)
    # the collar against a delayed (~15 min) quote; None = the same as RISK_PRICE_COLLAR_PCT
    risk_delayed_collar_pct: Positive | None = _env("RISK_DELAYED_COLLAR_PCT", None)
    # reqMarketDataType: 3 = live where subscribed, else delayed (IB's own fallback); 1 = live only
    market_data_type: Annotated[int, BeforeValidator(_whole_number), Field(ge=1, le=4)] = _env(
        "MARKET_DATA_TYPE", 3
    )
    # IB's concurrent market data lines of the account (100 unless quote boosters were bought)
    market_data_lines: Count = _env("MARKET_DATA_LINES", 100)
    sim_market_data: Literal["live", "delayed", "api-delayed", "none"] = _env(
        "SIM_MARKET_DATA", "live"
    )
    # HH:MM/SECONDS[/lost] New York time on the simulated clock, or "off"
    sim_nightly_reset: Annotated[str, AfterValidator(_nightly_reset)] = _env(
        "SIM_NIGHTLY_RESET", "23:45/300"
    )
    risk_symbol_allowlist: Symbols = _env("RISK_SYMBOL_ALLOWLIST", ())  # empty = every symbol
    risk_symbol_denylist: Symbols = _env("RISK_SYMBOL_DENYLIST", ())
    risk_max_open_orders: Count = _env("RISK_MAX_OPEN_ORDERS", 100)
    risk_max_orders_per_minute: BigCount = _env("RISK_MAX_ORDERS_PER_MINUTE", 120)
    risk_daily_notional_cap: Positive = _env("RISK_DAILY_NOTIONAL_CAP", 1_000_000.0)
    # per asset class, in place of RISK_MAX_QUANTITY / RISK_MAX_NOTIONAL (contracts; notional
    # = price x quantity x multiplier)
    risk_opt_max_contracts: Positive = _env("RISK_OPT_MAX_CONTRACTS", 50.0)
    risk_opt_max_notional: Positive = _env("RISK_OPT_MAX_NOTIONAL", 50_000.0)
    risk_fut_max_contracts: Positive = _env("RISK_FUT_MAX_CONTRACTS", 5.0)
    risk_fut_max_notional: Positive = _env("RISK_FUT_MAX_NOTIONAL", 1_500_000.0)
    webhook_secret: Secret = _env("WEBHOOK_SECRET", None, secret=True)  # None = webhook disabled
    webhook_rate_per_minute: Count = _env("WEBHOOK_RATE_PER_MINUTE", 30)
    webhook_allowed_ips: Networks = _env("WEBHOOK_ALLOWED_IPS", ())  # empty = any source
    trusted_proxies: Proxies = _env("TRUSTED_PROXIES", ())  # hop count or addresses; empty = none

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_default(cls, value: Any, info: ValidationInfo) -> Any:
        """Strip text; None, "" and blanks mean the field's default."""
        if isinstance(value, str):
            value = value.strip()
        if value is None or value == "":
            return cls.model_fields[info.field_name or ""].default
        return value

    @field_validator("order_client_id")
    @classmethod
    def _own_order_client(cls, value: int | None, info: ValidationInfo) -> int | None:
        client_id = info.data.get("client_id")
        if client_id is None:  # client_id itself is bad: reported there
            return value
        if value is None:
            if client_id + 1 > MAX_CLIENT_ID:
                raise ValueError(
                    f"IB_CLIENT_ID={client_id} leaves no room for the order connection's "
                    f"default ({client_id + 1} > {MAX_CLIENT_ID}): set IB_ORDER_CLIENT_ID"
                )
            return client_id + 1
        if value == client_id:
            raise ValueError(
                f"must differ from IB_CLIENT_ID={client_id} (orders use their own connection)"
            )
        return value

    @model_validator(mode="after")
    def _gateway_needs_host(self) -> Settings:
        if self.ib_mode == "gateway" and not self.ib_host:
            raise ValueError("IB_MODE='gateway' requires IB_HOST to be set")
        return self

    @model_validator(mode="after")
    def _webhook_secret_is_not_the_token(self) -> Settings:
        if self.webhook_secret is not None and self.webhook_secret == self.api_token:
            raise ValueError(
                "WEBHOOK_SECRET must differ from API_TOKEN: the webhook's secret is handed to "
                "TradingView, which would then hold the API's full key"
            )
        return self

    @property
    def simulator_despite_port(self) -> str | None:
        """What to warn when IB_PORT is set without IB_HOST in auto mode: the port of a
        gateway, yet the embedded simulator starts (None otherwise)."""
        if self.ib_mode != "auto" or self.ib_host or "ib_port" not in self.model_fields_set:
            return None
        return (
            f"IB_PORT={self.ib_port} is set but IB_HOST is not: this runs the embedded "
            "SIMULATED paper gateway, not the gateway on that port. Set IB_HOST (e.g. "
            "127.0.0.1) to use it, or IB_MODE=sim to run the simulator without this warning"
        )

    @property
    def use_simulator(self) -> bool:
        """Whether to run against the embedded simulated paper gateway."""
        return self.ib_mode == "sim" or (self.ib_mode == "auto" and not self.ib_host)


ENV_KEYS: dict[str, str] = {
    name: str(field.validation_alias) for name, field in Settings.model_fields.items()
}
# first words shared by several keys: an unknown key in .env that starts with one is a typo
_KEY_FAMILIES = frozenset(
    word
    for word in {key.split("_")[0] for key in ENV_KEYS.values()}
    if sum(key.startswith(f"{word}_") for key in ENV_KEYS.values()) > 1
)
_FIELD_OF_KEY: dict[str, str] = {
    **{key: name for name, key in ENV_KEYS.items()},
    **{n: n for n in ENV_KEYS},
}


class _MappingEnvSource(EnvSettingsSource):
    """The environment source, reading ``env`` instead of ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        self._env = dict(env)
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return self._env


def _dotenv_source(path: str | os.PathLike[str] | None) -> DotEnvSettingsSource:
    try:
        return DotEnvSettingsSource(Settings, env_file=None if path is None else os.fspath(path))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"cannot read {os.fspath(path or '')!r}: {exc}"]) from exc


def _stray_keys(keys: Iterable[str], path: str | os.PathLike[str]) -> list[str]:
    """Keys of the .env file that are no setting but look meant as one (a typo, lower case,
    one of the settings' families): they were ignored, so RISK_MAX_NOTIONAL_USD=5000 left
    the limit at 250,000 without a word. Other tools' keys (TZ, COMPOSE_...) pass."""
    known = list(ENV_KEYS.values())
    problems = []
    for key in keys:
        close = get_close_matches(key.upper(), known, n=1, cutoff=0.8)
        if key in known or not (close or key.upper().split("_")[0] in _KEY_FAMILIES):
            continue
        hint = f"did you mean {close[0]}?" if close else "the keys are in .env.example"
        problems.append(f"{key}: no such setting (in {os.fspath(path)}): {hint}")
    return problems


def _problem(error: ErrorDetails, overrides: Mapping[str, Any], raw: Mapping[str, Any]) -> str:
    """One line naming the key (or the override), its value unless secret, and what is wrong."""
    reason = error["msg"].removeprefix("Value error, ")
    if not error["loc"]:
        return reason
    field = _FIELD_OF_KEY.get(str(error["loc"][0]), str(error["loc"][0]))
    label = f"override {field}" if field in overrides else ENV_KEYS.get(field, field)
    value = overrides[field] if field in overrides else raw.get(label, error["input"])
    shown = (
        "<hidden>" if field in ENV_KEYS and not Settings.model_fields[field].repr else repr(value)
    )
    return f"{label} (unset): {reason}" if value is None else f"{label}={shown}: {reason}"


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
    known = {name: value for name, value in (overrides or {}).items() if name in ENV_KEYS}
    problems = [
        f"unknown setting {name!r} in overrides" for name in overrides or {} if name not in known
    ]
    environment = _MappingEnvSource(Settings, os.environ if env is None else env)
    dotenv = _dotenv_source(dotenv_path)
    if dotenv_path is not None:
        problems += _stray_keys(dotenv.env_vars, dotenv_path)
    sources = (InitSettingsSource(Settings, init_kwargs=known), environment, dotenv)
    try:
        settings = Settings(_build_sources=(sources, known))  # type: ignore[call-arg]  # pydantic-settings' documented source hook
    except ValidationError as exc:
        raw = {**dotenv.env_vars, **environment.env_vars}
        problems += [_problem(error, known, raw) for error in exc.errors()]
    else:
        if not problems:
            return settings
    raise ConfigError(problems)  # not chained to the ValidationError: its text shows secrets
