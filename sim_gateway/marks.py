"""Marks moving with the market, pushed as IB does (a mixin of ``GatewayServer``).

IB pushes ``pnl`` and ``pnlSingle`` about once a second while prices move, and
``updatePortfolio`` / ``updateAccountValue`` when a row changed. The broker's fill events
already carry fresh rows; between fills this step (from the ticker, at most once per
``MARK_INTERVAL`` seconds of wall time) sends every subscription the values that changed since
it last saw them. Nothing is sent while an outage holds the broker's messages.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from . import broker as b
from . import protocol as p
from .types import AccountValue

if TYPE_CHECKING:
    from .server import Session

log = logging.getLogger(__name__)

MARK_INTERVAL = 1.0


class MarkStreams:
    """Pushes of P&L, portfolio rows and account values on price moves."""

    broker: b.Broker
    sessions: list[Session]
    _last_marks: float = 0.0
    pnl_delay: float  # seconds a position's pnlSingle comes after its change (0: with it)
    _pnl_held: dict[int, float]  # conId -> when its late pnlSingle is due (monotonic)

    def _send(self, session: Session, fields: list[str]) -> None:
        raise NotImplementedError

    def _hhmm(self) -> str:
        raise NotImplementedError

    def _stream_marks(self) -> None:
        now = time.monotonic()
        if now - self._last_marks < MARK_INTERVAL:
            return
        self._last_marks = now
        watching = [
            s for s in self.sessions if s.started and (s.pnl or s.pnl_single or s.account_updates)
        ]
        if not watching:
            return
        pnl = self.broker.pnl()
        singles: dict[int, Any] = {}
        portfolio = {item.contract.con_id: item for item in self.broker.portfolio()}
        values = self.broker.account_values()
        for session in watching:
            for req_id in session.pnl:
                self._push(session, ("pnl", req_id), pnl, p.pnl(req_id, pnl))
            for req_id, con_id in session.pnl_single.items():
                if con_id in self._pnl_held:
                    continue  # its pnlSingle comes late (pnl_delay), with the figures of then
                if con_id not in singles:
                    singles[con_id] = self.broker.pnl_single(con_id)
                single = singles[con_id]
                if single is not None:
                    self._push(session, ("single", req_id), single, p.pnl_single(req_id, single))
            if not session.account_updates:
                continue
            changed = False
            for con_id, item in portfolio.items():
                changed |= self._push(session, ("portfolio", con_id), item, p.portfolio_value(item))
            changed |= self._push_account_values(session, values)
            if changed:
                self._send(session, p.account_update_time(self._hhmm()))

    def _push_account_values(
        self, session: Session, values: Iterable[AccountValue], multi: int | None = None
    ) -> bool:
        """Send the account values that differ from what this subscription (reqAccountUpdates,
        or reqAccountUpdatesMulti ``multi``) saw last: IB sends the changed ones, not the whole
        account, on a fill and as prices move."""
        changed = False
        for value in values:
            fields = (
                p.account_value(value)
                if multi is None
                else p.account_update_multi(multi, value, "")
            )
            changed |= self._push(session, account_key(value, multi), value.value, fields)
        return changed

    def _pnl_single_later(self, con_id: int) -> None:
        """A position changed: its pnlSingle comes ``pnl_delay`` later, as IB sends them on a
        cadence of their own, with the figures of then; until then the reader keeps the one
        of before (of the old quantity)."""
        due = time.monotonic() + self.pnl_delay
        self._pnl_held[con_id] = due
        asyncio.get_running_loop().call_later(self.pnl_delay, self._pnl_single_due, con_id, due)

    def _pnl_single_due(self, con_id: int, due: float) -> None:
        if self._pnl_held.get(con_id) != due:
            return  # changed again meanwhile: that change's comes later
        del self._pnl_held[con_id]
        single = self.broker.pnl_single(con_id)
        if single is None:
            return
        for session in self.sessions:
            for req_id, subscribed in session.pnl_single.items():
                if subscribed == con_id:
                    self._push(session, ("single", req_id), single, p.pnl_single(req_id, single))

    def _push(self, session: Session, key: tuple, value: Any, fields: list[str]) -> bool:
        """Send ``fields`` if ``value`` differs from what this subscription saw last."""
        if session.marks_sent.get(key) == value:
            return False
        session.marks_sent[key] = value
        self._send(session, fields)
        return True


def account_key(value: AccountValue, multi: int | None = None) -> tuple:
    """Where a session's ``marks_sent`` keeps the last ``value`` its subscription saw."""
    return ("account", value.key, value.currency, multi)
