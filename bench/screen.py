"""The trader's screen: watchlist latency and CPU, bars from the cache, chart drawing, market data
lines.

The simulated gateway runs in this process (50 extra stocks, BNCH01..BNCH50); the app runs as
``python app_simple.py`` in a subprocess (so its CPU is its own) against it.

1. **Watchlist of 50 symbols at the simulator's tick rate** (a quote push every 0.25 s, a price
   step every second): a hook on the gateway's loop (``_send_ticks``) stamps ``time.time()`` the
   first time each (contract, last price) leaves the gateway; an SSE client on
   ``/api/v1/stream`` stamps each ``quotes`` frame; latency = frame arrival - gateway stamp for
   every symbol whose last changed. CPU of the app process over the window (``/proc/pid/stat``).
   Targets: p95 <= 100 ms; CPU <= 10 % of one core.
2. **One year of daily bars**: ``GET /api/v1/bars?symbol=AAPL&bar=1D&duration=1Y`` once from
   the broker, then ``--cached`` times from the cache. Target: p95 from the cache <= 100 ms.
   ``--browser``: the dashboard in Chromium, 1D button → the chart's setData done
   (``screenDebug.drawnAt``). Target <= 300 ms.
3. **Market data lines**: a 150-symbol watchlist with MARKET_DATA_LINES=100 and 5 streams open:
   the lines at the gateway never exceed the limit; after the streams close none is left.

Usage: python bench/screen.py [--seconds 10] [--cached 50] [--browser]
Exit status 0 when every target passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import threading
import time
from typing import Any

from _harness import (
    API_TOKEN,
    AppProcess,
    Http,
    extra_stocks,
    percentile,
    quiet_logs,
    start_gateway,
    verdict,
    wait_until,
)

SYMBOLS = 50


class TickStamps:
    """time.time() of the first push of each (conId, last) by the gateway."""

    def __init__(self, gateway: Any) -> None:
        self.first: dict[tuple[int, float], float] = {}
        self.last: dict[int, float] = {}
        self.lock = threading.Lock()

        def install(server: Any) -> None:
            send_ticks = server._send_ticks

            def stamped(
                session: Any, req_id: int, quote: Any, full: bool, delivered: int = 1
            ) -> None:
                now = time.time()
                send_ticks(session, req_id, quote, full, delivered)
                with self.lock:
                    if self.last.get(quote.con_id) != quote.last:
                        self.last[quote.con_id] = quote.last
                        self.first[(quote.con_id, quote.last)] = now

            server._send_ticks = stamped

        gateway._run(install)

    def at(self, con_id: int, last: float) -> float | None:
        with self.lock:
            return self.first.get((con_id, last))


class QuoteStream:
    """An SSE client of /api/v1/stream collecting ``quotes`` frames with their arrival time."""

    def __init__(self, base: str) -> None:
        host, port = base.split("://", 1)[1].rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=30)
        self.frames: list[tuple[float, dict]] = []
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.sock: Any = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("the stream did not open")

    def _run(self) -> None:
        self.conn.request(
            "GET",
            "/api/v1/stream",
            headers={"Authorization": f"Bearer {API_TOKEN}", "Accept": "text/event-stream"},
        )
        self.sock = self.conn.sock  # http.client lets go of it once the response streams
        res = self.conn.getresponse()
        self.ready.set()
        event = None
        while not self.stop.is_set():
            line = res.fp.readline()
            if not line:
                return
            text = line.decode().rstrip("\n")
            if text.startswith("event: "):
                event = text[7:]
            elif text.startswith("data: ") and event == "quotes":
                self.frames.append((time.time(), json.loads(text[6:])))

    def close(self) -> None:
        self.stop.set()
        try:
            if self.sock is not None:
                self.sock.shutdown(2)
        except OSError:
            pass
        self.conn.close()


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def watchlist_latency(seconds: float) -> list[str]:
    stocks = extra_stocks(SYMBOLS)
    gateway = start_gateway(extra_contracts=stocks)
    results = []
    try:
        stamps = TickStamps(gateway)
        with AppProcess(gateway=gateway) as app:
            wait_until(lambda: _status(app.base) == 200, 20)
            http_ = Http(app.base)
            status, _ = http_.json(
                "PUT", "/api/v1/watchlist", {"symbols": [{"symbol": c.symbol} for c in stocks]}
            )
            assert status == 200, status
            con_ids = {c.symbol: c.con_id for c in stocks}
            stream = QuoteStream(app.base)
            wait_until(
                lambda: (
                    stream.frames
                    and len([q for q in stream.frames[-1][1]["quotes"] if q["last"]]) == SYMBOLS
                ),
                30,
            )
            start_frames = len(stream.frames)
            cpu0, t0 = cpu_seconds(app.pid), time.monotonic()
            time.sleep(seconds)
            cpu = (cpu_seconds(app.pid) - cpu0) / (time.monotonic() - t0)
            frames = stream.frames[start_frames:]
            stream.close()
            latencies = []
            # what the stream already showed: only changes after the window opened are timed
            previous = {
                q["symbol"]: q["last"] for q in stream.frames[start_frames - 1][1]["quotes"]
            }
            for arrived, frame in frames:
                for q in frame["quotes"]:
                    if q["last"] is None or previous.get(q["symbol"]) == q["last"]:
                        continue
                    previous[q["symbol"]] = q["last"]
                    sent = stamps.at(con_ids.get(q["symbol"], 0), q["last"])
                    if sent is not None and arrived >= sent:
                        latencies.append((arrived - sent) * 1000)
            p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
            print(
                f"watchlist of {SYMBOLS}: {len(frames)} quotes frames in {seconds:g} s, "
                f"{len(latencies)} price changes seen; gateway -> stream p50 {p50:.1f} ms, "
                f"p95 {p95:.1f} ms, max {max(latencies, default=0):.1f} ms"
            )
            print(f"app CPU: {cpu * 100:.1f} % of one core")
            results.append(
                f"tick at the gateway -> browser p95 <= 100 ms: {p95:.1f} ms {verdict(p95 <= 100)}"
            )
            results.append(f"app CPU <= 10 % of one core: {cpu * 100:.1f} % {verdict(cpu <= 0.10)}")
            http_.close()
    finally:
        gateway.stop()
    return results


def _status(base: str) -> int:
    try:
        return Http(base, 2).request("GET", "/api/v1/health")[0]
    except OSError:
        return 0


def daily_bars(cached: int, browser: bool) -> list[str]:
    gateway = start_gateway()
    results = []
    try:
        with AppProcess(gateway=gateway) as app:
            wait_until(lambda: _status(app.base) == 200, 20)
            http_ = Http(app.base)
            path = "/api/v1/bars?symbol=AAPL&bar=1D&duration=1Y"
            t = time.perf_counter()
            status, body = http_.json("GET", path)
            first = (time.perf_counter() - t) * 1000
            assert status == 200 and len(body["bars"]) == 365, (status, body)
            times = []
            for _ in range(cached):
                t = time.perf_counter()
                status, body = http_.json("GET", path)
                times.append((time.perf_counter() - t) * 1000)
                assert body["cached"], body
            p50, p95 = percentile(times, 50), percentile(times, 95)
            print(
                f"1 Y of daily bars ({len(body['bars'])}): from the broker {first:.0f} ms; from the "
                f"cache p50 {p50:.1f} ms, p95 {p95:.1f} ms (ratio broker/cache {first / p50:.0f}x)"
            )
            results.append(
                f"1 Y daily bars from the cache p95 <= 100 ms: {p95:.1f} ms {verdict(p95 <= 100)}"
            )
            if browser:
                drawn = chart_draw_ms(app.base)
                results.append(
                    f"1 Y daily chart drawn in Chromium <= 300 ms: {drawn:.0f} ms "
                    f"{verdict(drawn <= 300)}"
                )
            http_.close()
    finally:
        gateway.stop()
    return results


def chart_draw_ms(base: str) -> float:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        page = browser.new_page(
            viewport={"width": 1366, "height": 900}, bypass_csp=True
        )  # polling predicates
        page.goto(f"{base}/login?token={API_TOKEN}")
        page.wait_for_function(
            "window.screenDebug && window.screenDebug.drawnAt() !== null", timeout=20000
        )
        page.evaluate("window.__clicked = performance.now()")
        page.click('.bar-sizes button[data-bar="1D"]')
        page.wait_for_function("window.screenDebug.drawnAt() > window.__clicked", timeout=20000)
        page.wait_for_function(
            "document.querySelector('#chart-status').textContent.includes('1 day')"
        )
        drawn = page.evaluate("window.screenDebug.drawnAt() - window.__clicked")
        browser.close()
    print(
        f"chart: 1D button -> 365 daily candles drawn in {drawn:.0f} ms (Chromium, API cache cold or warm)"
    )
    return float(drawn)


def market_data_lines() -> list[str]:
    stocks = extra_stocks(150)
    gateway = start_gateway(extra_contracts=stocks)
    peak = 0
    results = []
    try:
        with AppProcess(gateway=gateway, env={"MARKET_DATA_LINES": "100"}) as app:
            wait_until(lambda: _status(app.base) == 200, 20)
            http_ = Http(app.base)
            http_.json(
                "PUT", "/api/v1/watchlist", {"symbols": [{"symbol": c.symbol} for c in stocks]}
            )
            streams = [QuoteStream(app.base) for _ in range(5)]
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                peak = max(peak, gateway.market_data_lines())
                status, body = http_.json("GET", "/api/v1/quotes")
                if body["lines_used"] >= 98 and len([q for q in body["quotes"] if q["last"]]) >= 98:
                    break
                time.sleep(0.05)
            print(
                f"150-symbol watchlist, MARKET_DATA_LINES=100, 5 streams: {body['lines_used']} "
                f"lines used by the hub, peak {peak} at the gateway; refused "
                f"{len(body['refused'])}: {body['message'][:80]}…"
            )
            for stream in streams:
                stream.close()
            try:
                wait_until(lambda: gateway.market_data_lines() == 0, 10)
                left = 0
            except TimeoutError:
                left = gateway.market_data_lines()
            print(f"after the streams closed: {left} lines left at the gateway")
            results.append(f"lines never above the limit (100): peak {peak} {verdict(peak <= 100)}")
            results.append(f"no line left when the browsers go: {left} {verdict(left == 0)}")
            http_.close()
    finally:
        gateway.stop()
    return results


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--cached", type=int, default=50)
    ap.add_argument("--browser", action="store_true", help="also time the chart in Chromium")
    args = ap.parse_args()
    quiet_logs()
    lines = (
        watchlist_latency(args.seconds)
        + daily_bars(args.cached, args.browser)
        + market_data_lines()
    )
    print()
    for line in lines:
        print(f"  {line}")
    return 0 if all("PASS" in line for line in lines) else 1


if __name__ == "__main__":
    sys.exit(main())
