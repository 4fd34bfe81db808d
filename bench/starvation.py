"""Starvation: the kill switch, /health and /status while every long call is held.

The app is served by waitress with its production thread count (``services.SERVER_THREADS``).
The gateway holds every order in validation for a minute, so each ``POST /orders?wait=1`` would
sit on a thread for its whole wait. The benchmark opens SSE streams and waiting calls until the
server refuses or stops waiting (twice as many as there are threads), then times:

* ``GET /api/v1/health`` and ``GET /api/v1/status`` (10 each);
* ``POST /api/v1/kill-switch`` engage, then release (5 rounds).

Prints how many streams and waits were admitted, and the latencies (median / max). Target: every
one of these answers within 1 s. Exit status 0 when the target passes, 1 otherwise.

    python bench/starvation.py
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import sys
import threading
import time
from typing import Any

from _harness import (
    API_TOKEN,
    AppServer,
    Http,
    app_settings,
    quiet_logs,
    start_gateway,
    verdict,
    wait_until,
)

TARGET = 1.0  # seconds


class Stream:
    """One open SSE connection (the response is left unread while it stays open)."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.conn.request(
            "GET",
            "/api/v1/stream",
            headers={"Authorization": f"Bearer {API_TOKEN}", "Accept": "text/event-stream"},
        )
        self.res = self.conn.getresponse()
        self.status = self.res.status
        if self.status != 200:
            self.res.read()

    def close(self) -> None:
        self.conn.close()


def waiting_call(base: str, i: int, results: list[tuple[int, float]]) -> None:
    """One ``POST /orders?wait=1`` of a resting limit order; (status, seconds) into results."""
    http_ = Http(base, timeout=120)
    started = time.monotonic()
    try:
        status, _ = http_.json(
            "POST",
            "/api/v1/orders?wait=1",
            {
                "symbol": "AAPL",
                "action": "BUY",
                "quantity": 1,
                "order_type": "LMT",
                "limit_price": 100 + i / 100,
                "client_order_id": f"starve-{i}",
            },
        )
        results.append((status, time.monotonic() - started))
    finally:
        http_.close()


def timed(base: str, method: str, path: str, body: Any = None) -> tuple[int, float]:
    """(status, seconds); status 0 when no answer came within 5 s (then seconds is 5+)."""
    http_ = Http(base, timeout=5)
    started = time.monotonic()
    try:
        status, _ = http_.request(method, path, body)
        return status, time.monotonic() - started
    except TimeoutError:
        return 0, time.monotonic() - started
    finally:
        http_.close()


def main(argv: list[str] | None = None) -> int:
    from services import LONG_CALL_SLOTS, SERVER_THREADS

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--slots",
        type=int,
        default=LONG_CALL_SLOTS,
        help="long-call slots (experiment: 64 shows the server without a reserve)",
    )
    args = ap.parse_args(argv)
    quiet_logs()
    gateway = start_gateway()
    gateway.set_validation_delay(60.0)  # every order sits in validation: ?wait=1 waits long
    settings = app_settings(gateway, monitor_timeout=60)
    streams: list[Stream] = []
    waits: list[tuple[int, float]] = []
    try:
        with AppServer(settings, threads=SERVER_THREADS) as server:
            server.services.long_calls = threading.BoundedSemaphore(args.slots)
            base = server.base
            for _ in range(SERVER_THREADS * 2):
                streams.append(Stream(server.port))
            open_streams = sum(s.status == 200 for s in streams)
            callers = [
                threading.Thread(target=waiting_call, args=(base, i, waits), daemon=True)
                for i in range(SERVER_THREADS * 2)
            ]
            for caller in callers:
                caller.start()
            # every call has either been admitted to wait or answered at once (without a
            # reserve, some never get a thread: they queue inside waitress)
            handler = server.services.handler
            try:
                wait_until(lambda: len(handler.records()) >= len(callers), timeout=10)
            except TimeoutError:
                pass
            time.sleep(0.5)
            answered_at_once = len(waits)
            queued = len(callers) - len(handler.records())
            figures = measure(base)
            print(f"threads {SERVER_THREADS}, long-call slots {args.slots}")
            print(f"SSE streams: {open_streams} open, {len(streams) - open_streams} refused (503)")
            print(
                f"?wait=1 calls: {len(callers) - answered_at_once - queued} waiting, "
                f"{answered_at_once} answered at once (202, the client polls), {queued} "
                "queued for a thread"
            )
            ok = report(figures)
            for stream in streams:
                stream.close()
            timed(base, "POST", "/api/v1/kill-switch", {"engaged": True})  # ends the waits
            for caller in callers:
                caller.join(30)
    finally:
        gateway.stop()
    return 0 if ok else 1


def measure(base: str) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {
        "GET /health": [],
        "GET /status": [],
        "POST /kill-switch": [],
    }
    for _ in range(10):
        for name, path in (("GET /health", "/api/v1/health"), ("GET /status", "/api/v1/status")):
            figures[name].append(timed(base, "GET", path)[1])
    for _ in range(5):
        for engaged in (True, False):
            figures["POST /kill-switch"].append(
                timed(base, "POST", "/api/v1/kill-switch", {"engaged": engaged})[1]
            )
    return figures


def report(figures: dict[str, list[float]]) -> bool:
    ok = True
    for name, values in figures.items():
        worst = max(values)
        ok &= worst <= TARGET
        print(
            f"{name:<20} n {len(values):2d}  median {statistics.median(values) * 1000:7.1f} ms   "
            f"max {worst * 1000:7.1f} ms   target <= {TARGET:g} s  {verdict(worst <= TARGET)}"
        )
    return ok


if __name__ == "__main__":
    sys.exit(main())
