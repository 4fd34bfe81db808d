"""Footprint: RSS of the app process over many orders, and no thread/socket leak from SSE clients.

The simulated gateway runs in THIS process (default 50 msg/s pacing); the app is
``python app_simple.py`` in a subprocess pointed at it (``IB_MODE=gateway``), so the app's RSS,
threads and fds (read from /proc/<pid>) are the app's alone, as with a real IB Gateway.
Settle 0/0/0 (``SETTLE_*_WAIT=0``), risk limits raised, journal in a temp dir.

1. SSE churn: first, how long a stream slot stays taken after its client left (one client
   reads one event and closes; ``/api/v1/status`` is polled until ``streams`` is 0), on the idle
   app and after one MKT order (a position whose price moves, so the state changes ~1/s). Then
   ``--sse-clients`` (1000) clients, 4 at a time, each connects to ``GET /api/v1/stream``, reads
   until its first ``event: state`` frame, closes. The server bounds open streams and answers 503
   beyond: such a client waits 50 ms and tries again (counted). Bounded by ``--sse-minutes``.
   Meanwhile one MKT order every ``--sse-activity`` s (0.2) keeps the state changing, so every
   open stream is written to: the server only notices a departed client when it writes to it
   (on an idle app that is the 5 s keep-alive, and it takes ~3 writes: see the hold time).
   Threads (/proc/<pid>/task) and fds / sockets (/proc/<pid>/fd) before, and after the server
   reports ``streams: 0`` again. Target: every client served, no more threads or fds after.
2. Orders through the HTTP API: ``--orders`` (10,000) MKT orders, ``POST /api/v1/orders?wait=1``
   from 8 threads (the wait keeps the backlog bounded; each answers once the order is filled).
   RSS, CPU time and wall time sampled every ``--sample-every`` (1,000) orders. Bounded by
   ``--max-minutes`` (the run stops early, and says so, if the app slows down too much).
   Targets: RSS <= 150 MB at the end; flat: growth <= 1 KB per order once warmed up
   (least-squares slope over the samples taken at >= ``--warmup`` orders, 2,000: by then every
   bounded in-memory table is full - the reader's 1,000 executions and 500 completed orders, the
   handler's 500 finished records, the read caches - and so is SQLite's page cache of the
   journal; the slope over every sample from the first is printed too).

Usage: python bench/footprint.py [--orders 10000] [--sse-clients 1000]
Exit status 0 when every target passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import http.client
import os
import sys
import threading
import time
from itertools import pairwise

from _harness import (
    API_TOKEN,
    AppProcess,
    Http,
    add_experiment_args,
    experiment_flags,
    fd_counts,
    get_json,
    quiet_logs,
    rss_mb,
    start_gateway,
    thread_count,
    verdict,
    wait_until,
)

RSS_TARGET_MB = 150.0
FLAT_KB_PER_ORDER = 1.0


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_synced(base: str, timeout: float = 30) -> dict:
    def synced():
        code, body = get_json(base, "/api/v1/status")
        return (
            body if code == 200 and body.get("ok") and body.get("orders_age") is not None else None
        )

    return wait_until(synced, timeout, 0.05)


# ------------------------------------------------------------------ SSE churn
def sse_client(host: str, port: int) -> str:
    """Connect, read up to the first state frame, close. Returns 'ok', 'busy' (503) or 'error'."""
    conn = http.client.HTTPConnection(host, port, timeout=15)
    try:
        conn.request("GET", "/api/v1/stream", headers={"Authorization": f"Bearer {API_TOKEN}"})
        res = conn.getresponse()
        if res.status == 503:
            res.read()
            return "busy"
        if res.status != 200:
            return "error"
        event = None
        while True:
            line = res.fp.readline()
            if not line:
                return "error"
            line = line.rstrip(b"\n")
            if line.startswith(b"event:"):
                event = line[6:].strip()
            elif line == b"" and event == b"state":
                return "ok"
    except (OSError, http.client.HTTPException):
        return "error"
    finally:
        if conn.sock is not None:
            conn.sock.close()
        conn.close()


def slot_hold_seconds(base: str, trials: int = 5) -> list[float]:
    """How long a stream slot stays taken after its client read one event and closed."""
    host, port = base.split("://")[1].split(":")
    holds = []
    for _ in range(trials):
        if sse_client(host, int(port)) != "ok":
            continue
        t0 = time.perf_counter()
        try:
            wait_until(
                lambda: (get_json(base, "/api/v1/status")[1] or {}).get("streams", 1) == 0, 60, 0.02
            )
            holds.append(time.perf_counter() - t0)
        except TimeoutError:
            holds.append(float("inf"))
    return holds


def sse_churn(base: str, clients: int, max_seconds: float, workers: int = 4) -> dict:
    host, port = base.split("://")[1].split(":")
    counts: dict[str, float] = {"ok": 0, "busy": 0, "error": 0}
    lock = threading.Lock()
    todo = iter(range(clients))
    stop_at = time.perf_counter() + max_seconds

    def work() -> None:
        while True:
            with lock:
                if next(todo, None) is None:
                    return
            while time.perf_counter() < stop_at:
                outcome = sse_client(host, int(port))
                with lock:
                    counts[outcome] += 1
                if outcome == "ok":
                    break
                time.sleep(0.05)
                if outcome == "error" and counts["error"] > 50:
                    return

    t0 = time.perf_counter()
    threads = [threading.Thread(target=work) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    counts["seconds"] = time.perf_counter() - t0
    return counts


def trade_now_and_then(base: str, every: float, stop: threading.Event) -> None:
    """One MKT order (BUY, SELL, BUY ...) every ``every`` s until ``stop``: keeps the state changing."""
    http = Http(base)
    side = 0
    while not stop.wait(every):
        http.request(
            "POST",
            "/api/v1/orders",
            {"symbol": "AAPL", "action": ("BUY", "SELL")[side], "quantity": 1},
        )
        side ^= 1
    http.close()


# ------------------------------------------------------------------ orders
def place_orders(base: str, pid: int, n: int, every: int, workers: int, max_seconds: float) -> dict:
    done = 0
    errors: list[str] = []
    lock = threading.Lock()
    samples = [(0, rss_mb(pid), cpu_seconds(pid), time.perf_counter())]
    stop_at = time.perf_counter() + max_seconds
    symbols = ["AAPL", "MSFT", "IBM", "JPM", "XOM", "AMD"]
    issued = iter(range(n))

    def work() -> None:
        nonlocal done
        http = Http(base, timeout=60)
        while time.perf_counter() < stop_at:
            with lock:
                i = next(issued, None)
            if i is None:
                break
            try:
                status, body = http.json(
                    "POST",
                    "/api/v1/orders?wait=1",
                    {"symbol": symbols[i % len(symbols)], "action": "BUY", "quantity": 1},
                )
                good = status in (200, 202) and body["order"].get("verdict") == "filled"
            except Exception as exc:  # noqa: BLE001
                good, body = False, repr(exc)
            with lock:
                if not good:
                    errors.append(str(body)[:200])
                done += 1
                if done % every == 0:
                    samples.append((done, rss_mb(pid), cpu_seconds(pid), time.perf_counter()))
                    s0, s1 = samples[-2], samples[-1]
                    print(
                        f"    {done:>6} orders: RSS {s1[1]:6.1f} MB, last {every}: "
                        f"{s1[3] - s0[3]:5.1f} s wall, {(s1[2] - s0[2]) / every * 1000:5.1f} ms "
                        f"app CPU per order",
                        flush=True,
                    )
        http.close()

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if samples[-1][0] != done:
        samples.append((done, rss_mb(pid), cpu_seconds(pid), time.perf_counter()))
    return {"done": done, "errors": errors, "samples": samples}


def slope_kb_per_order(samples: list[tuple], start: int = 1) -> float:
    """Least-squares RSS growth (KB per order) over the samples taken at >= ``start`` orders."""
    pts = [(n, mb) for n, mb, *_ in samples if n >= max(1, start)]
    if len(pts) < 2:
        return float("nan")
    mx = sum(n for n, _ in pts) / len(pts)
    my = sum(m for _, m in pts) / len(pts)
    var = sum((n - mx) ** 2 for n, _ in pts)
    return sum((n - mx) * (m - my) for n, m in pts) / var * 1024 if var else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--orders", type=int, default=10_000)
    ap.add_argument("--sample-every", type=int, default=1000)
    ap.add_argument("--sse-clients", type=int, default=1000)
    ap.add_argument("--sse-minutes", type=float, default=10.0, help="time bound of the churn")
    ap.add_argument(
        "--sse-activity",
        type=float,
        default=0.2,
        metavar="SECONDS",
        help="during the churn, one MKT order every SECONDS (0 = none), so that "
        "every open stream gets written to and a departed client is noticed",
    )
    ap.add_argument(
        "--warmup",
        type=int,
        default=2000,
        help="orders after which the flatness slope is taken (bounded tables full)",
    )
    ap.add_argument("--workers", type=int, default=8, help="threads POSTing orders")
    ap.add_argument("--max-minutes", type=float, default=20.0)
    add_experiment_args(ap)
    args = ap.parse_args(argv)
    if (
        not 0 <= args.orders <= 50_000
        or not 0 <= args.sse_clients <= 10_000
        or not 1
        <= args.sample_every
        <= max(1, args.orders, args.sample_every if not args.orders else 1)
    ):
        ap.error("--orders 0..50000, --sse-clients 0..10000, --sample-every 1..orders")
    quiet_logs()
    print(
        f"footprint benchmark (python {sys.version.split()[0]}; app = python app_simple.py "
        f"subprocess, gateway in the benchmark process; settle 0/0/0; load average "
        f"{os.getloadavg()[0]:.2f}; experiments: {' '.join(experiment_flags(args)) or 'none'})"
    )
    gateway = start_gateway()
    ok = True
    try:
        env = {"SETTLE_FIRST_WAIT": "0", "SETTLE_VALIDATION_WAIT": "0", "SETTLE_FINAL_WAIT": "0"}
        with AppProcess(env=env, gateway=gateway, experiments=experiment_flags(args)) as app:
            wait_synced(app.base)
            pid = app.pid
            time.sleep(1.0)
            print(
                f"  app pid {pid} synced; RSS {rss_mb(pid):.1f} MB, threads "
                f"{thread_count(pid)}, fds/sockets {fd_counts(pid)}"
            )

            if args.sse_clients:
                idle_hold = slot_hold_seconds(app.base, trials=1)
                # one position: its price moves, so the snapshot (and the streams) change ~1/s,
                # as on a dashboard with positions; an idle app only writes keep-alives (5 s)
                Http(app.base).json(
                    "POST",
                    "/api/v1/orders?wait=1",
                    {"symbol": "AAPL", "action": "BUY", "quantity": 1},
                )
                time.sleep(2.0)
                holds = sorted(slot_hold_seconds(app.base, trials=3))
                threads0, (fds0, socks0) = thread_count(pid), fd_counts(pid)
                busy = threading.Event()
                activity = threading.Thread(
                    target=trade_now_and_then, args=(app.base, args.sse_activity, busy), daemon=True
                )
                if args.sse_activity > 0:
                    activity.start()
                churn = sse_churn(app.base, args.sse_clients, args.sse_minutes * 60)
                busy.set()
                if activity.is_alive():
                    activity.join(10)

                def drained():
                    code, body = get_json(app.base, "/api/v1/status")
                    return code == 200 and (body or {}).get("streams", 1) == 0

                try:
                    wait_until(drained, 60, 0.2)
                    drained_ok = True
                except TimeoutError:
                    drained_ok = False
                time.sleep(1.0)
                threads1, (fds1, socks1) = thread_count(pid), fd_counts(pid)
                no_leak = (
                    churn["ok"] == args.sse_clients
                    and drained_ok
                    and threads1 <= threads0
                    and fds1 <= fds0
                )
                ok &= no_leak
                print(
                    f"\n  SSE: a stream slot (and its waitress thread) stays taken "
                    f"{idle_hold[0]:.1f} s after its client has gone on the idle app, "
                    f"{holds[len(holds) // 2]:.1f} s (median of {len(holds)}) once it holds a "
                    "position"
                )
                activity_text = (
                    f"one order every {args.sse_activity:g} s"
                    if args.sse_activity
                    else "no activity"
                )
                print(
                    f"  SSE churn ({activity_text}): {churn['ok']}/{args.sse_clients} clients "
                    f"read a state event in {churn['seconds']:.1f} s ({churn['busy']} x 503 "
                    f"busy, retried after 50 ms; {churn['error']} errors); streams back to 0: "
                    f"{drained_ok}"
                    + (
                        ""
                        if churn["ok"] == args.sse_clients
                        else f" - stopped by --sse-minutes {args.sse_minutes:g}"
                    )
                )
                print(
                    f"    threads {threads0} -> {threads1}, fds {fds0} -> {fds1}, sockets "
                    f"{socks0} -> {socks1}"
                )
                print(
                    f"  target no thread or socket leak after {args.sse_clients} SSE clients: "
                    f"{verdict(no_leak)}"
                )

            if args.orders:
                print(
                    f"\n  placing {args.orders} MKT orders via POST /api/v1/orders?wait=1 "
                    f"({args.workers} threads):"
                )
                r = place_orders(
                    app.base,
                    pid,
                    args.orders,
                    args.sample_every,
                    args.workers,
                    args.max_minutes * 60,
                )
                samples = r["samples"]
                final_rss = samples[-1][1]
                slope = slope_kb_per_order(samples, args.warmup)
                whole = slope_kb_per_order(samples)
                _, state = Http(app.base).request("GET", "/api/v1/state")
                _, orders = Http(app.base).request("GET", "/api/v1/orders")
                complete = r["done"] == args.orders and not r["errors"]
                print(
                    f"  orders placed {r['done']}/{args.orders}, errors {len(r['errors'])}"
                    + (f" e.g. {r['errors'][:2]}" if r["errors"] else "")
                    + (
                        ""
                        if r["done"] == args.orders
                        else f" - stopped by --max-minutes {args.max_minutes:g}"
                    )
                )
                print(
                    f"  RSS {samples[0][1]:.1f} MB at 0 orders -> {final_rss:.1f} MB at "
                    f"{samples[-1][0]} orders; growth {slope:.2f} KB/order from "
                    f"{args.warmup} orders on ({whole:.2f} KB/order over every sample from "
                    f"the first); threads {thread_count(pid)}, fds {fd_counts(pid)[0]}"
                )
                cpu = [(b[2] - a[2]) / (b[0] - a[0]) * 1000 for a, b in pairwise(samples[1:])]
                if cpu:
                    print(
                        f"  app CPU per order, first -> last interval: {cpu[0]:.1f} -> "
                        f"{cpu[-1]:.1f} ms"
                    )
                print(
                    f"  response sizes now: GET /api/v1/orders {len(orders) / 1e6:.1f} MB, "
                    f"GET /api/v1/state (= every SSE frame) {len(state) / 1e6:.1f} MB"
                )
                rss_ok = complete and final_rss <= RSS_TARGET_MB
                flat_ok = complete and slope <= FLAT_KB_PER_ORDER
                print(
                    f"  target RSS <= {RSS_TARGET_MB:g} MB after {args.orders} orders: "
                    f"{final_rss:.1f} MB -> {verdict(rss_ok)}"
                )
                print(
                    f"  target flat (<= {FLAT_KB_PER_ORDER:g} KB/order after {args.warmup} "
                    f"orders): {slope:.2f} KB/order -> {verdict(flat_ok)}"
                    + (
                        ""
                        if slope == slope
                        else " (too few samples after the warm-up: "
                        "raise --orders or lower --sample-every)"
                    )
                )
                ok &= rss_ok and flat_ok
    finally:
        gateway.stop()
    print(f"\nOverall: {verdict(ok)}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
