"""The simulated gateway's fault switches, for tests and the harness: hard-close every client,
stall (stop reading and answering with sockets left open), restart the listener with the state
kept, send an arbitrary error or notice, or any raw frame, to one client, send commission
reports late. A mixin of ``GatewayServer``; all run on
the server's loop (``controller.SimGateway`` calls them from other threads).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from . import broker as b
from . import protocol as p
from .codec import encode_frame
from .connections import Session
from .types import CommissionReport

log = logging.getLogger(__name__)


class FaultSwitches:
    """Drop, stall, restart and error switches of ``GatewayServer``."""

    broker: b.Broker
    sessions: list[Session]
    _stalled_until: float
    _stall_done: asyncio.Event
    _stopped: bool
    _server: asyncio.Server | None
    commission_delay: float  # seconds a commission report comes after its execution (0: with it)

    if TYPE_CHECKING:  # GatewayServer's own and its other mixins'

        def _close_session(self, session: Session) -> None: ...
        def _session_of(self, client_id: int) -> Session | None: ...
        def _send(self, session: Session, fields: list[str]) -> None: ...
        async def _close_listener(self) -> None: ...
        async def _listen(self) -> None: ...
        def save_state(self) -> None: ...

    def drop_connections(self) -> None:
        """Hard-close every client socket (as a crashing gateway does): unsent data is lost.

        ``abort``, not ``close``: a graceful close first flushes what is buffered, and never
        completes while a client does not read.
        """
        for session in list(self.sessions):
            session.writer.transport.abort()
            self._close_session(session)

    def _send_commission(self, session: Session, report: CommissionReport) -> None:
        """A commission report: with its execution, or ``commission_delay`` later (IB works
        commissions out after the fill: a reqExecutions answer may end before they come)."""
        self._send_after(self.commission_delay, session, p.commission_report(report))

    def _send_after(self, delay: float, session: Session, fields: list[str]) -> None:
        """``fields`` now (``delay`` 0) or ``delay`` seconds later."""
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, self._send, session, fields)
        else:
            self._send(session, fields)

    def stall(self, seconds: float) -> None:
        """Stop reading and answering for ``seconds`` with sockets left open."""
        self._stalled_until = time.monotonic() + seconds
        self._stall_done.clear()
        asyncio.get_running_loop().call_later(seconds, self._end_stall)
        log.warning("🧊 Gateway stalled for %.1fs", seconds)

    def end_stall(self) -> None:
        """End a stall now, however long it was to last: what it held is sent."""
        self._stalled_until = 0.0
        self._end_stall()

    def _end_stall(self) -> None:
        if self._stall_done.is_set() or time.monotonic() + 1e-3 < self._stalled_until:
            return  # ended already (end_stall), or stalled again for longer meanwhile
        self._stall_done.set()
        for session in self.sessions:
            for data in session.held:
                session.writer.write(data)
            session.held.clear()
        log.warning("🔥 Gateway stall over")

    @property
    def stalled(self) -> bool:
        """True while a stall is in effect."""
        return not self._stall_done.is_set()

    async def restart(self, down_seconds: float = 0.5, roll_back_ids: bool = False) -> None:
        """Listener down (all clients cut), state kept, listener up on the same port."""
        log.warning("🔄 Gateway restarting (down %.1fs)", down_seconds)
        await self.go_down(roll_back_ids)
        await asyncio.sleep(down_seconds)
        await self.come_up()

    async def go_down(self, roll_back_ids: bool = False) -> None:
        """Listener closed and every client cut, state saved: down until ``come_up``."""
        await self._close_listener()
        if roll_back_ids:
            self.broker.roll_back_order_ids()
        self.save_state()

    async def come_up(self) -> None:
        """Listen again on the same port (after ``go_down``), unless stopped meanwhile or
        listening already."""
        if not self._stopped and self._server is None:
            await self._listen()

    def send_error(self, client_id: int, req_id: int, code: int, text: str) -> bool:
        """Send an arbitrary error/notice message to one client (harness switch)."""
        session = self._session_of(client_id)
        if session is None:
            return False
        self._send(session, p.error(req_id, code, text, session.version))
        return True

    def send_raw(self, client_id: int, fields: list[str]) -> bool:
        """Send one frame of arbitrary fields (message id first) to one client: what a test
        uses to see what a client does with values a gateway should not send (harness switch)."""
        session = self._session_of(client_id)
        if session is None:
            return False
        if fields and fields[0].isdigit():
            self._send(session, fields)  # in order with what the session has queued
        else:  # not a message id: nothing to count it under
            session.writer.write(encode_frame(fields))
        return True
