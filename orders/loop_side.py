"""The order handler's side on its own loop: the connection hooks (after every connect, the
kill switch's global cancel while the gateway has not read it, then reconcile) and the consumer that takes
commands off the queue and runs each as a task of its own, so a slow order never holds up the next.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from ib_async import IB

import ib_pacing
from ib_compat import executions, logged
from ib_connection import FLUSH_AT_STOP, IBConnection, NotConnectedError
from journal import Journal
from orders.commands import Cancel, CancelAll, Command, Modify, Place
from orders.kill_switch import KillSwitch
from orders.lifecycle import CHANGE_NOT_SENT, Verdict
from orders.placement import CALL_TIMEOUT, Placement
from orders.reconcile import Reconciler
from orders.tracking import OrderBook

log = logging.getLogger(__name__)
# how long a request whose answer stands on the journal (a cancel) waits for the order thread
# to take it and the journal to commit it; an order thread stalled longer still takes it, later
NOTE_WAIT = 2.0


class LoopSide(IBConnection):
    """The order handler's loop side: connection hooks, the command consumer and its tasks."""

    _consumer: asyncio.Task[None] | None
    _lock: threading.Lock
    _pending: int
    _queue: asyncio.Queue[Command] | None
    _reconciled: bool
    _cancel_written: tuple[float, int] | None = None  # (monotonic time, kill switch generation)
    _tasks: set[asyncio.Task[None]]
    book: OrderBook
    journal: Journal
    kill_switch: KillSwitch
    placement: Placement
    reconciler: Reconciler

    if TYPE_CHECKING:  # OrderHandler's own

        @property
        def halted(self) -> bool: ...

    def global_cancel_written(self) -> None:
        """A global cancel was handed to the socket with IB's servers reachable (in an outage
        the gateway holds requests, and may drop them): the first heartbeat asked after it and
        answered, still so, says the gateway read it (``_heartbeat``)."""
        if self.link.state.reachable:
            self._cancel_written = (time.monotonic(), self.kill_switch.generation)

    async def _heartbeat(self, ib: IB) -> bool:
        asked, written = time.monotonic(), self._cancel_written
        answered = await super()._heartbeat(ib)
        if answered and written and asked > written[0] and self.link.state.reachable:
            self._cancel_written = None
            self.kill_switch.cancel_sent(written[1])
        return answered

    async def on_connected(self, ib: IB) -> None:
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._consumer = asyncio.create_task(self._consume(), name="order-consumer")
        ib.errorEvent += logged(log, "an order message", self.book.on_error)
        ib.openOrderEvent += logged(
            log, "an openOrder", lambda trade: self.reconciler.on_open_order(ib, trade)
        )
        self.placement.new_connection()
        self._reconciled = False
        self._cancel_written = None  # one written on the old socket is not read on this one
        if self.kill_switch.cancel_pending:  # its global cancel not read yet: first of all
            await self.placement.cancel_all()
        self.reconciler.reconcile(ib)
        self._reconciled = True
        log.info("✅ Order handler connected to IB! (clientId %d)", self.client_id)

    async def on_disconnected(self) -> None:
        """ib_async's objects die with the connection: never act on them again."""
        self._reconciled = False
        self.book.forget_connection()

    async def before_stop(self) -> None:
        await self.before_disconnect()  # no command goes on (none queues a message now)
        self._withdraw_queued()
        if self.ib is not None:  # orders still waiting for the pace never leave: said so
            self.placement.withdraw_at_stop(self.ib)
            # what else waits for the pace (a change, a cancel recorded as sent) goes out first
            if await ib_pacing.sent_out(self.ib, FLUSH_AT_STOP):
                self._not_sent_at_stop(self.ib)

    def _withdraw_queued(self) -> None:
        """Commands accepted (202) but not taken by the order thread when the app stops are
        not carried out: their records say so (a cancel's or a cancel-all's request is in the
        journal already, and sent after the restart)."""
        while self._queue is not None and not self._queue.empty():
            command = self._queue.get_nowait()
            with self._lock:
                self._pending -= 1
            if isinstance(command, Place):
                reason = "the app stopped before it was sent"
                self.book.verdict(command.tracker, Verdict.NOT_SENT, reason)
            elif isinstance(command, Modify):
                _change_dropped(command, "the app stopped before it was taken")

    def _not_sent_at_stop(self, ib: IB) -> None:
        """Changes still waiting for the pace when the stop's wait ran out die with the socket:
        their records said "change sent", and now say they were not."""
        queued = ib_pacing.queued_orders(ib.client)
        log.warning(
            "⚠️ %d request(s) still waiting for the pace at the stop: not sent", len(ib.client._msgQ)
        )
        for order_id in queued:
            tracker = self.book.by_order_id.get(order_id)
            if tracker is not None:
                tracker.step(f"{CHANGE_NOT_SENT}: the app stopped before it left the queue")

    async def before_disconnect(self) -> None:
        if self._consumer is not None:
            self._consumer.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(
            *self._tasks, *([self._consumer] if self._consumer else []), return_exceptions=True
        )

    async def on_link_restored(self, ib: IB, data_lost: bool) -> None:
        """After 1102: fetch executions and reconcile what the outage brought; after 1101:
        reconnect (the new connection reconciles from scratch, see ``on_connected``)."""
        if data_lost:
            await super().on_link_restored(ib, data_lost)
            return
        if self.kill_switch.cancel_pending:  # engaged during the outage: its cancel goes first
            await self.placement.cancel_all()
        await executions(ib, CALL_TIMEOUT, log=log)
        self.reconciler.reconcile(ib)
        log.info("🔎 Reconciled after IB's servers came back")

    def _enqueue_noted(self, command: Cancel | CancelAll, note: Callable[[], None]) -> None:
        """Queue ``command`` after ``note`` (a change of its records) has run on the order
        thread, and wait (up to NOTE_WAIT each) for both and for the journal to commit the
        change: the caller's answer then stands on the journal, and a crash just after it does
        not lose the request. A journal that cannot be written is not waited for."""
        queue = self._queue
        if queue is None:
            raise NotConnectedError("order handler is not running")
        done = threading.Event()

        def run() -> None:
            try:
                note()
            finally:
                queue.put_nowait(command)
                done.set()

        with self._lock:
            self._pending += 1
        self.thread.call_soon(run)
        if not done.wait(NOTE_WAIT):
            log.warning("⏳ The order thread took over %.0f s to take a request; queued", NOTE_WAIT)
        elif self.journal.health.failure is None:  # its record's commit (others may keep moving)
            ids = command.ours if isinstance(command, CancelAll) else (command.tracker.id,)
            self.journal.flush(NOTE_WAIT, ids)

    def commission_of(self, order_ref: str, exec_id: str) -> float | None:
        """The commission this connection was told of one of our orders' executions, or None
        (any thread). IB sends a fill's commission report to the client that placed it and to
        the Master API client only: the reader, unless it is the master, learns ours here."""
        tracker = self.book.get(order_ref)
        fills = tracker.record.fills if tracker is not None else ()
        return next((f.commission for f in fills if f.exec_id == exec_id), None)

    async def _consume(self) -> None:
        assert self._queue is not None
        while True:
            command = await self._queue.get()
            with self._lock:
                self._pending -= 1
            self._spawn(self._run(command), command)

    def _run(self, command: Command) -> Coroutine[Any, Any, None]:
        return self.placement.runners[type(command)](command)

    def _spawn(self, coro: Coroutine[Any, Any, None], command: Command | None = None) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._task_done(done, command))

    def _task_done(self, task: asyncio.Task[None], command: Command | None) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            if isinstance(command, Modify):  # (it runs at once: cancelled, it had not begun)
                _change_dropped(command, "the order connection closed first")
        elif task.exception() is not None:
            log.error("order task failed", exc_info=task.exception())


def _change_dropped(command: Modify, why: str) -> None:
    """A change the order thread will not send: its record says so, and it is no longer
    counted as queued."""
    command.tracker.step(f"{CHANGE_NOT_SENT}: {why}")
    if command.basis is not None:
        command.tracker.change_taken()
