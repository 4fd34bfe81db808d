"""The trackers of our orders, and ib_async's order events turned into lifecycle changes.

``OrderBook`` holds every tracker (by our id and by the orderId of the current connection),
binds ib_async's ``Trade`` events to them and decides what each broker report means for the
record: a status, an error, a fill, a commission. The record itself is only changed through
``Tracker``'s methods (``orders.lifecycle``).

Statuses come from the broker's orderStatus messages only: ib_async marks a trade Cancelled on
some informational errors (10349 "TIF was set to DAY") and on a refused modify while the order
lives on, so such error-made states are kept as messages, never as transitions, and the trade
gets the broker's last status back: ib_async passes an orderStatus on only when it differs from
the trade's, so the broker's next Cancelled would otherwise go unheard.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ib_async import IB
from ib_async.order import Trade
from ib_async.util import UNSET_DOUBLE

from ib_compat import (
    CANCEL_REFUSALS,
    CLIENT_SIDE_STATES,
    DONE_STATES,
    FALSE_CANCEL_CODES,
    ORDER_CANCELLED,
    WORKING_STATES,
    broker_state,
    filled_quantity,
    forget_trade,
    is_warning,
    logged,
    unset_price,
)
from orders import executions
from orders.echo import echoed, last_error_text, sync_intent
from orders.lifecycle import (
    BROKER_FINAL,
    CHANGE_REFUSED,
    Event,
    Phase,
    Tracker,
    Verdict,
    average_price,
    awaits_commission,
    awaits_reason,
    is_final,
    may_become,
)

log = logging.getLogger(__name__)

KEEP_FINISHED = 500  # finished records kept in memory; older ones are read from the journal
REJECTING_BELOW = 10000  # IB's order errors below it reject; the 10000s are mostly notes
REJECT_GRACE = 2.0  # s an error before the ack waits for the broker's status before "rejected"
PRUNE_AFTER = 60.0  # seconds a finished record stays in memory at least (reports come late)
COMMISSION_WAIT = 600.0  # seconds a finished record is kept for a missing commission at most
_BROKER_VERDICT = {"Filled": Verdict.FILLED, "Inactive": Verdict.REJECTED}
_VERDICT_MARKERS = {  # the log's words for a verdict (others: ❌)
    Verdict.FILLED: "🎉 SUCCESS! Order reached: Filled",
    Verdict.WORKING: "⏳ Still working",
}
# verdicts a broker's acknowledgement turns into "working"
_PROMOTED = frozenset(
    {Verdict.STUCK_PENDING_SUBMIT, Verdict.UNKNOWN, Verdict.NOT_PLACED, Verdict.NOT_SENT}
)


class OrderBook:
    """Every tracker of ours; the mapping of broker events onto them (loop thread)."""

    def __init__(self, changed: Callable[[], None], ib: Callable[[], IB | None]) -> None:
        self.trackers: dict[str, Tracker] = {}
        self.by_order_id: dict[int, Tracker] = {}
        self.lock = threading.Lock()  # guards the dict against readers on other threads
        self._changed = changed
        self._ib = ib
        self._phases: tuple[object, collections.Counter[str]] | None = None
        self._cancelling: set[str] = set()  # ids inside our own cancelOrder call

    # ------------------------------------------------------------------ registry
    def add(self, tracker: Tracker) -> None:
        """Register a new tracker (any thread)."""
        with self.lock:
            self.trackers[tracker.id] = tracker

    def get(self, order_id: str) -> Tracker | None:
        """The tracker of one of our orders, if still in memory."""
        return self.trackers.get(order_id)

    def all(self) -> list[Tracker]:
        """Every tracker, oldest first."""
        with self.lock:
            return list(self.trackers.values())

    def count(self) -> int:
        with self.lock:
            return len(self.trackers)

    def unfinished(self) -> list[Tracker]:
        """Trackers without a final verdict."""
        return [t for t in self.all() if not is_final(t.record.verdict)]

    def phase_counts(self, version: object) -> collections.Counter[str]:
        """Records per phase, counted once per record change (status polls ask often)."""
        key = (version, len(self.trackers))
        cached = self._phases
        if cached is None or cached[0] != key:
            cached = (key, collections.Counter(str(t.record.phase) for t in self.all()))
            self._phases = cached
        return cached[1]

    def unsent(self, version: object) -> int:
        """Orders queued or being sent."""
        phases = self.phase_counts(version)
        return phases[Phase.QUEUED] + phases[Phase.SENDING]

    def in_flight(self, version: object) -> int:
        """Orders sent and still in their settle or monitoring window."""
        phases = self.phase_counts(version)
        return phases[Phase.SETTLING] + phases[Phase.MONITORING]

    def forget_connection(self) -> None:
        """ib_async's objects die with the connection: never act on them again."""
        self.by_order_id.clear()
        for tracker in self.all():
            tracker.trade, tracker.unconfirmed = None, {}

    # ------------------------------------------------------------------ binding
    def bind(self, tracker: Tracker, trade: Trade) -> None:
        """Follow ``trade``'s events on this connection."""
        tracker.trade = trade
        self.index(tracker, trade)
        name = tracker.id  # a failure is logged: the record may lag the broker until fixed
        trade.statusEvent += logged(log, f"{name}'s status", lambda t: self.on_status(tracker, t))
        trade.fillEvent += logged(log, f"{name}'s fill", lambda t, f: self.on_fill(tracker, f))
        self.follow_commissions(tracker, trade)

    def follow_commissions(self, tracker: Tracker, trade: Trade) -> None:
        """Take the commission reports ib_async hands to ``trade`` (bound, or an order found
        finished after a reconnect: IB may report a fill's commission after the executions)."""
        trade.commissionReportEvent += logged(
            log, f"{tracker.id}'s commission", lambda t, f, r: self.on_commission(tracker, r)
        )

    def index(self, tracker: Tracker, trade: Trade) -> None:
        """Find the tracker by the trade's orderId (error messages name the order by it)."""
        self.by_order_id[trade.order.orderId] = tracker

    def cancel(self, ib: IB, tracker: Tracker, trade: Trade) -> None:
        """Send the order's cancel. ib_async sets a status of its own inside the call (Cancelled
        for an unacknowledged bracket parent or an Inactive order): not the broker's word, which
        is its Cancelled, its refusal (10148) or a fill."""
        self._cancelling.add(tracker.id)
        try:
            ib.cancelOrder(trade.order)
        finally:
            self._cancelling.discard(tracker.id)
        if trade.orderStatus.status in DONE_STATES:
            restore_broker_status(tracker, trade)

    def on_status(self, tracker: Tracker, trade: Trade) -> None:
        """ib_async's statusEvent: the broker's status, or one ib_async made from an error or
        from our own cancel."""
        if tracker.id in self._cancelling or _foreign_status(tracker, trade):
            return  # ib_async's own PendingCancel or Cancelled (see ``cancel``); another order's
        entry = trade.log[-1] if trade.log else None
        if entry is not None and entry.errorCode:
            self._on_error_status(tracker, trade, entry.errorCode, entry.message)
            return
        if broker_state(trade.orderStatus) in WORKING_STATES:
            sync_intent(tracker, trade)
        self.apply_status(tracker, trade)

    def on_echo(self, tracker: Tracker, trade: Trade) -> None:
        """openOrder for an order this connection follows: the broker's echo of it, after a
        modify too when its status stays the same (an untriggered stop stays PreSubmitted, so
        no statusEvent comes)."""
        if broker_state(trade.orderStatus) in WORKING_STATES:  # the intent first (sync_intent)
            sync_intent(tracker, trade)
            self._changed()
        echoed(tracker, trade)

    def apply_status(self, tracker: Tracker, trade: Trade) -> None:
        """Take the broker's status of the order and draw the verdict it implies."""
        st = trade.orderStatus
        new = broker_state(st)
        if new in CLIENT_SIDE_STATES:
            return  # set by ib_async itself (TWS never sends them): not a broker transition
        record = tracker.record
        verdict = _BROKER_VERDICT.get(new, Verdict.CANCELLED) if new in DONE_STATES else None
        if verdict is Verdict.CANCELLED and _refused(tracker):
            verdict = Verdict.REJECTED  # e.g. 201, then Cancelled (not Inactive)
        if verdict not in (None, record.verdict):
            if not may_become(record.verdict, verdict):
                self._keep_verdict(tracker, new)  # decided before anything is written
                return
            if record.verdict in BROKER_FINAL:  # the table let it give way: a fill over
                log.warning(  # cancelled or rejected
                    "🔁 %s: the broker reports it %s after all (was %s: %s)",
                    tracker.id,
                    new,
                    record.verdict,
                    record.verdict_reason,
                )
        if record.verdict in (Verdict.NOT_PLACED, Verdict.NOT_SENT):
            tracker.readopt(
                f"re-adopted: the broker reports it {new} after all (was {record.verdict})"
            )
            log.warning("🔁 %s is at the broker after all (%s); tracked again", tracker.id, new)
        filled = max(st.filled or filled_quantity(trade), sum(f.shares for f in record.fills))
        avg = (
            unset_price(st.avgFillPrice)
            or average_price(tracker.record)
            or tracker.record.avg_fill_price
        )
        old = tracker.broker_status(
            new, filled, st.remaining, st.permId or trade.order.permId or None, avg
        )
        if new != old:
            log.info("%s 📊 Status: %s → %s (%s)", tracker.elapsed(), old, new, tracker.id)
        if new in WORKING_STATES:
            self._acknowledged(tracker, new)
        if verdict is not None and verdict != record.verdict:
            reason = last_error_text(tracker) if verdict != Verdict.FILLED else None
            self.verdict(tracker, verdict, reason or new)
        self._changed()

    def _keep_verdict(self, tracker: Tracker, status: str) -> None:
        """A final status the record's verdict may not give way to (Cancelled after Filled):
        noted in its history, the record otherwise left as it is."""
        verdict = tracker.record.verdict
        tracker.step(f"the broker reported {status}; the verdict {verdict} stands")
        log.warning("⚠️ %s: the broker reports it %s; verdict %s kept", tracker.id, status, verdict)
        self._changed()

    def _acknowledged(self, tracker: Tracker, status: str) -> None:
        """The broker holds the order live: a leg is tracked from now on, and a record out of
        its monitoring window (restored, a leg, re-adopted, late) is ``working``."""
        tracker.acknowledged = True
        if tracker.record.parent is not None and tracker.record.phase in (
            Phase.SENDING,
            Phase.MONITORING,
        ):
            tracker.advance(Event.LEG_ACK)
        record = tracker.record
        if record.verdict in _PROMOTED or (
            record.verdict is None and record.phase == Phase.TRACKING
        ):
            self.verdict(tracker, Verdict.WORKING, f"{status}: acknowledged by the broker")

    def _on_error_status(self, tracker: Tracker, trade: Trade, code: int, text: str) -> None:
        """ib_async changed the status because of an error message, not the broker."""
        warning = trade.orderStatus.status == "ValidationError" or code in FALSE_CANCEL_CODES
        restore_broker_status(tracker, trade)  # the broker's own status decides
        if not warning and not tracker.acknowledged and code not in CANCEL_REFUSALS:
            # 103, 200, 201 before any ack, or a message ib_async does not know (10311): 201
            # comes with Inactive, an ack means it lives; no status at all within the grace
            # (103 and 200 make no order) makes it rejected. A refused cancel says nothing
            # against the order: its ack or the monitoring window decides
            about_change = bool(tracker.unconfirmed)  # told before the error: it may refuse it
            asyncio.get_running_loop().call_later(
                REJECT_GRACE, self._unanswered_error, tracker, trade, code, text, about_change
            )

    def _unanswered_error(
        self, tracker: Tracker, trade: Trade, code: int, text: str, about_change: bool
    ) -> None:
        """No status within the grace after an error before the ack: IB's codes below 10000
        reject the order (103, 110, 200 ...); a 10000s note (10311), or an error that may
        refuse a change sent before the ack, makes it ``not_placed`` (gives way to an ack)."""
        if (
            tracker.trade is not trade  # the connection changed: reconciliation decides
            or tracker.acknowledged
            or tracker.record.status in DONE_STATES
            or is_final(tracker.record.verdict)
        ):
            return
        reason = last_error_text(tracker) or text
        if code < REJECTING_BELOW and not about_change:
            self.verdict(tracker, Verdict.REJECTED, reason)
        else:
            self.verdict(tracker, Verdict.NOT_PLACED, f"{reason}; no acknowledgement followed")

    def on_error(self, req_id: int, code: int, text: str, contract: object) -> None:
        """ib_async's errorEvent: a message about one of our orders (by orderId)."""
        tracker = self.by_order_id.get(req_id)
        if tracker is None:
            return
        refuses_change = _refuses_change(tracker, code)
        if not is_warning(code):  # a change sent is refused (201, 110, 10326...) or moot
            tracker.unconfirmed = {}
        tracker.message(code, text, about_change=refuses_change)
        if refuses_change:
            tracker.step(f"{CHANGE_REFUSED}: Error {code}: {text}")
        said = (tracker.elapsed(), code, req_id, text, tracker.id)
        log.info("%s 💬 Message: Error %d, reqId %d: %s (%s)", *said)
        reason = last_error_text(tracker)
        if reason and awaits_reason(tracker.record):
            tracker.reason_found(reason)
        if refuses_change:  # an order that filled while its change was on its way (104)
            self._filled_by_executions(tracker)
        self._changed()

    def on_fill(self, tracker: Tracker, fill: Any) -> None:
        """An execution of the order (ib_async's Fill)."""
        ex = fill.execution
        if any(f.exec_id == ex.execId for f in tracker.record.fills):
            return
        if _foreign(tracker, ex.permId, ex.orderRef, f"execution {ex.execId}"):
            return
        tracker.fills_added((executions.fill_record(fill),), ex.permId)
        log.info("%s 💰 Fill %g @ %g (%s)", tracker.elapsed(), ex.shares, ex.price, tracker.id)
        self._filled_by_executions(tracker)
        self._changed()

    def _filled_by_executions(self, tracker: Tracker) -> None:
        """Filled when its executions add up to its quantity and no change of the quantity is
        on its way (a price change cannot unfill it: IB refuses it, 104, or it is moot)."""
        if may_become(tracker.record.verdict, Verdict.FILLED) and executions.filled_by_executions(
            tracker.record, tracker.trade, "quantity" in tracker.unconfirmed
        ):
            self.verdict(tracker, Verdict.FILLED, "its executions add up to its quantity")

    def on_commission(self, tracker: Tracker, report: Any) -> None:
        """The commission report of one of the order's executions."""
        commission = executions.commission_of(tracker.id, report)
        if commission is not None:
            tracker.commission(report.execId, commission)
            self._changed()

    # ------------------------------------------------------------------ verdicts
    def verdict(self, tracker: Tracker, verdict: Verdict, reason: str) -> None:
        """Give a verdict, log it for the trader, and drop old finished records."""
        if not tracker.conclude(verdict, reason):
            return
        marker = _VERDICT_MARKERS.get(verdict, f"❌ Order {verdict}")
        log.info("%s %s — %s: %s", tracker.elapsed(), marker, tracker.id, reason)
        self._changed()
        if is_final(verdict):
            self.prune()

    def prune(self, keep: int = KEEP_FINISHED, min_age: float = PRUNE_AFTER) -> None:
        """Keep only the ``keep`` most recently finished records (and ib_async's objects) in
        memory, and any finished in the last ``min_age`` seconds or with a fill still awaiting
        its commission: ib_async drops a forgotten trade's reports. The journal has them all."""
        now = time.time()
        finished = sorted((t for t in self.all() if is_final(t.record.verdict)), key=_finished_at)
        for tracker in finished[: max(0, len(finished) - keep)]:
            age = now - _finished_at(tracker)
            waits = awaits_commission(tracker.record) and age < COMMISSION_WAIT
            if age >= min_age and not waits:
                self._forget(tracker)

    def _forget(self, tracker: Tracker) -> None:
        with self.lock:
            self.trackers.pop(tracker.id, None)
        trade, ib = tracker.trade, self._ib()
        if trade is not None and ib is not None:
            forget_trade(ib, trade)
            if self.by_order_id.get(trade.order.orderId) is tracker:
                del self.by_order_id[trade.order.orderId]
        tracker.trade = None


