"""Read endpoints: requests/s and p50/p99 of the snapshot GETs under 16 concurrent pollers, against
a trivial endpoint of the same server; and zero broker round trips per GET.

Starts an embedded ``SimGateway`` (the default 14 stocks + 3 FX pairs, plus 6 extra stocks
``BNCH01..06`` from ``BrokerConfig(extra_contracts=...)``) and the app served by waitress
(16 threads) in this process, with one extra route registered by this script on the app object:
``GET /bench/ping`` -> "ok" (through the same auth and header hooks as the API, with the same
bearer token, but no snapshot: the floor of Flask + waitress on this machine).

Seeding (settle 0/0/0 and a 1 s monitor time-out, so the records are quiet afterwards; risk limits
raised): one MKT BUY of 10 in each of 20 symbols (20 positions, 20 filled orders), then 180 LMT
BUY orders resting at 60 % of the quote (never fill) -> 200 orders in ``/api/v1/orders``.

Then, for each endpoint in turn - ``/bench/ping``, ``/api/v1/account``, ``/positions``,
``/orders`` (its default page of 100), ``/status``, ``/state``, and ``/orders`` and ``/state`` again
as a polling script that keeps the ETag sends them (``If-None-Match``: 304 without a body while
nothing changed; a 200 brings the new ETag) - 16 pollers (keep-alive connections driven by one
thread of a separate client process, so they do not take the server's GIL; see
``client_main``) GET it back-to-back for ``--duration`` s.
Per endpoint: requests/s, p50, p99, response size, ratio of its requests/s to the ping's, and
CPU microseconds per request of the server process ("srv us": this process, whose gateway and app
threads idle beside the server) and of the client process ("cli us"): on two cores the two share
the machine, so where an endpoint's ratio falls short these tell which side spent more. The
endpoints take turns (``--rounds`` slices of ``--duration / rounds`` s each, round-robin with the
ping), so a drift of the machine's speed during the run falls on all of them alike.

Broker round trips: the gateway's received-message count from clientId 999 (the reader) is read
over an idle window of the same length before the polling and over the whole polling; the rates
(msg/s) must be equal (GETs add nothing beyond the reader's own refresh and heartbeat) and the
polling window must hold no request type but the reader's own refresh and heartbeat
(reqAllOpenOrders, reqExecutions, reqCompletedOrders - asked for every 30 s, so an idle window
may miss it - and reqCurrentTime), nor any the idle windows did not hold except those (e.g.
market data or contract details would be a GET asking the broker).

Targets: ratio >= 0.9 for ``/orders`` and ``/state`` polled as an HTTP client does (gzip accepted,
as requests, curl --compressed and browsers do; the client decodes each answer) and with
If-None-Match, >= 0.8 for the others, and p99 <= 20 ms (their identity-encoded answers are
printed for information, and the gzip answers again left undecoded: the client's decoding runs
on the same cores as the server, and the difference is its share); polling msg/s from 999 =
idle msg/s
(within 10 % + 0.5 msg/s) with no other request types.

waitress 3.0.2 closes the connection after every 304; ``waitress_compat.install()`` (called here
unless ``--waitress-as-is``) keeps it open, as the app does when it installs it.

Usage: python bench/read_endpoints.py [--duration 5] [--pollers 16] [--waitress-as-is]
Exit status 0 when every target passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import selectors
import socket
import subprocess
import sys
import time
from typing import Any

from _harness import (
    API_TOKEN,
    READER_CLIENT,
    AppServer,
    GatewayTap,
    Http,
    add_experiment_args,
    app_settings,
    experiments_from,
    extra_stocks,
    percentile,
    quiet_logs,
    start_gateway,
    verdict,
)

INM = " (If-None-Match)"  # suffix of an endpoint polled with the ETag of its last answer
GZ = " (gzip)"  # suffix of an endpoint polled with Accept-Encoding: gzip (decoded by the client)
# the same, the answer left compressed: what the client's decoding (~0.2 ms of CPU per /state
# answer, on the same two cores as the server) takes from the server's rate, side by side
GZ_RAW = " (gzip, not decoded)"
ENDPOINTS = [
    "/bench/ping",
    "/api/v1/account",
    "/api/v1/positions",
    "/api/v1/orders",
    "/api/v1/status",
    "/api/v1/state",
    "/api/v1/orders" + GZ,
    "/api/v1/state" + GZ,
    "/api/v1/orders" + GZ_RAW,
    "/api/v1/state" + GZ_RAW,
    "/api/v1/orders" + INM,
    "/api/v1/state" + INM,
]
# by endpoint: /orders and /state as an HTTP client polls them (gzip accepted, as requests,
# curl --compressed and browsers do), with and without the ETag; their identity-encoded
# answers (~65 KB for the first 100 of 200 orders; ~145 KB for /state with brief rows, ~350 KB
# when it carried every lifecycle) are printed for information
TARGET = {
    "/api/v1/orders" + GZ: 0.9,
    "/api/v1/state" + GZ: 0.9,
    "/api/v1/orders" + INM: 0.9,
    "/api/v1/state" + INM: 0.9,
}
INFO = {"/api/v1/orders", "/api/v1/state", "/api/v1/orders" + GZ_RAW, "/api/v1/state" + GZ_RAW}
# the reader's own refresh and heartbeat (ib_connector, ib_connection), as the tap names them
READER_OWN = {"req_all_open_orders", "req_executions", "req_completed_orders", "req_current_time"}
STOCKS = [
    "AAPL",
    "MSFT",
    "AMZN",
    "GOOGL",
    "TSLA",
    "NVDA",
    "META",
    "AMD",
    "NFLX",
    "SPY",
    "QQQ",
    "IBM",
    "JPM",
    "XOM",
]


# ------------------------------------------------------------------ client process
class Poller:
    """One keep-alive HTTP/1.1 connection that GETs one path again and again, driven by
    ``client_main``'s event loop: the request bytes are built once, the answer is read by its
    Content-Length (every answer of these endpoints has one)."""

    def __init__(self, host: str, port: int, path: str, headers: dict[str, str]) -> None:
        self.address = (host, port)
        self.head = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()
        )
        self.request = (self.head + "\r\n").encode()
        self.buffer = bytearray()
        self.sent_at = 0.0
        self.sock = self._connect()

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(self.address, timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def send_etag(self, etag: str) -> None:
        """From now on ask with If-None-Match: ``etag``."""
        self.request = (self.head + f"If-None-Match: {etag}\r\n\r\n").encode()

    def send(self) -> None:
        self.sent_at = time.perf_counter()
        self.sock.sendall(self.request)

    def receive(self) -> None:
        """Read what the socket has (it is readable)."""
        chunk = self.sock.recv(262144)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buffer += chunk

    def answer(self) -> tuple[int, dict[bytes, bytes], bytes] | None:
        """(status, headers with lower-case names, body) once the whole answer is in."""
        buf = self.buffer
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        lines = bytes(buf[:end]).split(b"\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if b"transfer-encoding" in headers:
            raise ValueError("a chunked answer (this client reads Content-Length only)")
        length = int(headers.get(b"content-length", b"0"))
        if len(buf) < end + 4 + length:
            return None
        body = bytes(buf[end + 4 : end + 4 + length])
        del buf[: end + 4 + length]
        if headers.get(b"connection", b"").lower() == b"close":
            self.reconnect()
        return int(lines[0].split(b" ", 2)[1]), headers, body

    def get(self) -> tuple[int, dict[bytes, bytes], bytes]:
        """One GET, waiting for its answer (before the event loop starts)."""
        self.send()
        while (got := self.answer()) is None:
            self.receive()
        return got

    def reconnect(self) -> None:
        self.sock.close()
        self.buffer.clear()
        self.sock = self._connect()


def client_main(base: str, path: str, duration: float, pollers: int) -> None:
    """Run in a separate process: ``pollers`` keep-alive connections GET ``path`` back-to-back
    for ``duration`` s, each sending its next request as soon as its answer is in.

    One thread drives them all through a selector: threads with http.client (its email-package
    header parsing, 16 threads on one GIL) spent as much CPU per request as the server, and on
    two shared cores were half of what was measured."""
    host, port = base.split("://")[1].split(":")
    conditional = path.endswith(INM)
    compressed = path.endswith((GZ, GZ_RAW))
    decode = not path.endswith(GZ_RAW)
    path = path.removesuffix(INM).removesuffix(GZ).removesuffix(GZ_RAW)
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    if compressed:
        headers["Accept-Encoding"] = "gzip"
    conns = [Poller(host, int(port), path, headers) for _ in range(pollers)]
    if conditional:  # scripts that kept the ETag of their last answer
        for conn in conns:
            conn.send_etag(conn.get()[1].get(b"etag", b"").decode())
    latencies: list[float] = []
    errors = size = 0
    selector = selectors.DefaultSelector()
    start = time.perf_counter()
    end = start + duration
    for conn in conns:
        conn.send()
        selector.register(conn.sock, selectors.EVENT_READ, conn)
    while selector.get_map():
        for key, _ in selector.select(timeout=30):
            conn = key.data
            try:
                conn.receive()
                got = conn.answer()
            except (OSError, ValueError):
                errors += 1
                conn.reconnect()
                got = (0, {}, b"")
            if got is None:
                continue  # the rest of the answer is still on its way
            now = time.perf_counter()
            status, answer, body = got
            if status:
                latencies.append((now - conn.sent_at) * 1000)
                if decode and answer.get(b"content-encoding") == b"gzip":
                    gzip.decompress(body)  # a client reads what it polls
                if status == 200 and conditional:
                    conn.send_etag(answer.get(b"etag", b"").decode())  # data changed
                elif status != 200 and not (conditional and status == 304):
                    errors += 1
                size = len(body)
            if key.fileobj is not conn.sock:  # a new connection (Connection: close, an error)
                selector.unregister(key.fileobj)
                selector.register(conn.sock, selectors.EVENT_READ, conn)
            if now < end:
                try:
                    conn.send()
                except OSError:  # the server closed it meanwhile: count it, ask again anew
                    errors += 1
                    selector.unregister(conn.sock)
                    conn.reconnect()
                    selector.register(conn.sock, selectors.EVENT_READ, conn)
                    conn.send()
            else:
                selector.unregister(conn.sock)
                conn.sock.close()
    elapsed = time.perf_counter() - start
    print(json.dumps({"elapsed": elapsed, "latencies": latencies, "errors": errors, "size": size}))


def merge(total: dict | None, part: dict) -> dict:
    """Two slices of one endpoint's polling as one."""
    if total is None:
        return part
    return {
        "elapsed": total["elapsed"] + part["elapsed"],
        "latencies": total["latencies"] + part["latencies"],
        "errors": total["errors"] + part["errors"],
        "size": max(total["size"], part["size"]),
        "server_cpu": total["server_cpu"] + part["server_cpu"],
        "client_cpu": total["client_cpu"] + part["client_cpu"],
    }


