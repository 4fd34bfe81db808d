"""Standalone baseline check: place one order and watch it, outside the app.

    python test_order.py                      # against an embedded simulated gateway
    python test_order.py --port 4002 --symbol MSFT --quantity 2

Uses its own connection and clientId, applies the paper-trading settle
workaround (awaited, so callbacks keep flowing), prints each status
transition with elapsed seconds and every IB message, and exits 0 only if the
order reaches Filled. An order not done by the time-out (or at Ctrl-C, SIGTERM or
SIGHUP) is cancelled: a baseline check leaves nothing working at IB. It refuses a
live account unless ``--live`` is given (the order is real there).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time

from ib_async import IB, Contract, Order, Trade

from config import is_paper_account
from ib_compat import DONE_STATES, broker_state, make_contract
from wire import plain_number

EXIT_FILLED, EXIT_NOT_FILLED, EXIT_ERROR = 0, 1, 2
CANCEL_WAIT = 5.0  # s to wait for the broker to confirm the cancel of an unfinished order


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line flags."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--host",
        default=None,
        help="gateway host (default 127.0.0.1 with --port; neither: an embedded simulated gateway)",
    )
    ap.add_argument(
        "--port", type=int, default=None, help="gateway port (default 4002 with --host)"
    )
    ap.add_argument("--client-id", type=int, default=7, help="API client id (default 7)")
    ap.add_argument("--symbol", default="AAPL")
    ap.add_argument("--sec-type", default="STK", choices=("STK", "CASH"))
    ap.add_argument("--side", default="BUY", choices=("BUY", "SELL"))
    ap.add_argument("--quantity", type=float, default=1)
    ap.add_argument("--order-type", default="MKT", choices=("MKT", "LMT"))
    ap.add_argument("--limit-price", type=float, default=None)
    ap.add_argument("--tif", default="DAY", choices=("DAY", "GTC", "IOC"))
    ap.add_argument(
        "--settle",
        default="1,2,1",
        help="the settle workaround's three waits in seconds (default 1,2,1)",
    )
    ap.add_argument(
        "--timeout",
        type=float,
        default=15.0,
        help="monitoring time-out (s); an order not done by then is cancelled",
    )
    ap.add_argument(
        "--live",
        action="store_true",
        help="allow a live (non-paper) account: the order is real there",
    )
    ap.add_argument(
        "--sim-market-data",
        default="live",
        choices=("live", "delayed", "api-delayed", "none"),
        help="market data of the embedded gateway's account (default live); orders "
        "need none: this script never asks for a quote",
    )
    args = ap.parse_args(argv)
    if args.host is not None or args.port is not None:  # a gateway of the trader's, not ours
        args.host = args.host or "127.0.0.1"
        args.port = 4002 if args.port is None else args.port
    try:
        args.settle = tuple(float(x) for x in args.settle.split(","))
    except ValueError:
        ap.error(f"--settle {args.settle!r}: expected three numbers like 1,2,1")
    if len(args.settle) != 3 or min(args.settle) < 0:
        ap.error("--settle takes three non-negative numbers")
    if args.quantity <= 0:
        ap.error("--quantity must be positive")
    if args.order_type == "LMT" and (args.limit_price is None or args.limit_price <= 0):
        ap.error("--order-type LMT needs a positive --limit-price")
    return args


async def run(args: argparse.Namespace, host: str, port: int) -> int:
    """Connect, place, settle, monitor; returns the exit code."""
    start = time.monotonic()
    say = lambda text: print(f"[{time.monotonic() - start:4.1f}s] {text}", flush=True)  # noqa
    _stop_like_ctrl_c(say)
    ib = IB()
    ib.errorEvent += lambda req_id, code, text, contract: say(
        f"💬 Message: Error {code}, reqId {req_id}: {text}"
    )
    connect = lambda: ib.connectAsync(host, port, clientId=args.client_id, timeout=10)  # noqa
    try:
        await connect()
    except (TimeoutError, OSError) as exc:
        say(f"❌ Cannot connect to {host}:{port} as clientId {args.client_id}: {exc!r}")
        return EXIT_ERROR
    say(
        f"✅ Connected to {host}:{port} (server version {ib.client.serverVersion()}, "
        f"accounts {','.join(ib.managedAccounts())})"
    )
    try:
        if not args.live and not all(map(is_paper_account, ib.managedAccounts())):
            say(
                f"❌ {','.join(ib.managedAccounts())} is a live account: this check places a "
                "real order there; nothing was sent (add --live to do it anyway)"
            )
            return EXIT_ERROR
        return await _place_and_watch(ib, args, say, connect)
    finally:
        ib.disconnect()


def _stop_like_ctrl_c(say) -> None:
    """SIGTERM (kill, timeout, a service manager) and SIGHUP (the terminal closed) end the
    check as Ctrl-C does: the running task is cancelled, so an unfinished order is cancelled
    at IB before the script ends, not left working."""
    if sys.platform == "win32":  # no loop signal handlers there; Ctrl-C works as before
        return
    loop, task = asyncio.get_running_loop(), asyncio.current_task()
    assert task is not None

    def stop(sig: signal.Signals) -> None:
        if not task.cancelling():  # a second one would cut the cancel's wait short
            say(f"🛑 {sig.name} received: stopping as for Ctrl-C")
            task.cancel()

    for sig in (signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop, sig)


async def _place_and_watch(ib: IB, args: argparse.Namespace, say, connect) -> int:
    found = await ib.qualifyContractsAsync(make_contract(args.symbol, args.sec_type))
    contract = found[0] if found else None
    if not isinstance(contract, Contract):  # None: unknown or ambiguous
        say(f"❌ Unknown symbol {args.symbol}")
        return EXIT_ERROR
    order = Order(
        action=args.side,
        totalQuantity=args.quantity,
        orderType=args.order_type,
        tif=args.tif,
        orderRef=f"test_order-{int(time.time())}",
    )
    if args.limit_price is not None:
        order.lmtPrice = args.limit_price
    last: list[str | None] = [None]

    def on_status(trade: Trade) -> None:
        held = trade.orderStatus.whyHeld
        status = trade.orderStatus.status + (f" (held: {held})" if held else "")
        if status != last[0]:
            say(f"📊 Status: {last[0]} → {status}")
            last[0] = status

    trade = ib.placeOrder(contract, order)
    trade.statusEvent += on_status
    on_status(trade)
    say(
        f"🚀 Submitted orderId {order.orderId}: {args.side} {plain_number(args.quantity)} {args.symbol} "
        f"{args.order_type} (timeout: {args.timeout:g}s)"
    )
    try:
        await _settle_and_watch(ib, trade, args, say)
    finally:  # the time-out, a lost connection, an error or Ctrl-C (asyncio.run cancels this task)
        if await _still_working(ib, trade, say):
            trade = await _cancel_unfinished(ib, trade, say, connect)
    for fill in trade.fills:
        say(
            f"💰 Fill {plain_number(fill.execution.shares)} @ {plain_number(fill.execution.price)} "
            f"(commission {plain_number(fill.commissionReport.commission)})"
        )
    status = trade.orderStatus.status
    if status == "Filled":
        say("🎉 SUCCESS! Order reached: Filled")
        return EXIT_FILLED
    say(f"❌ Order did not fill: {status}")
    return EXIT_NOT_FILLED


async def _settle_and_watch(ib: IB, trade: Trade, args: argparse.Namespace, say) -> None:
    """The settle workaround's waits (awaited: callbacks keep flowing), then up to
    ``--timeout`` s for the order to be done (or the connection to drop)."""
    say("⏱️ Applying sleep workaround...")
    for seconds in args.settle:
        await asyncio.sleep(seconds)
    say("✅ Sleep completed")
    deadline = time.monotonic() + args.timeout
    listed_at = 0  # trade.log's length when the gateway last listed the order as working
    while ib.isConnected() and time.monotonic() < deadline:
        if _done(trade) and len(trade.log) != listed_at:
            if not await _still_working(ib, trade, say):
                return
            listed_at = len(trade.log)
        await asyncio.sleep(0.1)


def _done(trade: Trade) -> bool:
    """Done at IB: ib_async's done states, less a short sale IB holds for a locate (Inactive
    with whyHeld "locate": it lives and may fill)."""
    return broker_state(trade.orderStatus) in DONE_STATES


async def _still_working(ib: IB, trade: Trade, say) -> bool:
    """Whether the order may still work at IB. ib_async marks an order Cancelled on any IB
    message outside its short list of warnings (10349, 10311 ...) while it works on: an end
    that came from such a message is checked against the gateway's open orders (whose
    answer also brings the order's real status back)."""
    if not _done(trade):
        return True
    if not trade.log or trade.log[-1].errorCode == 0:  # the gateway's own status
        return False
    if not ib.isConnected():
        return True
    code = trade.log[-1].errorCode
    try:
        listed = await asyncio.wait_for(ib.reqOpenOrdersAsync(), CANCEL_WAIT)
    except TimeoutError:
        say("⚠️ The gateway did not list its open orders: taking the order for working")
        return True
    if not any(t.order.orderId == trade.order.orderId for t in listed):
        return False
    say(f"⚠️ IB's message {code} ended nothing: the order is still working at IB")
    return True


