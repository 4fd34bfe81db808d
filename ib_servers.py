"""IB's servers as one connection hears of them: the gateway's 1100 / 1101 / 1102 and data-farm
notices folded into the connection's ``LinkMonitor``, and what follows a restore (reconcile after
1102, reconnect after 1101). A base of ``IBConnection``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from ib_async import IB

from ib_link import LINK_CODES, LinkEvent, LinkMonitor, LinkState

log = logging.getLogger(__name__)


class IBServers:
    """The link to IB's servers of one ``IBConnection``: notices in, restore hooks out."""

    name: str
    ib: IB | None
    link: LinkMonitor
    _link_tasks: set[asyncio.Task]
    _last_error: str | None
    _restarting: bool

    if TYPE_CHECKING:  # IBConnection's own

        def _notify_state(self) -> None: ...

    def _on_notice(self, ib: IB, req_id: int, code: int, text: str) -> None:
        """1100/1101/1102 and the farm notices (on the loop thread, from ib_async)."""
        if req_id != -1 or code not in LINK_CODES:
            return
        was_reachable = self.link.state.reachable
        event = self.link.on_message(code, text, time.time())
        if event is LinkEvent.LOST and was_reachable:
            log.warning(
                "🌩️ %s: IB servers unreachable (%d): the gateway is up but cannot reach "
                "IB; new orders are refused until it is back",
                self.name,
                code,
            )
        elif event is LinkEvent.RESTORED or event is LinkEvent.RESTORED_DATA_LOST:
            lost = event is LinkEvent.RESTORED_DATA_LOST
            log.warning(
                "🌤️ %s: IB servers reachable again (%d, data %s): %s",
                self.name,
                code,
                "lost" if lost else "maintained",
                "reconnecting to re-subscribe and reconcile"
                if lost
                else "reconciling orders and executions",
            )
            task = asyncio.create_task(self._after_restore(ib, lost), name=f"{self.name}-restore")
            self._link_tasks.add(task)
            task.add_done_callback(self._link_tasks.discard)
        self._notify_state()

    async def _after_restore(self, ib: IB, data_lost: bool) -> None:
        try:
            await self.on_link_restored(ib, data_lost)
        except Exception:  # log and carry on: the next restore or reconnect tries again
            log.exception("%s: reconciling after IB's servers came back failed", self.name)

    def restart_connection(self, why: str) -> None:
        """Drop the socket on purpose (on the loop); the supervisor connects again at once and
        the new connection syncs and subscribes from scratch."""
        self._last_error = why
        if self.ib is not None and self.ib.isConnected():
            self._restarting = True
            self.ib.disconnect()

    def link_state(self) -> LinkState:
        """IB's servers and farms as this connection's gateway last told them."""
        return self.link.state

    async def on_link_restored(self, ib: IB, data_lost: bool) -> None:
        """Called on the loop after 1102 (``data_lost`` False) or 1101. By default a 1101
        reconnects: the new connection subscribes and reconciles from scratch."""
        if data_lost:
            self.restart_connection(
                "re-subscribing after IB's servers came back with data lost (1101)"
            )
