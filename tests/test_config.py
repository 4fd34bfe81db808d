"""Tests for config.py: defaults, parsing, validation, .env handling, import purity."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

import config
from config import ConfigError, Settings, is_paper_account, load_settings


def load(env: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings from ``env`` only: no os.environ, no .env file."""
    return load_settings(env=env or {}, dotenv_path=None, overrides=overrides or None)


def write_env(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- defaults and mode ---------------------------------------------------------


def test_defaults() -> None:
    s = load()
    assert s == Settings(
        ib_mode="auto",
        ib_host=None,
        ib_port=4002,
        client_id=999,
        order_client_id=1000,
        account="",
        connect_timeout=10.0,
        settle_first=1.0,
        settle_validation=2.0,
        settle_final=1.0,
        monitor_timeout=15.0,
        dashboard_host="127.0.0.1",
        dashboard_port=5000,
        sim_seed=1,
        sim_account="DU1234567",
        sim_port=0,
        sim_validation_delay=0.0,
        sim_master_client_id=None,
        log_level="INFO",
        journal_path="data/orders.db",
        reconcile_grace=5.0,
        secret_key=None,
        api_token=None,
        dashboard_password=None,
        trusted_hosts=("127.0.0.1", "localhost", "[::1]"),
        max_body_bytes=65536,
        read_only=False,
        allow_live_trading=False,
        live_confirm_notional=10_000.0,
        risk_max_quantity=10_000.0,
        risk_max_quantity_fx=1_000_000.0,
        risk_max_notional=250_000.0,
        risk_price_collar_pct=10.0,
        risk_symbol_allowlist=(),
        risk_symbol_denylist=(),
        risk_max_open_orders=100,
        risk_max_orders_per_minute=120,
        risk_daily_notional_cap=1_000_000.0,
        webhook_secret=None,
        webhook_rate_per_minute=30,
        webhook_allowed_ips=(),
        trusted_proxies=(),
    )
    assert s.use_simulator


def test_settings_is_frozen() -> None:
    with pytest.raises(ValidationError, match="frozen"):
        load().ib_port = 1


def test_every_field_has_exactly_one_env_key() -> None:
    field_names = list(Settings.model_fields)
    assert sorted(config.ENV_KEYS) == sorted(field_names)
    assert len(set(config.ENV_KEYS.values())) == len(field_names)


@pytest.mark.parametrize(
    ("env", "use_simulator"),
    [
        ({}, True),
        ({"IB_HOST": ""}, True),
        ({"IB_HOST": "   "}, True),
        ({"IB_HOST": "10.0.0.5"}, False),
        ({"IB_MODE": "auto", "IB_HOST": "gw.local"}, False),
        ({"IB_MODE": "sim", "IB_HOST": "gw.local"}, True),
        ({"IB_MODE": "gateway", "IB_HOST": "127.0.0.1"}, False),
        ({"IB_MODE": " Gateway ", "IB_HOST": "127.0.0.1"}, False),
        ({"IB_MODE": "SIM"}, True),
    ],
)
def test_auto_mode_resolves_to_sim_or_gateway(env: dict[str, str], use_simulator: bool) -> None:
    assert load(env).use_simulator is use_simulator


def test_the_highest_client_id_leaves_no_default_for_the_order_connection() -> None:
    """IB_CLIENT_ID=999999999 gave the order connection 1000000000, past the limit every
    client id is checked against; now that needs IB_ORDER_CLIENT_ID, and says so."""
    with pytest.raises(ConfigError) as caught:
        load({"IB_CLIENT_ID": "999999999"})
    assert str(caught.value).count("IB_ORDER_CLIENT_ID (unset): IB_CLIENT_ID=999999999") == 1
    assert load({"IB_CLIENT_ID": "999999999", "IB_ORDER_CLIENT_ID": "5"}).order_client_id == 5


def test_gateway_mode_requires_host() -> None:
    with pytest.raises(ConfigError, match="IB_MODE='gateway' requires IB_HOST"):
        load({"IB_MODE": "gateway"})


def test_a_gateway_port_without_a_host_warns_that_the_simulator_runs() -> None:
    """IB_PORT=4001 alone starts the simulator (auto mode: no host) without a word, and a
    trader who meant his gateway saw a paper account; the app now warns at start."""
    notice = load({"IB_PORT": "4001"}).simulator_despite_port
    assert notice is not None and notice.startswith("IB_PORT=4001 is set but IB_HOST is not")
    assert "IB_MODE=sim" in notice
    for quiet in ({}, {"IB_PORT": "4001", "IB_MODE": "sim"}, {"IB_PORT": "1", "IB_HOST": "h"}):
        assert load(quiet).simulator_despite_port is None


# --- each key parses -----------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "raw", "field", "expected"),
    [
        ("IB_MODE", " Sim ", "ib_mode", "sim"),
        ("IB_MODE", "AUTO", "ib_mode", "auto"),
        ("IB_HOST", " 192.168.1.10 ", "ib_host", "192.168.1.10"),
        ("IB_HOST", "ib_gateway", "ib_host", "ib_gateway"),  # a compose service's name
        ("IB_HOST", "[::1]", "ib_host", "::1"),
        ("IB_PORT", "7497", "ib_port", 7497),
        ("IB_PORT", "1", "ib_port", 1),
        ("IB_PORT", "65535", "ib_port", 65535),
        ("IB_CLIENT_ID", "0", "client_id", 0),
        ("IB_CLIENT_ID", "999999998", "client_id", 999_999_998),
        ("IB_ORDER_CLIENT_ID", "42", "order_client_id", 42),
        ("IB_ACCOUNT", "DU7654321", "account", "DU7654321"),
        ("IB_ACCOUNT", "U1234567", "account", "U1234567"),
        ("IB_CONNECT_TIMEOUT", "2.5", "connect_timeout", 2.5),
        ("IB_CONNECT_TIMEOUT", "3", "connect_timeout", 3.0),
        ("SETTLE_FIRST_WAIT", "0", "settle_first", 0.0),
        ("SETTLE_VALIDATION_WAIT", "0.25", "settle_validation", 0.25),
        ("SETTLE_FINAL_WAIT", "1e-1", "settle_final", 0.1),
        ("ORDER_MONITOR_TIMEOUT", "30", "monitor_timeout", 30.0),
        ("DASHBOARD_HOST", "0.0.0.0", "dashboard_host", "0.0.0.0"),
        ("DASHBOARD_HOST", "[::]", "dashboard_host", "[::]"),  # kept as written: check_bind
        ("DASHBOARD_PORT", "8080", "dashboard_port", 8080),
        ("SIM_SEED", "12345", "sim_seed", 12345),
        ("SIM_ACCOUNT", "DU9999999", "sim_account", "DU9999999"),
        ("SIM_PORT", "0", "sim_port", 0),
        ("SIM_PORT", "4100", "sim_port", 4100),
        ("SIM_VALIDATION_DELAY", "0.5", "sim_validation_delay", 0.5),
        ("SIM_MASTER_CLIENT_ID", "7", "sim_master_client_id", 7),
        ("SIM_MASTER_CLIENT_ID", "", "sim_master_client_id", None),
        ("LOG_LEVEL", "debug", "log_level", "DEBUG"),
        ("LOG_LEVEL", "WARNING", "log_level", "WARNING"),
        ("SECRET_KEY", " s3cret-s3cret-16 ", "secret_key", "s3cret-s3cret-16"),
        ("DASHBOARD_PASSWORD", "correct-horse", "dashboard_password", "correct-horse"),
        ("TRUSTED_HOSTS", "Example.COM, [::1],,", "trusted_hosts", ("example.com", "[::1]")),
        ("MAX_BODY_BYTES", "1024", "max_body_bytes", 1024),
        ("READ_ONLY", "yes", "read_only", True),
        ("ALLOW_LIVE_TRADING", "off", "allow_live_trading", False),
        ("RISK_MAX_NOTIONAL", "1e6", "risk_max_notional", 1e6),
        (
            "RISK_SYMBOL_ALLOWLIST",
            " msft, aapl ,,msft,brk.b",
            "risk_symbol_allowlist",
            ("AAPL", "BRK.B", "MSFT"),
        ),
        ("RISK_MAX_OPEN_ORDERS", "1", "risk_max_open_orders", 1),
    ],
)
def test_each_key_parses(key: str, raw: str, field: str, expected: object) -> None:
    value = getattr(load({key: raw}), field)
    assert value == expected
    assert type(value) is type(expected)