async def _cancel_unfinished(ib: IB, trade: Trade, say, connect) -> Trade:
    """Cancel the order and wait up to CANCEL_WAIT s for the broker to say it is done; after
    a lost connection, connect again first. Returns the order's trade as last known."""
    order = trade.order
    say(f"🛑 Not done ({trade.orderStatus.status}): cancelling orderId {order.orderId}")
    try:
        if not ib.isConnected():
            trade = await _found_again(ib, trade, say, connect)
            if _done(trade):
                return trade
        ib.cancelOrder(order)
        deadline = time.monotonic() + CANCEL_WAIT
        while not _done(trade) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
    except ConnectionError as exc:
        say(f"⚠️ Cancel not sent: {exc}")
    finally:  # also when a second Ctrl-C cuts the wait short
        if not _done(trade):  # the status may be a late ack of the order, not of the cancel
            # (ib_async logs PendingCancel on the trade once it has sent the cancel)
            sent = any(entry.status == "PendingCancel" for entry in trade.log)
            unconfirmed = ", the cancel sent but not confirmed" if sent else ""
            say(
                f"⚠️ orderId {order.orderId} (permId {order.permId}) may still be working at "
                f"IB ({trade.orderStatus.status}{unconfirmed}): check TWS and cancel it there"
            )
    return trade


