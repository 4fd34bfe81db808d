"""Command line: ``python -m sim_gateway --port 4002``."""

from __future__ import annotations

import argparse
import logging
import math
import signal
import threading

from sim_gateway import bad_days
from sim_gateway.clock import MAX_SPEED, parse_when


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text} must be a finite number >= 0")
    return value


def _when(text: str) -> float:
    """An argparse type: an ISO 8601 time with a UTC offset → epoch seconds."""
    try:
        return parse_when(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _speed(text: str) -> float:
    value = _non_negative(text)
    if not 0 < value <= MAX_SPEED:
        raise argparse.ArgumentTypeError(f"{text} is outside (0, {MAX_SPEED:g}]")
    return value


def _int_range(lo: int, hi: int):
    """An argparse type: an integer within lo..hi."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{value} is outside {lo}..{hi}")
        return value

    return parse


def parser() -> argparse.ArgumentParser:
    """The CLI's arguments; every realism and fault switch has a flag."""
    ap = argparse.ArgumentParser(
        prog="python -m sim_gateway",
        description="Simulated IB Gateway (paper account) speaking the TWS API socket protocol.",
    )
    ap.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    ap.add_argument(
        "--port",
        type=_int_range(0, 65535),
        default=4002,
        help="listen port (default 4002, paper; 0 = any free port)",
    )
    ap.add_argument("--account", default="DU1234567", help="paper account id (must start DU)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the deterministic price paths")
    ap.add_argument(
        "--master-client-id",
        type=int,
        default=None,
        help="Master API client id: receives every client's live order updates",
    )
    ap.add_argument(
        "--max-clients",
        type=_int_range(1, 1000),
        default=32,
        help="concurrent API clients (default 32)",
    )
    ap.add_argument(
        "--max-rate",
        type=_int_range(1, 10_000_000),
        default=50,
        help="messages/s per client before error 100 (default 50)",
    )
    ap.add_argument(
        "--max-version",
        type=_int_range(157, 178),
        default=178,
        help="highest server version to negotiate (157..178)",
    )
    ap.add_argument(
        "--state-file",
        default=None,
        help="JSON file that keeps orders, positions and cash across restarts",
    )
    ap.add_argument(
        "--validation-delay",
        type=_non_negative,
        default=0.0,
        help="seconds of paper validation before an order is acknowledged",
    )
    ap.add_argument(
        "--fill-delay",
        type=_non_negative,
        default=0.0,
        help="seconds between acknowledgement and fill of marketable orders",
    )
    ap.add_argument(
        "--cancel-delay",
        type=_non_negative,
        default=0.0,
        help="seconds IB takes to cancel a working order (PendingCancel meanwhile: it can "
        "still fill, a second cancel answers 10148)",
    )
    ap.add_argument(
        "--tif-preset-warning",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="error 10349 for orders that arrive without a TIF (default on, as IB's "
        "default order preset does)",
    )
    ap.add_argument(
        "--clock",
        type=_when,
        default=None,
        metavar="ISO-TIME",
        help="start a simulated clock there, e.g. 2026-11-30T10:00:00-05:00 (default: real time)",
    )
    ap.add_argument(
        "--clock-speed",
        type=_speed,
        default=1.0,
        help=f"the clock runs this many times real time (0 < speed <= {MAX_SPEED:g})",
    )
    ap.add_argument(
        "--always-open",
        action="store_true",
        help="ignore market hours: every market always open (no 399, DAY never expires)",
    )
    ap.add_argument(
        "--pacing-disconnect-after",
        type=_int_range(0, 1000),
        default=3,
        help="pacing violations (error 100) before the socket closes (0 = never; default 3)",
    )
    ap.add_argument(
        "--partial-fill-above",
        type=_non_negative,
        default=0.0,
        help="orders above this quantity fill in chunks (0 = off)",
    )
    ap.add_argument("--partial-fill-chunk", type=_non_negative, default=100.0, help="chunk size")
    ap.add_argument("--cash", type=_non_negative, default=1_000_000.0, help="starting cash in USD")
    ap.add_argument(
        "--market-data-subscriptions",
        choices=("live", "delayed", "api-delayed", "none"),
        default="live",
        help="the account's market data: live (subscribed), delayed (no subscription: "
        "live requests answer 354, delayed ones 10167 + delayed ticks), api-delayed (IB's "
        "10089 wording of the same: no ticks for live requests, delayed ticks follow it for "
        "delayed ones) or none "
        "(no subscription, delayed data not enabled: 354 / 10168, no ticks)",
    )
    ap.add_argument(
        "--outage",
        action="append",
        default=[],
        metavar="AT:FOR[:lost|:through]",
        help="IB's servers unreachable from AT (seconds after the start, or an ISO "
        "time with offset) for FOR seconds of clock time: 1100, farms broken, "
        "orders held; then 1102, or 1101 with ':lost' (messages of the outage and "
        "subscriptions dropped). With ':through' fills and IB's cancels still arrive "
        "during it (else held for 1102). Repeatable",
    )
    ap.add_argument(
        "--nightly-reset",
        default=bad_days.DEFAULT_NIGHTLY,
        metavar="HH:MM/SECONDS[/lost]",
        help="IB's nightly server reset on the gateway's clock, New York time "
        f"(default {bad_days.DEFAULT_NIGHTLY}: on, as IB does it)",
    )
    ap.add_argument(
        "--no-nightly-reset",
        dest="nightly_reset",
        action="store_const",
        const=None,
        help="no nightly reset",
    )
    ap.add_argument(
        "--competing-session",
        action="append",
        default=[],
        metavar="AT:FOR",
        help="the same user logged in elsewhere from AT for FOR seconds: live market "
        "data answers 10197 and live streams stop. Repeatable",
    )
    ap.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="log level (default INFO)",
    )
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run the gateway until SIGINT/SIGTERM."""
    args = parser().parse_args(argv)
    # the simulator itself (broker, server, numpy: ~0.5 s of imports) only once the arguments
    # parsed: --help and a refused switch answer at once
    from sim_gateway.broker import BrokerConfig
    from sim_gateway.controller import SimGateway
    from sim_gateway.server import ServerSettings, bad_day_state

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        broker = BrokerConfig(
            account=args.account,
            starting_cash=args.cash,
            seed=args.seed,
            partial_fill_above=args.partial_fill_above,
            partial_fill_chunk=args.partial_fill_chunk,
            master_client_id=args.master_client_id,
            market_hours=not args.always_open,
        )
    except ValueError as exc:
        parser().error(str(exc))
    settings = ServerSettings(
        host=args.host,
        port=args.port,
        master_client_id=args.master_client_id,
        max_clients=args.max_clients,
        max_rate=args.max_rate,
        max_version=args.max_version,
        state_file=args.state_file,
        pacing_disconnect_after=args.pacing_disconnect_after,
        clock_start=args.clock,
        clock_speed=args.clock_speed,
        market_data=args.market_data_subscriptions,
        outages=tuple(args.outage),
        nightly_reset=args.nightly_reset,
        competing_sessions=tuple(args.competing_session),
    )
    try:
        bad_day_state(settings, 0.0)
    except ValueError as exc:
        parser().error(str(exc))
    gateway = SimGateway(settings, broker).start()
    gateway.set_validation_delay(args.validation_delay)
    gateway.set_fill_delay(args.fill_delay)
    gateway.set_cancel_delay(args.cancel_delay)
    gateway.set_tif_preset_warning(args.tif_preset_warning)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    print(f"Simulated IB Gateway on {args.host}:{gateway.port} — Ctrl+C to stop", flush=True)
    done.wait()
    gateway.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
