"""Live marks on the reader connection: reqPnL for the account, reqPnLSingle per position.

IB pushes ``pnl`` / ``pnlSingle`` about once a second while prices move (account values and
portfolio rows only every few minutes on a real gateway), so positions' price, value, unrealized
and daily P&L come from here when IB has sent them, and the account's daily and unrealized P&L
are the same instant's figures: the rows add up to the account.

Runs on the connector's loop (``sync`` after every position change). Pure bookkeeping apart
from the ib_async calls; ``figures`` / ``row_marks`` are read when the snapshot is rebuilt.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from ib_async import IB

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Mark:
    """pnlSingle of one position (None: IB has not said)."""

    daily_pnl: float | None
    unrealized_pnl: float | None
    realized_pnl: float | None
    value: float | None
    position: float | None = None  # the position IB's figures are of (signed)


def _num(value: float | None) -> float | None:
    if value is None or math.isnan(value) or abs(value) >= 1.7e308:
        return None
    return float(value)


class LiveMarks:
    """The P&L subscriptions of one account on one connection."""

    def __init__(self, ib: IB, account: str) -> None:
        self.ib, self.account = ib, account
        self._singles: set[int] = set()
        self._pnl = False

    def sync(self) -> None:
        """Subscribe the account and every open position; cancel closed positions."""
        if not self.account or not self.ib.isConnected():
            return
        if not self._pnl:
            self.ib.reqPnL(self.account)
            self._pnl = True
        # a fill's position and portfolio messages come in either order: a position is held
        # as soon as either says so (each event calls this only when its quantity changed)
        held = {p.contract.conId for p in self.ib.positions(self.account) if p.position}
        held |= {i.contract.conId for i in self.ib.portfolio(self.account) if i.position}
        for con_id in held - self._singles:
            self.ib.reqPnLSingle(self.account, "", con_id)
        for con_id in self._singles - held:
            try:
                self.ib.cancelPnLSingle(self.account, "", con_id)
            except Exception:
                log.exception("cancelPnLSingle %s failed; carrying on", con_id)
        self._singles = held

    def forget(self) -> None:
        """The connection went away: its subscriptions with it."""
        self._singles.clear()
        self._pnl = False

    def figures(self) -> dict[str, float | None]:
        """The account's daily, unrealized and realized P&L ({} before IB's first pnl)."""
        for pnl in self.ib.pnl(self.account):
            return {
                "daily_pnl": _num(pnl.dailyPnL),
                "unrealized_pnl": _num(pnl.unrealizedPnL),
                "realized_pnl": _num(pnl.realizedPnL),
            }
        return {}

    def row_marks(self) -> dict[int, Mark]:
        """pnlSingle by conId."""
        return {
            single.conId: Mark(
                _num(single.dailyPnL),
                _num(single.unrealizedPnL),
                _num(single.realizedPnL),
                _num(single.value),
                _num(single.position),
            )
            for single in self.ib.pnlSingle(self.account)
        }
