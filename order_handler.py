"""Write path: every order, cancel and modify goes through the OrderHandler.

The OrderHandler is an ``IBConnection`` (clientId 1000 by default) on its own
loop thread. Flask threads never touch its ``IB`` object: they put requests
on a queue (``loop.call_soon_threadsafe(queue.put_nowait, ...)``), and a
consumer task on the loop starts one task per order, so a slow order never
holds up the next.

Each order gets our own id (also sent as ``Order.orderRef``) and a lifecycle
record: queued → sent (orderId, permId) → each status the broker reports,
with times → IB messages with codes → fills → verdict. After placing, the
paper-trading settle workaround waits its three phases with
``await asyncio.sleep`` (callbacks keep flowing), then the order is monitored
until a terminal status or the time-out.

Statuses in the record come from the broker's orderStatus messages only:
ib_async marks a trade Cancelled on some informational errors (10349 "TIF was
set to DAY") while the order lives on, so such error-made states are kept as
messages, never as transitions.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import itertools
import logging
import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from typing import Any

from ib_async import IB, Contract, Order
from ib_async.order import Trade

from ib_connection import IBConnection, NotConnectedError
from ib_connector import make_contract
from journal import Journal, JournalEntry, JournalError
from order_records import FillRecord, IBMessage, Lifecycle, OrderIntent, Preview, StatusChange, Step
from risk import RiskGate

log = logging.getLogger(__name__)

TERMINAL = {"Filled", "Cancelled", "ApiCancelled", "Inactive"}
WORKING = {"PreSubmitted", "Submitted", "ApiPending", "PendingCancel"}
CLIENT_SIDE_STATUSES = {"PendingSubmit", "PendingCancel", "ValidationError"}
FALSE_CANCEL_CODES = {10349}  # informational, but ib_async 2.1.0 cancels the trade on them
FINAL_VERDICTS = {"filled", "cancelled", "rejected", "not_sent", "not_placed"}
CALL_TIMEOUT = 5.0
KILL_SWITCH = "kill_switch"
KEEP_FINISHED = 500  # finished records kept in memory; older ones are read from the journal


class UnknownOrderError(LookupError):
    """No order with that id is known to the handler."""


class OrderStateError(RuntimeError):
    """The order cannot be cancelled or modified in its current state."""


class TradingHaltedError(RuntimeError):
    """The kill switch is engaged: no new orders."""


class IdempotencyConflict(ValueError):
    """The idempotency key was used before with a different request."""


class Reconciling(NotConnectedError):
    """Connected, but the journal is still being matched against the gateway."""


class _Tracker:
    """Mutable state of one order; mutated on the loop thread only (after creation)."""

    def __init__(self, record: Lifecycle, sink: Callable[[Lifecycle], None],
                 restored: bool = False) -> None:
        self.record = record
        self.sink = sink  # the journal's save()
        self.restored = restored  # loaded from the journal at start-up
        self.trade: Trade | None = None
        self.cancel_requested = False
        self.verdict_given = threading.Event()
        if record.verdict in FINAL_VERDICTS:
            self.verdict_given.set()
        self.terminal: asyncio.Event | None = None
        self.acknowledged = any(t.new in WORKING for t in record.transitions)

    def update(self, **changes: Any) -> None:
        self.record = replace(self.record, updated_at=time.time(), **changes)
        self.sink(self.record)

    def step(self, text: str) -> None:
        self.update(steps=self.record.steps + (Step(time.time(), text),))

    def elapsed(self) -> str:
        return f"[{time.time() - self.record.created_at:5.1f}s]"


class OrderHandler(IBConnection):
    """The order connection, its queue and the lifecycle records."""

    def __init__(self, host: str, port: int, client_id: int = 1000,
                 connect_timeout: float = 10.0, account: str = "",
                 settle: tuple[float, float, float] = (1.0, 2.0, 1.0),
                 monitor_timeout: float = 15.0,
                 on_change: Callable[[], None] | None = None,
                 journal: Journal | None = None, reconcile_grace: float = 5.0) -> None:
        super().__init__("order-handler", host, port, client_id, connect_timeout, account)
        self.settle = settle
        self.monitor_timeout = monitor_timeout
        self.on_change = on_change
        self.journal = journal or Journal(":memory:")
        self.reconcile_grace = reconcile_grace
        self.halt_reason = self.journal.flag(KILL_SWITCH)
        self.halted = self.halt_reason is not None
        self._reconciled = False
        self._closing = False
        self._key_lock = threading.Lock()
        self._halt_lock = threading.Lock()
        self.version = 0  # bumped on every record change (read caches key on it)
        self._phases: tuple[tuple[int, int], collections.Counter] | None = None
        self.on_record: Callable[[], None] | None = None  # called on every record change
        self._queue: asyncio.Queue | None = None
        self._consumer: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._trackers: dict[str, _Tracker] = {}
        self._by_order_id: dict[int, _Tracker] = {}
        self._lock = threading.Lock()
        self._pending = 0  # requests put on the queue and not yet taken by the consumer
        self._counter = itertools.count(1)
        self._contracts: dict[tuple[str, str, str], Contract] = {}
        self._qualifying: dict[tuple[str, str, str], asyncio.Future] = {}
        self._id_prefix = secrets.token_hex(3)
        self._load_journal()

    def _load_journal(self) -> None:
        """Trackers for the journal's unfinished and recent orders (before connecting)."""
        for entry in self.journal.load():
            record = entry.record
            if record.verdict not in FINAL_VERDICTS and record.phase != "tracking":
                record = replace(record, phase="tracking")  # its old window died with the app
            tracker = _Tracker(record, self._save, restored=True)
            self._trackers[entry.record.id] = tracker

    # ============================================================ Flask side
    def submit(self, intent: OrderIntent, source: str = "api", idem_key: str | None = None,
               request_hash: str | None = None, remote: str | None = None,
               gate: RiskGate | None = None) -> tuple[Lifecycle, bool]:
        """Risk-check, journal and queue an order; returns (record, created).

        With an idempotency key already journaled, returns the original order
        (created False) — or raises IdempotencyConflict for a different request.
        Raises NotConnectedError / Reconciling (503), TradingHaltedError,
        RiskRejected, JournalError (the order could not be journaled, so it is
        not sent).
        """
        if idem_key is not None:
            with self._key_lock:
                existing = self.journal.find_by_key(idem_key)
                if existing is None:
                    return self._create(intent, source, idem_key, request_hash, remote, gate), True
            return self._replay(existing, request_hash), False
        return self._create(intent, source, None, request_hash, remote, gate), True

    def _replay(self, existing: JournalEntry, request_hash: str | None) -> Lifecycle:
        if existing.request_hash != request_hash:
            raise IdempotencyConflict("this Idempotency-Key was already used for a different "
                                      f"order ({existing.record.id})")
        live = self._trackers.get(existing.record.id)
        return live.record if live is not None else existing.record

    def _create(self, intent: OrderIntent, source: str, idem_key: str | None,
                request_hash: str | None, remote: str | None, gate: RiskGate | None) -> Lifecycle:
        self._check_accepting()
        decision = gate.reserve(intent) if gate is not None else None  # raises RiskRejected
        order_id = f"o-{self._id_prefix}-{next(self._counter):06d}"
        now = time.time()
        record = Lifecycle(id=order_id, intent=intent, source=source, created_at=now,
                           phase="queued", updated_at=now, steps=(Step(now, "queued"),))
        try:  # journaled before anything is sent; unjournaled means unsent
            self.journal.insert(record, idem_key, request_hash, remote,
                                decision.as_dict() if decision else None)
        except BaseException:
            if gate is not None and decision is not None:
                gate.release(decision)
            raise
        tracker = _Tracker(record, self._save)
        with self._halt_lock:  # the kill switch cannot slip in between check and queue
            with self._lock:
                self._trackers[order_id] = tracker
            if gate is not None and decision is not None:
                gate.registered(decision)  # now counted by working_count()
            if self.halted:
                tracker.update(verdict="not_sent", verdict_reason="kill switch engaged",
                               phase="done")
                tracker.verdict_given.set()
                raise TradingHaltedError("trading is halted by the kill switch")
            self._enqueue(("place", tracker, None))
        return tracker.record

    def _check_accepting(self) -> None:
        if self.halted:
            raise TradingHaltedError("trading is halted by the kill switch")
        if self._closing:
            raise NotConnectedError("the app is shutting down; no new orders")
        self.require_connected()
        if not self._reconciled:
            raise Reconciling("reconciling the order journal with the gateway; retry shortly")

    def cancel(self, order_id: str) -> Lifecycle:
        """Queue a cancel of one of our orders."""
        tracker = self._tracker(order_id)
        self._require_reconciled()
        if tracker.record.verdict in FINAL_VERDICTS:
            raise OrderStateError(f"order {order_id} is already {tracker.record.verdict}")
        self._enqueue(("cancel", tracker, None))
        return tracker.record

    def modify(self, order_id: str, quantity: float | None = None,
               limit_price: float | None = None, stop_price: float | None = None,
               gate: RiskGate | None = None) -> Lifecycle:
        """Queue a modification (quantity and/or prices) of one of our working orders.

        The changed order passes the risk gate's per-order rules; no modify while
        the kill switch is engaged; a bracket's quantity cannot change (its
        children would not follow).
        """
        tracker = self._tracker(order_id)
        if self.halted:
            raise TradingHaltedError("trading is halted by the kill switch")
        self._require_reconciled()
        record = tracker.record
        if record.verdict in FINAL_VERDICTS:
            raise OrderStateError(f"order {order_id} is already {record.verdict}")
        if quantity is not None and (record.children or record.parent):
            raise OrderStateError("the quantity of a bracket order cannot be modified; "
                                  "cancel it and place a new one")
        new_values: dict[str, Any] = {k: v for k, v in (
            ("quantity", quantity), ("limit_price", limit_price), ("stop_price", stop_price))
            if v is not None}
        changed = replace(record.intent, **new_values)
        if gate is not None:
            gate.check(changed)  # raises RiskRejected
        self._enqueue(("modify", tracker, (quantity, limit_price, stop_price)))
        return tracker.record

    def _require_reconciled(self) -> None:
        self.require_connected()
        if not self._reconciled:
            raise Reconciling("reconciling the order journal with the gateway; retry shortly")

    def preview(self, intent: OrderIntent) -> Preview:
        """What-if the order (margin and commission), placing nothing."""
        self.require_connected()
        return self.thread.call(self._preview(intent), 2 * CALL_TIMEOUT + 1)

    def cancel_all(self) -> int:
        """Queue a global cancel (every working order of every client); returns how many
        of ours were working."""
        self.require_connected()
        if self._queue is None:
            raise NotConnectedError("order handler is not running")
        working = sum(1 for t in list(self._trackers.values())
                      if t.record.verdict not in FINAL_VERDICTS)
        self._enqueue(("cancel_all", None, None))
        return working

    def engage_kill_switch(self, reason: str) -> int:
        """Halt new orders (persisted) and send a global cancel; returns ours working.

        Orders accepted before this are either queued already (the global cancel
        follows them on the same loop) or refused; ``_place`` checks again.
        """
        self.journal.set_flag(KILL_SWITCH, reason or "engaged")
        with self._halt_lock:
            self.halted, self.halt_reason = True, reason or "engaged"
        log.warning("🛑 KILL SWITCH engaged: %s", reason)
        self._notify_state()
        try:
            return self.cancel_all()
        except NotConnectedError:
            log.error("kill switch: order connection down, global cancel not sent yet")
            return -1

    def release_kill_switch(self) -> None:
        """Allow new orders again."""
        self.journal.set_flag(KILL_SWITCH, None)
        self.halted, self.halt_reason = False, None
        log.warning("✅ Kill switch released")
        self._notify_state()

    def close_intake(self) -> None:
        """Graceful shutdown, step 1: refuse new orders."""
        self._closing = True

    def get(self, order_id: str) -> Lifecycle | None:
        """The record of one order (from the journal once it left memory), or None."""
        tracker = self._trackers.get(order_id)
        if tracker is not None:
            return tracker.record
        entry = self.journal.get(order_id)
        return entry.record if entry else None

    def records(self) -> list[Lifecycle]:
        """Every record, newest first."""
        with self._lock:
            trackers = list(self._trackers.values())
        return [t.record for t in reversed(trackers)]

    def wait(self, order_id: str, timeout: float) -> Lifecycle:
        """Block until the order has a verdict (or ``timeout``); returns the record."""
        tracker = self._trackers.get(order_id)
        if tracker is None:
            record = self.get(order_id)
            if record is None:
                raise UnknownOrderError(order_id)
            return record
        tracker.verdict_given.wait(timeout)
        return tracker.record

    def queue_depth(self) -> int:
        """Requests waiting for the consumer plus orders not yet sent."""
        phases = self._phase_counts()
        return max(self._pending, phases["queued"] + phases["sending"])

    def _phase_counts(self) -> collections.Counter:
        """Records per phase, counted once per record change (status polls ask often)."""
        key = (self.version, len(self._trackers))
        cached = self._phases
        if cached is None or cached[0] != key:
            cached = (key, collections.Counter(t.record.phase
                                               for t in list(self._trackers.values())))
            self._phases = cached
        return cached[1]

    def working_count(self) -> int:
        """Our orders not yet finished (the risk gate's open-order count)."""
        return sum(1 for t in list(self._trackers.values())
                   if t.record.verdict not in FINAL_VERDICTS)

    def in_flight(self) -> int:
        """Orders sent and still in their settle or monitoring window."""
        phases = self._phase_counts()
        return phases["settling"] + phases["monitoring"]

    def _tracker(self, order_id: str) -> _Tracker:
        tracker = self._trackers.get(order_id)
        if tracker is None:
            record = self.get(order_id)  # finished long ago: only the journal has it
            if record is None:
                raise UnknownOrderError(order_id)
            raise OrderStateError(f"order {order_id} is already {record.verdict}")
        return tracker

    def _enqueue(self, item: tuple) -> None:
        queue = self._queue
        if queue is None:
            raise NotConnectedError("order handler is not running")
        with self._lock:
            self._pending += 1
        self.thread.call_soon(queue.put_nowait, item)

    # ============================================================= loop side
    async def on_connected(self, ib: IB) -> None:
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._consumer = asyncio.create_task(self._consume(), name="order-consumer")
        ib.errorEvent += self._on_error
        self._contracts.clear()
        self._reconciled = False
        await self._reconcile(ib)
        if self.halted:  # a kill switch engaged while disconnected still cancels everything
            await self._cancel_all(None, None)
        self._reconciled = True
        log.info("✅ Order handler connected to IB! (clientId %d)", self.client_id)

    async def on_disconnected(self) -> None:
        """ib_async's objects die with the connection: never act on them again."""
        self._reconciled = False
        self._by_order_id.clear()
        for tracker in self._trackers.values():
            tracker.trade = None

    async def before_disconnect(self) -> None:
        if self._consumer is not None:
            self._consumer.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, *( [self._consumer] if self._consumer else []),
                             return_exceptions=True)

    async def on_link_restored(self, ib: IB, data_lost: bool) -> None:
        """After 1102: fetch executions and adopt what the outage brought; after 1101: reconnect
        (the new connection reconciles from scratch, see ``_reconcile``)."""
        if data_lost:
            await super().on_link_restored(ib, data_lost)
            return
        await asyncio.wait_for(ib.reqExecutionsAsync(), CALL_TIMEOUT)
        unknown = self._match(ib)
        log.info("🔎 Reconciled after IB's servers came back: %d unfinished order(s) not seen",
                 len(unknown))
        if self.halted:  # a kill switch engaged during the outage: its global cancel goes now
            await self._cancel_all(None, None)

    # ------------------------------------------------------ reconciliation
    async def _reconcile(self, ib: IB) -> None:
        """Match unfinished records with what the gateway has, by orderRef (= our id).

        orderIds may have been reissued after a gateway restart, so the orderId
        index is rebuilt from scratch. Found orders are re-attached (live) or
        closed with the broker's final state; fills missed while disconnected
        are taken from the executions. Orders not found are never resent: after
        ``reconcile_grace`` seconds they are marked "not_placed".
        """
        self._by_order_id.clear()
        unknown = self._match(ib)
        if unknown:
            log.warning("🔎 %d order(s) not found at the gateway yet: %s", len(unknown),
                        ", ".join(t.record.id for t in unknown))
            task = asyncio.create_task(self._resolve_unknown(ib, unknown))
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    def _match(self, ib: IB) -> list[_Tracker]:
        """Adopt every gateway order and fill that is ours; return the unmatched trackers."""
        trades = _trades_by_ref(ib, self._trackers)
        fills = _fills_by_ref(ib)
        unknown = []
        for tracker in list(self._trackers.values()):
            ref = tracker.record.id
            if ref in fills:
                self._absorb_fills(tracker, fills[ref])
            if tracker.record.verdict in FINAL_VERDICTS:
                continue
            trade = trades.get(ref)
            if trade is not None:
                self._adopt(ib, tracker, trade)
            elif tracker.restored or tracker.record.order_id is not None:
                unknown.append(tracker)  # sent (or maybe sent before a crash), not seen
        return unknown

    async def _resolve_unknown(self, ib: IB, trackers: list[_Tracker]) -> None:
        await asyncio.sleep(self.reconcile_grace)
        if not ib.isConnected():
            return  # the next connection reconciles again
        await asyncio.wait_for(ib.reqOpenOrdersAsync(), CALL_TIMEOUT)
        await asyncio.wait_for(ib.reqCompletedOrdersAsync(False), CALL_TIMEOUT)
        await asyncio.wait_for(ib.reqExecutionsAsync(), CALL_TIMEOUT)
        still = {t.record.id for t in self._match(ib)}
        for tracker in trackers:
            if tracker.record.id in still and tracker.record.verdict not in FINAL_VERDICTS:
                self._verdict(tracker, "not_placed", "not found at the gateway "
                              f"{self.reconcile_grace:g}s after reconnecting; never resent")

    def _adopt(self, ib: IB, tracker: _Tracker, trade: Trade) -> None:
        """Attach a record to the gateway's view of its order."""
        if trade is tracker.trade:
            return
        live = trade in ib.openTrades()
        tracker.step("matched at the gateway after reconnect" + ("" if live else " (done)"))
        if live:
            self._by_order_id[trade.order.orderId] = tracker
            self._bind(tracker, trade)
            tracker.update(order_id=trade.order.orderId, client_id=trade.order.clientId)
            if tracker.cancel_requested:
                ib.cancelOrder(trade.order)
                tracker.step("pending cancel sent")
        if tracker.terminal is None:
            tracker.terminal = asyncio.Event()
        self._apply_status(tracker, trade)

    def _absorb_fills(self, tracker: _Tracker, fills: list) -> None:
        """Add executions the record does not have yet (e.g. fills during an outage)."""
        known = {f.exec_id for f in tracker.record.fills}
        new = []
        for fill in fills:
            ex, report = fill.execution, fill.commissionReport
            if ex.execId in known:
                continue
            new.append(FillRecord(exec_id=ex.execId, at=fill.time.timestamp() if fill.time
                                  else time.time(), shares=ex.shares, price=ex.price,
                                  commission=report.commission if report.execId else None))
        if new:
            tracker.update(fills=tracker.record.fills + tuple(new),
                           perm_id=tracker.record.perm_id or fills[0].execution.permId)
            tracker.step(f"recovered {len(new)} fill(s) from the gateway's executions")

    async def _consume(self) -> None:
        assert self._queue is not None
        actions = {"place": self._place, "cancel": self._cancel, "modify": self._modify,
                   "cancel_all": self._cancel_all}
        while True:
            kind, tracker, args = await self._queue.get()
            with self._lock:
                self._pending -= 1
            task = asyncio.create_task(actions[kind](tracker, args))
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("order task failed", exc_info=task.exception())

    # -------------------------------------------------------------- place
    async def _place(self, tracker: _Tracker, _: object) -> None:
        try:
            await self._place_steps(tracker)
        except Exception as exc:  # log and carry on: the record must still get a verdict
            log.exception("placing %s failed", tracker.record.id)
            sent = tracker.record.order_id is not None
            self._verdict(tracker, "unknown" if sent else "not_sent",
                          f"internal error: {type(exc).__name__}: {exc}", final=not sent)

    async def _place_steps(self, tracker: _Tracker) -> None:
        tracker.terminal = asyncio.Event()
        intent = tracker.record.intent
        try:
            contract = await self._qualify(intent)
        except (TimeoutError, LookupError, ConnectionError) as exc:
            self._verdict(tracker, "rejected" if isinstance(exc, LookupError) else "not_sent",
                          str(exc) or type(exc).__name__)
            return
        if tracker.cancel_requested:
            self._verdict(tracker, "cancelled", "cancelled before it was sent")
            return
        if self.halted:
            self._verdict(tracker, "not_sent", "kill switch engaged before it was sent")
            return
        trade = self._send(tracker, contract)
        if trade is None:
            return
        await self._settle(tracker)
        await self._monitor(tracker)

    async def _qualify(self, intent: OrderIntent) -> Contract:
        """The qualified contract, asked of the broker once per symbol even when a burst
        of orders for a new symbol arrives together."""
        key = (intent.symbol, intent.sec_type, intent.currency)
        if key in self._contracts:
            return self._contracts[key]
        pending = self._qualifying.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._lookup(intent))
            self._qualifying[key] = pending
            pending.add_done_callback(lambda _: self._qualifying.pop(key, None))
        contract = await asyncio.shield(pending)
        self._contracts[key] = contract
        return contract

    async def _lookup(self, intent: OrderIntent) -> Contract:
        ib = self.ib
        if ib is None or not ib.isConnected():
            raise ConnectionError("order connection is down")
        contract = make_contract(intent.symbol, intent.sec_type, intent.currency)
        found = await asyncio.wait_for(ib.qualifyContractsAsync(contract), CALL_TIMEOUT)
        if not found or not isinstance(found[0], Contract):  # None: unknown or ambiguous
            raise LookupError(f"unknown symbol {intent.symbol!r}: no security definition")
        return found[0]

    def _send(self, tracker: _Tracker, contract: Contract) -> Trade | None:
        ib = self.ib
        intent = tracker.record.intent
        order = build_order(intent, tracker.record.id)
        try:
            children = self._bracket_children(tracker, order) if intent.is_bracket else []
        except JournalError as exc:
            self._verdict(tracker, "not_sent", str(exc))
            return None
        tracker.update(phase="sending")
        try:
            if ib is None:
                raise ConnectionError("Not connected")
            if children:
                order.orderId = ib.client.getReqId()
                order.transmit = False
            trade = self._place_one(ib, tracker, contract, order)
            for child_tracker, child_order in children:
                child_order.parentId = order.orderId
                self._place_one(ib, child_tracker, contract, child_order)
                child_tracker.update(phase="monitoring")
        except ConnectionError as exc:  # definitely not sent
            for t in [tracker] + [c for c, _ in children]:
                self._verdict(t, "not_sent", f"order connection down: {exc}")
            return None
        log.info("🚀 Submitting %s: %s %g %s %s (orderId %d, timeout: %.0fs)", tracker.record.id,
                 intent.action, intent.quantity, intent.symbol, intent.order_type,
                 trade.order.orderId, self.monitor_timeout)
        return trade

    def _place_one(self, ib: IB, tracker: _Tracker, contract: Contract, order: Order) -> Trade:
        trade = ib.placeOrder(contract, order)
        self._by_order_id[trade.order.orderId] = tracker
        tracker.update(order_id=trade.order.orderId, client_id=self.client_id,
                       status=trade.orderStatus.status, phase="sending")
        tracker.step(f"sent as orderId {trade.order.orderId}")
        self._bind(tracker, trade)
        return trade

    def _bracket_children(self, parent: _Tracker, parent_order: Order) -> list[tuple]:
        """Trackers and orders of a bracket's take-profit and stop-loss children."""
        intent = parent.record.intent
        exit_action = "SELL" if intent.action == "BUY" else "BUY"
        legs = []
        if intent.take_profit is not None:
            legs.append(("tp", replace(intent, action=exit_action, order_type="LMT",
                                       limit_price=intent.take_profit, stop_price=None,
                                       take_profit=None, stop_loss=None, tif="GTC")))
        if intent.stop_loss is not None:
            legs.append(("sl", replace(intent, action=exit_action, order_type="STP",
                                       stop_price=intent.stop_loss, limit_price=None,
                                       take_profit=None, stop_loss=None, tif="GTC")))
        children = []
        for n, (suffix, child_intent) in enumerate(legs, 1):
            child_id = f"{parent.record.id}-{suffix}"
            now = time.time()
            record = Lifecycle(id=child_id, intent=child_intent, source="bracket",
                               created_at=now, phase="monitoring", updated_at=now,
                               parent=parent.record.id, steps=(Step(now, "queued"),))
            self.journal.insert(record)  # JournalError aborts the whole bracket unsent
            child = _Tracker(record, self._save)
            child.terminal = asyncio.Event()
            with self._lock:
                self._trackers[child_id] = child
            order = build_order(child_intent, child_id)
            order.ocaGroup = f"{parent.record.id}-oca"
            order.ocaType = 1
            order.transmit = n == len(legs)
            children.append((child, order))
        parent.update(children=tuple(c.record.id for c, _ in children))
        return children

    async def _settle(self, tracker: _Tracker) -> None:
        if tracker.record.verdict in FINAL_VERDICTS:
            return  # already answered (filled, rejected...) before the first wait
        tracker.update(phase="settling")
        tracker.step("settle workaround started")
        log.info("⏱️ Applying sleep workaround (%s)...", " + ".join(f"{s:g}s" for s in self.settle))
        for seconds in self.settle:
            if tracker.record.status in TERMINAL:
                break
            await asyncio.sleep(seconds)
        tracker.step("settle workaround completed")
        log.info("✅ Sleep completed for %s", tracker.record.id)

    async def _monitor(self, tracker: _Tracker) -> None:
        if tracker.record.verdict in FINAL_VERDICTS:
            return
        tracker.update(phase="monitoring")
        assert tracker.terminal is not None
        try:
            await asyncio.wait_for(tracker.terminal.wait(), self.monitor_timeout)
        except TimeoutError:
            status = tracker.record.status
            if not self.connected:
                self._verdict(tracker, "unknown", "connection lost before the broker answered; "
                              "resolved by reconciliation", final=False)
            elif status == "PendingSubmit":
                self._verdict(tracker, "stuck_pending_submit",
                              f"still PendingSubmit after {self.monitor_timeout:g}s monitoring")
            else:
                self._verdict(tracker, "working", f"{status} after {self.monitor_timeout:g}s "
                              "monitoring; still tracked", final=False)
        if tracker.record.verdict not in FINAL_VERDICTS:
            tracker.update(phase="tracking")  # out of its window; events still update it

    # ------------------------------------------------------ cancel / modify
    async def _cancel(self, tracker: _Tracker, _: object) -> None:
        tracker.cancel_requested = True
        tracker.step("cancel requested")
        trade, ib = tracker.trade, self.ib
        if trade is None or ib is None:
            if tracker.record.order_id is not None:  # sent, but not matched since a reconnect
                tracker.step("cancel pending: sent when the order is matched at the gateway")
            return  # not sent yet: _place sees cancel_requested before sending
        try:
            ib.cancelOrder(trade.order)
            log.info("🛑 Cancel sent for %s (orderId %d)", tracker.record.id, trade.order.orderId)
        except ConnectionError as exc:
            tracker.step(f"cancel not sent: {exc}")

    async def _cancel_all(self, _: object, __: object) -> None:
        ib = self.ib
        if ib is None:
            return
        for tracker in list(self._trackers.values()):
            if tracker.record.verdict not in FINAL_VERDICTS:
                tracker.cancel_requested = True
                tracker.step("global cancel requested")
        try:
            ib.reqGlobalCancel()
            log.warning("🛑 Global cancel sent: every working order of every client")
        except ConnectionError as exc:
            log.error("global cancel not sent: %s", exc)

    async def _preview(self, intent: OrderIntent) -> Preview:
        ib = self.ib
        if ib is None:
            raise NotConnectedError("order connection is down")
        contract = await self._qualify(intent)
        order = build_order(replace(intent, take_profit=None, stop_loss=None), "what-if")
        state = await asyncio.wait_for(ib.whatIfOrderAsync(contract, order), CALL_TIMEOUT)
        if state is None or not hasattr(state, "initMarginChange"):
            raise LookupError("the broker gave no what-if answer")
        return Preview(
            init_margin_change=_number(state.initMarginChange),
            maint_margin_change=_number(state.maintMarginChange),
            equity_with_loan_change=_number(state.equityWithLoanChange),
            init_margin_after=_number(state.initMarginAfter),
            maint_margin_after=_number(state.maintMarginAfter),
            commission=_number(state.commission), min_commission=_number(state.minCommission),
            max_commission=_number(state.maxCommission),
            commission_currency=state.commissionCurrency or "",
            warning_text=state.warningText or "")

    async def _modify(self, tracker: _Tracker, args: tuple) -> None:
        quantity, limit_price, stop_price = args
        trade, ib = tracker.trade, self.ib
        if trade is None or ib is None or tracker.record.status in TERMINAL:
            tracker.step("modify not sent: the order is not working at the gateway")
            return
        order = copy.copy(trade.order)  # the trade keeps what the broker last confirmed
        for name, value in (("totalQuantity", quantity), ("lmtPrice", limit_price),
                            ("auxPrice", stop_price)):
            if value is not None:
                setattr(order, name, value)
        changes = ", ".join(f"{k}={v:g}" for k, v in (
            ("quantity", quantity), ("limit_price", limit_price), ("stop_price", stop_price))
            if v is not None)
        try:
            ib.placeOrder(trade.contract, order)
        except ConnectionError as exc:
            tracker.step(f"modify not sent: {exc}")
            return
        except AssertionError:  # ib_async sends first, then asserts the trade is live
            tracker.step(f"modify sent: {changes} (ib_async holds the order as done; the "
                         "broker decides)")
            return
        tracker.step(f"modify requested: {changes}")
        log.info("✏️ Modify sent for %s: %s", tracker.record.id, changes)

    def _sync_intent(self, tracker: _Tracker, trade: Trade) -> None:
        """Take quantity and prices from the broker's echo of the order (after a modify)."""
        intent, order = tracker.record.intent, trade.order
        confirmed = {"quantity": float(order.totalQuantity or 0) or None,
                     "limit_price": _unset_price(order.lmtPrice),
                     "stop_price": _unset_price(order.auxPrice)}
        changes: dict[str, Any] = {k: v for k, v in confirmed.items()
                   if v is not None and getattr(intent, k) is not None
                   and abs(v - getattr(intent, k)) > 1e-9}
        if changes:
            tracker.update(intent=replace(intent, **changes))
            tracker.step("broker confirmed: " + ", ".join(f"{k}={v:g}" for k, v in
                                                          changes.items()))

    # ------------------------------------------------------ ib_async events
    def _bind(self, tracker: _Tracker, trade: Trade) -> None:
        tracker.trade = trade
        trade.statusEvent += lambda t: self._on_status(tracker, t)
        trade.fillEvent += lambda t, fill: self._on_fill(tracker, fill)
        trade.commissionReportEvent += lambda t, fill, report: self._on_commission(
            tracker, fill, report)

    def _on_status(self, tracker: _Tracker, trade: Trade) -> None:
        entry = trade.log[-1] if trade.log else None
        if entry is not None and entry.errorCode:
            self._on_error_status(tracker, trade, entry.errorCode, entry.message)
            return
        if trade.orderStatus.status in WORKING and tracker.record.intent.order_type != "TRAIL":
            self._sync_intent(tracker, trade)
        self._apply_status(tracker, trade)

    def _apply_status(self, tracker: _Tracker, trade: Trade) -> None:
        st = trade.orderStatus
        old = tracker.record.status
        new = st.status
        if new in CLIENT_SIDE_STATUSES:
            return  # set by ib_async itself (TWS never sends them): not a broker transition
        filled = st.filled or _filled_quantity(trade)
        changes: dict[str, object] = dict(status=new, filled=filled, remaining=st.remaining,
                                          perm_id=st.permId or trade.order.permId or None,
                                          avg_fill_price=st.avgFillPrice or _avg_price(tracker)
                                          or None)
        if new != old:
            log.info("%s 📊 Status: %s → %s (%s)", tracker.elapsed(), old, new, tracker.record.id)
            changes["transitions"] = tracker.record.transitions + (
                StatusChange(time.time(), old, new, st.filled, st.remaining),)
        tracker.update(**changes)
        if new in WORKING:
            tracker.acknowledged = True
            if tracker.record.verdict in ("stuck_pending_submit", "unknown"):
                self._verdict(tracker, "working", f"{new}: acknowledged by the broker",
                              final=False)
        if new in TERMINAL:
            verdict = {"Filled": "filled", "Inactive": "rejected"}.get(new, "cancelled")
            reason = self._last_error_text(tracker) if verdict != "filled" else None
            self._verdict(tracker, verdict, reason or new)
        self._changed()

    def _on_error_status(self, tracker: _Tracker, trade: Trade, code: int, text: str) -> None:
        """ib_async changed the status because of an error message, not the broker."""
        if code in FALSE_CANCEL_CODES or trade.orderStatus.status == "ValidationError":
            return  # informational: the order lives on; the message is in the record
        if trade.orderStatus.status == "Cancelled" and not tracker.acknowledged:
            # e.g. 103, 200, 201 before any ack; deferred so that ib_async's errorEvent
            # (fired right after this) has recorded the message first
            asyncio.get_running_loop().call_soon(self._reject_unacknowledged, tracker, text)

    def _reject_unacknowledged(self, tracker: _Tracker, text: str) -> None:
        if not tracker.acknowledged and tracker.record.status not in TERMINAL:
            self._verdict(tracker, "rejected", self._last_error_text(tracker) or text)

    def _on_error(self, req_id: int, code: int, text: str, contract: object) -> None:
        tracker = self._by_order_id.get(req_id)
        if tracker is None:
            return
        tracker.update(messages=tracker.record.messages + (IBMessage(time.time(), code, text),))
        log.info("%s 💬 Message: Error %d, reqId %d: %s (%s)", tracker.elapsed(), code, req_id,
                 text, tracker.record.id)
        self._changed()

    def _on_fill(self, tracker: _Tracker, fill: object) -> None:
        ex = fill.execution  # type: ignore[attr-defined]
        record = FillRecord(exec_id=ex.execId, at=time.time(), shares=ex.shares, price=ex.price)
        tracker.update(fills=tracker.record.fills + (record,), perm_id=ex.permId)
        log.info("%s 💰 Fill %g @ %g (%s)", tracker.elapsed(), ex.shares, ex.price,
                 tracker.record.id)
        self._changed()

    def _on_commission(self, tracker: _Tracker, fill: object, report: object) -> None:
        exec_id = report.execId  # type: ignore[attr-defined]
        commission = report.commission  # type: ignore[attr-defined]
        fills = tuple(replace(f, commission=commission) if f.exec_id == exec_id else f
                      for f in tracker.record.fills)
        tracker.update(fills=fills)
        self._changed()

    def _last_error_text(self, tracker: _Tracker) -> str | None:
        for message in reversed(tracker.record.messages):
            if message.code not in FALSE_CANCEL_CODES and not 2100 <= message.code < 2200:
                return f"Error {message.code}: {message.text}"
        return None

    def _verdict(self, tracker: _Tracker, verdict: str, reason: str, final: bool = True) -> None:
        if tracker.record.verdict == verdict and tracker.record.verdict_reason == reason:
            return
        tracker.update(verdict=verdict, verdict_reason=reason,
                       phase="done" if final else tracker.record.phase)
        tracker.step(f"verdict: {verdict} ({reason})")
        if final and tracker.terminal is not None:
            tracker.terminal.set()
        marker = {"filled": "🎉 SUCCESS! Order reached: Filled", "working": "⏳ Still working"}
        log.info("%s %s — %s: %s", tracker.elapsed(), marker.get(verdict, f"❌ Order {verdict}"),
                 tracker.record.id, reason)
        tracker.verdict_given.set()
        self._changed()
        if final:
            self._prune()

    def _prune(self) -> None:
        """Keep only the newest KEEP_FINISHED finished records (and ib_async objects) in
        memory; the journal has them all."""
        finished = [key for key, t in list(self._trackers.items())
                    if t.record.verdict in FINAL_VERDICTS]
        for key in finished[:max(0, len(finished) - KEEP_FINISHED)]:
            with self._lock:
                tracker = self._trackers.pop(key, None)
            if tracker is not None:
                self._forget_trade(tracker)

    def _forget_trade(self, tracker: _Tracker) -> None:
        trade, ib = tracker.trade, self.ib
        if trade is None or ib is None:
            return
        wrapper, order = ib.wrapper, trade.order
        wrapper.trades.pop(wrapper.orderKey(order.clientId, order.orderId, order.permId), None)
        wrapper.permId2Trade.pop(order.permId, None)
        for fill in trade.fills:
            wrapper.fills.pop(fill.execution.execId, None)
        if self._by_order_id.get(order.orderId) is tracker:
            del self._by_order_id[order.orderId]
        tracker.trade = None

    def _save(self, record: Lifecycle) -> None:
        """Every record change: journal it, bump the version, tell the listener."""
        self.journal.save(record)
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


