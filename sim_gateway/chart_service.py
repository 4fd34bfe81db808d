"""Chart requests of ``GatewayServer`` (a mixin): historical bars off the tape and their live
last bar (keepUpToDate), head time stamps, 5-second real-time bars and symbol search.

Bars of a minute or more come from ``tape`` (one price process for history and the live ticks);
sub-minute bars keep ``historical.bars``' walk ending at the current price. TRADES bars are the
last price; MIDPOINT the same path; BID and ASK one tick either side (the simulator's quote),
with volume -1 as IB sends for non-trade bars. CASH pairs have no TRADES (IB answers 162).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from . import bad_days as bd
from . import broker as b
from . import chart_messages as cm
from . import errors
from . import historical as h
from . import protocol as p
from .tape import BIN, MINUTE, Bar
from .types import Contract

if TYPE_CHECKING:
    from .clock import SimClock
    from .server import Session

log = logging.getLogger(__name__)

WHAT = frozenset({"TRADES", "MIDPOINT", "BID", "ASK"})
MAX_DURATION = 366 * 86400  # "1 Y"
MAX_MATCHES = 16
SEARCHED = frozenset({"STK", "CASH"})


@dataclass
class BarStream:
    """A keepUpToDate request or a real-time bar subscription of one session."""

    con_id: int
    seconds: int
    what: str
    format_date: int = 1
    last: Any = None  # the last bar sent (keepUpToDate) or the last 5 s bin index sent


class ChartHandlers:
    """Handlers and streaming of chart requests (state in ``Session.bar_streams`` / ``rt_bars``)."""

    broker: b.Broker
    clock: SimClock
    sessions: list[Session]
    bad: Any

    def _send(self, session: Session, fields: list[str]) -> None:
        raise NotImplementedError

    def _send_unresolved(self, session: Session, req_id: int, query: Any) -> None:
        raise NotImplementedError

    def _chart_handlers(self) -> dict[type, Any]:
        return {
            cm.ReqHeadTimeStamp: self._on_head_timestamp,
            cm.CancelHeadTimeStamp: lambda session, request: None,  # answered at once
            cm.ReqRealTimeBars: self._on_real_time_bars,
            cm.CancelRealTimeBars: lambda session, request: session.rt_bars.pop(
                request.req_id, None
            ),
            cm.ReqMatchingSymbols: self._on_matching_symbols,
            h.CancelHistoricalData: lambda session, request: session.bar_streams.pop(
                request.req_id, None
            ),
        }

    def _error(self, session: Session, req_id: int, code: int, text: str) -> None:
        self._send(session, p.error(req_id, code, text, session.version))

    def _watch(self, contract: Contract) -> None:
        now = self.clock.now()
        self.broker.tape.watch(
            contract.con_id, now, self.broker.quote(contract.con_id), contract.min_tick
        )

    # ----------------------------------------------------------------- historical bars
    def _bars_refusal(self, contract: Contract, what: str) -> str | None:
        """Why IB answers 162 instead of bars, or None."""
        if what.upper() not in WHAT:
            return f"Invalid whatToShow {what!r} (the simulator serves TRADES, MIDPOINT, BID, ASK)"
        if contract.sec_type == "CASH" and what.upper() == "TRADES":
            return (
                f"No historical market data for {contract.symbol}/CASH@IDEALPRO TRADES; "
                "use MIDPOINT, BID or ASK"
            )
        entitled = self.bad.entitlement
        if contract.sec_type == "CASH" and self.bad.fx_entitlement is not None:
            entitled = self.bad.fx_entitlement
        if entitled is not bd.Entitlement.LIVE:  # IB: historical data needs a live subscription
            return f"No market data permissions for {contract.symbol} {contract.primary_exchange}"
        return None

    def _answer_historical(
        self,
        session: Session,
        request: h.ReqHistoricalData,
        contract: Contract,
        bar: int,
        span: int,
        end: float,
    ) -> None:
        """Bars (after the pacing check passed) and, for keepUpToDate, the live last bar."""
        refusal = self._bars_refusal(contract, request.what_to_show)
        if refusal is None and span > MAX_DURATION:
            refusal = f"Duration {request.duration!r} exceeds the simulator's 1 Y of history"
        if refusal is None and request.keep_up_to_date and request.end.strip():
            refusal = "End date not supported with live updates"
        if refusal is not None:
            self._error(session, request.req_id, 162, errors.text(162, detail=refusal))
            return
        what = request.what_to_show.upper()
        if bar >= MINUTE and bar % MINUTE == 0:
            self._watch(contract)
            n = max(1, min(h.MAX_BARS, span // bar))
            first = (int(end) // bar - n + 1) * bar
            rows = self.broker.tape.bars(contract.con_id, first, bar, n)
        else:
            quote = self.broker.quote(contract.con_id)
            rows = h.bars(
                self.broker.config.seed,
                contract.con_id,
                quote.last or quote.close or 100.0,
                contract.min_tick,
                end,
                bar,
                span,
            )
        rows = [shown(row, what, contract.min_tick) for row in rows]
        self._send(session, h.historical_data(request.req_id, rows, bar, request.format_date))
        if request.keep_up_to_date and bar >= MINUTE and bar % MINUTE == 0:
            session.bar_streams[request.req_id] = BarStream(
                contract.con_id, bar, what, request.format_date, rows[-1] if rows else None
            )

    def _stream_bars(self) -> None:
        """Every session's live last bars and finished 5-second bars."""
        now = self.clock.now()
        tape = self.broker.tape
        for session in self.sessions:
            for req_id, stream in list(session.bar_streams.items()):
                start = int(now) // stream.seconds * stream.seconds
                contract = self.broker.contract_by_id(stream.con_id)
                got = tape.bars(stream.con_id, start, stream.seconds, 1)
                if not got or contract is None:
                    continue
                row = shown(got[0], stream.what, contract.min_tick)
                if row != stream.last:
                    stream.last = row
                    date = h._date(row.start, stream.seconds, stream.format_date)
                    self._send(session, cm.historical_data_update(req_id, row, date))
            for req_id, stream in list(session.rt_bars.items()):
                contract = self.broker.contract_by_id(stream.con_id)
                if contract is None:
                    continue
                for row in tape.completed_bins(stream.con_id, stream.last, now):
                    stream.last = int(row.start) // BIN
                    shown_row = shown(row, stream.what, contract.min_tick)
                    if stream.what != "TRADES":
                        shown_row = replace(shown_row, volume=0, count=0)
                    self._send(session, cm.real_time_bar(req_id, shown_row))

    # ----------------------------------------------------------------- head time stamp
    def _on_head_timestamp(self, session: Session, request: cm.ReqHeadTimeStamp) -> None:
        contract = self._one(session, request.req_id, request.contract)
        if contract is None:
            return
        refusal = self._bars_refusal(contract, request.what_to_show)
        if refusal is not None:
            self._error(session, request.req_id, 162, errors.text(162, detail=refusal))
            return
        self._watch(contract)
        head = self.broker.tape.head(contract.con_id)
        stamp = (
            str(int(head))
            if request.format_date == 2
            else datetime.fromtimestamp(head, UTC).strftime("%Y%m%d-%H:%M:%S")
        )
        self._send(session, cm.head_timestamp(request.req_id, stamp))

    def _one(self, session: Session, req_id: int, query: Any) -> Contract | None:
        found = self.broker.find_contracts(query)
        if len(found) != 1:
            self._send_unresolved(session, req_id, query)
            return None
        return found[0]

    # ----------------------------------------------------------------- real-time bars
    def _on_real_time_bars(self, session: Session, request: cm.ReqRealTimeBars) -> None:
        contract = self._one(session, request.req_id, request.contract)
        if contract is None:
            return
        what = request.what_to_show.upper()
        if request.bar_size != BIN or what not in WHAT:
            self._error(
                session,
                request.req_id,
                420,
                errors.text(
                    420,
                    detail=f"only 5 second bars of TRADES, MIDPOINT, BID or ASK (asked "
                    f"{request.bar_size} s {request.what_to_show})",
                ),
            )
            return
        if self.bad.entitlement is not bd.Entitlement.LIVE:
            self._error(
                session,
                request.req_id,
                420,
                errors.text(
                    420,
                    detail=f"No market data permissions for {contract.symbol} "
                    f"{contract.primary_exchange or contract.exchange}",
                ),
            )
            return
        self._watch(contract)
        start = int(self.clock.now()) // BIN
        session.rt_bars[request.req_id] = BarStream(contract.con_id, BIN, what, last=start - 1)

    # ----------------------------------------------------------------- symbol search
    def _on_matching_symbols(self, session: Session, request: cm.ReqMatchingSymbols) -> None:
        found = matching(self.broker.all_contracts(), request.pattern)
        self._send(session, cm.symbol_samples(request.req_id, found, session.version))


