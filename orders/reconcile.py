"""Reconciliation after every connect: the gateway's reports in, decisions out.

What ib_async synced at connect (this client's open orders, completed orders, executions) is
turned into plain reports keyed by orderRef (= our id); ``decide`` compares them with our
records and returns decisions, which ``Reconciler`` applies through the order book. Nothing is
ever resent: an order not found is re-checked after ``RECONCILE_GRACE`` seconds and then marked
``not_placed``; if the broker reports it later after all, it is re-adopted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from ib_async import IB
from ib_async.order import Trade

from ib_compat import WORKING_STATES, executions, live_trades, number
from journal import Journal
from order_records import FillRecord, Lifecycle
from orders.executions import EPS, merged
from orders.lifecycle import (
    BROKER_FINAL,
    OUR_FINAL,
    Tracker,
    Verdict,
    awaits_commission,
    is_final,
    may_become,
)
from orders.tracking import OrderBook, foreign_echo

log = logging.getLogger(__name__)

CALL_TIMEOUT = 5.0


@dataclass(frozen=True)
class OrderReport:
    """One of our orders as the gateway reports it (``trade`` is ib_async's handle)."""

    ref: str
    live: bool
    trade: Any


@dataclass(frozen=True)
class Candidate:
    """One of our records as reconciliation sees it."""

    record: Lifecycle
    restored: bool  # loaded from the journal at start: maybe sent before a crash


class Action(StrEnum):
    """What to do with one record."""

    ADOPT = "adopt"  # follow the gateway's order (live, or closed with its final state)
    FILLS = "fills"  # add executions the record does not have
    COMMISSIONS = "commissions"  # the gateway's commission of fills the record has without one
    FOLLOW = "follow"  # a finished record still short of a commission: its trade's later reports
    AWAIT = "await"  # not found (yet): look again after the grace period
    NOT_PLACED = "not_placed"  # not found after the grace period; never resent
    # not found, but the gateway's executions of it add up to its quantity / to less
    FILLED = "filled"
    PART_EXECUTED = "part_executed"  # after the grace period: unknown, check TWS


@dataclass(frozen=True)
class Decision:
    """One decision about one record."""

    action: Action
    ref: str
    order: OrderReport | None = None
    fills: tuple[FillRecord, ...] = ()


def decide(
    candidates: Iterable[Candidate],
    orders: dict[str, OrderReport],
    fills: dict[str, list[FillRecord]],
    final: bool,
) -> list[Decision]:
    """Decisions for every record from the gateway's reports; ``final`` after the grace."""
    decisions = []
    for candidate in candidates:
        record = candidate.record
        reported = fills.get(record.id, ())
        decisions += _fill_decisions(record, reported)
        report = orders.get(record.id)
        executed = _executed(record, reported)
        if record.verdict in BROKER_FINAL and not _filled_after_all(record, report, executed):
            if report is not None and awaits_commission(record):
                decisions.append(Decision(Action.FOLLOW, record.id, report))
            continue
        if report is not None:
            decisions.append(Decision(Action.ADOPT, record.id, report))
        elif _adds_up(record, executed):  # IB filled it
            if may_become(record.verdict, Verdict.FILLED):
                decisions.append(Decision(Action.FILLED, record.id))
        elif record.verdict in OUR_FINAL:
            continue
        elif candidate.restored or record.order_id is not None:  # sent (or maybe), not seen
            gone = Action.PART_EXECUTED if executed > 0 else Action.NOT_PLACED
            decisions.append(Decision(gone if final else Action.AWAIT, record.id))
    return decisions


def _adds_up(record: Lifecycle, executed: float) -> bool:
    """Whether ``executed`` shares fill the record's quantity."""
    return executed > 0 and executed + EPS >= record.intent.quantity


def _executed(record: Lifecycle, reported: Sequence[FillRecord]) -> float:
    """Shares executed by the record's fills and the gateway's executions of it (a gateway
    may list the day's executions of an order it no longer lists)."""
    kept, _ = merged(record.fills, tuple(reported))
    return sum(f.shares for f in kept)


def _filled_after_all(record: Lifecycle, report: OrderReport | None, executed: float) -> bool:
    """A record we closed as cancelled or rejected that the gateway reports filled, or whose
    executions add up to its quantity (a cancel that crossed the fill, an error ib_async took
    for a cancel): the fill wins."""
    trade = report.trade if report is not None else None
    filled = trade is not None and trade.orderStatus.status == "Filled"
    filled = filled or _adds_up(record, executed)
    return filled and may_become(record.verdict, Verdict.FILLED)


def _fill_decisions(record: Lifecycle, reported: Sequence[FillRecord]) -> list[Decision]:
    """Executions the record lacks, and commissions it lacks (a report lost with a dropped
    connection between the execution and its commission)."""
    known = {f.exec_id: f for f in record.fills}
    kept, _ = merged(record.fills, tuple(reported))  # nor one a correction it has replaced
    new = tuple(f for f in kept if f.exec_id not in known)
    priced = tuple(
        f
        for f in reported
        if f.exec_id in known and known[f.exec_id].commission is None and f.commission is not None
    )
    return [
        Decision(action, record.id, fills=found)
        for action, found in ((Action.FILLS, new), (Action.COMMISSIONS, priced))
        if found
    ]


def order_reports(ib: IB, refs: Iterable[str]) -> dict[str, OrderReport]:
    """ib_async's trades that carry one of our ids, live ones preferred over done ones."""
    wanted = set(refs)
    live = set(map(id, live_trades(ib)))
    found: dict[str, OrderReport] = {}
    for trade in ib.trades():
        ref = trade.order.orderRef
        if ref in wanted and (ref not in found or id(trade) in live):
            found[ref] = OrderReport(ref, id(trade) in live, trade)
    return found


def fill_reports(ib: IB) -> dict[str, list[FillRecord]]:
    """ib_async's fills grouped by the orderRef of their execution."""
    grouped: dict[str, list[FillRecord]] = {}
    for fill in ib.fills():
        ex, report = fill.execution, fill.commissionReport
        grouped.setdefault(ex.orderRef or "", []).append(
            FillRecord(
                exec_id=ex.execId,
                at=fill.time.timestamp() if fill.time else 0.0,
                shares=ex.shares,
                price=ex.price,
                commission=number(report.commission) if report.execId else None,
            )
        )
    return grouped


class Records(Protocol):
    """Where the records are kept (the order handler): the journal, and the sink each
    record's changes go through."""

    journal: Journal

    def sink(self, record: Lifecycle) -> None: ...


class Reconciler:
    """Matches our records with the gateway after every connect, and later reports."""

    def __init__(
        self,
        book: OrderBook,
        grace: float,
        spawn: Callable[[Any], None],
        records: Records | None = None,
    ) -> None:
        self.book = book
        self.grace = grace
        self._spawn = spawn  # runs a coroutine as a tracked task of the handler
        self._records = records  # the journal, for records no longer in memory

    def reconcile(self, ib: IB) -> None:
        """Match every record at connect; re-check the ones not found after the grace."""
        self.book.by_order_id.clear()  # orderIds may have been reissued after a restart
        for trade in live_trades(ib):
            self._recall(trade.order.orderRef)
        waiting = self._apply(ib, self._decide(ib, final=False))
        if waiting:
            log.warning(
                "🔎 %d order(s) not found at the gateway yet: %s", len(waiting), ", ".join(waiting)
            )
            self._spawn(self._resolve_unknown(ib, waiting))

    def _decide(self, ib: IB, final: bool, only: set[str] | None = None) -> list[Decision]:
        trackers = [t for t in self.book.all() if only is None or t.id in only]
        candidates = [Candidate(t.record, t.restored) for t in trackers]
        return decide(
            candidates, order_reports(ib, (t.id for t in trackers)), fill_reports(ib), final
        )

    def _apply(self, ib: IB, decisions: list[Decision]) -> list[str]:
        """Carry out the decisions; returns the ids still awaited."""
        waiting = []
        for decision in decisions:
            tracker = self.book.get(decision.ref)
            if tracker is None:
                continue
            if decision.action is Action.FILLS:
                tracker.fills_added(
                    decision.fills,
                    None,
                    f"recovered {len(decision.fills)} fill(s) from the gateway's executions",
                )
            elif decision.action is Action.COMMISSIONS:
                tracker.commissions(
                    {f.exec_id: f.commission for f in decision.fills if f.commission is not None},
                    f"recovered {len(decision.fills)} commission(s) from the gateway's executions",
                )
            elif decision.action is Action.ADOPT and decision.order is not None:
                self.adopt(ib, tracker, decision.order.trade, decision.order.live)
            elif decision.action is Action.FOLLOW and decision.order is not None:
                self.book.follow_commissions(tracker, decision.order.trade)
            elif decision.action is Action.AWAIT:
                waiting.append(tracker.id)
            elif decision.action is Action.NOT_PLACED and not is_final(tracker.record.verdict):
                self.book.verdict(tracker, Verdict.NOT_PLACED, self._gone(tracker.record))
            else:
                self._executed_not_listed(tracker, decision.action)
        return waiting

    def _recall(self, ref: str) -> Tracker | None:
        """A record the broker works that memory no longer holds: one we had concluded not
        placed or not sent, dropped from memory (and not loaded at a restart) once 500 others
        had finished after it. From the journal, to be re-adopted: tracked, counted and
        cancellable again."""
        if not ref or self._records is None or self.book.get(ref):
            return None
        entry = self._records.journal.get(ref)
        if entry is None or entry.record.verdict not in OUR_FINAL:
            return None
        tracker = Tracker.restored_from(entry.record, self._records.sink)
        tracker.finished_at = time.time()  # the newest finished: not pruned before its adoption
        self.book.add(tracker)
        log.warning(
            "🔎 %s: the broker works an order we had concluded %s", ref, tracker.record.verdict
        )
        return tracker

    def _executed_not_listed(self, tracker: Tracker, action: Action) -> None:
        """The gateway lists executions of the order but not the order: filled when they add
        up to its quantity, else unknown (it reached IB; the rest may still work there)."""
        if action is Action.FILLED:
            reason = "its executions add up to its quantity (the gateway lists no order of it)"
            self.book.verdict(tracker, Verdict.FILLED, reason)
        elif action is Action.PART_EXECUTED and not is_final(tracker.record.verdict):
            done = _executed(tracker.record, ())
            self.book.verdict(
                tracker,
                Verdict.UNKNOWN,
                f"{done:g} of {tracker.record.intent.quantity:g} executed at IB, but the gateway "
                "lists no order of it: the rest may still work there; check TWS; never resent",
            )

    def _gone(self, record: Lifecycle) -> str:
        """The reason of a not_placed verdict: never acknowledged, or acknowledged once and in
        none of the gateway's reports now (done at IB beyond what it reports, or a gateway
        that lost its orders): the trader checks TWS."""
        missing = f"not found at the gateway {self.grace:g}s after reconnecting"
        acked = [t.new for t in record.transitions if t.new in WORKING_STATES]
        if not acked:
            return f"{missing}; never resent"
        return (
            f"acknowledged by the broker ({acked[-1]}) but {missing}, open or completed: it "
            "may have ended at IB beyond what the gateway reports; check TWS; never resent"
        )

    async def _resolve_unknown(self, ib: IB, waiting: list[str]) -> None:
        """After the grace, ask the gateway again; what is still missing was not placed."""
        while waiting and ib.isConnected():
            await asyncio.sleep(self.grace)
            try:
                await asyncio.wait_for(ib.reqOpenOrdersAsync(), CALL_TIMEOUT)
                await asyncio.wait_for(ib.reqCompletedOrdersAsync(False), CALL_TIMEOUT)
                await executions(ib, CALL_TIMEOUT, log=log)
            except (TimeoutError, ConnectionError) as exc:
                log.warning(
                    "🔎 re-check of %d order(s) failed (%s); trying again", len(waiting), exc
                )
                continue
            self._apply(ib, self._decide(ib, final=True, only=set(waiting)))
            waiting = []

    def adopt(self, ib: IB, tracker: Tracker, trade: Trade, live: bool) -> None:
        """Attach a record to the gateway's view of its order."""
        if trade is tracker.trade:  # followed all along (after 1102): only the index was reset
            self.book.index(tracker, trade)
            return
        tracker.step("matched at the gateway after reconnect" + ("" if live else " (done)"))
        if live:
            self.book.bind(tracker, trade)
            tracker.matched(trade.order.orderId, trade.order.clientId)
            self.book.on_echo(tracker, trade)  # a change the broker made while we were away
            if tracker.cancel_requested:
                self.book.cancel(ib, tracker, trade)
                tracker.step("pending cancel sent")
        else:  # finished while we were away: its fills' commissions may come after them
            self.book.follow_commissions(tracker, trade)
        if tracker.terminal is None:
            tracker.terminal = asyncio.Event()
        self.book.apply_status(tracker, trade)

    def on_open_order(self, ib: IB, trade: Trade) -> None:
        """A later openOrder of ours on this connection that no tracker follows: adopt it."""
        mine = self.book.by_order_id.get(trade.order.orderId)
        if mine is not None and mine.trade is trade and foreign_echo(mine, trade):
            return  # another order's, with our orderId: our trade has its fields back
        tracker = self.book.get(trade.order.orderRef) or self._recall(trade.order.orderRef)
        if tracker is not None and tracker.trade is trade:
            self.book.on_echo(tracker, trade)  # e.g. a modify confirmed with no status change
            return
        if tracker is None or tracker.record.verdict in BROKER_FINAL:
            return
        if tracker.trade is None or tracker.record.verdict in OUR_FINAL:
            self.adopt(ib, tracker, trade, trade in live_trades(ib))
