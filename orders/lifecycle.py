"""The order lifecycle: phases, verdicts, the one transition table, and the only code that
changes a record.

A record (``order_records.Lifecycle``, frozen) is replaced, never mutated, and only by a
``Tracker`` method here. Placement and reconciliation hand it events (``Event``) and verdicts;
a move the tables do not allow raises ``IllegalTransition`` (h11's ``_state.py`` is the model).

Phase (where our own handling of the order is)::

    queued → sending → settling → monitoring → tracking → done
                  └────────────→ monitoring (bracket legs: no settle of their own)
    any unfinished → tracking       (restored from the journal after a restart)
    done → tracking                 (re-adopted: the broker reports an order we had closed)

Verdict (what became of it): ``filled``, ``cancelled``, ``rejected`` come from the broker and are
final, except that ``cancelled`` and ``rejected`` give way to a fill the broker reports (they may
rest on an error ib_async took for a cancel, or a cancel that crossed the fill); ``not_sent`` and
``not_placed`` are our own conclusions and give way to new evidence from the broker (the order is
re-adopted); ``working``, ``stuck_pending_submit`` and ``unknown`` are interim.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from enum import StrEnum
from typing import Any

from ib_async.order import Trade

from ib_compat import DONE_STATES
from order_records import FillRecord, IBMessage, Lifecycle, StatusChange, Step
from orders import executions
from wire import plain_number


class Phase(StrEnum):
    """Where our own handling of an order is."""

    QUEUED = "queued"
    SENDING = "sending"
    SETTLING = "settling"
    MONITORING = "monitoring"
    TRACKING = "tracking"
    DONE = "done"


class Verdict(StrEnum):
    """What became of an order."""

    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    NOT_SENT = "not_sent"
    NOT_PLACED = "not_placed"
    WORKING = "working"
    STUCK_PENDING_SUBMIT = "stuck_pending_submit"
    UNKNOWN = "unknown"


class Event(StrEnum):
    """What moves an order from one phase to the next."""

    SEND = "send"  # placeOrder is about to be called
    SETTLE = "settle"  # the settle workaround starts
    MONITOR = "monitor"  # the monitoring window starts (a bracket leg: right after sending)
    LEG_ACK = "leg_ack"  # the broker acknowledged a bracket leg: tracked from now on
    WINDOW_END = "window_end"  # the monitoring window ended without a final verdict
    RESTORE = "restore"  # loaded from the journal at start; its old window died with the app
    INTERIM = "interim"  # an interim verdict: the phase stays
    FINISH = "finish"  # a final verdict
    READOPT = "readopt"  # the broker reports an order we had closed as not sent / not placed


P = Phase
_LIVE = (P.SENDING, P.SETTLING, P.MONITORING, P.TRACKING)
TRANSITIONS: dict[Event, dict[Phase, Phase]] = {
    Event.SEND: {P.QUEUED: P.SENDING},
    Event.SETTLE: {P.SENDING: P.SETTLING},
    Event.MONITOR: {P.SENDING: P.MONITORING, P.SETTLING: P.MONITORING},
    Event.LEG_ACK: {P.SENDING: P.TRACKING, P.MONITORING: P.TRACKING, P.TRACKING: P.TRACKING},
    Event.WINDOW_END: {P.SETTLING: P.TRACKING, P.MONITORING: P.TRACKING, P.TRACKING: P.TRACKING},
    Event.RESTORE: {p: P.TRACKING for p in Phase},  # (done: a record of an older version)
    Event.INTERIM: {p: p for p in (P.QUEUED, *_LIVE)},
    Event.FINISH: {p: P.DONE for p in Phase},
    Event.READOPT: {P.DONE: P.TRACKING, **{p: p for p in _LIVE}},
}

BROKER_FINAL = frozenset({Verdict.FILLED, Verdict.CANCELLED, Verdict.REJECTED})
OUR_FINAL = frozenset({Verdict.NOT_SENT, Verdict.NOT_PLACED})
FINAL_VERDICTS = BROKER_FINAL | OUR_FINAL  # finished (our conclusions until the broker objects)
INTERIM_VERDICTS = frozenset(Verdict) - FINAL_VERDICTS
_EVIDENCE = frozenset({Verdict.WORKING}) | BROKER_FINAL  # what the broker can report
VERDICTS: dict[Verdict | None, frozenset[Verdict]] = {
    None: frozenset(Verdict),
    **{v: frozenset(Verdict) for v in INTERIM_VERDICTS},
    **{v: _EVIDENCE for v in OUR_FINAL},  # no verdict is final against new evidence
    Verdict.FILLED: frozenset(),
    # a fill the broker reports is its last word, whatever we concluded before: from an error
    # ib_async took for a cancel (10311 before the ack), or from a cancel that crossed the fill
    Verdict.CANCELLED: frozenset({Verdict.FILLED}),
    Verdict.REJECTED: frozenset({Verdict.FILLED}),
}


class IllegalTransition(RuntimeError):
    """An event or verdict the tables do not allow for the record's current state."""