async def _found_again(ib: IB, trade: Trade, say, connect) -> Trade:
    """The connection dropped (a gateway restart, the network): connect again as the same
    client, the only one IB lets cancel the order, and find the order in what the gateway
    reports at connect (open and completed orders, with its fills)."""
    say("🔌 Lost the connection to the gateway: connecting again to cancel the order")
    try:
        await connect()
    except (TimeoutError, OSError) as exc:
        say(f"⚠️ Cannot connect again: {exc!r}")
        return trade
    order = trade.order
    for again in ib.trades():
        if again.order.orderId == order.orderId and again.order.clientId == order.clientId:
            say(f"📊 Status after reconnecting: {again.orderStatus.status}")
            return again
    return trade


def main(argv: list[str] | None = None) -> int:
    """Entry point: start the embedded gateway if no host is given."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("ib_async").setLevel(logging.CRITICAL)
    gateway = None
    host, port = args.host, args.port
    if host is None:
        from sim_gateway.controller import SimGateway
        from sim_gateway.server import ServerSettings
        from sim_gateway.sessions import demo_clock_start

        # outside US market hours the embedded gateway's clock runs inside a session, so it fills
        gateway = SimGateway(
            ServerSettings(
                clock_start=demo_clock_start(time.time()), market_data=args.sim_market_data
            )
        ).start()
        host, port = "127.0.0.1", gateway.port
        label = gateway.clock_label()
        print(
            f"🧪 Embedded simulated IB Gateway on {host}:{port}{f' ({label})' if label else ''}",
            flush=True,
        )
    try:
        return asyncio.run(run(args, host, port))
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C; SIGTERM, SIGHUP
        print("Interrupted.", flush=True)
        return EXIT_ERROR
    finally:
        if gateway is not None:
            gateway.stop()


if __name__ == "__main__":
    sys.exit(main())