def _foreign(tracker: Tracker, perm_id: int, order_ref: str, what: str) -> bool:
    """A report ib_async matched to the order by its orderId alone (an orderId the gateway
    issued again after a restart) whose permId or orderRef names another order: logged, and
    never taken for the order's own."""
    known = tracker.record.perm_id
    if not (order_ref and order_ref != tracker.id) and not (perm_id and known and perm_id != known):
        return False
    log.warning(
        "⚠️ %s: %s names its orderId but permId %s / orderRef %r (ours: %s / %s); ignored",
        tracker.id,
        what,
        perm_id,
        order_ref,
        known,
        tracker.id,
    )
    return True


def _foreign_status(tracker: Tracker, trade: Trade) -> bool:
    """An orderStatus of another order with the same orderId: ib_async wrote it into the
    order's trade, which gets the broker's last word about this order back."""
    status = trade.orderStatus
    if not _foreign(tracker, status.permId, "", f"status {status.status}"):
        return False
    status.permId = tracker.record.perm_id or 0
    restore_broker_status(tracker, trade)
    return True


def foreign_echo(tracker: Tracker, trade: Trade) -> bool:
    """An openOrder of another order with the same orderId: ib_async copied its orderRef,
    permId, quantity, type and prices into our order's trade, and a modify (which sends the
    trade's order with the change) would have sent them. Our order's come back from the
    record (what the broker last confirmed of it)."""
    order = trade.order
    if not _foreign(tracker, order.permId, order.orderRef, "openOrder"):
        return False
    record, intent = tracker.record, tracker.record.intent
    aux = intent.stop_price if intent.stop_price is not None else intent.trailing_amount
    order.orderRef, order.permId = tracker.id, record.perm_id or 0
    order.totalQuantity, order.orderType = intent.quantity, intent.order_type
    order.lmtPrice = UNSET_DOUBLE if intent.limit_price is None else intent.limit_price
    order.auxPrice = UNSET_DOUBLE if aux is None else aux
    return True