def next_phase(phase: str, event: Event) -> Phase:
    """The phase after ``event``; raises IllegalTransition when the table has no such move."""
    try:
        return TRANSITIONS[event][Phase(phase)]
    except KeyError:
        raise IllegalTransition(f"no {event} from phase {phase}") from None


def may_become(verdict: str | None, new: Verdict) -> bool:
    """Whether a record with ``verdict`` may be given ``new``."""
    return new in VERDICTS[Verdict(verdict) if verdict is not None else None]


CHANGE_NAMES = {"quantity": "quantity", "limit_price": "limit price", "stop_price": "stop price"}
REASON_WAIT = 1.0  # s: how long wait_verdict waits for the 201 after IB's bare Inactive


def change_words(values: dict[str, Any]) -> str:
    """A modification in a trader's words: ``limit price 413.04, quantity 5``."""
    return ", ".join(f"{CHANGE_NAMES.get(k, k)} {plain_number(v)}" for k, v in values.items())


def awaits_commission(record: Lifecycle) -> bool:
    """A fill of the record has no commission yet."""
    return any(f.commission is None for f in record.fills)


def awaits_reason(record: Lifecycle) -> bool:
    """Rejected on the broker's bare status: IB reports a rejected order Inactive before the
    201 that says why."""
    return record.verdict == Verdict.REJECTED and record.verdict_reason == record.status


def is_final(verdict: str | None) -> bool:
    """Finished: the broker's final word, or our own conclusion (until the broker objects)."""
    return verdict in FINAL_VERDICTS


TERMS = ("quantity", "limit_price", "stop_price")  # what a change may change


def same_terms(a: Mapping[str, float | None], b: Mapping[str, float | None]) -> bool:
    """Two orders' quantity and prices are the same (to within float noise)."""
    return all(
        (x is None) == (y is None) and (x is None or y is None or abs(x - y) <= 1e-9)
        for x, y in ((a.get(name), b.get(name)) for name in TERMS)
    )


# the words that begin a step about a change of the order (orders.view: the change's outcome)
CHANGE_SENT, CHANGE_NOT_SENT = "change sent", "change not sent"
CHANGE_REFUSED, CHANGE_CONFIRMED = "change refused by the broker", "broker confirmed the change"
CHANGE_STEPS = (CHANGE_SENT, CHANGE_NOT_SENT, CHANGE_REFUSED, CHANGE_CONFIRMED)