def test_empty_value_means_default() -> None:
    empty = {key: "" for key in config.ENV_KEYS.values()}
    assert load(empty) == load()


# --- bad values ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "raw", "expected"),
    [
        ("IB_MODE", "live", "'auto', 'sim' or 'gateway'"),
        # a port, a scheme or a path in the host: a name nobody resolves, retried for ever
        ("IB_HOST", "127.0.0.1:4002", "alone (the port goes in IB_PORT)"),
        ("IB_HOST", "http://127.0.0.1", "host name or an IP address alone"),
        ("IB_HOST", "gw.local/api", "host name or an IP address alone"),
        # and in the dashboard's: it was refused as 'exposes the dashboard beyond this machine'
        ("DASHBOARD_HOST", "127.0.0.1:5000", "alone (the port goes in DASHBOARD_PORT)"),
        ("DASHBOARD_HOST", "http://localhost", "host name or an IP address alone"),
        ("IB_PORT", "abc", "Input should be a valid integer"),
        ("IB_PORT", "0", "greater than or equal to 1"),
        ("IB_PORT", "65536", "less than or equal to 65535"),
        ("IB_PORT", "4002.0", "valid integer"),
        ("IB_PORT", "4_002", "valid integer"),
        ("IB_CLIENT_ID", "-1", "greater than or equal to 0"),
        ("IB_CLIENT_ID", "1000000000", "less than or equal to 999999999"),
        ("IB_ORDER_CLIENT_ID", "x", "valid integer"),
        ("IB_CONNECT_TIMEOUT", "0", "greater than 0"),
        ("IB_CONNECT_TIMEOUT", "soon", "valid number"),
        ("IB_CONNECT_TIMEOUT", "inf", "finite number"),
        ("IB_CONNECT_TIMEOUT", "nan", "finite number"),
        ("SETTLE_FIRST_WAIT", "-0.1", "greater than or equal to 0"),
        ("SETTLE_VALIDATION_WAIT", "two", "valid number"),
        ("SETTLE_FINAL_WAIT", "-1", "greater than or equal to 0"),
        ("ORDER_MONITOR_TIMEOUT", "0.0", "greater than 0"),
        ("DASHBOARD_PORT", "99999", "less than or equal to 65535"),
        ("SIM_SEED", "seed", "valid integer"),
        ("SIM_ACCOUNT", "U1234567", "starting with 'DU'"),
        ("SIM_PORT", "-1", "greater than or equal to 0"),
        ("SIM_VALIDATION_DELAY", "-2", "greater than or equal to 0"),
        ("SIM_MASTER_CLIENT_ID", "none", "valid integer"),
        ("LOG_LEVEL", "TRACE", "'DEBUG', 'INFO', 'WARNING' or 'ERROR'"),
        ("MAX_BODY_BYTES", "1023", "greater than or equal to 1024"),
        ("READ_ONLY", "maybe", "valid boolean"),
        ("RISK_MAX_NOTIONAL", "0", "greater than 0"),
        ("RISK_SYMBOL_ALLOWLIST", "AAPL,x!", "not 'X!'"),
        ("TRUSTED_HOSTS", "localhost,evil host", "not 'evil host'"),
        ("WEBHOOK_RATE_PER_MINUTE", "0", "greater than or equal to 1"),
        # an address with a prefix length (a typo) used to pass as its network, silently:
        # 52.89.214.238/1 was 0.0.0.0/1, half of all addresses allowed to send alerts
        ("WEBHOOK_ALLOWED_IPS", "52.89.214.238/1", "host bits set: 0.0.0.0/1, or 52.89.214.238"),
        ("TRUSTED_PROXIES", "127.0.0.1/0", "host bits set: 0.0.0.0/0, or 127.0.0.1"),
        ("TRUSTED_PROXIES", "::1/64", "host bits set: ::/64, or ::1"),
    ],
)
def test_bad_value_raises_config_error_naming_key(key: str, raw: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load({key: raw})
    message = str(info.value)
    assert message.startswith(f"{key}={raw!r}: ")
    assert expected in message
    assert info.value.problems == (message,)
    assert isinstance(info.value, ValueError)


def test_example_message_is_exact() -> None:
    with pytest.raises(ConfigError) as info:
        load({"IB_PORT": "abc"})
    assert str(info.value) == "IB_PORT='abc': Input should be a valid integer"


def test_all_problems_are_reported_one_per_line() -> None:
    with pytest.raises(ConfigError) as info:
        load({"IB_PORT": "abc", "LOG_LEVEL": "loud", "SETTLE_FINAL_WAIT": "-1"})
    lines = str(info.value).splitlines()
    assert len(lines) == 3
    assert [line.split("=")[0] for line in lines] == ["IB_PORT", "SETTLE_FINAL_WAIT", "LOG_LEVEL"]


# --- order client id -----------------------------------------------------------


def test_order_client_id_defaults_to_client_id_plus_one() -> None:
    assert load({"IB_CLIENT_ID": "17"}).order_client_id == 18
    assert load(client_id=5).order_client_id == 6


def test_order_client_id_must_differ() -> None:
    with pytest.raises(ConfigError) as info:
        load({"IB_CLIENT_ID": "5", "IB_ORDER_CLIENT_ID": "5"})
    assert "IB_ORDER_CLIENT_ID='5': must differ from IB_CLIENT_ID=5" in str(info.value)
    with pytest.raises(ConfigError, match="override order_client_id=7: must differ"):
        load({"IB_CLIENT_ID": "7"}, order_client_id=7)


def test_explicit_order_client_id_is_kept() -> None:
    s = load({"IB_CLIENT_ID": "5", "IB_ORDER_CLIENT_ID": "3"})
    assert (s.client_id, s.order_client_id) == (5, 3)


# --- .env file -----------------------------------------------------------------


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    path = write_env(
        tmp_path / ".env",
        "# comment\nIB_HOST=gw.example\nIB_PORT=7497\nexport LOG_LEVEL=debug\nIB_ACCOUNT\n",
    )
    s = load_settings(env={}, dotenv_path=path)
    assert (s.ib_host, s.ib_port, s.log_level, s.account) == ("gw.example", 7497, "DEBUG", "")
    assert not s.use_simulator


def test_real_environment_wins_over_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_env(tmp_path / ".env", "IB_PORT=7497\nDASHBOARD_PORT=8000\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IB_PORT", "4001")
    monkeypatch.delenv("DASHBOARD_PORT", raising=False)
    s = load_settings()  # os.environ over ./.env
    assert (s.ib_port, s.dashboard_port) == (4001, 8000)
    # An explicit env mapping wins over the file too.
    assert load_settings(env={"IB_PORT": "7496"}, dotenv_path=tmp_path / ".env").ib_port == 7496


def test_bad_value_in_dotenv_names_key(tmp_path: Path) -> None:
    path = write_env(tmp_path / "custom.env", "SIM_PORT=lots\n")
    with pytest.raises(ConfigError, match=r"^SIM_PORT='lots': Input should be a valid integer"):
        load_settings(env={}, dotenv_path=str(path))


def test_a_mistyped_key_in_dotenv_is_named_not_ignored(tmp_path: Path) -> None:
    """A key that is no setting was ignored: RISK_MAX_NOTIONAL_USD=5000 left the per-order
    limit at 250,000 and the app started as if it had been set."""
    path = write_env(
        tmp_path / ".env",
        "RISK_MAX_NOTIONAL_USD=5000\nib_port=4001\nALLOW_LIVE_TRADNG=false\nRISK_PER_TRADE=500\n"
        "TZ=UTC\nCOMPOSE_PROJECT_NAME=ib\nIB_PORT=4001\n",
    )
    with pytest.raises(ConfigError) as info:
        load_settings(env={}, dotenv_path=path)
    assert info.value.problems == (
        f"RISK_MAX_NOTIONAL_USD: no such setting (in {path}): did you mean RISK_MAX_NOTIONAL?",
        f"ib_port: no such setting (in {path}): did you mean IB_PORT?",
        f"ALLOW_LIVE_TRADNG: no such setting (in {path}): did you mean ALLOW_LIVE_TRADING?",
        f"RISK_PER_TRADE: no such setting (in {path}): the keys are in .env.example",
    )
    # other programs' keys in the same file, and the environment's, are not the app's business
    path.write_text("TZ=UTC\nCOMPOSE_PROJECT_NAME=ib\nIB_PORT=4001\n")
    assert load_settings(env={"RISK_MAX_NOTIONAL_USD": "1"}, dotenv_path=path).ib_port == 4001


def test_missing_dotenv_is_fine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings(env={}, dotenv_path=tmp_path / "nope.env") == load()
    monkeypatch.chdir(tmp_path)  # no ./.env here
    assert load_settings(env={}) == load()


def test_dotenv_path_none_skips_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_env(tmp_path / ".env", "IB_PORT=not-a-port\n")
    monkeypatch.chdir(tmp_path)
    assert load_settings(env={}, dotenv_path=None).ib_port == 4002


# --- overrides -----------------------------------------------------------------


def test_overrides_apply_last_and_accept_typed_values() -> None:
    s = load(
        {"IB_PORT": "7497", "IB_HOST": "gw"},
        ib_port=4001,
        ib_host=None,
        settle_first=0,
        log_level="error",
    )
    assert (s.ib_port, s.ib_host, s.settle_first, s.log_level) == (4001, None, 0.0, "ERROR")
    assert s.use_simulator
    assert isinstance(s.settle_first, float)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"ib_port": 70000}, "override ib_port=70000: Input should be less than or equal to 65535"),
        ({"ib_port": "abc"}, "override ib_port='abc': Input should be a valid integer"),
        ({"client_id": True}, "override client_id=True: Input should be a valid integer"),
        ({"client_id": 1.5}, "override client_id=1.5: Input should be a valid integer"),
        ({"monitor_timeout": 0}, "override monitor_timeout=0: Input should be greater than 0"),
        (
            {"risk_max_quantity": False},
            "override risk_max_quantity=False: Input should be a valid number",
        ),
        ({"sim_account": "X1"}, "override sim_account='X1': Input should be a paper account"),
        (
            {"ib_mode": "live"},
            "override ib_mode='live': Input should be 'auto', 'sim' or 'gateway'",
        ),
        ({"ib_mode": "gateway"}, "IB_MODE='gateway' requires IB_HOST"),
    ],
)
def test_overrides_are_validated(overrides: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(**overrides)
    assert str(info.value).startswith(expected)


def test_unknown_override_key_is_an_error() -> None:
    with pytest.raises(ConfigError, match="unknown setting 'IB_PORT' in overrides") as info:
        load_settings(env={}, dotenv_path=None, overrides={"IB_PORT": 4001, "sim_port": "x"})
    assert info.value.problems[1].startswith("override sim_port='x': ")  # every problem at once


@pytest.mark.parametrize("key", ["SECRET_KEY", "API_TOKEN", "WEBHOOK_SECRET"])
def test_secret_values_are_not_echoed(key: str) -> None:
    """A too-short secret is named, never shown, in the error (it may end up in a log)."""
    with pytest.raises(ConfigError) as info:
        load({key: "hunter2-short"})
    assert str(info.value) == f"{key}=<hidden>: String should have at least 16 characters"
    assert info.value.__cause__ is None and info.value.__context__ is None
    field = next(name for name, env_key in config.ENV_KEYS.items() if env_key == key)
    with pytest.raises(ConfigError) as info:
        load_settings(env={}, dotenv_path=None, overrides={field: "hunter2-short"})
    assert "hunter2" not in str(info.value) and field in str(info.value)


def test_the_webhook_secret_cannot_be_the_api_token() -> None:
    token = "t0ken-t0ken-t0ken-1"
    with pytest.raises(ConfigError, match="WEBHOOK_SECRET must differ from API_TOKEN") as info:
        load({"API_TOKEN": token, "WEBHOOK_SECRET": token})
    assert token not in str(info.value)
    assert load({"API_TOKEN": token, "WEBHOOK_SECRET": token[::-1]}).webhook_secret == token[::-1]


def test_a_short_dashboard_password_is_refused_unshown() -> None:
    """A sign-in password of a few characters falls to guessing even at the lockout's pace."""
    with pytest.raises(ConfigError) as info:
        load({"DASHBOARD_PASSWORD": "hunter2"})
    assert (
        str(info.value) == "DASHBOARD_PASSWORD=<hidden>: String should have at least 12 characters"
    )


def test_repr_hides_secrets() -> None:
    secrets = {
        "secret_key": "k" * 16,
        "api_token": "t" * 16,
        "dashboard_password": "p" * 16,
        "webhook_secret": "w" * 16,
    }
    s = load_settings(env={}, dotenv_path=None, overrides=secrets)
    assert s.api_token == "t" * 16
    assert all(value not in repr(s) for value in secrets.values())


# --- helpers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("account", "paper"),
    [("DU1234567", True), ("DUX", True), ("U1234567", False), ("du123", False), ("", False)],
)
def test_is_paper_account(account: str, paper: bool) -> None:
    assert is_paper_account(account) is paper


