"""Shared fixtures: an embedded simulated gateway, the app connected to it, the app served."""

# ruff: noqa: E402 - the bytecode setting below must come before the project's imports

from __future__ import annotations

import logging
import re
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# Bytecode is cached under __pycache__ (gitignored) even where PYTHONDONTWRITEBYTECODE is set:
# without it every worker compiles the project and assertion-rewrites every test module again
# at each run (collection: 6.3 s of CPU a worker instead of 3.1 s), and every app or gateway
# subprocess a test starts compiles the project again too. Set before the modules below load.
sys.dont_write_bytecode = False

import pytest
import waitress
from hypothesis import settings
from waitress import wasyncore

import app_simple
from config import load_settings
from sim_gateway.broker import BrokerConfig
from sim_gateway.controller import SimGateway
from sim_gateway.server import ServerSettings

ROOT = Path(__file__).resolve().parent.parent

API_TOKEN = "test-api-token-0123456789"
# the simulated gateways' clock starts inside a US trading session (a Monday, 10:00 New York)
TRADING_CLOCK = 1_796_050_800.0  # 2026-11-30T10:00:00-05:00
# Property tests: 500 examples each in every run (the suite stays near a minute); the "deep"
# profile (`pytest --hypothesis-profile=deep`) tries ten times more, for a deeper search.
settings.register_profile("suite", max_examples=500)
settings.register_profile("deep", max_examples=5000)
settings.load_profile("suite")
FAST_SETTLE = {"settle_first": 0.1, "settle_validation": 0.2, "settle_final": 0.1}


@pytest.fixture
def gateway():
    """A fresh simulated gateway on a free loopback port."""
    gw = SimGateway(ServerSettings(port=0, clock_start=TRADING_CLOCK), BrokerConfig(seed=7)).start()
    yield gw
    gw.stop()


def app_settings(gateway: SimGateway, **overrides):
    """Settings that point the app at ``gateway`` (no .env, no environment)."""
    values = {
        "ib_mode": "gateway",
        "ib_host": "127.0.0.1",
        "ib_port": gateway.port,
        "connect_timeout": 5,
        "monitor_timeout": 2,
        "journal_path": ":memory:",
        "reconcile_grace": 1,
        "api_token": API_TOKEN,
        "secret_key": "test-secret-key-0123456789",
        "risk_max_orders_per_minute": 100_000,
        "risk_max_open_orders": 10_000,
        "risk_price_collar_pct": 50,
        **FAST_SETTLE,
        **overrides,
    }
    return load_settings(env={}, dotenv_path=None, overrides=values)


@pytest.fixture
def app(gateway):
    """The app connected to the gateway, services stopped afterwards."""
    from app_simple import create_app

    application = create_app({"SETTINGS": app_settings(gateway), "TESTING": True})
    yield application
    application.extensions["trading"].stop()


def api_client(app):
    """A script's client: every request carries the API bearer token."""
    test_client = app.test_client()
    test_client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {API_TOKEN}"
    return test_client


@pytest.fixture
def client(app):
    return api_client(app)


@contextmanager
def loop_paused(thread) -> Iterator[None]:
    """``thread``'s loop (a LoopThread: the order thread, the reader) blocked for the block:
    it reads no socket and runs no command or callback meanwhile."""
    paused, release = threading.Event(), threading.Event()

    def hold() -> None:
        paused.set()
        release.wait(20)

    thread.call_soon(hold)
    assert paused.wait(5)
    try:
        yield
    finally:
        release.set()


def later(gw: SimGateway, seconds: float) -> None:
    """Move ``gw``'s simulated clock ``seconds`` on: what the broker scheduled (delayed acks,
    fills, cancels) and the bad days' windows come due at once, however slow the machine."""
    gw.set_clock(when=gw.now() + seconds)


def broker_order(gw: SimGateway, order_id: int, client_id: int = 1000):
    """The broker's own record of order ``order_id`` of ``client_id`` (None before it has
    reached the broker): an order still waiting for its ack included."""
    return gw.broker_call(lambda broker: broker.order(client_id, order_id))


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


@pytest.fixture(autouse=True)
def _fast_reconnect(monkeypatch):
    """Reconnect back-off 0.05 s doubling to 0.5 s (production: 0.25 s to 5 s), so a test
    whose gateway comes back does not sit out a long back-off. The supervisor reads these
    module constants at each step, so what the tests check is the same code."""
    import ib_connection

    monkeypatch.setattr(ib_connection, "BACKOFF_FIRST", 0.05)
    monkeypatch.setattr(ib_connection, "BACKOFF_MAX", 0.5)


@pytest.fixture(autouse=True)
def _patient_risk_quote(monkeypatch):
    """The risk gate answers 503 after 3 s of gateway silence (production: 0.8 s): the
    simulator runs in the test's own process, and with six workers on two cores its thread can
    go unscheduled for a second or two (a run saw over 2 s), which a real gateway in its own
    process does not."""
    import services

    monkeypatch.setattr(services, "RISK_QUOTE_SILENCE", 3.0)


@pytest.fixture
def fast_heartbeat(monkeypatch):
    """A heartbeat every 0.5 s that gives up after 1.5 s (production: 2 s and 4 s), for tests
    that stall the gateway and would otherwise wait ~6 s for the stall to be noticed."""
    import ib_connection

    monkeypatch.setattr(ib_connection, "HEARTBEAT_INTERVAL", 0.5)
    monkeypatch.setattr(ib_connection, "HEARTBEAT_TIMEOUT", 1.5)


