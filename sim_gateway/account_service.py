"""Account, position and P&L requests of ``GatewayServer`` (a mixin): reqPositions,
reqAccountUpdates(Multi), reqAccountSummary, reqPnL and reqPnLSingle and their cancels.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from . import broker as b
from . import protocol as p
from .marks import account_key
from .types import AccountValue

if TYPE_CHECKING:
    from .clock import SimClock
    from .connections import Session

MAX_SUMMARY_SUBSCRIPTIONS = 2


_SUMMARY_ALIASES = {"$LEDGER", "$LEDGER:ALL", "$LEDGER:USD"}


def _summary_rows(
    values: tuple[AccountValue, ...] | list[AccountValue], tags: frozenset[str]
) -> list[AccountValue]:
    """The account values an accountSummary subscription with ``tags`` should see."""
    every = bool(tags & _SUMMARY_ALIASES)
    return [v for v in values if v.key in tags or (every and v.currency)]


class AccountHandlers:
    """Subscriptions to positions, account values and P&L (state in ``Session``)."""

    broker: b.Broker
    broker_config: b.BrokerConfig
    clock: SimClock

    if TYPE_CHECKING:

        def _send(self, session: Session, fields: list[str]) -> None: ...

    def _hhmm(self) -> str:
        """The account update time (HH:MM, the gateway's local time)."""
        return time.strftime("%H:%M", time.localtime(self.clock.now()))

    def _on_positions(self, session: Session, request: p.ReqPositions) -> None:
        session.positions = True
        for position in self.broker.positions():
            self._send(session, p.position(position))
        self._send(session, p.position_end())

    def _on_cancel_positions(self, session: Session, request: p.CancelPositions) -> None:
        session.positions = False

    def _known_account(self, session: Session, account: str, req_id: int) -> bool:
        if account in ("", self.broker_config.account):
            return True
        self._send(
            session,
            p.error(
                req_id,
                321,
                f"Error validating request: unknown account {account!r}",
                session.version,
            ),
        )
        return False

    def _on_account_updates(self, session: Session, request: p.ReqAccountUpdates) -> None:
        if not request.subscribe:
            session.account_updates = False
            return
        if not self._known_account(session, request.account, -1):
            return
        session.account_updates = True
        for value in self.broker.account_values():  # all of them, then only what changes
            session.marks_sent[account_key(value)] = value.value
            self._send(session, p.account_value(value))
        for item in self.broker.portfolio():
            self._send(session, p.portfolio_value(item))
        self._send(session, p.account_update_time(self._hhmm()))
        self._send(session, p.account_download_end(self.broker_config.account))

    def _on_account_updates_multi(
        self, session: Session, request: p.ReqAccountUpdatesMulti
    ) -> None:
        if not self._known_account(session, request.account, request.req_id):
            return
        session.multi.add(request.req_id)
        for value in self.broker.account_values():  # all of them, then only what changes
            session.marks_sent[account_key(value, request.req_id)] = value.value
            self._send(session, p.account_update_multi(request.req_id, value, request.model_code))
        self._send(session, p.account_update_multi_end(request.req_id))

    def _on_cancel_account_updates_multi(
        self, session: Session, request: p.CancelAccountUpdatesMulti
    ) -> None:
        session.multi.discard(request.req_id)

    def _on_account_summary(self, session: Session, request: p.ReqAccountSummary) -> None:
        if len(session.summaries) >= MAX_SUMMARY_SUBSCRIPTIONS:
            self._send(
                session,
                p.error(
                    request.req_id,
                    322,
                    "Maximum number of account summary requests exceeded",
                    session.version,
                ),
            )
            return
        tags = frozenset(request.tags)
        session.summaries[request.req_id] = tags
        for value in _summary_rows(self.broker.account_values(), tags):
            self._send(session, p.account_summary(request.req_id, value))
        self._send(session, p.account_summary_end(request.req_id))

    def _on_cancel_account_summary(self, session: Session, request: p.CancelAccountSummary) -> None:
        session.summaries.pop(request.req_id, None)

    def _on_pnl(self, session: Session, request: p.ReqPnL) -> None:
        if not self._known_account(session, request.account, request.req_id):
            return
        session.pnl.add(request.req_id)
        self._send(session, p.pnl(request.req_id, self.broker.pnl()))

    def _on_cancel_pnl(self, session: Session, request: p.CancelPnL) -> None:
        session.pnl.discard(request.req_id)

    def _on_pnl_single(self, session: Session, request: p.ReqPnLSingle) -> None:
        if not self._known_account(session, request.account, request.req_id):
            return
        session.pnl_single[request.req_id] = request.con_id
        single = self.broker.pnl_single(request.con_id)
        if single is not None:
            self._send(session, p.pnl_single(request.req_id, single))

    def _on_cancel_pnl_single(self, session: Session, request: p.CancelPnLSingle) -> None:
        session.pnl_single.pop(request.req_id, None)
