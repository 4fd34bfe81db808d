"""Order throughput of the simulated IB gateway for a raw (sans-IO) API client.

Starts an embedded ``SimGateway`` and talks to it over a plain asyncio socket with the
simulator's own codec (``sim_gateway.codec`` framing + ``sim_gateway.protocol.encode_request``),
so the figures measure the gateway, not a client library.

Phase 1 - throughput: the gateway's pacing limit is raised (``ServerSettings(max_rate=...)``),
N MKT orders (default 2000) are written back-to-back without waiting for replies, and the run
ends when every order's ``orderStatus Filled`` has arrived. Reports orders/s (first placement
to last Filled), p50/p99 placement->Filled latency and PASS/MISS against the target.

Phase 2 - pacing: a second gateway keeps the default 50 msg/s limit. The raw client paces
itself (evenly spaced sends, --paced-rate msg/s, default 45 like ib_async) and the phase checks
that it never sent more than 50 messages in any 1 s window and received no error 100.

Usage: python bench/sim_throughput.py [--orders 2000] [--paced-orders 100] [--target 500]
Exit status 0 when every check passes, 1 otherwise. No dependencies beyond the repo.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from _harness import TRADING_CLOCK, max_in_window, percentile
from sim_gateway import protocol as p
from sim_gateway.broker import BrokerConfig
from sim_gateway.codec import ClientFrameReader, encode_client_hello, encode_frame
from sim_gateway.controller import SimGateway
from sim_gateway.server import ServerSettings
from sim_gateway.types import ContractQuery, OrderRequest

CLIENT_MIN_VERSION, CLIENT_MAX_VERSION = 157, 178
DEFAULT_PACING = ServerSettings().max_rate  # 50 msg/s, like TWS
RAISED_PACING = 1_000_000
AAPL = ContractQuery(symbol="AAPL", sec_type="STK", exchange="SMART", currency="USD")
WRITE_BATCH = 200  # orders per writer.drain() in the unpaced phase


@dataclass
class RawClient:
    """One API connection: handshake, START_API, then frames in and requests out."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    version: int = 0
    next_order_id: int = 0
    accounts: str = ""
    sent_at: list[float] = field(default_factory=list)  # every message after the hello
    errors: list[tuple[int, int, str]] = field(default_factory=list)  # (reqId, code, text)
    on_message: Callable[[list[str], float], None] | None = None
    _frames: ClientFrameReader = field(default_factory=ClientFrameReader)
    _pump: asyncio.Task | None = None

    @classmethod
    async def connect(
        cls, host: str, port: int, client_id: int, timeout: float = 10.0
    ) -> RawClient:
        reader, writer = await asyncio.open_connection(host, port)
        client = cls(reader, writer)
        writer.write(encode_client_hello(CLIENT_MIN_VERSION, CLIENT_MAX_VERSION))
        version, _connection_time = await asyncio.wait_for(client._next_message(), timeout)
        client.version = int(version)
        client.send(p.StartApi(client_id))
        await asyncio.wait_for(client._until_started(), timeout)
        client._pump = asyncio.create_task(client._read_forever())
        return client

    async def _next_message(self) -> list[str]:
        while (fields := self._frames.next_event()) is None:
            data = await self.reader.read(1 << 16)
            if not data:
                raise ConnectionError("gateway closed the connection")
            self._frames.feed(data)
        return fields

    async def _until_started(self) -> None:
        """managedAccounts (15) and nextValidId (9) both arrive after START_API."""
        while not (self.accounts and self.next_order_id):
            fields = await self._next_message()
            if fields[0] == "15":
                self.accounts = fields[2]
            elif fields[0] == "9":
                self.next_order_id = int(fields[2])
            elif fields[0] == "4" and not 2100 <= int(fields[3]) < 2200:
                raise ConnectionError(f"refused at start: {fields}")

    async def _read_forever(self) -> None:
        while True:
            data = await self.reader.read(1 << 16)
            if not data:
                return
            now = time.perf_counter()
            self._frames.feed(data)
            while (fields := self._frames.next_event()) is not None:
                if fields[0] == "4":
                    self.errors.append((int(fields[2]), int(fields[3]), fields[4]))
                if self.on_message is not None:
                    self.on_message(fields, now)

    def send(self, request: p.Request) -> float:
        """Write one request (no drain); returns its send time."""
        self.writer.write(encode_frame(p.encode_request(request, self.version)))
        now = time.perf_counter()
        self.sent_at.append(now)
        return now

    def place_mkt(self, quantity: float) -> tuple[int, float]:
        order_id = self.next_order_id
        self.next_order_id += 1
        order = OrderRequest(order_id, AAPL, "BUY", quantity, "MKT", tif="DAY")
        return order_id, self.send(p.PlaceOrder(order))

    def errors_with(self, code: int) -> list[tuple[int, int, str]]:
        return [e for e in self.errors if e[1] == code]

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)


