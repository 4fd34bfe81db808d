"""The read path's table of every client's orders and executions: the pacing of its refreshes."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ib_async import IB, Contract
from ib_async.objects import Fill
from ib_async.order import Order, OrderState, OrderStatus, Trade

import ib_compat
from ib_connection import IBConnection
from loop_thread import wait_event
from orders.executions import correction_of
from reader_rows import ExecutionRow, OrderRow, _execution_row, _order_row

REFRESH_INTERVAL = 1.0  # poll for other clients' orders at least this often
# coalesce bursts of triggers: each refresh asks for the executions of the last seconds again,
# and at 0.05 s a burst of 50 orders with another trader filling meanwhile had the reader decode
# a thousand executions a second (pacing_vs_raw with its background trader: 1.30-1.52 -> 1.10)
REFRESH_MIN_GAP = 0.2
KEEP_COMPLETED = 500  # completed orders in the snapshot (newest first)
KEEP_EXECUTIONS = 1000  # executions in the snapshot (newest first)
EXEC_OVERLAP = 2.0  # s: executions re-asked before the newest one seen (filter has 1 s steps)
EXEC_SWEEP = 5.0  # s: ask for new executions at least this often, hint or not
EXEC_WAIT = 10.0  # s: for the executions answer's end
EXEC_WAIT_HUNG = 1.0  # s: for it after one never ended (ib_compat.executions)
COMPLETED_SWEEP = 30.0  # s: ask for completed orders at least this often
COMPLETED_DUTY = 0.1  # at most this share of the time goes to asking for completed orders


@dataclass
class _OrderBook:
    """Mutable order/execution tables, touched only on the loop thread."""

    orders: dict[int, OrderRow] = field(default_factory=dict)  # by permId
    executions: dict[str, ExecutionRow] = field(default_factory=dict)  # by execId
    uncommissioned: set[str] = field(default_factory=set)  # execIds still without a report


@dataclass
class _DutyPacer:
    """Spaces a costly request so that it takes at most ``duty`` of the time."""

    duty: float
    next_at: float = 0.0  # monotonic
    last_at: float = 0.0  # monotonic; 0 = never

    def ready(self, now: float) -> bool:
        """True when the request may run now."""
        return now >= self.next_at

    def ran(self, started: float, ended: float) -> None:
        """Record one run; the next may start after a pause in proportion to its cost."""
        self.last_at = ended
        self.next_at = ended + (ended - started) * (1 - self.duty) / self.duty


class _CompletedSink:
    """Rows of one reqCompletedOrders answer, newest ``keep`` by permId, built as they arrive."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.rows: dict[int, OrderRow] = {}
        self.count = 0

    def add(self, row: OrderRow) -> None:
        """Take one row; trim in batches so that the answer never piles up."""
        self.count += 1
        self.rows[row.perm_id] = row
        if len(self.rows) >= 2 * self.keep:
            self.trim()

    def trim(self) -> dict[int, OrderRow]:
        """Keep the newest ``keep`` rows; returns them."""
        if len(self.rows) > self.keep:
            newest = sorted(self.rows, reverse=True)[: self.keep]
            self.rows = {perm_id: self.rows[perm_id] for perm_id in newest}
        return self.rows


log = logging.getLogger(__name__)


