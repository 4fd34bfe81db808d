"""Pacing against raw ib_async: 50 orders through the app vs 50 orders from ib_async alone.

One embedded ``SimGateway`` (instant fills unless ``--validation-delay``; default 50 msg/s pacing,
error 100 above it) serves, in this process:

* the app (waitress, 16 threads; clientIds 999 reader and 1000 orders, paced by
  ``ib_pacing.RATE``/``BURST``);
* a raw ib_async client (clientId 11, ib_async's default throttle: 45 requests per sliding 1 s,
  sent in bursts) on a loop thread of its own;
* a background trader (clientId 7, ``--noise`` MKT orders per second, 0 to turn off) whose fills
  the reader only learns by asking: it keeps the reader 999 refreshing (busy) through every run,
  for the app and for the raw client alike.

Both sides use one pre-qualified symbol (the app by a first order, the raw client by
``qualifyContractsAsync``), so each run sends exactly 50 placeOrders plus what the connection does
anyway (heartbeats). Runs alternate app, raw, app, raw ... (``--rounds`` each), a quiet
``--gap`` between runs (ib_async's 1 s window and the gateway's bucket empty out).

* app run: 50 threads wait on a barrier and each POSTs one MKT order; time = barrier release ->
  the last order's ``verdict:`` stamp (the app's own, like ``order_pipeline.py``);
* raw run: 50 ``placeOrder`` calls in one go on the raw client's loop; time = first call -> the
  last ``Filled`` status it hears.

Printed per run: the time, the span from the first to the last placeOrder the gateway read
(the wire part of the time; the rest is intake: HTTP, risk gate, queue, and the fills), when
the last POST had its 202 (app runs), the busiest 1 s window (messages the gateway read) of the sending
client and of the reader 999, and new error-100 violations. Targets: median app / median raw
<= 1.1; 0 pacing violations (the simulator's error 100) for every client over the whole run.

Usage: python bench/pacing_vs_raw.py [--rounds 3] [--orders 50] [--noise 10] [--pace RATE/BURST]
Exit status 0 when every target passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from typing import Self

from ib_async import IB, MarketOrder, Stock, Trade
from order_pipeline import run_batch

from _harness import (
    ORDER_CLIENT,
    READER_CLIENT,
    AppServer,
    GatewayTap,
    Http,
    add_experiment_args,
    app_settings,
    experiments_from,
    quiet_logs,
    start_gateway,
    verdict,
)
from loop_thread import LoopThread

RAW_CLIENT, NOISE_CLIENT = 11, 7
SYMBOL, NOISE_SYMBOL = "AAPL", "IBM"
TARGET_RATIO = 1.1


class RawClient:
    """A plain ``ib_async.IB`` (default throttle) on a loop thread of its own."""

    def __init__(self, port: int, client_id: int) -> None:
        self.port, self.client_id = port, client_id
        self.ib: IB | None = None
        self.thread = LoopThread(f"raw-{client_id}", setup=self._connect, teardown=self._close)

    async def _connect(self) -> None:
        self.ib = IB()
        await self.ib.connectAsync("127.0.0.1", self.port, clientId=self.client_id, timeout=5)

    async def _close(self) -> None:
        if self.ib is not None:
            self.ib.disconnect()

    def start(self) -> Self:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.thread.stop()

    async def qualify(self, symbol: str) -> Stock:
        assert self.ib is not None
        (contract,) = await self.ib.qualifyContractsAsync(Stock(symbol, "SMART", "USD"))
        assert isinstance(contract, Stock), f"{symbol} did not qualify"
        return contract

    async def place_all(self, contract: Stock, n: int, timeout: float) -> float:
        """Place n MKT orders at once; seconds until the last one is Filled."""
        assert self.ib is not None
        ib = self.ib
        done = asyncio.Event()
        filled: set[int] = set()
        last = [0.0]

        def on_status(trade: Trade) -> None:
            if trade.orderStatus.status == "Filled" and trade.order.orderId not in filled:
                filled.add(trade.order.orderId)
                last[0] = time.time()
                if len(filled) == n:
                    done.set()

        start = time.time()
        for _ in range(n):
            order = MarketOrder("BUY", 1)
            order.tif = "DAY"
            trade = ib.placeOrder(contract, order)
            trade.statusEvent += on_status
        await asyncio.wait_for(done.wait(), timeout)
        return last[0] - start


class NoiseTrader(RawClient):
    """Another trader's script placing ``rate`` MKT orders a second until stopped."""

    def __init__(self, port: int, client_id: int, rate: float) -> None:
        super().__init__(port, client_id)
        self.rate = rate
        self._task: asyncio.Task | None = None

    async def _connect(self) -> None:
        await super()._connect()
        contract = await self.qualify(NOISE_SYMBOL)
        self._task = asyncio.create_task(self._trade(contract))

    async def _trade(self, contract: Stock) -> None:
        assert self.ib is not None
        while True:
            order = MarketOrder("BUY", 1)
            order.tif = "DAY"
            self.ib.placeOrder(contract, order)
            await asyncio.sleep(1 / self.rate)

    async def _close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await super()._close()


