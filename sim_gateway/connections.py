"""Client connections of ``GatewayServer`` (a mixin): the handshake, framing, pacing and sending.

Each socket is a ``Session``; its frames are checked against the pacing budget (error 100, or
queued for a +PACEAPI client), decoded and handed to the server's handler table. ``_send``
encodes one message for one session and holds it back while the gateway is stalled.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import errors
from . import protocol as p
from .chart_service import BarStream
from .codec import Hello, ProtocolError, ServerFrameReader, encode_frame, encode_handshake_reply
from .instrument_service import DepthSubscription
from .pacing import Pacer, Verdict

if TYPE_CHECKING:
    from collections.abc import Callable

    from .clock import SimClock
    from .server import ServerSettings, Stats

log = logging.getLogger("sim_gateway.server")  # the server's logger, named as before the split

MIN_VERSION = 157
MAX_VERSION = 178


@dataclass
class Session:
    """One client connection and what it subscribed to."""

    writer: asyncio.StreamWriter
    peer: str
    version: int = 0
    client_id: int | None = None
    started: bool = False
    positions: bool = False
    account_updates: bool = False
    multi: set[int] = field(default_factory=set)
    summaries: dict[int, frozenset[str]] = field(default_factory=dict)
    pnl: set[int] = field(default_factory=set)
    pnl_single: dict[int, int] = field(default_factory=dict)
    streams: dict[int, int] = field(default_factory=dict)  # reqId -> conId
    stream_types: dict[int, int] = field(default_factory=dict)  # reqId -> market data type sent
    depth: dict[int, DepthSubscription] = field(default_factory=dict)  # reqMktDepth by reqId
    bar_streams: dict[int, BarStream] = field(default_factory=dict)  # keepUpToDate by reqId
    rt_bars: dict[int, BarStream] = field(default_factory=dict)  # reqRealTimeBars by reqId
    marks_sent: dict[tuple, Any] = field(default_factory=dict)  # what marks.py last pushed
    market_data_type: int = 1
    seen_orders: set[tuple[int, int]] = field(default_factory=set)
    pacer: Pacer = field(default_factory=lambda: Pacer(50))
    queued: collections.deque = field(default_factory=collections.deque)  # +PACEAPI backlog
    received: int = 0
    peak_rate: int = 0
    held: list[bytes] = field(default_factory=list)
    # frames _send gathered: written at the end of the loop turn or before the next read
    out: list[bytes] = field(default_factory=list)

    def label(self) -> str:
        """Short name for logs."""
        return f"client {self.client_id}" if self.client_id is not None else self.peer


def _client_id(session: Session) -> int:
    """The client id of a started session (requests are only dispatched after the hello)."""
    if session.client_id is None:
        raise RuntimeError(f"{session.peer}: request before the API was started")
    return session.client_id


class ConnectionHandlers:
    """Sockets, handshake, pacing and sending of ``GatewayServer`` (state in ``Session``)."""

    settings: ServerSettings
    clock: SimClock
    sessions: list[Session]
    stats: Stats
    _stall_done: asyncio.Event
    _handlers: dict[type, Callable[[Session, Any], None]]

    if TYPE_CHECKING:

        @property
        def stalled(self) -> bool: ...

        def _on_start_api(self, session: Session, request: p.StartApi) -> None: ...

        def _held_by_outage(self, session: Session, request: Any) -> bool: ...

    # ------------------------------------------------------------ connection
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = writer.get_extra_info("peername")[:2]
        peer = f"{host}:{port}"
        session = Session(
            writer=writer,
            peer=peer,
            pacer=Pacer(self.settings.max_rate, self.settings.pacing_disconnect_after),
        )
        session.pacer.start(time.monotonic())
        self.sessions.append(session)
        self.stats.connections += 1
        frames = ServerFrameReader()
        try:
            while not writer.is_closing():
                data = await reader.read(65536)
                if not data:
                    break
                await self._stall_done.wait()
                if writer.is_closing():  # cut during the stall: its unread requests die with it
                    break
                frames.feed(data)
                while (event := frames.next_event()) is not None:
                    self._on_frame(session, event)
                    if writer.is_closing():
                        break
                self._flush_all()  # the answers to this chunk out before the next read
                await self._drain(session)
        except ProtocolError as exc:
            log.warning("%s: protocol error, closing: %s", session.label(), exc)
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            log.info("%s: connection lost: %s", session.label(), exc)
        finally:
            self._close_session(session)

    async def _drain(self, session: Session) -> None:
        try:
            await session.writer.drain()
        except ConnectionError:
            self._close_session(session)

    def _close_session(self, session: Session) -> None:
        if session in self.sessions:
            self.sessions.remove(session)
            log.info("🔌 %s disconnected", session.label())
        if not session.writer.is_closing():
            self._flush(session)  # a graceful close sends what was said before it
            session.writer.close()

    def _on_frame(self, session: Session, event: Hello | list[str]) -> None:
        if isinstance(event, Hello):
            self._on_hello(session, event)
            return
        if not session.version:
            raise ProtocolError("message before handshake")
        if session.queued or not self._within_rate(session):
            if session.pacer.queue and not session.writer.is_closing():
                self._enqueue(session, event)
            return
        self._on_fields(session, event)

    def _enqueue(self, session: Session, event: list[str]) -> None:
        """+PACEAPI: keep the message and process it when the budget allows (in order)."""
        session.queued.append(event)
        if len(session.queued) == 1:
            self._schedule_queue(session)

    def _schedule_queue(self, session: Session) -> None:
        wait = session.pacer.wait(time.monotonic())
        asyncio.get_running_loop().call_later(wait, self._run_queue, session)

    def _run_queue(self, session: Session) -> None:
        while session.queued and not session.writer.is_closing():
            if not session.pacer.take(time.monotonic()):
                self._schedule_queue(session)
                return
            try:
                self._on_fields(session, session.queued.popleft())
            except Exception:
                log.exception("%s: queued request failed; carrying on", session.label())
        session.queued.clear()

    def _on_fields(self, session: Session, event: list[str]) -> None:
        try:
            request = p.decode_request(event, session.version)
        except p.DecodeError as exc:
            self.stats.decode_errors += 1
            log.warning("%s: undecodable request %s: %s", session.label(), event[:3], exc)
            self._send(session, p.error(-1, 320, f"Error reading request. {exc}", session.version))
            return
        if session.client_id is not None:
            self.stats.requests_by_client[session.client_id, type(request).__name__] += 1
        if isinstance(request, p.StartApi):
            self._on_start_api(session, request)
        elif not session.started:
            self._send(
                session,
                p.error(-1, 321, "Error validating request: API not started", session.version),
            )
        elif not self._held_by_outage(session, request):
            self._handlers[type(request)](session, request)

    def _on_hello(self, session: Session, hello: Hello) -> None:
        """Negotiate like TWS: answer min(own max, client max); a client whose range this
        gateway cannot serve is told so the way a real gateway does (see ``_refuse``)."""
        top = self.settings.max_version
        if hello.max_version < MIN_VERSION or hello.min_version > top:
            self._refuse(session, hello)
            return
        session.version = min(hello.max_version, top)
        if session.version == 158:  # ib_async and IB disagree on openOrder at 158
            session.version = 157
        session.pacer.queue = "+PACEAPI" in hello.options.split()
        if session.pacer.queue:
            log.info(
                "%s asked for +PACEAPI: excess messages are queued, not rejected", session.peer
            )
        session.writer.write(encode_handshake_reply(session.version, self._connection_time()))

    def _connection_time(self) -> str:
        """IB's "20250323 22:21:01 Greenwich Mean Time" (rust-ibapi PR #232 recording)."""
        return (
            time.strftime("%Y%m%d %H:%M:%S", time.gmtime(self.clock.now())) + " Greenwich Mean Time"
        )

    def _refuse(self, session: Session, hello: Hello) -> None:
        """A client range outside MIN_VERSION..max_version.

        A real TWS does not refuse in the handshake: it answers its own version (min of its max and
        the client's max) and the client library decides (ib_async: "TWS/gateway version must be >=
        972" and disconnect, ib_async client.py:388-390; IB's EClient: error 503 "The TWS is out of
        date and must be upgraded."). Too new a client therefore gets this gateway's highest
        version and decides for itself. Too old a client (max below 157) gets our lowest version,
        157, which it cannot speak either, then the socket closes: the simulator has no encoders
        below 157 (a real TWS would serve such a client down to v100).
        """
        too_new = hello.min_version > self.settings.max_version
        answer = self.settings.max_version if too_new else MIN_VERSION
        log.warning(
            "⛔ %s: client versions %d..%d are outside %d..%d: answering %d (%s)",
            session.peer,
            hello.min_version,
            hello.max_version,
            MIN_VERSION,
            self.settings.max_version,
            answer,
            "the client will refuse it" if too_new else "too old a client; closing",
        )
        session.writer.write(encode_handshake_reply(answer, self._connection_time()))
        if too_new:
            session.version = answer  # a client that accepts anyway is served at our version
        else:
            self._close_session(session)

    def _within_rate(self, session: Session) -> bool:
        """Pacing (see ``pacing``): error 100 per excess message, the socket closed after
        ``pacing_disconnect_after`` violations; a +PACEAPI client is queued instead."""
        now = time.monotonic()
        in_last_second = self._count_rate(session, now)
        verdict = session.pacer.judge(now)
        if verdict in (Verdict.ADMIT, Verdict.QUEUE):
            return verdict is Verdict.ADMIT
        self.stats.pacing_violations += 1
        if verdict is Verdict.DISCONNECT:
            log.warning(
                "⛔ %s: %d pacing violations (over %d msg/s): closing the connection",
                session.label(),
                session.pacer.violations,
                self.settings.max_rate,
            )
            session.writer.transport.abort()
            self._close_session(session)
            return False
        text = errors.text(
            100, max=self.settings.max_rate, rec=in_last_second, count=session.pacer.violations
        )
        self._send(session, p.error(-1, 100, text, session.version))
        return False

    def _count_rate(self, session: Session, now: float) -> int:
        """Count the message in the stats; returns how many arrived in the last second."""
        in_last_second = session.pacer.count(now)
        session.received += 1
        if session.client_id is not None:
            self.stats.received_by_client[session.client_id] += 1
            peak = max(self.stats.peak_rate_by_client.get(session.client_id, 0), in_last_second)
            self.stats.peak_rate_by_client[session.client_id] = peak
        return in_last_second

    # ------------------------------------------------------------- sending
    def _send(self, session: Session, fields: list[str]) -> None:
        data = encode_frame(fields)
        if session.writer.is_closing():
            return
        self.stats.sent_by_client[session.client_id, int(fields[0])] += 1
        if self.stalled:
            session.held.append(data)
            return
        # one socket write per session and loop turn: a fill alone is some twenty messages to
        # each subscriber, and each write cost the loop a system call
        session.out.append(data)
        if len(session.out) == 1:
            asyncio.get_running_loop().call_soon(self._flush, session)

    def _flush(self, session: Session) -> None:
        """Write what ``_send`` gathered for ``session`` this loop turn (in order)."""
        out, session.out = session.out, []
        if out and not session.writer.is_closing():
            session.writer.write(b"".join(out))

    def _flush_all(self) -> None:
        """Write every session's gathered frames now (a reader with data waiting in its buffer
        goes on without the loop turning)."""
        for session in self.sessions:
            if session.out:
                self._flush(session)

    def _session_of(self, client_id: int) -> Session | None:
        for session in self.sessions:
            if session.started and session.client_id == client_id:
                return session
        return None