@pytest.fixture(autouse=True)
def _quiet_ib_async():
    logging.getLogger("ib_async").setLevel(logging.CRITICAL)
    yield


@contextmanager
def served(app, port: int = 0) -> Iterator[str]:
    """Serve ``app`` with waitress (the app's options, 8 threads) on a loopback port in a
    thread: ``port`` if it is free, else any free one."""
    options = {**app_simple.waitress_options(app.extensions["trading"].settings), "threads": 8}
    try:
        server = waitress.create_server(app, host="127.0.0.1", port=port, **options)
    except OSError:  # taken meanwhile (by some other test's server): any free port will do
        server = waitress.create_server(app, host="127.0.0.1", port=0, **options)
    thread = threading.Thread(target=server.run, name="waitress", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        stop_services = getattr(app_simple, "shutdown", None)
        if stop_services is not None:
            stop_services(app)  # services, then the instance lock
        else:
            app.extensions["trading"].stop()
        # the services' stop closed the event streams; now end waitress's loop from its own
        # thread (closing its sockets from here would race its select())
        server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
        thread.join(5)
        server.task_dispatcher.shutdown(timeout=5)
        assert not thread.is_alive(), "waitress did not stop"


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(items):
    """Every test on the worker's Chromium page is marked ``browser``. The browser tests first
    (the slow ones of them first), then the other slow tests, taking turns between files (the
    heaviest of one kind sit in one file), then the rest in collection order: pytest-xdist hands
    them out in this order (pytest.ini), so the heaviest start early and on different workers
    instead of leaving one worker to finish them alone at the end."""
    turn: dict[str, int] = {}
    slow: list[tuple[int, int, pytest.Item]] = []
    rest: list[pytest.Item] = []
    browser: list[pytest.Item] = []
    for index, item in enumerate(items):
        if _on_page(item):
            item.add_marker(pytest.mark.browser)
            browser.append(item)
            continue
        if item.get_closest_marker("slow") is None:
            rest.append(item)
            continue
        path = item.nodeid.split("::")[0]
        turn[path] = turn.get(path, -1) + 1
        slow.append((turn[path], index, item))
    browser.sort(key=lambda item: item.get_closest_marker("slow") is None)
    items[:] = browser + [item for _, _, item in sorted(slow, key=lambda t: t[:2])] + rest


# ---------------------------------------------------------------- where a leaked socket came from
# An unclosed socket fails the test (ResourceWarning is an error, see pytest.ini) during which the
# garbage collector finds it, whatever test that is, with no trace of its origin (tracemalloc
# would give one but slows the suite several times over). Every socket's creation stack is kept by file
# descriptor (a leaked socket keeps its descriptor until it is collected, so the last stack
# recorded for that number is its own) and added to the report of a test that failed on one.
_SOCKET_ORIGINS: dict[int, traceback.StackSummary] = {}
_UNCLOSED = re.compile(r"unclosed <socket\.socket fd=(\d+)")


def _recording_init(original):
    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        _SOCKET_ORIGINS[self.fileno()] = traceback.StackSummary.extract(  # formatted if needed
            traceback.walk_stack(sys._getframe(1)), limit=20, lookup_lines=False
        )

    return __init__


_PLAIN_INIT = socket.socket.__init__


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--screenshots",
        action="store_true",
        help="browser tests save screenshots of the page in artifacts/screenshots/ (off by "
        "default: a full-page PNG costs about 0.4 s of CPU)",
    )


def pytest_configure(config: pytest.Config) -> None:
    socket.socket.__init__ = _recording_init(_PLAIN_INIT)  # type: ignore[method-assign]  # diagnostics only


def pytest_unconfigure(config: pytest.Config) -> None:
    socket.socket.__init__ = _PLAIN_INIT  # type: ignore[method-assign]  # put back


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for fd in sorted(set(_UNCLOSED.findall(report.longreprtext))):
            stack = _SOCKET_ORIGINS.get(int(fd))
            origin = "".join(reversed(stack.format())) if stack else "(not recorded)\n"
            report.sections.append((f"unclosed socket fd={fd} was created at", origin))


@pytest.fixture(scope="session")
def page_pool():
    """This worker's Chromium and the one page its browser tests take turns on
    (tests/browser_pages.py); closed after the last of a run of browser tests."""
    from browser_pages import POOL

    return POOL


def _on_page(item: pytest.Item | None) -> bool:
    """Whether ``item`` is a test on the worker's Chromium page (a browser test)."""
    return "page_pool" in getattr(item, "fixturenames", ())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Playwright's loop must not outlive a run of browser tests (see tests/browser_pages.py):
    after a browser test whose next test on this worker is not one, Chromium is stopped, also
    when the test's teardown failed (else every asyncio test after it on the worker fails)."""
    try:
        return (yield)
    finally:
        pages = sys.modules.get("browser_pages")
        if pages is not None and _on_page(item) and not _on_page(nextitem):
            pages.POOL.close()


@pytest.fixture
def start_gateway() -> Iterator[Callable[..., SimGateway]]:
    """Factory of gateways in a trading session (ServerSettings as keywords); all stopped after."""
    started: list[SimGateway] = []

    def start(**settings: Any) -> SimGateway:
        settings = {"clock_start": TRADING_CLOCK, **settings}
        gw = SimGateway(ServerSettings(**settings), BrokerConfig(seed=7)).start()
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()
