"""Shared plumbing of the app benchmarks (not a benchmark itself).

* ``start_gateway`` - an embedded ``SimGateway`` on a free loopback port;
* ``app_settings`` - the app's ``Settings`` pointing at it (like ``tests/conftest.py``, but with the
  production defaults: settle 1 s + 2 s + 1 s, monitor 15 s) plus overrides;
* ``AppServer`` - ``create_app`` served by waitress in-process (``create_server(..., port=0,
  threads=16)`` in a thread), closed with its services at the end;
* ``AppProcess`` - ``python app_simple.py`` as a subprocess on a free ``DASHBOARD_PORT``;
* ``Http`` - a keep-alive ``http.client`` connection per thread; ``percentile``; ``GatewayTap``
  (per-client arrival stamps of every message the gateway reads, for per-phase 1 s windows);
* the experiment switches (``add_experiment_args``, ``experiments_from``, ``experiment_flags``),
  defined in ``_experiments`` and importable from here.

Only the standard library and the repo's own modules (requirements.txt) are used.
"""

from __future__ import annotations

import bisect
import collections
import http.client
import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import config
from _experiments import add_experiment_args as add_experiment_args  # re-exported
from _experiments import experiment_flags as experiment_flags
from _experiments import experiments_from as experiments_from
from config import Settings, load_settings
from sim_gateway.broker import BrokerConfig
from sim_gateway.controller import SimGateway
from sim_gateway.server import ServerSettings
from sim_gateway.types import Contract

TRADING_CLOCK = 1_796_050_800.0  # 2026-11-30T10:00:00-05:00, a Monday: US stocks trade

ROOT = Path(__file__).resolve().parent.parent

DEFAULT_SETTLE = (1.0, 2.0, 1.0)  # config.py defaults (SETTLE_FIRST/VALIDATION/FINAL_WAIT)
API_TOKEN = "bench-api-token-0123456789abcdef"
SECRET_KEY = "bench-secret-key-0123456789abcdef"
# Settings a benchmark needs besides the gateway address, applied only when the app knows them
# (auth and the pre-trade risk gate): a benchmark's bursts must not be refused by the
# per-minute / open-order / notional limits, and its resting LMT orders sit far from the market.
BENCH_SETTINGS = {
    "api_token": API_TOKEN,
    "secret_key": SECRET_KEY,
    "risk_max_orders_per_minute": 1_000_000,
    "risk_max_open_orders": 100_000,
    "risk_price_collar_pct": 95,
    "risk_daily_notional_cap": 1e12,
    "risk_max_notional": 1e9,
}
ORDER_CLIENT, READER_CLIENT = 1000, 999
FINAL = ("filled", "cancelled", "rejected", "not_sent", "not_placed")