class OrderTable(IBConnection):
    """The reader's order and execution table, refreshed cheaply however many orders the day has
    seen (see ``ib_connector``'s module docstring for the rules)."""

    _book: _OrderBook
    _completed: _DutyPacer
    _completed_pending: bool
    _completed_sink: _CompletedSink | None
    _executions_at: float
    _executions_from: float | None
    _executions_wanted: bool
    _orders_updated_at: float | None
    if TYPE_CHECKING:  # IBConnector's own: the snapshot from the table

        def _rebuild(self) -> None: ...
        def _schedule_rebuild(self) -> None: ...

    _refresh_wanted: asyncio.Event | None
    own_client_id: int | None
    refreshes: int
    _executions_hung = False  # the last executions answer never ended (TWS 10.30.1)
    # (orderRef, execId) -> the commission the order connection was told (see _own_commissions)
    own_commission: Callable[[str, str], float | None] | None = None

    async def _refresher(self, ib: IB) -> None:
        """Refresh the order table when asked, and at least every second."""
        assert self._refresh_wanted is not None
        wanted = self._refresh_wanted
        while ib.isConnected():
            timeout = REFRESH_INTERVAL
            if self._completed_pending:  # come back as soon as the pacer allows
                timeout = min(timeout, max(0.0, self._completed.next_at - time.monotonic()))
            await wait_event(wanted, timeout)
            wanted.clear()
            try:
                await self._refresh_orders(ib)
            except (TimeoutError, ConnectionError) as exc:
                log.warning("order refresh failed: %s", exc)
            self._rebuild()
            self.refreshes += 1
            await asyncio.sleep(REFRESH_MIN_GAP)

    async def _refresh_orders(self, ib: IB, full: bool = False) -> None:
        """Every client's open orders; new executions when hinted, when an open order vanished
        or every EXEC_SWEEP s; completed orders only when needed (see the module docstring)."""
        book, now = self._book, time.monotonic()
        asked_at = time.time()  # the list is as of its request: its answer may come much later
        asked = full or self._executions_wanted or now - self._executions_at >= EXEC_SWEEP
        # both requests go out at once, open orders first: the gateway answers in order, so the
        # executions are at least as new as the open-order list (what _close_vanished needs)
        open_answer = asyncio.wait_for(ib.reqAllOpenOrdersAsync(), 10)
        if asked:
            open_trades, fresh = await asyncio.gather(open_answer, self._fetch_executions(ib))
        else:
            open_trades, fresh = await open_answer, []
        open_rows = {
            row.perm_id: row for row in (_order_row(trade, is_open=True) for trade in open_trades)
        }
        vanished = {p: row for p, row in book.orders.items() if row.open and p not in open_rows}
        if vanished and not asked:
            fresh = await self._fetch_executions(ib)
        done = {p: row for p, row in book.orders.items() if not row.open}
        unexplained = self._close_vanished(vanished, done)
        unknown = {
            e.perm_id
            for e in fresh
            if e.perm_id not in book.orders
            and e.perm_id not in open_rows
            and e.client_id != self.own_client_id
        }
        needed = (
            full
            or bool(unexplained or unknown)
            or self._completed_pending
            or now - self._completed.last_at >= COMPLETED_SWEEP
        )
        if needed and self._completed.ready(now):
            done.update(await self._fetch_completed(ib))
            unexplained = {p: row for p, row in unexplained.items() if p not in done}
            self._completed_pending = False
        else:
            self._completed_pending = needed
        # a vanished order not yet explained keeps its last known row until it is
        orders: dict[int, OrderRow] = {**done, **unexplained, **open_rows}
        self._book.orders = orders
        self._own_commissions()
        self._trim(ib, open_trades)
        link = self.link.state  # during 1100 the gateway answers from what it knew: not news
        if link.reachable and (link.since is None or link.since <= asked_at):
            self._orders_updated_at = asked_at

    async def _fetch_executions(self, ib: IB) -> list[ExecutionRow]:
        """Executions since the previous ask (every one after a connect); returns those not
        seen before."""
        self._executions_wanted = False
        self._executions_at = time.monotonic()
        # "since" is written on the GATEWAY's clock (minus an overlap for late reports): its
        # executions are stamped by it, so our clock and time zone do not matter
        offset, start = self.gateway_clock_offset, self._executions_from
        since = (
            ""
            if offset is None or start is None
            else datetime.fromtimestamp(start + offset - EXEC_OVERLAP, UTC).strftime(
                "%Y%m%d-%H:%M:%S"
            )
        )
        asked_at = time.time()
        hung = self._executions_hung  # after an answer that never ended, wait less for the next
        fills, ended = await ib_compat.executions(ib, EXEC_WAIT_HUNG if hung else EXEC_WAIT, since)
        if ended == hung:
            if hung:
                log.info("✅ The gateway ends its executions answers again")
            else:
                log.warning(ib_compat.HUNG_EXECUTIONS, EXEC_WAIT)
        self._executions_hung = not ended
        self._executions_from = asked_at  # once answered (or the end given up on): a
        return self._absorb_executions(ib, fills)  # failed ask (the connection lost) is again

    def _absorb_executions(self, ib: IB, fills: list[Fill]) -> list[ExecutionRow]:
        """Put fills into the book (with their commission, which may come later); a correction
        of an execution (``orders.executions.correction_of``) takes the place of the one it
        corrects."""
        book, stored = self._book, ib.wrapper.fills
        fresh = []
        by_base = {correction_of(e)[0]: e for e in book.executions}  # one each: see _corrected
        for answer in fills:
            fill = stored.get(answer.execution.execId, answer)  # the one reports update
            row = _execution_row(fill)
            if _corrected(book.executions, by_base, row.exec_id):
                continue  # IB's correction of it is listed: the correction stands for it
            old = book.executions.get(row.exec_id)
            if old is None:
                fresh.append(row)
            elif row.commission is None and old.commission is not None:
                continue  # asked again in the overlap: what we have is better
            book.executions[row.exec_id] = row
            if row.commission is None:
                book.uncommissioned.add(row.exec_id)
        for exec_id in list(book.uncommissioned):  # commission reports that came later
            reported = stored.get(exec_id)
            if exec_id not in book.executions:
                book.uncommissioned.discard(exec_id)
            elif reported is not None and reported.commissionReport.execId:
                book.executions[exec_id] = _execution_row(reported)
                book.uncommissioned.discard(exec_id)
        return fresh

    def _own_commissions(self) -> None:
        """Our own fills' commissions from the order connection: IB reports a fill's
        commission to the client that placed it and to the Master API client only, so the
        reader (not the master) lists the executions of our orders without one."""
        lookup, book = self.own_commission, self._book
        if lookup is None:
            return
        for exec_id in list(book.uncommissioned):
            row = book.executions.get(exec_id)
            if row is None or row.client_id != self.own_client_id or not row.order_ref:
                continue
            commission = lookup(row.order_ref, exec_id)
            if commission is not None:
                book.executions[exec_id] = replace(row, commission=commission)
                book.uncommissioned.discard(exec_id)

    async def _fetch_completed(self, ib: IB) -> dict[int, OrderRow]:
        """The newest KEEP_COMPLETED completed orders of every client, as rows."""
        sink = _CompletedSink(KEEP_COMPLETED)
        self._completed_sink = sink
        started = time.monotonic()
        try:
            await asyncio.wait_for(ib.reqCompletedOrdersAsync(False), 10)
        finally:
            self._completed_sink = None
            self._completed.ran(started, time.monotonic())
        rows = sink.trim()
        self._fill_order_ids(rows)
        log.debug("%d completed orders in %.0f ms", sink.count, (time.monotonic() - started) * 1000)
        return rows

    def _on_completed_order(
        self, contract: Contract, order: Order, order_state: OrderState
    ) -> None:
        """Replaces ib_async's ``wrapper.completedOrder`` on this connection: a row at once,
        and no ``Trade`` kept (ib_async would keep one per completed order of the day)."""
        sink = self._completed_sink
        if sink is None:
            log.warning("completed order %s outside a request; ignored", order.permId)
            return
        trade = Trade(
            Contract.recreate(contract),
            order,
            OrderStatus(orderId=order.orderId, status=order_state.status),
        )
        sink.add(_order_row(trade, is_open=False))

    def _close_vanished(
        self, vanished: dict[int, OrderRow], done: dict[int, OrderRow]
    ) -> dict[int, OrderRow]:
        """Open orders no longer open whose executions cover their whole quantity are Filled
        (added to ``done``); returns the others, which need the completed orders."""
        if not vanished:
            return {}
        fills: dict[int, list[ExecutionRow]] = {}
        for execution in self._book.executions.values():
            if execution.perm_id in vanished:
                fills.setdefault(execution.perm_id, []).append(execution)
        unexplained = {}
        for perm_id, row in vanished.items():
            own = fills.get(perm_id, [])
            shares = sum(e.shares for e in own)
            if row.quantity and math.isclose(shares, row.quantity):
                done[perm_id] = replace(
                    row,
                    status="Filled",
                    filled=shares,
                    remaining=0.0,
                    open=False,
                    avg_fill_price=sum(e.shares * e.price for e in own) / shares,
                )
            else:
                unexplained[perm_id] = row
        return unexplained

    def _trim(self, ib: IB, open_trades: list[Trade]) -> None:
        """Bound memory: the newest completed orders and executions only, and none of
        ib_async's objects for orders that are no longer open (the gateway has them)."""
        book = self._book
        done = sorted((p for p, row in book.orders.items() if not row.open), reverse=True)
        for perm_id in done[KEEP_COMPLETED:]:
            del book.orders[perm_id]
        if len(book.executions) > KEEP_EXECUTIONS:
            newest = sorted(book.executions.values(), key=lambda e: e.time, reverse=True)
            book.executions = {e.exec_id: e for e in newest[:KEEP_EXECUTIONS]}
            book.uncommissioned &= book.executions.keys()  # a dropped row waits for nothing
        live = {id(trade) for trade in open_trades}
        wrapper = ib.wrapper
        tables: tuple[dict[Any, Trade], ...] = (wrapper.trades, wrapper.permId2Trade)
        for table in tables:
            for key in [k for k, trade in table.items() if id(trade) not in live]:
                del table[key]
        # rows are in the book; keep only fills whose commission report may still come
        for exec_id in [k for k in wrapper.fills if k not in book.uncommissioned]:
            del wrapper.fills[exec_id]

    def _fill_order_ids(self, orders: dict[int, OrderRow]) -> None:
        """completedOrder carries no orderId, clientId or fill price: take them from
        what we saw of the order before, or from its executions."""
        known = self._book.orders
        fills: dict[int, list[ExecutionRow]] = {}
        for execution in self._book.executions.values():
            if execution.perm_id in orders:
                fills.setdefault(execution.perm_id, []).append(execution)
        for perm_id, row in list(orders.items()):
            old = known.get(perm_id)
            own = fills.get(perm_id, [])
            order_id = (
                row.order_id or (old.order_id if old else 0) or (own[0].order_id if own else 0)
            )
            client_id = (
                row.client_id or (old.client_id if old else 0) or (own[0].client_id if own else 0)
            )
            shares = sum(e.shares for e in own)
            avg = row.avg_fill_price or (
                sum(e.shares * e.price for e in own) / shares if shares else None
            )
            if (order_id, client_id, avg) != (row.order_id, row.client_id, row.avg_fill_price):
                orders[perm_id] = replace(
                    row, order_id=order_id, client_id=client_id, avg_fill_price=avg
                )


def _corrected(executions: dict[str, ExecutionRow], by_base: dict[str, str], exec_id: str) -> bool:
    """True when ``executions`` holds a later correction of ``exec_id``; else the execution it
    corrects, if listed, leaves (IB lists the original and its correction side by side).
    ``by_base``: the execution listed for each execution corrected or not (kept up to date)."""
    base, number = correction_of(exec_id)
    listed = by_base.get(base)
    if listed is not None and listed != exec_id:
        if correction_of(listed)[1] > number:
            return True
        executions.pop(listed, None)
    by_base[base] = exec_id
    return False
