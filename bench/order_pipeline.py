"""Order pipeline: N orders POSTed at once through the HTTP API, time until every one has a verdict.

Starts an embedded ``SimGateway`` (default 50 msg/s pacing) and the app served by waitress in this
process, with the DEFAULT settle workaround (1 s + 2 s + 1 s) and monitor time-out (15 s). For each
N (default 1, 10, 50, 200) N threads wait on a barrier and each POSTs one MKT order
(``POST /api/v1/orders``, 202); one poller reads ``GET /api/v1/orders`` every ``--poll`` seconds
until each of the N ids shows a ``verdict``, then reads each order's lifecycle
(``GET /api/v1/orders/<id>``): the time of an order is the app's own stamp of its ``verdict:`` step.
The time of a run is barrier release -> last verdict (the "polled" column is when the poller saw it).

Three scenarios (``--scenarios``):
* ``instant``  - the simulator acknowledges and fills at once (its default, validation delay 0);
* ``paper2s``  - paper-like: the simulator validates each order for 2 s before acknowledging
                 (``SimGateway.set_validation_delay(2)``, the README's ``--validation-delay 2``);
* ``paper4s``  - a slow paper day: validation takes 4 s, as long as the default settle workaround
                 (1 + 2 + 1 s) allows for, so one order takes about the settle time.

Every N uses a symbol the app has not traded yet in this run ("cold" contract cache, like the
first burst of the day in a symbol); ``--warm`` uses one pre-qualified symbol instead.

Targets: 50 orders within settle + 2 s (= 6 s), in every scenario; time(50) / time(1) <= 1.5,
the same target said as a ratio, which assumes one order takes about the settle (4 s): judged in
``paper4s``. In the other scenarios the app gives a verdict as soon as the broker answers, so one
order takes ~10 ms or 2 s, and the ratio is bounded below by pacing: 50 placeOrders (plus one
contract lookup) need 51 / R s of wire time, so time(50) / time(1) >= 1 + 51 / (R x time(1)):
1.57 for 2 s at R = 45 (1.5 even at the gateway's 50 msg/s). Printed with that floor, not judged.
200 orders bounded only by pacing: time(200) <= time(1) + M / R x 1.1 + 0.5 s, M = the messages
the gateway received from clientId 1000 in the run (200 placeOrders, contract lookups, heartbeats),
R = the order connection's own pacing (``ib_pacing.RATE``, a smooth 45 msg/s); the
factor 1.1 allows for the pacer's last wake-up slipping under load.
Also reported per N: the time by which every POST had its 202, the messages the gateway received
from clientId 1000 (and per order), and the busiest 1 s window of clientIds 1000 and 999.

Usage: python bench/order_pipeline.py [--sizes 1,10,50,200] [--scenarios instant,paper2s]
Exit status 0 when every target passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from datetime import datetime

from _harness import (
    DEFAULT_SETTLE,
    ORDER_CLIENT,
    READER_CLIENT,
    AppServer,
    GatewayTap,
    Http,
    add_experiment_args,
    app_settings,
    experiments_from,
    max_in_window,
    quiet_logs,
    start_gateway,
    verdict,
)

COLD_SYMBOLS = [
    "MSFT",
    "AMZN",
    "GOOGL",
    "NVDA",
    "META",
    "AMD",
    "NFLX",
    "IBM",
    "JPM",
    "XOM",
    "TSLA",
    "SPY",
    "QQQ",
]
SCENARIOS = {"instant": 0.0, "paper2s": 2.0, "paper4s": 4.0}
# the pacer's timer slips by a few ms on a busy 2-core machine; its bucket absorbs slips under
# 0.11 s, but the last wake-up of a burst can still come late
PACING_SLIP = 1.1
RATIO_JUDGED_FROM = 3.0  # s of validation: one order takes about the settle (the target's premise)
GATEWAY_LIMIT = 50  # msg/s


def pacing_rate() -> float:
    """The order connection's own send rate (its pacer, ``ib_pacing.RATE``), never
    above the gateway's limit."""
    import ib_pacing

    return min(GATEWAY_LIMIT, ib_pacing.RATE)