def quiet_logs() -> None:
    """Benchmarks print their own figures; silence ib_async's and the app's chatter."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in (
        "ib_async",
        "sim_gateway",
        "ib_connection",
        "ib_connector",
        "order_handler",
        "journal",
        "services",
        "security",
        "app_simple",
        "loop_thread",
        "waitress",
    ):
        logging.getLogger(name).setLevel(logging.CRITICAL if name == "ib_async" else logging.ERROR)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (values need not be sorted): p95 of 20 values is the 19th."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(pct / 100 * len(ordered) - 1e-9)))
    return ordered[rank - 1]


def max_in_window(stamps: list[float], window: float = 1.0) -> int:
    """Most stamps inside any half-open ``window``-second interval."""
    ordered = sorted(stamps)
    best = 0
    for i, start in enumerate(ordered):
        best = max(best, bisect.bisect_left(ordered, start + window) - i)
    return best


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- gateway
def extra_stocks(n: int, first_con_id: int = 900_000_001) -> tuple[Contract, ...]:
    """``n`` made-up NASDAQ stocks BNCH01, BNCH02 ... (start price 100, the simulator's fallback)."""
    return tuple(
        Contract(
            con_id=first_con_id + i,
            symbol=f"BNCH{i + 1:02d}",
            local_symbol=f"BNCH{i + 1:02d}",
            trading_class="NMS",
            long_name=f"BENCH STOCK {i + 1}",
        )
        for i in range(n)
    )


def start_gateway(
    seed: int = 7, extra_contracts: tuple[Contract, ...] = (), **server: Any
) -> SimGateway:
    """A simulated gateway on a free loopback port (default 50 msg/s pacing, like TWS), its
    clock inside a US trading session (2026-11-30 10:00 New York) so orders fill at any hour."""
    server = {"clock_start": TRADING_CLOCK, **server}
    return SimGateway(
        ServerSettings(port=0, **server), BrokerConfig(seed=seed, extra_contracts=extra_contracts)
    ).start()


class GatewayTap:
    """Arrival stamps (``time.monotonic``) and message ids of every request the gateway reads,
    per client id.

    Wraps the server's own counting hook (``GatewayServer._count_rate``, the one behind
    ``stats().peak_rate_by_client``) on the gateway's loop, so the stamps are exactly the ones the
    gateway's pacing sees, and ``_on_frame`` for the message id; lets a benchmark compute the
    busiest 1 s window of one phase and say which requests filled it.
    """

    def __init__(self, gateway: SimGateway) -> None:
        self.stamps: dict[int | None, list[float]] = collections.defaultdict(list)
        self.kinds: dict[int | None, list[tuple[float, str]]] = collections.defaultdict(list)

        def install(server: Any) -> None:
            count_rate, on_frame = server._count_rate, server._on_frame

            def counting(session: Any, now: float) -> int:
                self.stamps[session.client_id].append(now)
                return count_rate(session, now)

            def framing(session: Any, event: Any) -> None:
                if isinstance(event, list) and event:
                    self.kinds[session.client_id].append((time.monotonic(), _message_name(event)))
                return on_frame(session, event)

            server._count_rate, server._on_frame = counting, framing

        gateway._run(install)

    def between(self, client_id: int, start: float, end: float) -> list[float]:
        stamps = list(self.stamps.get(client_id, ()))
        return [s for s in stamps if start <= s < end]

    def kinds_between(self, client_id: int, start: float, end: float) -> collections.Counter:
        return collections.Counter(
            k for t, k in list(self.kinds.get(client_id, ())) if start <= t < end
        )

    def busiest_window(
        self, client_id: int, start: float, end: float
    ) -> tuple[int, collections.Counter]:
        """(messages, what they were) of the busiest 1 s window within [start, end)."""
        items = sorted((t, k) for t, k in list(self.kinds.get(client_id, ())) if start <= t < end)
        stamps = [t for t, _ in items]
        best, at = 0, 0
        for i, t0 in enumerate(stamps):
            n = bisect.bisect_left(stamps, t0 + 1.0) - i
            if n > best:
                best, at = n, i
        return best, collections.Counter(k for _, k in items[at : at + best])


def _message_name(fields: list[str]) -> str:
    from sim_gateway.protocol import In

    try:
        return In(int(fields[0])).name.lower()
    except (ValueError, TypeError):
        return str(fields[0])


# --------------------------------------------------------------------------- app
def app_settings(gateway: SimGateway, **overrides: Any) -> Settings:
    """Settings pointing the app at ``gateway``; production defaults unless overridden."""
    values = {
        "ib_mode": "gateway",
        "ib_host": "127.0.0.1",
        "ib_port": gateway.port,
        "connect_timeout": 5,
        "journal_path": ":memory:",
        "reconcile_grace": 1,
        "log_level": "WARNING",
        **known(BENCH_SETTINGS),
        **overrides,
    }
    return load_settings(env={}, dotenv_path=None, overrides=values)


def known(values: dict[str, Any]) -> dict[str, Any]:
    """Only the settings this version of the app has (config.ENV_KEYS)."""
    return {k: v for k, v in values.items() if k in config.ENV_KEYS}


def bench_env() -> dict[str, str]:
    """BENCH_SETTINGS as environment variables for ``python app_simple.py``."""
    return {config.ENV_KEYS[k]: str(v) for k, v in known(BENCH_SETTINGS).items()}


class AppServer:
    """``create_app`` served by waitress (16 threads) on a free loopback port, in this process."""

    def __init__(
        self, settings: Settings, routes: Callable[[Any], None] | None = None, threads: int = 16
    ) -> None:
        from waitress import create_server

        from app_simple import create_app

        self.app = create_app({"SETTINGS": settings})
        if routes is not None:
            routes(self.app)
        self.services = self.app.extensions["trading"]
        self.server = create_server(self.app, host="127.0.0.1", port=0, threads=threads)
        self.port = self.server.effective_port
        self.base = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.run, name="waitress", daemon=True)
        self._thread.start()

    def close(self) -> None:
        from waitress import wasyncore

        self.services.feed.close()  # ends open SSE streams
        # end waitress's loop from its own thread: closing its sockets from here would race its
        # select() (EBADF in the waitress thread)
        self.server.trigger.pull_trigger(lambda: wasyncore.close_all(self.server._map))
        self._thread.join(5)
        self.server.task_dispatcher.shutdown(timeout=5)
        if self._thread.is_alive():
            print("  !! waitress did not stop within 5 s", file=sys.stderr)
        import app_simple

        stop = getattr(app_simple, "shutdown", None)  # stops services, releases the instance lock
        if stop is not None:
            stop(self.app)
        else:
            self.services.stop()

    def __enter__(self) -> AppServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout:g}s")
        time.sleep(interval)


