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
        "--pace",
        metavar="RATE/BURST",
        help="ib_pacing.RATE / BURST, the pacing of both connections (default 45/4: "
        "45 msg/s, at most 4 at once)",
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
    if getattr(args, "pace", None):
        import ib_pacing

        rate, burst = args.pace.split("/")
        ib_pacing.RATE, ib_pacing.BURST = float(rate), int(burst)
        done.append(f"pace {float(rate):g} msg/s, {int(burst)} at once")
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
    if getattr(args, "pace", None):
        flags += ["--pace", args.pace]
    if getattr(args, "refresh_gap", None) is not None:
        flags += ["--refresh-gap", str(args.refresh_gap)]
    if getattr(args, "stream_keepalive", None) is not None:
        flags += ["--stream-keepalive", str(args.stream_keepalive)]
    if getattr(args, "gc_freeze", False):
        flags.append("--gc-freeze")
    return flags