def _trades_by_ref(ib: IB, trackers: dict[str, _Tracker]) -> dict[str, Trade]:
    """ib_async's trades that carry one of our ids, live ones preferred over done ones."""
    found: dict[str, Trade] = {}
    live = set(map(id, ib.openTrades()))
    for trade in ib.trades():
        ref = trade.order.orderRef
        if ref in trackers and (ref not in found or id(trade) in live):
            found[ref] = trade
    return found


def _fills_by_ref(ib: IB) -> dict[str, list]:
    """ib_async's fills grouped by the orderRef of their execution."""
    grouped: dict[str, list] = {}
    for fill in ib.fills():
        grouped.setdefault(fill.execution.orderRef or "", []).append(fill)
    return grouped


def _unset_price(value: float | Decimal | None) -> float | None:
    return None if value is None or value >= 1.7e308 or not math.isfinite(value) or \
        value == 0 else float(value)


def _filled_quantity(trade: Trade) -> float:
    """completedOrder carries the filled quantity on the order, not in a status."""
    value = trade.order.filledQuantity
    return 0.0 if value is None or value >= 1.7e308 else float(value)


def _avg_price(tracker: _Tracker) -> float | None:
    fills = tracker.record.fills
    shares = sum(f.shares for f in fills)
    return sum(f.shares * f.price for f in fills) / shares if shares else None


def _number(value: object) -> float | None:
    """An OrderState figure as a float; None when unset or unparsable."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if not math.isfinite(number) or abs(number) >= 1.7e308 else number


def build_order(intent: OrderIntent, order_ref: str) -> Order:
    """The ib_async Order for an intent: TIF always explicit, our id in orderRef."""
    order = Order(action=intent.action, totalQuantity=intent.quantity,
                  orderType=intent.order_type, tif=intent.tif or "DAY",
                  outsideRth=intent.outside_rth, orderRef=order_ref, account=intent.account,
                  transmit=True)
    if intent.limit_price is not None:
        order.lmtPrice = intent.limit_price
    if intent.stop_price is not None:
        order.auxPrice = intent.stop_price
    if intent.trailing_amount is not None:
        order.auxPrice = intent.trailing_amount
    if intent.trailing_percent is not None:
        order.trailingPercent = intent.trailing_percent
    assert order.tif and math.isfinite(order.totalQuantity)
    return order
