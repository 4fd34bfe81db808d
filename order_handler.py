"""Write path: every order, cancel and modify goes through the OrderHandler.

The OrderHandler is an ``IBConnection`` (clientId 1000 by default) on its own
loop thread. Flask threads never touch its ``IB`` object: they put typed
commands (``orders.commands``) on a queue
(``loop.call_soon_threadsafe(queue.put_nowait, ...)``), and a consumer task on
the loop starts one task per command, so a slow order never holds up the next.

This module is the intake: idempotency, the risk gate's reservation, the
journal insert, the kill switch, and the reads Flask threads make. The rest is
in the ``orders`` package: ``orders.lifecycle`` (phases, verdicts, the
transition table; the only code that changes a record), ``orders.tracking``
(ib_async's events mapped onto records), ``orders.placement`` (qualify, place,
settle, monitor; cancel and modify in its base ``orders.amend``), ``orders.reconcile`` (after every
connect: the gateway's reports in, decisions out) and ``orders.loop_side``
(the connection hooks and the consumer that runs each command as a task).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from base64 import b32hexencode
from collections.abc import Callable
from typing import Any

from ib_compat import DONE_STATES, WORKING_STATES
from ib_connection import NotConnectedError
from journal import Journal, JournalEntry
from order_records import WEBHOOK_KEY_PREFIX, Lifecycle, OrderIntent, Preview, Step
from orders.change_checks import (
    OrderStateError,
    change_lock,
    check_change,
    modifiable,
)
from orders.commands import Cancel, CancelAll, Command, Modify, Place
from orders.key_locks import KeyLocks
from orders.kill_switch import KILL_SWITCH, KillSwitch
from orders.lifecycle import FINAL_VERDICTS, Phase, Tracker, Verdict, is_final
from orders.loop_side import LoopSide
from orders.placement import CALL_TIMEOUT, Placement, build_order
from orders.reconcile import Reconciler
from orders.tracking import KEEP_FINISHED, OrderBook
from risk import RiskGate

log = logging.getLogger(__name__)

TERMINAL = DONE_STATES  # Filled Cancelled ApiCancelled Inactive
WORKING = WORKING_STATES

__all__ = [
    "CALL_TIMEOUT",
    "FINAL_VERDICTS",
    "KEEP_FINISHED",
    "KILL_SWITCH",
    "TERMINAL",
    "WEBHOOK_KEY_PREFIX",
    "WORKING",
    "IdempotencyConflict",
    "Lifecycle",
    "OrderHandler",
    "OrderIntent",
    "OrderStateError",
    "Phase",
    "Preview",
    "Reconciling",
    "TradingHaltedError",
    "UnknownOrderError",
    "Verdict",
    "build_order",
]


class UnknownOrderError(LookupError):
    """No order with that id is known to the handler."""


class TradingHaltedError(RuntimeError):
    """The kill switch is engaged: no new orders."""


class IdempotencyConflict(ValueError):
    """The idempotency key was used before with a different request."""

    def __init__(self, message: str, field: str = "Idempotency-Key") -> None:
        super().__init__(message)
        self.field = field  # the request's field the key came from


class Reconciling(NotConnectedError):
    """Connected, but the journal is still being matched against the gateway."""


def _key_field(key: str | None) -> str:
    """Where an idempotency key came from: an alert (the webhook's keys) or the API."""
    return "alert_id" if (key or "").startswith(WEBHOOK_KEY_PREFIX) else "Idempotency-Key"


def _replayed(book: OrderBook, existing: JournalEntry, request_hash: str | None) -> Lifecycle:
    """The order an idempotency key was used for (IdempotencyConflict for another request)."""
    if existing.request_hash != request_hash:
        field = _key_field(existing.idem_key)
        raise IdempotencyConflict(
            f"this {field} was already used for a different order ({existing.record.id})", field
        )
    live = book.get(existing.record.id)
    return live.record if live is not None else existing.record


# the web layer's checks of a change, given a lookup of the orders as planned; a bracket's
# exits where they will be (take_profit / stop_loss), else None
ChangeCheck = Callable[[Callable[[str], Lifecycle | None]], dict[str, Any] | None]


class OrderHandler(LoopSide):
    """The order connection, its queue and the lifecycle records."""

    def __init__(
        self,
        host: str,
        port: int,
        client_id: int = 1000,
        connect_timeout: float = 10.0,
        account: str = "",
        settle: tuple[float, float, float] = (1.0, 2.0, 1.0),
        monitor_timeout: float = 15.0,
        on_change: Callable[[], None] | None = None,
        journal: Journal | None = None,
        reconcile_grace: float = 5.0,
    ) -> None:
        super().__init__("order-handler", host, port, client_id, connect_timeout, account)
        self.settle = settle
        self.monitor_timeout = monitor_timeout
        self.on_change = on_change
        self.journal = journal or Journal(":memory:")
        self.reconcile_grace = reconcile_grace
        self.kill_switch = KillSwitch(self.journal)
        self._reconciled = False
        self._closing = False
        self._key_locks = KeyLocks()  # a request and its retry: one order
        self.version = 0  # bumped on every record change (read caches key on it)
        self.on_record: Callable[[], None] | None = None  # called on every record change
        self._queue: asyncio.Queue[Command] | None = None
        self._consumer: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = threading.Lock()
        self._pending = 0  # requests put on the queue and not yet taken by the consumer
        self._counter = itertools.count(1)
        self._id_prefix = (  # the start in ms (mod 12.4 days): later runs, other ids
            b32hexencode(int(time.time() * 1000).to_bytes(10))[-6:].decode().lower()
        )
        self.book = OrderBook(self._changed, lambda: self.ib)
        self.placement = Placement(self, self.book, self.journal)
        self.reconciler = Reconciler(self.book, reconcile_grace, self._spawn, self)
        for entry in self.journal.load():  # unfinished and recent orders, before connecting
            self.book.add(Tracker.restored_from(entry.record, self.sink))

    # ============================================================ Flask side
    def submit(
        self,
        intent: OrderIntent,
        source: str = "api",
        idem_key: str | None = None,
        request_hash: str | None = None,
        remote: str | None = None,
        gate: RiskGate | None = None,
        prepare: Callable[[OrderIntent], OrderIntent] | None = None,
    ) -> tuple[Lifecycle, bool]:
        """Risk-check, journal and queue an order; returns (record, created).

        ``prepare`` completes a new order's intent before the risk gate (a derivative's
        contract from the broker); a replay never calls it.

        With an idempotency key already journaled, returns the original order
        (created False) — or raises IdempotencyConflict for a different request.
        Raises NotConnectedError / Reconciling (503), TradingHaltedError,
        RiskRejected, JournalError (the order could not be journaled, so it is
        not sent).
        """
        if idem_key is not None:
            with self._key_locks.held(idem_key):
                existing = self.journal.find_by_key(idem_key)
                if existing is None:
                    return self._create(
                        intent, source, idem_key, request_hash, remote, gate, prepare
                    ), True
            return _replayed(self.book, existing, request_hash), False
        return self._create(intent, source, None, request_hash, remote, gate, prepare), True

    def _create(
        self,
        intent: OrderIntent,
        source: str,
        idem_key: str | None,
        request_hash: str | None,
        remote: str | None,
        gate: RiskGate | None,
        prepare: Callable[[OrderIntent], OrderIntent] | None = None,
    ) -> Lifecycle:
        self._check_accepting()
        if prepare is not None:
            intent = prepare(intent)
        decision = gate.reserve(intent) if gate is not None else None  # raises RiskRejected
        order_id = f"o-{self._id_prefix}-{next(self._counter):06d}"
        now = time.time()
        record = Lifecycle(
            id=order_id,
            intent=intent,
            source=source,
            created_at=now,
            phase=Phase.QUEUED,
            updated_at=now,
            steps=(Step(now, "queued"),),
        )
        # not engaged between this check and the queue; a refused order is not journaled (its key
        with self.kill_switch.lock:  # stays free for a retry once the kill switch is released)
            try:  # journaled before anything is sent; unjournaled means unsent
                if self.halted:  # engaged while the risk gate waited for a quote
                    raise TradingHaltedError("trading is halted by the kill switch")
                self.journal.insert(
                    record, idem_key, request_hash, remote, decision.as_dict() if decision else None
                )
            except BaseException:
                if gate is not None and decision is not None:
                    gate.release(decision)
                raise
            tracker = Tracker(record, self.sink)
            self.book.add(tracker)
            if gate is not None and decision is not None:
                gate.registered(decision)  # now counted by working_count()
            self._enqueue(Place(tracker))
        self._bump()  # a new record: /state and the stream show it before its first change
        return record  # as accepted: the loop may already be placing it

    def _check_accepting(self) -> None:
        if self.halted:
            raise TradingHaltedError("trading is halted by the kill switch")
        if self._closing:
            raise NotConnectedError("the app is shutting down; no new orders")
        self._require_reconciled()

    def cancel(self, order_id: str) -> Lifecycle:
        """Queue a cancel of one of our orders, journaled as asked before this returns."""
        tracker = self._tracker(order_id)
        self._require_reconciled()
        if is_final(tracker.record.verdict):
            raise OrderStateError(f"order {order_id} is already {tracker.record.verdict}")
        self._enqueue_noted(Cancel(tracker), lambda: tracker.request_cancel("cancel requested"))
        return tracker.record

    def modify(
        self,
        order_id: str,
        quantity: float | None = None,
        limit_price: float | None = None,
        stop_price: float | None = None,
        gate: RiskGate | None = None,
        check: ChangeCheck | None = None,
    ) -> Lifecycle:
        """Queue a change (quantity and/or prices) of one of our working orders: ``check``
        (a new order's checks, on the orders as ``planned``: returns a bracket's exits) and the
        risk gate's per-order rules first, for one change of a bracket or order at a time."""
        tracker = self._tracker(order_id)
        if self.halted:
            raise TradingHaltedError("trading is halted by the kill switch")
        self._require_reconciled()
        modifiable(tracker, quantity)
        command = Modify(tracker, quantity, limit_price, stop_price)
        with change_lock(self.book, tracker):
            legs = check(self.planned) if check is not None else None
            if gate is not None:
                command = check_change(gate, self.journal, tracker, legs, command)
            try:
                with self.kill_switch.lock:  # not engaged between the check and the queue
                    if self.halted:
                        raise TradingHaltedError("trading is halted by the kill switch")
                    self._enqueue(command)
            except BaseException:
                if command.basis is not None:
                    tracker.change_taken()
                raise
        return tracker.record

    def _require_reconciled(self) -> None:
        self.require_connected()
        if not self._reconciled:
            raise Reconciling("reconciling the order journal with the gateway; retry shortly")

    def preview(self, intent: OrderIntent) -> Preview:
        """What-if the order (margin and commission), placing nothing."""
        self.require_connected()
        return self.thread.call(self.placement.preview(intent), 2 * CALL_TIMEOUT + 1)

    def cancel_all(self) -> int:
        """Queue a global cancel (every working order of every client); returns how many
        of ours were working."""
        self.require_connected()
        ours = frozenset(t.id for t in self.book.unfinished())
        # journaled as asked before this returns: a restart sends the cancel of ours still live
        self._enqueue_noted(CancelAll(ours), lambda: self.placement.mark_cancel_all(ours))
        return len(ours)

    def engage_kill_switch(self, reason: str) -> int:
        """Halt new orders (persisted) and send a global cancel; returns ours working. Orders
        accepted before are queued already (the cancel follows them on the loop; those waiting
        for the pace leave unsent) or refused; ``_place`` and a change's sending check again."""
        self.kill_switch.engage(reason)
        self._notify_state()
        try:
            return self.cancel_all()
        except NotConnectedError:
            log.error("kill switch: order connection down, global cancel not sent yet")
            return -1

    def release_kill_switch(self) -> None:
        """Allow new orders again."""
        self.kill_switch.release()
        self._notify_state()

    @property
    def halted(self) -> bool:
        """The kill switch is engaged: no new orders."""
        return self.kill_switch.engaged

    @property
    def halt_reason(self) -> str | None:
        """Why the kill switch was engaged."""
        return self.kill_switch.reason

    def close_intake(self) -> None:
        """Graceful shutdown, step 1: refuse new orders."""
        self._closing = True

    def get(self, order_id: str) -> Lifecycle | None:
        """The record of one order (from the journal once it left memory), or None."""
        tracker = self.book.get(order_id)
        if tracker is not None:
            return tracker.record
        entry = self.journal.get(order_id)
        return entry.record if entry else None

    def planned(self, order_id: str) -> Lifecycle | None:
        """The order's record with its quantity and prices as the changes sent and queued so
        far leave them (what its next change is checked on); else as ``get``."""
        tracker = self.book.get(order_id)
        return self.get(order_id) if tracker is None else tracker.planned()

    def records(self) -> list[Lifecycle]:
        """Every record, newest first."""
        return [t.record for t in reversed(self.book.all())]

    def wait(self, order_id: str, timeout: float) -> Lifecycle:
        """Block until the order has a verdict (or ``timeout``); returns the record."""
        tracker = self.book.get(order_id)
        if tracker is None:
            record = self.get(order_id)
            if record is None:
                raise UnknownOrderError(order_id)
            return record
        return tracker.wait_verdict(timeout)

    def queue_depth(self) -> int:
        """Requests waiting for the consumer plus orders not yet sent."""
        return max(self._pending, self.book.unsent(self.version))

    def record_count(self) -> int:
        """How many records ``records()`` would list."""
        return self.book.count()

    def working_count(self) -> int:
        """Our orders not yet finished (the risk gate's open-order count), a bracket's exits
        counted before the order thread makes them."""
        return _orders_at_ib([t.record for t in self.book.unfinished()])

    def in_flight(self) -> int:
        """Orders sent and still in their settle or monitoring window."""
        return self.book.in_flight(self.version)

    def _tracker(self, order_id: str) -> Tracker:
        tracker = self.book.get(order_id)
        if tracker is None:
            record = self.get(order_id)  # finished long ago: only the journal has it
            if record is None:
                raise UnknownOrderError(order_id)
            raise OrderStateError(f"order {order_id} is already {record.verdict}")
        return tracker

    def _enqueue(self, command: Command) -> None:
        queue = self._queue
        if queue is None:
            raise NotConnectedError("order handler is not running")
        with self._lock:
            self._pending += 1
        self.thread.call_soon(queue.put_nowait, command)

    # ------------------------------------------------------ record changes
    def sink(self, record: Lifecycle) -> None:  # every record change: journaled, then _bump
        self.journal.save(record)
        self._bump()

    def _bump(self) -> None:  # a record added or changed: a new version, the listener told
        self.version += 1
        if self.on_record is not None:
            try:
                self.on_record()
            except Exception:
                log.exception("on_record callback failed; carrying on")

    def _changed(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change()
            except Exception:
                log.exception("on_change callback failed; carrying on")


def _orders_at_ib(records: list[Lifecycle]) -> int:
    """The orders IB has or gets of ``records``: a bracket entry whose exits the order thread
    has not linked yet counts them, and those exits (made meanwhile) nothing until then."""
    unlinked = {r.id for r in records if r.intent.is_bracket and not r.children}
    return sum(
        (0 if r.parent in unlinked else 1)
        if r.parent is not None
        else (r.intent.order_count if r.id in unlinked else 1)
        for r in records
    )