class FillTracker:
    """Placement and Filled times per order; done when every tracked order filled or died."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.placed: dict[int, float] = {}
        self.filled: dict[int, float] = {}
        self.failed: dict[int, str] = {}
        self.done = asyncio.Event()

    def on_message(self, fields: list[str], now: float) -> None:
        if fields[0] == "3" and fields[2] == "Filled":  # orderStatus: [3, id, status, ...]
            order_id = int(fields[1])
            if order_id in self.placed:
                self.filled.setdefault(order_id, now)
        elif fields[0] == "4":  # error carrying an order id (e.g. 201 rejected, 100 pacing)
            req_id, code = int(fields[2]), int(fields[3])
            if req_id in self.placed and code not in (202,) and not 2100 <= code < 2200:
                self.failed.setdefault(req_id, f"{code} {fields[4]}")
        if len(self.filled) + len(self.failed) >= self.expected:
            self.done.set()

    def latencies_ms(self) -> list[float]:
        return sorted((self.filled[i] - self.placed[i]) * 1000 for i in self.filled)


# ------------------------------------------------------------------ phase 1: throughput


async def throughput_phase(
    gateway: SimGateway, orders: int, quantity: float, timeout: float
) -> dict:
    client = await RawClient.connect(gateway.host, gateway.port, client_id=1)
    tracker = FillTracker(orders)
    client.on_message = tracker.on_message
    try:
        for start in range(0, orders, WRITE_BATCH):
            for _ in range(min(WRITE_BATCH, orders - start)):
                order_id, at = client.place_mkt(quantity)
                tracker.placed[order_id] = at
            await client.writer.drain()
        try:
            await asyncio.wait_for(tracker.done.wait(), timeout)
        except TimeoutError:
            pass
    finally:
        await client.close()
    first_sent = min(tracker.placed.values())
    last_fill = max(tracker.filled.values(), default=first_sent)
    elapsed = last_fill - first_sent
    return {
        "orders": orders,
        "filled": len(tracker.filled),
        "failed": tracker.failed,
        "elapsed": elapsed,
        "rate": len(tracker.filled) / elapsed if elapsed > 0 else float("nan"),
        "send_rate": orders / max(1e-9, max(tracker.placed.values()) - first_sent),
        "latencies": tracker.latencies_ms(),
        "pacing_errors": len(client.errors_with(100)),
        "stats": gateway.stats(),
    }


# ------------------------------------------------------------------ phase 2: self-pacing


async def paced_phase(
    gateway: SimGateway, orders: int, quantity: float, rate: float, timeout: float
) -> dict:
    """Evenly spaced sends at ``rate`` msg/s, START_API included in the count."""
    client = await RawClient.connect(gateway.host, gateway.port, client_id=2)
    tracker = FillTracker(orders)
    client.on_message = tracker.on_message
    interval = 1.0 / rate
    next_at = client.sent_at[-1] + interval  # START_API counts against the budget too
    try:
        for _ in range(orders):
            delay = next_at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            order_id, at = client.place_mkt(quantity)
            tracker.placed[order_id] = at
            next_at = max(next_at + interval, at)  # never catch up with a burst
            await client.writer.drain()
        try:
            await asyncio.wait_for(tracker.done.wait(), timeout)
        except TimeoutError:
            pass
    finally:
        await client.close()
    stats = gateway.stats()
    sent = client.sent_at
    return {
        "orders": orders,
        "filled": len(tracker.filled),
        "failed": tracker.failed,
        "messages": len(sent),
        "duration": sent[-1] - sent[0],
        "client_peak": max_in_window(sent),
        "server_peak": stats.peak_rate_by_client.get(2, 0),
        "pacing_errors": len(client.errors_with(100)),
        "violations": stats.pacing_violations,
        "latencies": tracker.latencies_ms(),
    }


# ------------------------------------------------------------------ main


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


async def run(args: argparse.Namespace) -> bool:
    ok = True
    print(
        f"sim_gateway throughput benchmark (python {sys.version.split()[0]}, raw sans-IO client, "
        f"API v{CLIENT_MIN_VERSION}..{CLIENT_MAX_VERSION})"
    )

    settings = ServerSettings(
        port=0, max_rate=args.max_rate, state_file=args.state_file, clock_start=TRADING_CLOCK
    )
    with SimGateway(settings, BrokerConfig(seed=1)) as gateway:
        print(
            f"\nPhase 1 - throughput: gateway pacing limit RAISED from {DEFAULT_PACING} to "
            f"{args.max_rate:,} msg/s for this run (ServerSettings(max_rate={args.max_rate}))"
        )
        print(
            f"  placing {args.orders} MKT BUY {args.qty:g} AAPL orders pipelined "
            f"(drain every {WRITE_BATCH}) on 127.0.0.1:{gateway.port} ..."
        )
        r = await throughput_phase(gateway, args.orders, args.qty, args.timeout)
    lat = r["latencies"]
    complete = r["filled"] == r["orders"] and not r["failed"]
    print(
        f"  filled            {r['filled']}/{r['orders']} orders in {r['elapsed']:.3f} s "
        f"(first placement -> last Filled); client wrote them at {r['send_rate']:,.0f} orders/s"
    )
    if r["failed"]:
        sample = list(r["failed"].items())[:3]
        print(f"  failed            {len(r['failed'])} orders, e.g. {sample}")
    print(f"  throughput        {r['rate']:,.0f} orders/s")
    print(
        f"  latency           p50 {percentile(lat, 50):.1f} ms   p99 {percentile(lat, 99):.1f} ms   "
        f"max {lat[-1] if lat else float('nan'):.1f} ms (placement -> orderStatus Filled)"
    )
    print(
        f"  gateway           pacing violations {r['stats'].pacing_violations}, "
        f"decode errors {r['stats'].decode_errors}, error 100 received {r['pacing_errors']}"
    )
    target_ok = complete and r["rate"] >= args.target
    print(f"  target            >= {args.target} orders/s: {verdict(target_ok)}")
    ok &= target_ok

    with SimGateway(
        ServerSettings(port=0, clock_start=TRADING_CLOCK), BrokerConfig(seed=1)
    ) as gateway:
        limit = gateway.settings.max_rate
        print(
            f"\nPhase 2 - pacing: gateway keeps the default limit of {limit} msg/s; the raw "
            f"client paces itself at {args.paced_rate:g} msg/s (evenly spaced)"
        )
        print(f"  placing {args.paced_orders} MKT BUY {args.qty:g} AAPL orders ...")
        q = await paced_phase(gateway, args.paced_orders, args.qty, args.paced_rate, args.timeout)
    lat = q["latencies"]
    paced_complete = q["filled"] == q["orders"] and not q["failed"]
    print(
        f"  sent              {q['messages']} messages (START_API + orders) in {q['duration']:.2f} s "
        f"= {q['messages'] / max(q['duration'], 1e-9):.1f} msg/s average"
    )
    print(
        f"  peak 1 s window   client-side {q['client_peak']} msgs, gateway-side {q['server_peak']} "
        f"msgs (limit {limit})"
    )
    print(
        f"  filled            {q['filled']}/{q['orders']}; latency p50 {percentile(lat, 50):.1f} ms "
        f"p99 {percentile(lat, 99):.1f} ms"
    )
    print(
        f"  error 100         {q['pacing_errors']} received, {q['violations']} counted by the gateway"
    )
    paced_ok = (
        paced_complete
        and q["client_peak"] <= limit
        and q["server_peak"] <= limit
        and q["pacing_errors"] == 0
        and q["violations"] == 0
    )
    print(f"  client paced itself (<= {limit}/s) with zero error 100: {verdict(paced_ok)}")
    ok &= paced_ok

    print(f"\nOverall: {verdict(ok)}")
    return ok


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--orders", type=int, default=2000, help="orders in the throughput phase")
    ap.add_argument("--qty", type=float, default=1, help="shares per order")
    ap.add_argument("--target", type=float, default=500, help="orders/s the throughput must reach")
    ap.add_argument(
        "--max-rate",
        type=int,
        default=RAISED_PACING,
        help="gateway pacing limit (msg/s) during the throughput phase",
    )
    ap.add_argument("--paced-orders", type=int, default=100, help="orders in the pacing phase")
    ap.add_argument(
        "--paced-rate",
        type=float,
        default=45.0,
        help="client send rate (msg/s) in the pacing phase (ib_async uses 45)",
    )
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the fills")
    ap.add_argument(
        "--state-file",
        default=None,
        help="the gateway's state file in the throughput phase (written ahead of "
        "every order event, as the app's embedded simulator does)",
    )
    args = ap.parse_args(argv)
    if args.orders < 1 or args.paced_orders < 1 or args.paced_rate <= 0 or args.max_rate < 1:
        ap.error("--orders, --paced-orders, --paced-rate and --max-rate must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    return 0 if asyncio.run(run(parse_args(argv))) else 1


if __name__ == "__main__":
    raise SystemExit(main())