def matching(contracts: list[Contract], pattern: str) -> list[Contract]:
    """Stocks and FX pairs whose symbol, pair or name matches ``pattern`` (symbol prefix first,
    then pairs, then names containing it), at most ``MAX_MATCHES`` like IB."""
    text = pattern.strip().upper()
    if not text:
        return []
    pair = text.replace("/", ".")
    ranked = []
    for c in contracts:
        if c.sec_type not in SEARCHED:
            continue
        if c.symbol.upper() == text:
            rank = 0
        elif c.symbol.upper().startswith(text) or c.local_symbol.upper().startswith(pair):
            rank = 1
        elif text in c.long_name.upper():
            rank = 2
        else:
            continue
        ranked.append((rank, c.symbol, c.local_symbol, c))
    ranked.sort(key=lambda row: row[:3])
    return [row[3] for row in ranked[:MAX_MATCHES]]


def shown(row: Bar, what: str, tick: float) -> Bar:
    """A TRADES bar as ``what`` shows it."""
    if what in ("TRADES", "MIDPOINT"):
        return row if what == "TRADES" else replace(row, volume=-1, count=-1)
    shift = -tick if what == "BID" else tick
    return replace(
        row,
        open=_tick(row.open + shift, tick),
        high=_tick(row.high + shift, tick),
        low=_tick(row.low + shift, tick),
        close=_tick(row.close + shift, tick),
        wap=_tick(row.wap + shift, tick),
        volume=-1,
        count=-1,
    )


def _tick(price: float, tick: float) -> float:
    from .prices import round_to_tick

    return round_to_tick(price, tick)
