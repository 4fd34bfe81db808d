"""Contract details and market data requests of ``GatewayServer`` (a mixin): reqContractDetails,
reqMktData (streams and snapshots, live or delayed tick ids, the account's market data lines),
cancelMktData, reqMarketDataType, and the ticker's quote pushes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import broker as b
from . import errors, sessions
from . import protocol as p
from .types import Contract, ContractQuery, Quote

if TYPE_CHECKING:
    from .clock import SimClock
    from .connections import Session
    from .server import ServerSettings


_DELAYED_TICK = {1: 66, 2: 67, 4: 68, 6: 72, 7: 73, 9: 75, 14: 76}


class MarketDataHandlers:
    """Quotes for streams and snapshots (state in ``Session.streams`` / ``stream_types``)."""

    settings: ServerSettings
    broker: b.Broker
    broker_config: b.BrokerConfig
    clock: SimClock
    sessions: list[Session]

    if TYPE_CHECKING:

        @property
        def outage_active(self) -> bool: ...

        def _send(self, session: Session, fields: list[str]) -> None: ...
        def farm_down_for(self, con_id: int) -> bool: ...

        def _send_unresolved(self, session: Session, req_id: int, query: ContractQuery) -> None: ...

        def _market_data_gate(
            self, session: Session, req_id: int, contract: Contract
        ) -> int | None: ...

        def _shown_ticks(
            self, con_id: int, prices: tuple[tuple[int, float, float], ...]
        ) -> tuple[tuple[int, float, float], ...]: ...

        def _send_option_ticks(
            self, session: Session, req_id: int, con_id: int, full: bool, delayed: bool = False
        ) -> None: ...

    def _on_contract_details(self, session: Session, request: p.ReqContractDetails) -> None:
        found = self.broker.find_contracts(request.contract)
        if not found:
            self._send_unknown_contract(session, request.req_id)
            return
        now = self.clock.now()
        for contract in found:
            hours = (
                sessions.contract_hours(contract, now) if self.broker_config.market_hours else None
            )
            self._send(session, p.contract_data(request.req_id, contract, session.version, hours))
        self._send(session, p.contract_data_end(request.req_id))

    def _send_unknown_contract(self, session: Session, req_id: int) -> None:
        self._send(session, p.error(req_id, 200, errors.text(200), session.version))

    def _resolve(self, query: ContractQuery) -> Contract | None:
        found = self.broker.find_contracts(query)
        return found[0] if len(found) == 1 else None

    def _on_mkt_data(self, session: Session, request: p.ReqMktData) -> None:
        contract = self._resolve(request.contract)
        if contract is None:
            self._send_unresolved(session, request.req_id, request.contract)
            return
        req_id = request.req_id
        if not (request.snapshot or request.regulatory_snapshot) and (
            self._lines_in_use() >= self.settings.market_data_lines
        ):
            self._send(session, p.error(req_id, 101, errors.text(101), session.version))
            return
        self._send(session, p.tick_req_params(req_id, contract.min_tick, "SMART", 3))
        delivered = self._market_data_gate(session, req_id, contract)
        snapshot = request.snapshot or request.regulatory_snapshot
        if delivered is None:  # 354 / 10168 / 10197: no ticks, the request is over
            return
        if not self.outage_active:  # the data farm is down: a stream stays silent meanwhile
            quote = self._quote_of(contract.con_id, delivered)
            self._send_ticks(session, req_id, quote, full=True, delivered=delivered)
        if snapshot:
            self._send(session, p.tick_snapshot_end(req_id))
        else:
            session.streams[req_id] = contract.con_id
            session.stream_types[req_id] = delivered

    def _quote_of(self, con_id: int, delivered: int) -> Quote:
        """What a stream of market data type ``delivered`` shows: delayed types (3, 4) the
        quote of ``delayed_data_seconds`` ago, as IB's delayed data (15-20 minutes old)."""
        return (
            self.broker.delayed_quote(con_id) if delivered in (3, 4) else self.broker.quote(con_id)
        )

    def _send_ticks(
        self, session: Session, req_id: int, quote: Quote, full: bool, delivered: int = 1
    ) -> None:
        delayed = delivered in (3, 4)
        prices: tuple[tuple[int, float, float], ...] = (
            (1, quote.bid, quote.bid_size),
            (2, quote.ask, quote.ask_size),
            (4, quote.last, quote.last_size),
        )
        if full:
            prices += (
                (6, quote.high, 0.0),
                (7, quote.low, 0.0),
                (9, quote.close, 0.0),
                (14, quote.open, 0.0),
            )
        prices = self._shown_ticks(quote.con_id, prices)
        for tick_type, price, size in prices:
            tick_type = _DELAYED_TICK.get(tick_type, tick_type) if delayed else tick_type
            self._send(session, p.tick_price(req_id, tick_type, price, size, 0))
        volume_tick = 74 if delayed else 8
        self._send(session, p.tick_size(req_id, volume_tick, quote.volume))
        self._send_option_ticks(session, req_id, quote.con_id, full, delayed)

    def _lines_in_use(self) -> int:
        """Market data lines taken: every live reqMktData stream of every session."""
        return sum(len(s.streams) for s in self.sessions)

    def _on_cancel_mkt_data(self, session: Session, request: p.CancelMktData) -> None:
        session.streams.pop(request.req_id, None)
        session.stream_types.pop(request.req_id, None)

    def _on_market_data_type(self, session: Session, request: p.ReqMarketDataType) -> None:
        session.market_data_type = request.market_data_type

    def _stream_quotes(self) -> None:
        quotes: dict[tuple[int, int], Quote] = {}
        for session in self.sessions:
            for req_id, con_id in session.streams.items():
                if self.farm_down_for(con_id):
                    continue  # 2103: nothing from that farm until its 2104
                delivered = session.stream_types.get(req_id, 1)
                key = (con_id, delivered)
                quote = quotes.get(key) or quotes.setdefault(key, self._quote_of(con_id, delivered))
                self._send_ticks(session, req_id, quote, full=False, delivered=delivered)
