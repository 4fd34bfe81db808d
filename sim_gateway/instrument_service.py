"""Request handlers of the instrument features, mixed into ``GatewayServer``.

Option chains (reqSecDefOptParams), option computations on market data streams, market depth
(reqMktDepth, streamed as insert/update/delete rows on every quote change), depth exchanges and
market rules. The server owns sockets and sessions; these methods only read the broker and
call ``_send``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import broker as b
from . import depth
from . import instrument_messages as im
from . import protocol as p
from .contracts import unresolved_text
from .market_rules import increments
from .types import ContractQuery

if TYPE_CHECKING:
    from .server import Session

log = logging.getLogger(__name__)

NO_DEPTH_CODE = 10092
NO_DEPTH_TEXT = "Deep market data is not supported for this combination of security type/exchange"
DELAYED_GREEKS_OFFSET = 70  # 10 bid, 11 ask, 12 last, 13 model -> 80..83 on delayed data
STREAMED_GREEKS = (10, 11, 13)  # bid, ask and model on every push; last (12) with the first
Ticks = tuple[tuple[int, float, float], ...]  # (tick type, price, size)
INDEX_TICKS = frozenset({4, 6, 7, 9, 14})  # indices have no bid/ask: last, high, low, close, open


@dataclass
class DepthSubscription:
    """One reqMktDepth of a session and the book last sent to it."""

    con_id: int
    rows: int
    smart: bool
    sent: depth.Book = depth.EMPTY


class InstrumentHandlers:
    """Handlers and streaming of the instrument messages (state lives in ``Session.depth``)."""

    broker: b.Broker
    sessions: list[Session]

    def _send(self, session: Session, fields: list[str]) -> None:
        raise NotImplementedError

    def _instrument_handlers(self) -> dict[type, Callable[[Session, Any], None]]:
        return {
            im.ReqSecDefOptParams: self._on_sec_def_opt_params,
            im.ReqMktDepth: self._on_mkt_depth,
            im.CancelMktDepth: self._on_cancel_mkt_depth,
            im.ReqMktDepthExchanges: self._on_mkt_depth_exchanges,
            im.ReqMarketRule: self._on_market_rule,
        }

    def _send_unresolved(self, session: Session, req_id: int, query: ContractQuery) -> None:
        """Error 200: no contract, or several ("ambiguous")."""
        text = unresolved_text(query, len(self.broker.find_contracts(query)))
        self._send(session, p.error(req_id, 200, text, session.version))

    # ------------------------------------------------------------- option chains
    def _on_sec_def_opt_params(self, session: Session, request: im.ReqSecDefOptParams) -> None:
        chains = self.broker.derivatives.chains(
            request.underlying_symbol, request.underlying_con_id
        )
        for chain in chains:
            self._send(session, im.sec_def_opt_params(request.req_id, chain))
        self._send(session, im.sec_def_opt_params_end(request.req_id))

    def _send_option_ticks(
        self, session: Session, req_id: int, con_id: int, full: bool, delayed: bool = False
    ) -> None:
        """Option computations after an option's price ticks (nothing for other contracts);
        delayed data carries them as IB's delayed tick types 80..83."""
        rows = self.broker.option_greeks(con_id, delayed)
        tick_types = (*STREAMED_GREEKS, 12) if full else STREAMED_GREEKS
        for tick_type in tick_types:
            if tick_type in rows:
                sent = tick_type + DELAYED_GREEKS_OFFSET if delayed else tick_type
                self._send(session, im.tick_option_computation(req_id, sent, rows[tick_type]))

    def _shown_ticks(self, con_id: int, prices: Ticks) -> Ticks:
        """The price ticks a contract has: an index has no bid/ask and no sizes."""
        contract = self.broker.contract_by_id(con_id)
        if contract is None or contract.sec_type != "IND":
            return prices
        return tuple((tick, price, 0.0) for tick, price, _ in prices if tick in INDEX_TICKS)

    # ------------------------------------------------------------- depth
    def _on_mkt_depth(self, session: Session, request: im.ReqMktDepth) -> None:
        found = self.broker.find_contracts(request.contract)
        if len(found) != 1:
            self._send_unresolved(session, request.req_id, request.contract)
            return
        contract = found[0]
        if contract.sec_type in depth.NO_DEPTH:
            self._send(
                session, p.error(request.req_id, NO_DEPTH_CODE, NO_DEPTH_TEXT, session.version)
            )
            return
        subscription = DepthSubscription(contract.con_id, request.num_rows, request.is_smart_depth)
        session.depth[request.req_id] = subscription
        self._send_depth(session, request.req_id, subscription)

    def _on_cancel_mkt_depth(self, session: Session, request: im.CancelMktDepth) -> None:
        session.depth.pop(request.req_id, None)

    def _send_depth(self, session: Session, req_id: int, subscription: DepthSubscription) -> None:
        contract = self.broker.contract_by_id(subscription.con_id)
        if contract is None:
            return
        quote = self.broker.quote(subscription.con_id)
        new = depth.book(contract, quote, subscription.rows, subscription.smart)
        for op in depth.changes(subscription.sent, new):
            if subscription.smart:
                self._send(session, im.market_depth_l2(req_id, op, True))
            else:
                self._send(session, im.market_depth(req_id, op))
        subscription.sent = new

    def _stream_depth(self) -> None:
        for session in self.sessions:
            for req_id, subscription in list(session.depth.items()):
                self._send_depth(session, req_id, subscription)

    def _on_mkt_depth_exchanges(self, session: Session, request: im.ReqMktDepthExchanges) -> None:
        self._send(session, im.mkt_depth_exchanges(depth.DEPTH_EXCHANGES))

    # ------------------------------------------------------------- market rules
    def _on_market_rule(self, session: Session, request: im.ReqMarketRule) -> None:
        bands = increments(request.market_rule_id)
        if bands is None:
            log.warning("%s: unknown market rule %d", session.label(), request.market_rule_id)
            self._send(
                session,
                p.error(
                    -1,
                    321,
                    f"Error validating request.-'sim' : cause - unknown market "
                    f"rule id {request.market_rule_id}",
                    session.version,
                ),
            )
            return
        self._send(session, im.market_rule(request.market_rule_id, bands))