def restore_broker_status(tracker: Tracker, trade: Trade) -> None:
    """Give ib_async's trade back the broker's last status where ib_async set one of its own.
    ib_async passes an orderStatus on only when it differs from the trade's, so the broker's
    next word (a Cancelled after an error ib_async took for a cancel) would otherwise go
    unheard and the order stay working on the screen."""
    status = tracker.record.status
    if status is not None and trade.orderStatus.status != status:
        log.info(
            "%s ↩️ %s kept at the broker's %s (ib_async had set %s on its own)",
            tracker.elapsed(),
            tracker.id,
            status,
            trade.orderStatus.status,
        )
        trade.orderStatus.status = status


def _refuses_change(tracker: Tracker, code: int) -> bool:
    """An error while a change is on its way refuses it (201, 110, 104, 135, 10326...); IB's
    cancel (202) or a refused cancel says nothing about the change."""
    return (
        not is_warning(code)
        and bool(tracker.unconfirmed)
        and code != ORDER_CANCELLED
        and code not in CANCEL_REFUSALS
    )


def _finished_at(tracker: Tracker) -> float:
    """When the record got its final verdict (a restored one: its last change)."""
    return tracker.finished_at or tracker.record.updated_at


def _refused(tracker: Tracker) -> bool:
    """Cancelled before any ack, not by us, after a real error from IB: a rejection."""
    return (
        not tracker.acknowledged
        and not tracker.cancel_requested
        and last_error_text(tracker) is not None
    )