# --- import-time purity --------------------------------------------------------


def test_import_touches_nothing(tmp_path: Path) -> None:
    """A broken environment and an unreadable ./.env must not break `import config`."""
    (tmp_path / ".env").mkdir()  # a directory where the file would be
    env = {
        **os.environ,
        "IB_PORT": "abc",
        "IB_MODE": "nonsense",
        "SIM_ACCOUNT": "bogus",
    }
    code = (
        "import sys, config\n"
        "try:\n"
        "    config.load_settings()\n"
        "except config.ConfigError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    # The errors surface only when load_settings() is called.
    assert "IB_PORT='abc'" in result.stdout
    assert "IB_MODE='nonsense'" in result.stdout
    assert "SIM_ACCOUNT='bogus'" in result.stdout


def test_env_example_uncommented_gives_the_defaults(tmp_path) -> None:
    """Every documented key of .env.example parses, and its shown value is the default."""
    from pathlib import Path

    example = Path(__file__).resolve().parent.parent / ".env.example"
    lines = [
        line[2:] for line in example.read_text().splitlines() if re.match(r"^# [A-Z_]+=", line)
    ]
    env_file = tmp_path / ".env"
    env_file.write_text("\n".join(lines) + "\n")
    assert load_settings(env={}, dotenv_path=env_file) == load_settings(env={}, dotenv_path=None)
    documented = {line.split("=", 1)[0] for line in lines}
    from config import ENV_KEYS

    assert set(ENV_KEYS.values()) <= documented


def test_unreadable_dotenv_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_bytes(b"IB_PORT=\xff\xfe\n")
    with pytest.raises(ConfigError, match=r"^cannot read '.*\.env': 'utf-8' codec"):
        load_settings(env={}, dotenv_path=path)
