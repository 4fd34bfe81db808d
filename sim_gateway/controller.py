"""Start/stop controller: runs the simulated gateway on its own loop thread.

Tests and the app use this in-process; the CLI (``python -m sim_gateway``)
uses it too. Every control method is thread-safe: it runs on the gateway's
loop through ``LoopThread.call``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

from loop_thread import LoopThread

from . import bad_days
from .broker import BrokerConfig
from .connection_drills import CALL_TIMEOUT, ConnectionDrills
from .order_drills import OrderDrills
from .server import GatewayServer, ServerSettings, Stats
from .types import CommissionReport, Execution, ExecutionFilter, OrderView, Position

T = TypeVar("T")


class SimGateway(ConnectionDrills, OrderDrills):
    """An embedded simulated IB Gateway on a loopback port."""

    def __init__(
        self, settings: ServerSettings | None = None, broker_config: BrokerConfig | None = None
    ) -> None:
        self.settings = settings or ServerSettings()
        self.broker_config = broker_config or BrokerConfig()
        self._server: GatewayServer | None = None
        self._thread = LoopThread("sim-gateway", setup=self._setup, teardown=self._teardown)

    async def _setup(self) -> None:
        self._server = GatewayServer(self.settings, self.broker_config)
        await self._server.start()

    async def _teardown(self) -> None:
        if self._server is not None:
            await self._server.stop()

    # ------------------------------------------------------------------ life
    def start(self) -> SimGateway:
        """Start listening; returns self (``port`` is then known)."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close every connection and the listener, save state, end the thread."""
        self._thread.stop()

    def __enter__(self) -> SimGateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def host(self) -> str:
        """Listening address."""
        return self.settings.host

    @property
    def port(self) -> int:
        """Listening port (the real one when 0 was asked for)."""
        assert self._server is not None, "gateway not started"
        return self._server.port

    @property
    def running(self) -> bool:
        """True while the loop thread is alive."""
        return self._thread.is_alive

    def _run(self, fn: Callable[[GatewayServer], T]) -> T:
        """Run ``fn(server)`` on the gateway's loop and return its result."""
        server = self._server
        assert server is not None, "gateway not started"

        async def job() -> T:
            return fn(server)

        return self._thread.call(job(), CALL_TIMEOUT)

    def set_validation_delay(self, seconds: float) -> None:
        """Paper validation delay before an order is acknowledged."""
        self._set_broker("validation_delay", seconds)

    def set_fill_delay(self, seconds: float) -> None:
        """Delay between acknowledgement and fill of marketable orders."""
        self._set_broker("fill_delay", seconds)

    def set_commission_delay(self, seconds: float) -> None:
        """Send each commission report ``seconds`` after its execution (0: right with it)."""
        self._run(lambda server: setattr(server, "commission_delay", seconds))

    def set_pnl_delay(self, seconds: float) -> None:
        """Send a position's pnlSingle update ``seconds`` after the change that moved it (0:
        right with it; IB sends them on a cadence of their own, about once a second)."""
        self._run(lambda server: setattr(server, "pnl_delay", seconds))

    def set_cancel_delay(self, seconds: float) -> None:
        """Time IB takes to cancel a working order (PendingCancel meanwhile; it may still fill)."""
        self._set_broker("cancel_delay", seconds)

    def set_tif_preset_warning(self, enabled: bool) -> None:
        """Error 10349 for orders that arrive without a TIF (on by default, as IB's preset does)."""
        self._set_broker("tif_preset_warning", enabled)

    def set_clock(self, when: float | None = None, speed: float | None = None) -> None:
        """Jump the simulated clock forward to ``when`` (epoch seconds) and/or change its speed;
        the broker catches up at once (held orders open, DAY orders expire)."""

        def apply(server: GatewayServer) -> None:
            server.clock.set(when, speed)
            server.poke()

        self._run(apply)

    def now(self) -> float:
        """The gateway's current (simulated) time."""
        return self._run(lambda s: s.clock.now())

    def clock_label(self) -> str:
        """ "simulated clock, market open" / "…market closed" (US stocks), or "" on real time.

        Read without a hop to the gateway's loop (the clock is two floats): safe from any thread
        and answered even while the gateway is stalled."""
        server = self._server
        return "" if server is None else server.clock_label()

    def set_market_hours(self, enabled: bool) -> None:
        """False: every market is always open (no 399, DAY orders never expire)."""

        def apply(server: GatewayServer) -> None:
            server.broker_config = replace(server.broker_config, market_hours=enabled)
            server.broker.config = server.broker_config
            server.poke()

        self._run(apply)

    def set_pacing(self, max_rate: int | None = None, disconnect_after: int | None = None) -> None:
        """Messages/s before error 100, and violations before the socket closes (0 = never),
        for connections made from now on."""

        def apply(server: GatewayServer) -> None:
            rate = server.settings.max_rate if max_rate is None else max_rate
            after = (
                server.settings.pacing_disconnect_after
                if disconnect_after is None
                else disconnect_after
            )
            server.settings = replace(server.settings, max_rate=rate, pacing_disconnect_after=after)

        self._run(apply)

    # ------------------------------------------------------------ bad days
    def outage(
        self, seconds: float, lost: bool = False, after: float = 0.0, through: bool = False
    ) -> None:
        """IB's servers unreachable for ``seconds`` of clock time, ``after`` seconds from now:
        1100 (repeated), farms broken, requests and messages held; then 1101 (``lost``: held
        messages and every subscription dropped) or 1102 (held messages delivered).
        ``through``: the broker's messages (fills, IB's cancels) arrive during it, not held
        (IB: "Fills can arrive during the window")."""

        def apply(server: GatewayServer) -> None:
            start = server.clock.now() + after
            server.start_outage(bad_days.Window(start, start + seconds, lost, through))
            server.poke()

        self._run(apply)

    def end_outage(self) -> None:
        """End the outage started by ``outage`` now, however long it was to last: a test's
        outage lasts until it has looked at everything, however slow the machine."""

        def apply(server: GatewayServer) -> None:
            if not server.end_outage_now():
                raise RuntimeError("no outage of ours is in progress")
            server.poke()

        self._run(apply)

    def farm_down(self, seconds: float | None = None, farm: str = "usfarm") -> None:
        """A market data farm (usfarm, cashfarm) broken with IB's servers reachable (2103: its
        quotes and the marks stop) for ``seconds``, or until ``farm_up``; then 2104."""
        if farm not in bad_days.MARKET_FARMS:
            raise ValueError(f"farm {farm!r}: one of {sorted(bad_days.MARKET_FARMS)}")
        self._run(lambda server: server.break_farm(farm, seconds))

    def farm_up(self, farm: str = "usfarm") -> None:
        """End ``farm_down`` now (2104)."""
        self._run(lambda server: server.restore_farm(farm))

    def outage_active(self) -> bool:
        """True while an outage is in progress."""
        return self._run(lambda s: s.outage_active)

    def competing_active(self) -> bool:
        """True while a competing live session refuses live data (10197)."""
        return self._run(lambda s: s.bad.competing_now)

    def held(self) -> tuple[int, int]:
        """(requests, broker messages) an outage in progress keeps for its end: what a test
        waits on to know that something was held back rather than not yet sent."""
        return self._run(lambda s: (len(s.bad.held_requests), len(s.bad.held_events)))

    def live_streams(self) -> int:
        """Market data streams the gateway is feeding, over every connection."""
        return self._run(lambda s: sum(len(session.streams) for session in s.sessions))

    def competing_session(self, seconds: float, after: float = 0.0) -> None:
        """The same user logs in elsewhere for ``seconds``: live data answers 10197."""

        def apply(server: GatewayServer) -> None:
            start = server.clock.now() + after
            server.start_competing(bad_days.Window(start, start + seconds))
            server.poke()

        self._run(apply)

    def market_data_lines(self) -> int:
        """Market data lines in use: live reqMktData streams of every client."""
        return self._run(lambda s: s._lines_in_use())

    def pnl_single_subscriptions(self, client_id: int) -> list[int]:
        """The conIds one client has asked reqPnLSingle for and not cancelled."""
        return self._run(
            lambda s: sorted(
                con_id
                for session in s.sessions
                if session.client_id == client_id
                for con_id in session.pnl_single.values()
            )
        )

    def historical_counts(self) -> tuple[int, int]:
        """(historical data requests answered or refused, of which pacing violations: 162)."""
        return self._run(lambda s: (s.bad.historical_requests, s.bad.historical_violations))

    def set_market_data_subscriptions(self, kind: str, fx: str | None = None) -> None:
        """The account's entitlement, ``live`` | ``delayed`` | ``api-delayed`` | ``none``, for
        requests from now on; ``fx``: FX pairs' own (IB's IDEALPRO quotes can be live in an
        account whose stocks are delayed)."""
        entitlement = bad_days.Entitlement(kind)
        fx_entitlement = bad_days.Entitlement(fx) if fx is not None else None

        def apply(server: GatewayServer) -> None:
            server.bad.entitlement = entitlement
            server.bad.fx_entitlement = fx_entitlement

        self._run(apply)

    def send_error(self, client_id: int, req_id: int, code: int, text: str) -> bool:
        """Send an error/notice (e.g. 10349, 1100) to one client; False if not connected."""
        return self._run(lambda s: s.send_error(client_id, req_id, code, text))

    def send_raw(self, client_id: int, *fields: object) -> bool:
        """Send one frame (message id first, every field as text) to one client; False if not
        connected. For tests of what the app does with odd values from a gateway."""
        return self._run(lambda s: s.send_raw(client_id, [str(f) for f in fields]))

    def _set_broker(self, name: str, value: Any) -> None:
        def apply(server: GatewayServer) -> None:
            setattr(server.broker, name, value)
            server.poke()

        self._run(apply)

    # ----------------------------------------------------------- inspection
    def open_orders(self) -> list[OrderView]:
        """Every client's working orders."""
        return self._run(lambda s: s.broker.open_orders(None))

    def completed_orders(self) -> list[OrderView]:
        """Filled, cancelled and rejected orders."""
        return self._run(lambda s: s.broker.completed_orders())

    def all_orders(self) -> list[OrderView]:
        """Working and done orders, read in one step (an order never shows twice)."""
        return self._run(lambda s: s.broker.open_orders(None) + s.broker.completed_orders())

    def executions(self) -> list[tuple[Execution, CommissionReport]]:
        """Every execution with its commission."""
        return self._run(lambda s: s.broker.executions(ExecutionFilter()))

    def positions(self) -> list[Position]:
        """Non-zero positions."""
        return self._run(lambda s: s.broker.positions())

    def connected_client_ids(self) -> list[int]:
        """Client ids of started API sessions."""
        return self._run(
            lambda s: [x.client_id for x in s.sessions if x.started and x.client_id is not None]
        )

    def stats(self) -> Stats:
        """A copy of the message counters."""

        def copy(server: GatewayServer) -> Stats:
            st = server.stats
            return Stats(
                received_by_client=st.received_by_client.copy(),
                requests_by_client=st.requests_by_client.copy(),
                sent_by_client=st.sent_by_client.copy(),
                peak_rate_by_client=dict(st.peak_rate_by_client),
                pacing_violations=st.pacing_violations,
                decode_errors=st.decode_errors,
                connections=st.connections,
            )

        return self._run(copy)

    def broker_call(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(broker)`` on the gateway loop (for tests that need more)."""
        return self._run(lambda s: fn(s.broker))