def busiest(tap: GatewayTap, client: int, start: float, end: float) -> int:
    return tap.busiest_window(client, start, end)[0]


def place_span(tap: GatewayTap, client: int, start: float, end: float) -> float:
    """Seconds from the first to the last placeOrder the gateway read from ``client``."""
    stamps = [
        t
        for t, kind in list(tap.kinds.get(client, ()))
        if start <= t < end and kind == "place_order"
    ]
    return max(stamps) - min(stamps) if stamps else float("nan")


def app_run(base: str, n: int, timeout: float) -> tuple[float, float, str]:
    """(seconds to the last verdict, seconds to the last 202, problems)."""
    r = run_batch(base, n, SYMBOL, 0.1, timeout)
    problem = ""
    if r["errors"] or r["verdicts"] != {"filled": n}:
        problem = f"verdicts {r['verdicts']} errors {r['errors'][:2]}"
    return r["time"], r["posts_done"], problem


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--orders", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3, help="runs of each side (median is used)")
    ap.add_argument(
        "--noise",
        type=float,
        default=10.0,
        help="orders/s of another trader (keeps the reader 999 busy); 0 = off",
    )
    ap.add_argument(
        "--validation-delay",
        type=float,
        default=0.0,
        help="simulator's order validation delay in s (0 = instant fills)",
    )
    ap.add_argument("--gap", type=float, default=1.5, help="seconds of quiet between runs")
    ap.add_argument("--timeout", type=float, default=60.0)
    add_experiment_args(ap)
    args = ap.parse_args(argv)
    if not 1 <= args.orders <= 500 or not 1 <= args.rounds <= 20 or not 0 <= args.noise <= 40:
        ap.error("--orders 1..500, --rounds 1..20, --noise 0..40")
    quiet_logs()
    experiments = experiments_from(args)
    import ib_pacing

    print(
        f"pacing vs raw ib_async (python {sys.version.split()[0]}; {args.orders} orders x "
        f"{args.rounds} rounds; app pace {ib_pacing.RATE:g} msg/s, at most "
        f"{ib_pacing.BURST} at once; raw ib_async "
        f"{IB().client.MaxRequests} per {IB().client.RequestsInterval:g} s; background trader "
        f"{args.noise:g} orders/s; validation delay {args.validation_delay:g} s; load average "
        f"{os.getloadavg()[0]:.2f}; experiments: {experiments or 'none'})"
    )

    gateway = start_gateway()
    tap = GatewayTap(gateway)
    gateway.set_validation_delay(args.validation_delay)
    rows: list[tuple[str, float, float, float, int, int, int, str]] = []
    noise: NoiseTrader | None = None
    raw = RawClient(gateway.port, RAW_CLIENT).start()
    try:
        with AppServer(app_settings(gateway)) as srv:
            http = Http(srv.base)
            http.json(
                "POST", "/api/v1/orders?wait=1", {"symbol": SYMBOL, "action": "BUY", "quantity": 1}
            )
            http.close()
            contract = raw.thread.call(raw.qualify(SYMBOL), 10)
            if args.noise:
                noise = NoiseTrader(gateway.port, NOISE_CLIENT, args.noise).start()
            time.sleep(args.gap)
            for _ in range(args.rounds):
                for side in ("app", "raw"):
                    v0 = gateway.stats().pacing_violations
                    m0 = time.monotonic()
                    if side == "app":
                        took, intake, problem = app_run(srv.base, args.orders, args.timeout)
                        sender = ORDER_CLIENT
                    else:
                        took = raw.thread.call(
                            raw.place_all(contract, args.orders, args.timeout), args.timeout + 5
                        )
                        problem, sender, intake = "", RAW_CLIENT, float("nan")
                    m1 = time.monotonic()
                    rows.append(
                        (
                            side,
                            took,
                            intake,
                            place_span(tap, sender, m0, m1),
                            busiest(tap, sender, m0, m1),
                            busiest(tap, READER_CLIENT, m0, m1),
                            gateway.stats().pacing_violations - v0,
                            problem,
                        )
                    )
                    time.sleep(args.gap)
            reader_msgs = len(tap.between(READER_CLIENT, 0, time.monotonic()))
        stats = gateway.stats()
    finally:
        if noise is not None:
            noise.stop()
        raw.stop()
        gateway.stop()

    print(
        f"  {'run':<5} {'time':>8} {'last 202':>9} {'placeOrders span':>16} "
        f"{'busiest 1 s: sender':>20} {'reader 999':>11} {'err100':>7}"
    )
    for side, took, intake, span, peak, peak_999, violations, problem in rows:
        who = f"{'1000' if side == 'app' else RAW_CLIENT}"
        last_202 = f"{intake:>7.3f} s" if side == "app" else f"{'-':>9}"
        print(
            f"  {side:<5} {took:>6.3f} s {last_202} {span:>14.3f} s {peak:>14} ({who}) "
            f"{peak_999:>11} "
            f"{violations:>7}" + (f"  !! {problem}" if problem else "")
        )
    app_times = [r[1] for r in rows if r[0] == "app"]
    raw_times = [r[1] for r in rows if r[0] == "raw"]
    app_med, raw_med = statistics.median(app_times), statistics.median(raw_times)
    ratio = app_med / raw_med
    print(
        f"  {args.orders} orders, median: app {app_med:.3f} s (runs "
        f"{', '.join(f'{t:.3f}' for t in app_times)}) | raw ib_async {raw_med:.3f} s (runs "
        f"{', '.join(f'{t:.3f}' for t in raw_times)}) | ratio app/raw {ratio:.3f}"
    )
    peaks = stats.peak_rate_by_client
    print(
        f"  simulator over the whole run: busiest second 999={peaks.get(READER_CLIENT, 0)} "
        f"1000={peaks.get(ORDER_CLIENT, 0)} raw {RAW_CLIENT}={peaks.get(RAW_CLIENT, 0)} "
        f"trader {NOISE_CLIENT}={peaks.get(NOISE_CLIENT, 0)}; reader 999 sent {reader_msgs} "
        f"messages; pacing violations (error 100) {stats.pacing_violations}"
    )
    complete = not any(r[-1] for r in rows)
    ok = complete and ratio <= TARGET_RATIO and stats.pacing_violations == 0
    print(f"  target app/raw <= {TARGET_RATIO:g}: {ratio:.3f} -> {verdict(ratio <= TARGET_RATIO)}")
    print(
        f"  target no error 100 from the simulator: {stats.pacing_violations} -> "
        f"{verdict(stats.pacing_violations == 0)}"
    )
    if not complete:
        print("  MISS: not every app order was accepted and filled")
    print(f"\nOverall: {verdict(ok)}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
