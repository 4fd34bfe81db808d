"""The simulated gateway's drills of what happens to connections: every client cut, the
gateway stalled with sockets open, a restart (the listener down, then up on the same port:
for a while, or for as long as a ``with gateway.down():`` block lasts).
A mixin of ``SimGateway`` (its methods run on the gateway's loop thread)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from loop_thread import LoopThread

    from .server import GatewayServer

log = logging.getLogger(__name__)
T = TypeVar("T")
CALL_TIMEOUT = 10.0
UNTIL_ENDED = 3600.0  # s: a ``stalled()`` block's stall, ended when the block ends


class ConnectionDrills:
    """Connections cut, stalled or refused, on demand (each thread-safe)."""

    if TYPE_CHECKING:
        _server: GatewayServer | None
        _thread: LoopThread

        def _run(self, fn: Callable[[GatewayServer], T]) -> T: ...

    def drop_connections(self) -> None:
        """Hard-close every client connection."""
        self._run(lambda s: s.drop_connections())

    def stall(self, seconds: float) -> None:
        """Stop answering for ``seconds`` with sockets left open."""
        self._run(lambda s: s.stall(seconds))

    def end_stall(self) -> None:
        """End a ``stall`` now (a test's stall lasts until it has looked at everything)."""
        self._run(lambda s: s.end_stall())

    @contextmanager
    def stalled(self) -> Iterator[None]:
        """The gateway stalled (nothing read or answered, sockets left open) for the block,
        then what it held is sent: a stall as long as the caller needs, however slow the
        machine."""
        self.stall(UNTIL_ENDED)
        try:
            yield
        finally:
            if self._thread.is_alive:  # not when the gateway was stopped meanwhile
                self.end_stall()

    def restart(self, down_seconds: float = 0.5, roll_back_ids: bool = False) -> None:
        """Listener down and up on the same port; broker state kept."""
        assert self._server is not None, "gateway not started"
        self._thread.call(
            self._server.restart(down_seconds, roll_back_ids), CALL_TIMEOUT + down_seconds
        )

    @contextmanager
    def down(self, roll_back_ids: bool = False) -> Iterator[None]:
        """The gateway down (listener closed, every client cut, state kept) for the block,
        then up on the same port: a restart as long as the caller needs, however slow the
        machine."""
        assert self._server is not None, "gateway not started"
        server = self._server
        log.warning("🔄 Gateway down until the drill brings it back")
        self._thread.call(server.go_down(roll_back_ids), CALL_TIMEOUT)
        try:
            yield
        finally:
            if self._thread.is_alive:  # not when the gateway was stopped meanwhile
                self._thread.call(server.come_up(), CALL_TIMEOUT)