class Tracker:
    """One order's current record and the live objects that follow it.

    The record is replaced on the loop thread only (after creation); any thread may read it.
    """

    def __init__(
        self, record: Lifecycle, sink: Callable[[Lifecycle], None], restored: bool = False
    ) -> None:
        self.record = record
        self.sink = sink  # journals the record, bumps the version, tells the listeners
        self.restored = restored  # loaded from the journal at start-up
        self.trade: Trade | None = None
        self.unconfirmed: dict[str, float] = {}  # modified fields sent, not yet echoed back
        self.placed = 0  # placeOrder messages handed to ib_async: the order's, then its changes'
        self.change_lock = threading.Lock()  # Flask threads: one change checked at a time
        self._count_lock = threading.Lock()  # the count below, from either side
        self._changes_queued = 0  # checked changes the order thread has not taken yet
        self._queued_terms: dict[str, float | None] = {}  # the order after the last of them
        self.verdict_given = threading.Event()
        if record.verdict is not None:
            self.verdict_given.set()
        self.reason_given = threading.Event()  # IB's reason after a bare Inactive
        # when the record got its final verdict (for pruning); a restored one: its last change
        self.finished_at = record.updated_at if is_final(record.verdict) else None
        self.terminal: asyncio.Event | None = None
        self.acknowledged = any(
            t.new in ("PreSubmitted", "Submitted", "ApiPending", "PendingCancel")
            for t in record.transitions
        )

    def sent_terms(self) -> dict[str, float | None]:
        """The order's quantity and prices as sent so far: as the broker last confirmed them,
        with the changes sent and not echoed yet on top (what the next change is sent onto)."""
        unconfirmed, intent = self.unconfirmed, self.record.intent  # each replaced, never mutated
        return {name: unconfirmed.get(name, getattr(intent, name)) for name in TERMS}

    def next_basis(self) -> dict[str, float | None]:
        """What the next change is checked on and sent onto: the order after the changes
        queued before it, else as sent so far (under ``change_lock``)."""
        return dict(self._queued_terms) if self._changes_queued else self.sent_terms()

    def planned(self) -> Lifecycle:
        """The record with the order's quantity and prices as ``next_basis`` has them."""
        terms: dict[str, Any] = self.next_basis()
        return replace(self.record, intent=replace(self.record.intent, **terms))

    def change_queued(self, terms: dict[str, float | None]) -> None:
        """A checked change is queued: ``terms``, the order after it, are the next basis."""
        with self._count_lock:
            self._queued_terms, self._changes_queued = terms, self._changes_queued + 1

    def change_taken(self) -> None:
        """The order thread is done with a queued change (sent it, or not), or it was never
        queued after all."""
        with self._count_lock:
            self._changes_queued = max(0, self._changes_queued - 1)

    @classmethod
    def restored_from(cls, record: Lifecycle, sink: Callable[[Lifecycle], None]) -> Tracker:
        """The tracker of a record loaded from the journal at start-up."""
        tracker = cls(record, sink, restored=True)
        tracker.restore()  # its old window died with the app
        return tracker

    @property
    def id(self) -> str:
        """Our id of the order (also its orderRef)."""
        return self.record.id

    @property
    def cancel_requested(self) -> bool:
        """Someone asked to cancel it (journaled: a restart still sends a waiting cancel)."""
        return self.record.cancel_requested

    def elapsed(self) -> str:
        """Seconds since the order was queued, for the log."""
        return f"[{time.time() - self.record.created_at:5.1f}s]"

    # ----------------------------------------------------------- the only writers
    def _replace(self, **changes: Any) -> None:
        self.record = replace(self.record, updated_at=time.time(), **changes)
        self.sink(self.record)

    def advance(self, event: Event) -> None:
        """Move to the phase the table gives for ``event``."""
        phase = next_phase(self.record.phase, event)
        if phase != self.record.phase:
            self._replace(phase=phase)

    def conclude(self, verdict: Verdict, reason: str) -> bool:
        """Give a verdict (and its phase); False when it is the same one again."""
        record = self.record
        if record.verdict == verdict and record.verdict_reason == reason:
            return False
        if not may_become(record.verdict, verdict):
            raise IllegalTransition(f"{record.id}: no {verdict} after {record.verdict}")
        final = is_final(verdict)
        event = (
            Event.FINISH
            if final
            else (Event.READOPT if is_final(record.verdict) else Event.INTERIM)
        )
        phase = next_phase(record.phase, event)
        self._replace(
            verdict=verdict,
            verdict_reason=reason,
            phase=phase,
            steps=record.steps + (Step(time.time(), f"verdict: {verdict} ({reason})"),),
        )
        self.verdict_given.set()
        self.finished_at = self.record.updated_at if final else None
        if final and self.terminal is not None:
            self.terminal.set()
        return True

    def readopt(self, reason: str) -> None:
        """The broker reports an order we had closed ourselves: follow it again."""
        self._replace(
            phase=next_phase(self.record.phase, Event.READOPT),
            steps=self.record.steps + (Step(time.time(), reason),),
        )

    def step(self, text: str) -> None:
        """Note a step of our own handling."""
        self._replace(steps=self.record.steps + (Step(time.time(), text),))

    def request_cancel(self, text: str) -> None:
        """A cancel was asked for (``text``, the step): kept until the order is done."""
        self._replace(cancel_requested=True, steps=self.record.steps + (Step(time.time(), text),))

    def sent(self, order_id: int, client_id: int | None, status: str | None) -> None:
        """placeOrder returned: the orderId it went out with."""
        self._replace(
            order_id=order_id,
            client_id=client_id,
            status=status,
            steps=self.record.steps + (Step(time.time(), f"sent as orderId {order_id}"),),
        )

    def matched(self, order_id: int, client_id: int) -> None:
        """Matched to the gateway's order on a new connection (its orderId may differ)."""
        self._replace(order_id=order_id, client_id=client_id)

    def broker_status(
        self,
        new: str,
        filled: float,
        remaining: float,
        perm_id: int | None,
        avg_fill_price: float | None,
    ) -> str | None:
        """Take the broker's status; returns the old status. A finished order's remaining is
        what was left unfilled (ib_async's completed orders, read after a restart, have none)."""
        old = self.record.status
        if new in DONE_STATES:
            remaining = max(0.0, self.record.intent.quantity - filled)
        changes: dict[str, Any] = dict(
            status=new,
            filled=filled,
            remaining=remaining,
            perm_id=perm_id or self.record.perm_id,
            avg_fill_price=avg_fill_price,
        )
        if new != old:
            changes["transitions"] = self.record.transitions + (
                StatusChange(time.time(), old, new, filled, remaining),
            )
        self._replace(**changes)
        return old

    def confirmed(self, **values: Any) -> None:
        """The broker's echo of the order after a modify: its quantity and prices."""
        self._replace(
            intent=replace(self.record.intent, **values),
            steps=self.record.steps
            + (Step(time.time(), f"{CHANGE_CONFIRMED}: {change_words(values)}"),),
        )

    def message(self, code: int, text: str, about_change: bool = False) -> None:
        """An error or warning IB sent about the order (``about_change``: it refused a change
        sent, not the order: no reason for a verdict of the order)."""
        said = IBMessage(time.time(), code, text, about_change)
        self._replace(messages=self.record.messages + (said,))

    def wait_verdict(self, timeout: float) -> Lifecycle:
        """The record once it has a verdict (or after ``timeout``); a rejection given on IB's
        bare Inactive also waits for the 201 that follows it with the reason."""
        self.verdict_given.wait(timeout)
        if awaits_reason(self.record):
            self.reason_given.wait(REASON_WAIT)
        return self.record

    def reason_found(self, reason: str) -> None:
        """IB's reason for a verdict given on its bare status: IB reports a rejected order
        Inactive before the 201 that says why."""
        self._replace(
            verdict_reason=reason,
            steps=self.record.steps + (Step(time.time(), f"the broker's reason: {reason}"),),
        )
        self.reason_given.set()

    def fills_added(
        self, fills: tuple[FillRecord, ...], perm_id: int | None, step: str | None = None
    ) -> None:
        """New executions (live, or recovered from the gateway's list)."""
        every, notes = executions.merged(self.record.fills, fills)
        now = time.time()
        steps = self.record.steps + tuple(Step(now, s) for s in (*notes, *([step] if step else [])))
        shares = sum(f.shares for f in every)
        avg = sum(f.shares * f.price for f in every) / shares if shares else None
        self._replace(
            fills=every,
            perm_id=self.record.perm_id or perm_id,
            filled=max(self.record.filled, shares),
            avg_fill_price=avg if avg is not None else self.record.avg_fill_price,
            steps=steps,
        )

    def commission(self, exec_id: str, commission: float) -> None:
        """The commission report of one execution."""
        self.commissions({exec_id: commission})

    def commissions(self, found: dict[str, float], step: str | None = None) -> None:
        """Commissions of executions by execId (live, or recovered from the gateway's list)."""
        self._replace(
            fills=tuple(
                replace(f, commission=found[f.exec_id]) if f.exec_id in found else f
                for f in self.record.fills
            ),
            steps=self.record.steps + ((Step(time.time(), step),) if step else ()),
        )

    def linked(self, children: tuple[str, ...]) -> None:
        """Our ids of a bracket's legs."""
        self._replace(children=children)

    def restore(self) -> None:
        """Loaded from the journal: its old window died with the app."""
        if not is_final(self.record.verdict):
            self.advance(Event.RESTORE)


def average_price(record: Lifecycle) -> float | None:
    """The average price of the record's fills."""
    shares = sum(f.shares for f in record.fills)
    return sum(f.shares * f.price for f in record.fills) / shares if shares else None
