"""Connect time of an unmodified ib_async client to the simulated gateway.

Starts an embedded ``SimGateway`` (clock inside a trading session) and connects ib_async
(``IB.connectAsync``, read-write and read-only alternately) ``--runs`` times, disconnecting
after each: the time from the call to its return, which covers the handshake and every start-up
request ib_async waits for (positions, open orders, account updates, executions...). A start-up
request the gateway failed to answer would show as a connect of about ``--timeout`` (ib_async
waits that long, then logs a time-out).

(tests/test_sim_server.py checks that every start-up request is answered; this script times it.)

Target: the median connect under 100 ms (max printed).

Usage: python bench/sim_connect.py [--runs 20] [--timeout 3]
Exit status 0 when the target passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import time

from ib_async import IB

from _harness import TRADING_CLOCK, percentile, verdict
from sim_gateway.broker import BrokerConfig
from sim_gateway.controller import SimGateway
from sim_gateway.server import ServerSettings

TARGET_MS = 100.0


async def connect_times(gateway: SimGateway, runs: int, timeout: float) -> list[float]:
    times = []
    for i in range(runs):
        ib = IB()
        started = time.perf_counter()
        await ib.connectAsync(
            gateway.host, gateway.port, clientId=1, timeout=timeout, readonly=bool(i % 2)
        )
        times.append((time.perf_counter() - started) * 1000)
        ib.disconnect()
        await asyncio.sleep(0)  # let the transport finish closing on this loop
    return times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--timeout", type=float, default=3.0)
    args = ap.parse_args(argv)
    if not 1 <= args.runs <= 1000:
        ap.error("--runs 1..1000")
    logging.getLogger("ib_async").setLevel(logging.CRITICAL)
    print(
        f"ib_async connect to the simulated gateway (python {sys.version.split()[0]}; "
        f"{args.runs} connects; load average {os.getloadavg()[0]:.2f})"
    )
    settings = ServerSettings(port=0, clock_start=TRADING_CLOCK)
    with SimGateway(settings, BrokerConfig(seed=7)) as gateway:
        times = asyncio.run(connect_times(gateway, args.runs, args.timeout))
    median = statistics.median(times)
    ok = median < TARGET_MS
    print(
        f"  connect           median {median:.1f} ms   p90 {percentile(times, 90):.1f} ms"
        f"   max {max(times):.1f} ms   (first {times[0]:.1f} ms)"
    )
    print(f"  median < {TARGET_MS:.0f} ms   {verdict(ok)}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