class AppProcess:
    """``python app_simple.py`` in a subprocess (its own journal in a temp dir, free port)."""

    def __init__(
        self,
        env: dict[str, str] | None = None,
        gateway: SimGateway | None = None,
        experiments: list[str] | None = None,
    ) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="bench-app-")
        self.port = free_port()
        base_env = {k: v for k, v in os.environ.items() if k not in config.ENV_KEYS.values()}
        base_env.update(bench_env())
        base_env.update(
            {
                "DASHBOARD_PORT": str(self.port),
                "DASHBOARD_HOST": "127.0.0.1",
                "JOURNAL_PATH": str(Path(self.tmp.name) / "orders.db"),
                "LOG_LEVEL": "WARNING",
                "PYTHONUNBUFFERED": "1",
            }
        )
        if gateway is not None:
            base_env.update(
                {"IB_MODE": "gateway", "IB_HOST": "127.0.0.1", "IB_PORT": str(gateway.port)}
            )
        else:
            base_env["IB_MODE"] = "sim"
        base_env.update(env or {})
        self.base = f"http://127.0.0.1:{self.port}"
        self.started = time.perf_counter()
        # cwd is a temp dir so that a developer's .env in the repo is not read; with experiments
        # this module launches the app after patching itself (see the end of this file)
        command = (
            [sys.executable, str(ROOT / "app_simple.py")]
            if not experiments
            else [sys.executable, str(Path(__file__).resolve()), "--run-app", *experiments]
        )
        self.proc = subprocess.Popen(
            command,
            cwd=self.tmp.name,
            env=base_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # KeyboardInterrupt: waitress stops, services stop
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        self.tmp.cleanup()

    def __enter__(self) -> AppProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def thread_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def fd_counts(pid: int) -> tuple[int, int]:
    """(all open fds, sockets among them) of a process."""
    total = sockets = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        total += 1
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                sockets += 1
        except OSError:
            pass
    return total, sockets


# --------------------------------------------------------------------------- http
class Http:
    """One keep-alive HTTP/1.1 connection (not thread-safe: one per thread)."""

    def __init__(self, base: str, timeout: float = 30.0) -> None:
        host_port = base.split("://", 1)[1].split("/", 1)[0]
        host, port = host_port.rsplit(":", 1)
        self.host, self.port, self.timeout = host, int(port), timeout
        self.conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self.conn

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {API_TOKEN}"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request(method, path, body=data, headers=headers)
                res = conn.getresponse()
                payload = res.read()
                if res.getheader("Connection", "").lower() == "close":
                    self.close()
                return res.status, payload
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()  # the server closed an idle keep-alive connection: retry once
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        status, payload = self.request(method, path, body)
        return status, json.loads(payload) if payload else None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def get_json(base: str, path: str, timeout: float = 2.0) -> tuple[int, Any]:
    """One GET on a fresh connection; (0, None) when nothing answers yet."""
    http_ = Http(base, timeout)
    try:
        return http_.json("GET", path)
    except (OSError, http.client.HTTPException, ValueError):
        return 0, None
    finally:
        http_.close()


if __name__ == "__main__" and sys.argv[1:2] == ["--run-app"]:
    # python bench/_harness.py --run-app [experiment flags]: app_simple.main() with the experiments
    import argparse

    parser = argparse.ArgumentParser()
    add_experiment_args(parser)
    experiments_from(parser.parse_args(sys.argv[2:]))
    sys.argv = [str(ROOT / "app_simple.py")]
    import app_simple

    raise SystemExit(app_simple.main())
