"""Pacing: the gateway never sees more than 50 messages/s from either of the app's connections.

Starts an embedded ``SimGateway`` with the default pacing limit (50 msg/s, error 100 above it) and
the app served by waitress in this process (default settle 1 s + 2 s + 1 s). A tap on the gateway
records the arrival time and the request type of every message it reads, per clientId, exactly
where the gateway's own counter (``stats().peak_rate_by_client``) counts them. Phases:

1. start-up - from the app's first connect until 2 s after it is up;
2. idle     - ``--idle`` seconds with nothing to do (the reader's own periodic refresh);
3. burst    - ``--orders`` (200) MKT orders POSTed at once (``--posters`` threads) while two HTTP
              pollers read ``/api/v1/orders`` and ``/api/v1/status`` every 100 ms like a dashboard,
              until every order has a verdict, plus 2 s.

For clientIds 999 (reader) and 1000 (orders) it prints, per phase: messages, the busiest 1 s
window and what it was made of. Target: every window <= 50 messages for both clients
(the tap's windows and the gateway's ``peak_rate_by_client``), ``pacing_violations`` == 0 (no
error 100 sent), and no order record carrying an error 100.

Experiments (apply a proposed fix in this process only, to measure its effect; nothing is edited):
  --pace 40/5        ib_pacing.RATE / BURST (default 45/4)
  --refresh-gap 0.25 reader_orders.REFRESH_MIN_GAP (pause after each reader refresh), default 0.2

Usage: python bench/pacing.py [--orders 200] [--idle 3]
Exit status 0 when every target passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

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

LIMIT = 50
CLIENTS = ((READER_CLIENT, "reader 999"), (ORDER_CLIENT, "orders 1000"))


def burst(base: str, n: int, posters: int, timeout: float) -> tuple[list[str], list[str]]:
    """POST n MKT orders from ``posters`` threads at once; wait for every verdict."""
    ids: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(posters + 1)
    symbols = ["AAPL", "MSFT", "AMZN", "GOOGL"]

    def post(k: int) -> None:
        http = Http(base)
        barrier.wait()
        for i in range(k, n, posters):
            status, body = http.json(
                "POST",
                "/api/v1/orders",
                {"symbol": symbols[i % len(symbols)], "action": "BUY", "quantity": 1},
            )
            with lock:
                if status == 202:
                    ids.append(body["id"])
                else:
                    errors.append(f"{status} {str(body)[:160]}")
        http.close()

    threads = [threading.Thread(target=post, args=(k,)) for k in range(posters)]
    for t in threads:
        t.start()
    barrier.wait()
    for t in threads:
        t.join()
    http = Http(base)
    deadline = time.monotonic() + timeout
    pending = set(ids)
    verdicts: dict[str, str] = {}
    while pending and time.monotonic() < deadline:
        _, body = http.json("GET", "/api/v1/orders")
        for row in body["orders"]:
            if row.get("verdict") and row["id"] in pending:
                verdicts[row["id"]] = row["verdict"]
        pending -= set(verdicts)
        time.sleep(0.2)
    http.close()
    if pending:
        errors.append(f"{len(pending)} orders without a verdict after {timeout:g} s")
    tally: dict[str, int] = {}
    for v in verdicts.values():
        tally[v] = tally.get(v, 0) + 1
    if set(tally) - {"filled"}:
        errors.append(f"verdicts {tally} (every MKT order should fill)")
    return ids, errors


def dashboard_pollers(base: str, stop: threading.Event) -> list[threading.Thread]:
    def poll(path: str) -> None:
        http = Http(base)
        while not stop.is_set():
            http.request("GET", path)
            stop.wait(0.1)
        http.close()

    threads = [
        threading.Thread(target=poll, args=(p,), daemon=True)
        for p in ("/api/v1/orders", "/api/v1/status")
    ]
    for t in threads:
        t.start()
    return threads


def error_100_in_records(base: str, ids: list[str]) -> int:
    http = Http(base)
    count = 0
    for order_id in ids:
        _, body = http.json("GET", f"/api/v1/orders/{order_id}")
        life = body.get("lifecycle") or {}
        count += sum(1 for m in life.get("messages", []) if m.get("code") == 100)
    http.close()
    return count


def describe(counter) -> str:
    return ", ".join(f"{k} {v}" for k, v in counter.most_common(5))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--orders", type=int, default=200)
    ap.add_argument("--posters", type=int, default=50, help="threads POSTing the burst")
    ap.add_argument("--idle", type=float, default=3.0, help="seconds of the idle phase")
    ap.add_argument("--timeout", type=float, default=90.0)
    add_experiment_args(ap)
    args = ap.parse_args(argv)
    if not 1 <= args.orders <= 2000 or not 1 <= args.posters <= 200:
        ap.error("--orders 1..2000, --posters 1..200")
    quiet_logs()
    experiments = experiments_from(args)
    print(
        f"pacing benchmark (python {sys.version.split()[0]}; gateway limit {LIMIT} msg/s; "
        f"{args.orders} orders; load average {os.getloadavg()[0]:.2f}; experiments: "
        f"{experiments or 'none'})"
    )

    gateway = start_gateway()
    tap = GatewayTap(gateway)
    phases: dict[str, tuple[float, float]] = {}
    try:
        t0 = time.monotonic()
        with AppServer(app_settings(gateway)) as srv:
            up = time.monotonic()
            time.sleep(2.0)
            phases["start-up"] = (t0, time.monotonic())
            i0 = time.monotonic()
            time.sleep(args.idle)
            phases["idle"] = (i0, time.monotonic())
            stop = threading.Event()
            pollers = dashboard_pollers(srv.base, stop)
            b0 = time.monotonic()
            started = time.perf_counter()
            ids, errors = burst(srv.base, args.orders, args.posters, args.timeout)
            took = time.perf_counter() - started
            time.sleep(2.0)
            stop.set()
            for t in pollers:
                t.join(2)
            phases["burst"] = (b0, time.monotonic())
            records_100 = error_100_in_records(srv.base, ids)
            _, status = Http(srv.base).json("GET", "/api/v1/status")
            reconnects = {
                k: v.get("reconnects")
                for k, v in (status or {}).get("connections", {}).items()
                if isinstance(v, dict) and v.get("reconnects")
            }
        stats = gateway.stats()
    finally:
        gateway.stop()

    print(
        f"  app up in {up - t0:.2f} s; burst: {len(ids)}/{args.orders} accepted, every verdict "
        f"after {took:.2f} s" + (f"; problems: {errors[:3]}" if errors else "")
    )
    ok = not errors
    if reconnects:
        ok = False
        print(f"  !! connections lost and re-made during the run: {reconnects}")
    print(f"  {'phase':<9} {'client':<12} {'msgs':>5} {'msg/s':>6} {'busiest 1 s':>11}  made of")
    for phase, (start, end) in phases.items():
        for client, label in CLIENTS:
            msgs = len(tap.between(client, start, end))
            peak, kinds = tap.busiest_window(client, start, end)
            ok &= peak <= LIMIT
            print(
                f"  {phase:<9} {label:<12} {msgs:>5} {msgs / (end - start):>6.1f} {peak:>9}"
                f"{'!!' if peak > LIMIT else '  '}  {describe(kinds)}"
            )
    peaks = {c: stats.peak_rate_by_client.get(c, 0) for c, _ in CLIENTS}
    print(
        f"  gateway stats: peak_rate_by_client 999={peaks[READER_CLIENT]} "
        f"1000={peaks[ORDER_CLIENT]}, pacing_violations={stats.pacing_violations}, "
        f"error 100 in order records={records_100}"
    )
    ok &= all(p <= LIMIT for p in peaks.values())
    ok &= stats.pacing_violations == 0 and records_100 == 0
    for client, label in CLIENTS:
        print(
            f"  target {label}: <= {LIMIT} msgs in every 1 s window: "
            f"{peaks[client]} -> {verdict(peaks[client] <= LIMIT)}"
        )
    print(
        f"  target no error 100 (gateway violations {stats.pacing_violations}, in records "
        f"{records_100}): {verdict(stats.pacing_violations == 0 and records_100 == 0)}"
    )
    print(f"\nOverall: {verdict(ok)}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
