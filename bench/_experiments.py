"""The benchmarks' experiment switches (re-exported by ``_harness``).

Each switch changes one tuning constant of the app in THIS process only (nothing is edited), so
a benchmark can show the effect of a change before it is made. The switches that stood for the
fixes measured in bench/README.md were removed once those fixes were made in the code.
"""

from __future__ import annotations

from typing import Any


def add_experiment_args(ap: Any) -> None:
    """The experiment switches shared by the benchmarks."""
    group = ap.add_argument_group("experiments (change a tuning constant in this process only)")
    group.add_argument(
        "--throttle",
        metavar="N/SECONDS",
        help="ib_connection.THROTTLE_REQUESTS / THROTTLE_INTERVAL, the pacing of "
        "both connections (default 5/0.1111 = a smooth 45 msg/s)",
    )
    group.add_argument(
        "--refresh-gap",
        type=float,
        metavar="SECONDS",
        help="reader_orders.REFRESH_MIN_GAP, pause after each reader refresh (default 0.2)",
    )
    group.add_argument(
        "--stream-keepalive",
        type=float,
        metavar="SECONDS",
        help="web.status.STREAM_KEEPALIVE, seconds between the idle stream's pulses",
    )
    group.add_argument(
        "--gc-freeze", action="store_true", help="gc.collect(); gc.freeze() once the app is built"
    )


def experiments_from(args: Any) -> str:
    """Apply the experiment switches of ``args``; returns a label ('' for none)."""
    done = []
    if getattr(args, "throttle", None):
        import ib_connection

        count, seconds = args.throttle.split("/")
        ib_connection.THROTTLE_REQUESTS = int(count)
        ib_connection.THROTTLE_INTERVAL = float(seconds)
        done.append(f"throttle {int(count)}/{float(seconds):g}s")
    if getattr(args, "refresh_gap", None) is not None:
        import reader_orders

        reader_orders.REFRESH_MIN_GAP = args.refresh_gap
        done.append(f"REFRESH_MIN_GAP={args.refresh_gap:g}")
    if getattr(args, "stream_keepalive", None) is not None:
        import web.status

        web.status.STREAM_KEEPALIVE = args.stream_keepalive
        done.append(f"STREAM_KEEPALIVE={args.stream_keepalive:g}")
    if getattr(args, "gc_freeze", False):
        import gc

        import app_simple

        original_create_app = app_simple.create_app

        def create_and_freeze(*a: Any, **kw: Any) -> Any:
            app = original_create_app(*a, **kw)
            gc.collect()
            gc.freeze()
            return app

        app_simple.create_app = create_and_freeze
        done.append("gc.freeze() after start")
    return ", ".join(done)


def experiment_flags(args: Any) -> list[str]:
    """The experiment switches of ``args`` as command-line flags (for ``AppProcess``)."""
    flags = []
    if getattr(args, "throttle", None):
        flags += ["--throttle", args.throttle]
    if getattr(args, "refresh_gap", None) is not None:
        flags += ["--refresh-gap", str(args.refresh_gap)]
    if getattr(args, "stream_keepalive", None) is not None:
        flags += ["--stream-keepalive", str(args.stream_keepalive)]
    if getattr(args, "gc_freeze", False):
        flags.append("--gc-freeze")
    return flags