def run_batch(base: str, n: int, symbol: str, poll: float, timeout: float) -> dict:
    """POST n orders at once; wait until each shows a verdict in GET /api/v1/orders.

    The time of an order's verdict is read afterwards from its lifecycle record (the
    ``verdict: ...`` step, stamped by the app when it decided), so the figures do not depend on
    the polling interval and the poller can stay light (it competes for the same GIL).
    """
    barrier = threading.Barrier(n + 1)
    ids: list[str | None] = [None] * n
    posted: list[float] = [0.0] * n
    errors: list[str] = []

    def post(i: int) -> None:
        http = Http(base)
        body = {"symbol": symbol, "action": "BUY", "quantity": 1, "order_type": "MKT"}
        barrier.wait()
        try:
            status, answer = http.json("POST", "/api/v1/orders", body)
            posted[i] = time.time()
            if status == 202:
                ids[i] = answer["id"]
            else:
                errors.append(f"{status} {str(answer)[:200]}")
        except Exception as exc:  # noqa: BLE001
            errors.append(repr(exc))
        finally:
            http.close()

    threads = [threading.Thread(target=post, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.time()
    for t in threads:
        t.join()
    wanted = {i for i in ids if i}
    seen: dict[str, float] = {}
    poller = Http(base)
    deadline = time.monotonic() + timeout
    while len(seen) < len(wanted) and time.monotonic() < deadline:
        _, body = poller.json("GET", "/api/v1/orders")
        now = time.time()
        for row in body["orders"]:
            if row.get("id") in wanted and row.get("verdict") and row["id"] not in seen:
                seen[row["id"]] = now
        if len(seen) < len(wanted):
            time.sleep(poll)
    verdict_at: dict[str, float] = {}
    verdicts: dict[str, int] = {}
    for order_id in seen:
        _, body = poller.json("GET", f"/api/v1/orders/{order_id}")
        life = body.get("lifecycle") or {}
        steps = [_epoch(s["at"]) for s in life.get("steps", []) if s["text"].startswith("verdict:")]
        verdict_at[order_id] = steps[0] if steps else seen[order_id]
        verdicts[body.get("verdict")] = verdicts.get(body.get("verdict"), 0) + 1
    poller.close()
    return {
        "n": n,
        "accepted": len(wanted),
        "errors": errors,
        "done": len(seen),
        "time": max(verdict_at.values(), default=float("nan")) - start,
        "seen": max(seen.values(), default=float("nan")) - start,
        "posts_done": max(posted) - start,
        "verdicts": verdicts,
    }


def _epoch(stamp: str) -> float:
    """Epoch seconds of an API time (ISO 8601 UTC, e.g. 2026-11-30T15:00:00.123Z)."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def run_scenario(name: str, args: argparse.Namespace) -> tuple[bool, list[dict]]:
    delay = SCENARIOS[name]
    settle = sum(DEFAULT_SETTLE)
    gateway = start_gateway()
    tap = GatewayTap(gateway)
    rows: list[dict] = []
    ok = True
    try:
        gateway.set_validation_delay(delay)
        with AppServer(app_settings(gateway)) as srv:
            http = Http(srv.base)
            if args.warm:  # qualify the one symbol first
                http.json(
                    "POST",
                    "/api/v1/orders?wait=1",
                    {"symbol": "AAPL", "action": "BUY", "quantity": 1},
                )
                time.sleep(1.2)
            symbols = iter(COLD_SYMBOLS)
            for n in args.sizes:
                reps = args.single_reps if n == 1 else 1
                results = []
                for _ in range(reps):
                    symbol = "AAPL" if args.warm else next(symbols)
                    before = gateway.stats()
                    mono0 = time.monotonic()
                    r = run_batch(srv.base, n, symbol, args.poll, args.timeout)
                    mono1 = time.monotonic()
                    after = gateway.stats()
                    r["symbol"] = symbol
                    r["msgs_1000"] = (
                        after.received_by_client[ORDER_CLIENT]
                        - before.received_by_client[ORDER_CLIENT]
                    )
                    r["violations"] = after.pacing_violations - before.pacing_violations
                    r["peak_1000"] = max_in_window(tap.between(ORDER_CLIENT, mono0, mono1))
                    r["peak_999"] = max_in_window(tap.between(READER_CLIENT, mono0, mono1))
                    results.append(r)
                    time.sleep(
                        args.gap
                    )  # let ib_async's 1 s throttle window and the refresher calm down
                r = dict(results[len(results) // 2]) if reps == 1 else dict(results[0])
                if reps > 1:
                    r["time"] = statistics.median(x["time"] for x in results)
                    r["reps"] = [x["time"] for x in results]
                rows.append(r)
            _, status = http.json("GET", "/api/v1/status")
            conns = (status or {}).get("connections", {})
            reconnects = {
                k: (v.get("reconnects"), v.get("last_error"))
                for k, v in conns.items()
                if isinstance(v, dict) and "reconnects" in v
            }
            http.close()
        stats = gateway.stats()
    finally:
        gateway.stop()

    t1 = next((r["time"] for r in rows if r["n"] == 1), float("nan"))
    print(
        f"\nScenario {name}: simulator validation delay {delay:g} s, settle "
        f"{' + '.join(f'{s:g}' for s in DEFAULT_SETTLE)} s, "
        f"{'one pre-qualified symbol' if args.warm else 'a new symbol per N (cold contract cache)'}"
    )
    print(
        f"  {'N':>4} {'sym':>5} {'all verdicts':>13} {'ratio/1':>8} {'polled':>8} {'202s by':>8} "
        f"{'msgs 1000':>9} {'per order':>9} {'peak 1000':>9} {'peak 999':>8} {'err100':>6}  verdicts"
    )
    for r in rows:
        ratio = r["time"] / t1 if t1 > 0 else float("nan")
        print(
            f"  {r['n']:>4} {r['symbol']:>5} {r['time']:>11.3f} s {ratio:>8.2f} {r['seen']:>6.2f} s "
            f"{r['posts_done']:>6.3f} s {r['msgs_1000']:>9} {r['msgs_1000'] / r['n']:>9.2f} "
            f"{r['peak_1000']:>9} {r['peak_999']:>8} {r['violations']:>6}  {r['verdicts']}"
            + (
                f"  (N=1 runs: {', '.join(f'{x:.3f}' for x in r['reps'])} s; median shown)"
                if r.get("reps")
                else ""
            )
            + (f"  ERRORS {r['errors'][:2]}" if r["errors"] else "")
            + (
                f"  only {r['done']}/{r['accepted']} got a verdict"
                if r["done"] < r["accepted"]
                else ""
            )
        )
    lost = {k: v for k, v in reconnects.items() if v[0]}
    if lost:
        print(
            f"  !! connections lost and re-made during the scenario (reconnects, last error): "
            f"{lost}"
        )
    print(
        f"  gateway peak msg/s over the whole scenario: clientId 1000 "
        f"{stats.peak_rate_by_client.get(ORDER_CLIENT, 0)}, clientId 999 "
        f"{stats.peak_rate_by_client.get(READER_CLIENT, 0)}; pacing violations "
        f"{stats.pacing_violations}"
    )
    by_n = {r["n"]: r for r in rows}
    complete = all(
        r["done"] == r["n"] and not r["errors"] and r["verdicts"] == {"filled": r["n"]}
        for r in rows
    )
    if not complete:
        print(f"  [{name}] MISS: not every MKT order was accepted and filled (see the verdicts)")
        ok = False
    if 50 in by_n:
        r = by_n[50]
        within = r["time"] <= settle + 2.0
        ratio = r["time"] / t1
        print(
            f"  [{name}] target 50 orders within settle + 2 s = {settle + 2:g} s: {r['time']:.3f} s "
            f"-> {verdict(within)}"
        )
        ok &= within
        floor = 1 + 51 / (pacing_rate() * t1)
        if delay >= RATIO_JUDGED_FROM:
            print(
                f"  [{name}] target time(50)/time(1) <= 1.5: {ratio:.2f} -> {verdict(ratio <= 1.5)}"
            )
            ok &= ratio <= 1.5
        else:
            print(
                f"  [{name}] time(50)/time(1) = {ratio:.2f}: not judged here (1 order = "
                f"{t1 * 1000:.0f} ms; pacing alone puts the ratio at >= {floor:.2f}: "
                f"51 messages at {pacing_rate():g} msg/s)"
            )
    if 200 in by_n:
        r = by_n[200]
        rate = pacing_rate()
        wire = r["msgs_1000"] / rate  # every message clientId 1000 sent, at the configured pace
        bound = t1 + wire * PACING_SLIP + 0.5
        print(
            f"  [{name}] target 200 orders bounded only by pacing (<= time(1) + "
            f"{r['msgs_1000']} msgs / {rate:.1f} msg/s x {PACING_SLIP:g} + 0.5 s = {bound:.2f} s): "
            f"{r['time']:.3f} s -> {verdict(r['time'] <= bound)}; gateway peak "
            f"{r['peak_1000']} msg/s from clientId 1000 during the burst; per order "
            f"{r['time'] / 200 * 1000:.0f} ms (one at a time would take {t1 * 200:.0f} s)"
        )
        ok &= r["time"] <= bound
    return ok, rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1,10,50,200", help="comma-separated batch sizes")
    ap.add_argument(
        "--scenarios",
        default="instant,paper2s,paper4s",
        help=f"comma-separated, of {', '.join(SCENARIOS)}",
    )
    ap.add_argument("--warm", action="store_true", help="one pre-qualified symbol for every N")
    ap.add_argument("--poll", type=float, default=0.1, help="seconds between GET /orders polls")
    ap.add_argument("--single-reps", type=int, default=3, help="runs of N=1 (median is used)")
    ap.add_argument("--gap", type=float, default=1.5, help="seconds of quiet between runs")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for verdicts")
    add_experiment_args(ap)
    args = ap.parse_args(argv)
    args.sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    args.scenarios = [x.strip() for x in args.scenarios.split(",") if x.strip()]
    if any(n < 1 or n > 1000 for n in args.sizes) or 1 not in args.sizes:
        ap.error("--sizes: 1..1000 each, and 1 must be among them (the reference)")
    if any(s not in SCENARIOS for s in args.scenarios):
        ap.error(f"--scenarios: choose from {', '.join(SCENARIOS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_logs()
    experiments = experiments_from(args)
    print(
        f"order pipeline benchmark (python {sys.version.split()[0]}, waitress 16 threads "
        f"in-process, embedded SimGateway at the default 50 msg/s pacing; load average "
        f"{os.getloadavg()[0]:.2f}; experiments: {experiments or 'none'})"
    )
    ok = True
    for name in args.scenarios:
        passed, _ = run_scenario(name, args)
        ok &= passed
    print(f"\nOverall: {verdict(ok)}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