def hammer(base: str, path: str, duration: float, pollers: int) -> dict:
    """One slice of polling; with the CPU seconds this process (the server, and the gateway and
    the app's threads idling beside it) and the client process spent meanwhile."""
    server0, client0 = time.process_time(), children_cpu()
    out = subprocess.run(
        [sys.executable, __file__, "--client", base, path, str(duration), str(pollers)],
        capture_output=True,
        text=True,
        timeout=duration + 60,
    )
    if out.returncode != 0:
        raise RuntimeError(f"client process failed: {out.stderr[-2000:]}")
    return {
        **json.loads(out.stdout),
        "server_cpu": time.process_time() - server0,
        "client_cpu": children_cpu() - client0,
    }


def children_cpu() -> float:
    """User + system CPU seconds of this process's finished children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# ------------------------------------------------------------------ seeding
def seed(base: str, positions: int, orders: int) -> None:
    http = Http(base)
    symbols = (STOCKS + [c.symbol for c in extra_stocks(6)])[:positions]
    for symbol in symbols:
        status, body = http.json(
            "POST", "/api/v1/orders", {"symbol": symbol, "action": "BUY", "quantity": 10}
        )
        if status != 202:
            raise RuntimeError(f"seeding {symbol}: {status} {body}")
    limits = {}
    for symbol in symbols:
        status, q = http.json("GET", f"/api/v1/quote?symbol={symbol}")
        ref = q.get("bid") or q.get("last") or q.get("close") or 100.0
        limits[symbol] = round(ref * 0.6, 2)
    for i in range(orders - positions):
        symbol = symbols[i % len(symbols)]
        status, body = http.json(
            "POST",
            "/api/v1/orders",
            {
                "symbol": symbol,
                "action": "BUY",
                "quantity": 1,
                "order_type": "LMT",
                "limit_price": limits[symbol],
                "tif": "GTC",
            },
        )
        if status != 202:
            raise RuntimeError(f"seeding LMT {symbol}: {status} {body}")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        _, pos = http.json("GET", "/api/v1/positions")
        _, ords = http.json("GET", "/api/v1/orders?limit=500")
        working = sum(1 for o in ords["orders"] if o.get("status") == "Submitted")
        if (
            len(pos["positions"]) >= positions
            and len(ords["orders"]) >= orders
            and working >= orders - positions
        ):
            break
        time.sleep(0.5)
    else:
        raise RuntimeError("seeding did not settle within 120 s")
    http.close()


def reader_window(gateway, tap: GatewayTap, seconds: float) -> tuple[float, float, dict]:
    """Sleep ``seconds``; (msg/s from 999 by the gateway's counter, by the tap, request types)."""
    before = gateway.stats().received_by_client[READER_CLIENT]
    m0 = time.monotonic()
    time.sleep(seconds)
    m1 = time.monotonic()
    after = gateway.stats().received_by_client[READER_CLIENT]
    kinds = dict(tap.kinds_between(READER_CLIENT, m0, m1))
    return (after - before) / (m1 - m0), len(tap.between(READER_CLIENT, m0, m1)) / (m1 - m0), kinds


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--client":
        _, _, base, path, duration, pollers = sys.argv
        client_main(base, path, float(duration), int(pollers))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per endpoint")
    ap.add_argument("--pollers", type=int, default=16)
    ap.add_argument(
        "--rounds", type=int, default=5, help="slices per endpoint, taken round-robin (default 5)"
    )
    ap.add_argument(
        "--waitress-as-is",
        action="store_true",
        help="without waitress_compat (every 304 closes the connection)",
    )
    ap.add_argument("--positions", type=int, default=20)
    ap.add_argument("--orders", type=int, default=200)
    add_experiment_args(ap)
    args = ap.parse_args(argv)
    if (
        not 1 <= args.pollers <= 64
        or not 1 <= args.positions <= 20
        or not args.positions <= args.orders <= 1000
        or not 0.5 <= args.duration <= 120
        or not 1 <= args.rounds <= 20
    ):
        ap.error(
            "--pollers 1..64, --positions 1..20 <= --orders <= 1000, --duration 0.5..120, "
            "--rounds 1..20"
        )
    quiet_logs()
    if not args.waitress_as_is:
        import waitress_compat

        waitress_compat.install()
    experiments = experiments_from(args)
    print(
        f"read endpoints benchmark (python {sys.version.split()[0]}; {args.pollers} pollers in a "
        f"client process, {args.duration:g} s per endpoint; load average "
        f"{os.getloadavg()[0]:.2f}; experiments: {experiments or 'none'}; keep-alive after 304: "
        f"{'no' if args.waitress_as_is else 'yes'})"
    )

    def routes(app) -> None:
        # same before/after-request hooks as the API (the pollers send the bearer token to all)
        app.add_url_rule("/bench/ping", "bench_ping", lambda: "ok")

    gateway = start_gateway(extra_contracts=extra_stocks(6))
    tap = GatewayTap(gateway)
    rows: dict[str, Any] = {}
    try:
        settings = app_settings(
            gateway, settle_first=0, settle_validation=0, settle_final=0, monitor_timeout=1
        )
        with AppServer(settings, routes=routes) as srv:
            t0 = time.perf_counter()
            seed(srv.base, args.positions, args.orders)
            print(
                f"  seeded {args.positions} positions and {args.orders} orders "
                f"({args.orders - args.positions} resting LMT) in {time.perf_counter() - t0:.1f} s"
            )
            time.sleep(3.0)  # let the last monitor windows close and the records go quiet
            idle_rate, idle_tap, idle_kinds = reader_window(gateway, tap, args.duration)
            before = gateway.stats().received_by_client[READER_CLIENT]
            m0 = time.monotonic()
            # round-robin: every endpoint, the reference too, gets --rounds slices of the
            # duration in turn, so a drift of this shared machine's speed during the run does
            # not favour or penalise any endpoint
            for _ in range(args.rounds):
                for path in ENDPOINTS:
                    part = hammer(srv.base, path, args.duration / args.rounds, args.pollers)
                    rows[path] = merge(rows.get(path), part)
            m1 = time.monotonic()
            after = gateway.stats().received_by_client[READER_CLIENT]
            poll_rate = (after - before) / (m1 - m0)
            poll_kinds = dict(tap.kinds_between(READER_CLIENT, m0, m1))
            idle2_rate, _, idle2_kinds = reader_window(gateway, tap, args.duration)
    finally:
        gateway.stop()

    ok = True
    ping_rps = len(rows["/bench/ping"]["latencies"]) / rows["/bench/ping"]["elapsed"]
    print(
        f"\n  {'endpoint':<37} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'bytes':>8} "
        f"{'errors':>6} {'ratio':>6} {'srv us':>6} {'cli us':>6}  target ratio (>= 0.9 /orders, "
        "/state; else 0.8), p99 <= 20 ms"
    )
    for path, r in rows.items():
        rps = len(r["latencies"]) / r["elapsed"]
        p50, p99 = percentile(r["latencies"], 50), percentile(r["latencies"], 99)
        ratio = rps / ping_rps
        judged = path not in INFO and path != "/bench/ping"
        target = TARGET.get(path, 0.8)
        good = ratio >= target and p99 <= 20 and r["errors"] == 0
        if judged:
            ok &= good
        count = max(1, len(r["latencies"]))
        server_us, client_us = r["server_cpu"] / count * 1e6, r["client_cpu"] / count * 1e6
        label = verdict(good) if judged else "(info)" if path in INFO else "(reference)"
        print(
            f"  {path:<37} {rps:>8.0f} {p50:>7.1f} {p99:>7.1f} {r['size']:>8} {r['errors']:>6} "
            f"{ratio:>6.2f} {server_us:>6.0f} {client_us:>6.0f}  {label}"
        )
    new_kinds = sorted(set(poll_kinds) - set(idle_kinds) - set(idle2_kinds) - READER_OWN)
    equal = poll_rate <= max(idle_rate, idle2_rate) * 1.1 + 0.5 and not new_kinds
    print(
        f"\n  reader (clientId 999) messages at the gateway: idle before {idle_rate:.1f} msg/s "
        f"{idle_kinds}"
    )
    print(f"    during polling {poll_rate:.1f} msg/s {poll_kinds}")
    print(f"    idle after {idle2_rate:.1f} msg/s")
    if new_kinds:
        print(f"    request types only seen while polling: {new_kinds}")
    print(
        f"  target GETs add no broker round trip (polling msg/s = idle msg/s, no request "
        f"types but the reader's own): {verdict(equal)}"
    )
    ok &= equal
    expected_idle = 2.0  # 1 open-orders refresh/s + executions every 5 s + a heartbeat every 2 s
    if idle_rate > 2 * expected_idle:
        print(
            f"  note: the idle reader sends {idle_rate:.1f} msg/s, not ~{expected_idle:g} "
            "(one open-orders refresh per second, executions every 5 s, a heartbeat every 2 s)"
        )
    print(f"\nOverall: {verdict(ok)}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
