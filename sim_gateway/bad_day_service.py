"""The server side of IB's bad days (a mixin of ``GatewayServer``; the rules are in ``bad_days``).

* Outages: on the ticker, the schedule is checked on the gateway's clock; at the start every
  started session gets 1100 and the farm-broken notices, 1100 again every ``REPEAT_1100`` clock
  seconds; requests that need IB's servers (orders, cancels, contract look-ups) are held, and so
  are the broker's messages. At the end: 1102 (held messages delivered) or 1101 (held messages
  dropped, every market-data and account subscription dropped), the farm-OK notices, then the
  held requests are processed in arrival order.
* Market data: each reqMktData is answered per the account's entitlement and the session's
  ``reqMarketDataType``; a stream remembers the type it delivers (live or delayed tick ids).
* Competing live session: at its start every live stream gets 10197 and stops.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import bad_days as bd
from . import broker as b
from . import errors
from . import historical as h
from . import protocol as p
from .types import Contract

if TYPE_CHECKING:
    from .clock import SimClock
    from .server import Session

log = logging.getLogger(__name__)

HELD_REQUESTS = (
    p.PlaceOrder,
    p.CancelOrder,
    p.ReqGlobalCancel,
    p.ReqContractDetails,
    h.ReqHistoricalData,
)


@dataclass
class BadDayState:
    """The switches and what an outage in progress holds."""

    entitlement: bd.Entitlement = bd.Entitlement.LIVE
    fx_entitlement: bd.Entitlement | None = None  # FX pairs' when not the account's (free FX)
    outages: bd.Schedule = field(default_factory=bd.Schedule)
    competing: bd.Schedule = field(default_factory=bd.Schedule)
    outage: bd.Window | None = None
    competing_now: bool = False
    last_1100: float = 0.0
    held_requests: list[tuple[Session, Any]] = field(default_factory=list)
    held_events: list[Any] = field(default_factory=list)
    outages_seen: int = 0
    historical: h.HistoricalPacer = field(default_factory=h.HistoricalPacer)
    historical_requests: int = 0
    historical_violations: int = 0
    # market data farms broken (2103) -> when they come back (monotonic; None: at farm_up)
    farms_down: dict[str, float | None] = field(default_factory=dict)


class BadDayHandlers:
    """Outages, entitlements and competing sessions for ``GatewayServer``."""

    sessions: list[Session]
    clock: SimClock
    broker: b.Broker
    bad: BadDayState
    _handlers: dict[type, Any]
    _routes: dict[type, Any]

    def _send(self, session: Session, fields: list[str]) -> None:
        raise NotImplementedError

    def _send_unresolved(self, session: Session, req_id: int, query: Any) -> None:
        raise NotImplementedError

    def _answer_historical(
        self,
        session: Session,
        request: h.ReqHistoricalData,
        contract: Contract,
        bar: int,
        span: int,
        end: float,
    ) -> None:
        raise NotImplementedError  # chart_service.ChartHandlers

    def _bad_day_handlers(self) -> dict[type, Any]:
        return {h.ReqHistoricalData: self._on_historical_data}

    # ----------------------------------------------------------------- historical data
    def _on_historical_data(self, session: Session, request: h.ReqHistoricalData) -> None:
        found = self.broker.find_contracts(request.contract)
        if len(found) != 1:
            self._send_unresolved(session, request.req_id, request.contract)
            return
        contract = found[0]
        try:
            bar = h.bar_seconds(request.bar_size)
            span = h.duration_seconds(request.duration)
            end = h.end_time(request.end, self.clock.now())
        except ValueError as exc:
            self._send(
                session,
                p.error(
                    request.req_id,
                    321,
                    f"Error validating request.-'bA' : cause - {exc}",
                    session.version,
                ),
            )
            return
        self.bad.historical_requests += 1
        violation = self.bad.historical.admit(request, contract.con_id)
        if violation is not None:
            self.bad.historical_violations += 1
            log.warning("⛔ %s: historical data pacing violation (%s)", session.label(), violation)
            self._send(
                session, p.error(request.req_id, 162, h_text(h.PACING_TEXT), session.version)
            )
            return
        self._answer_historical(session, request, contract, bar, span, end)

    def _session_notice(self, session: Session, notice: bd.Notice) -> None:
        self._send(session, p.error(-1, notice[0], notice[1], session.version))

    def _broadcast(self, notices: list[bd.Notice]) -> None:
        for session in self.sessions:
            if session.started:
                for notice in notices:
                    self._session_notice(session, notice)

    # ----------------------------------------------------------------- switches
    def start_outage(self, window: bd.Window) -> None:
        """Add an outage (controller switch); it starts on the next ticker step if due."""
        self.bad.outages = bd.Schedule(
            self.bad.outages.windows + (window,), self.bad.outages.nightly
        )

    def end_outage_now(self) -> bool:
        """End the outages added by ``start_outage`` that are on now, as if their windows had
        run out (controller switch): 1101 or 1102 before this returns. False when none is on
        (a nightly reset is IB's own: it runs its course)."""
        now = self.clock.now()
        windows = self.bad.outages.windows
        ending = [w for w in windows if w.covers(now)]
        if self.bad.outage is None or not ending:
            return False
        kept = tuple(w for w in windows if w not in ending)
        self.bad.outages = bd.Schedule(kept, self.bad.outages.nightly)
        self._bad_day_step()
        return True

    def start_competing(self, window: bd.Window) -> None:
        self.bad.competing = bd.Schedule(self.bad.competing.windows + (window,))

    def break_farm(self, farm: str, seconds: float | None) -> None:
        """A market data farm broken with IB's servers reachable, for ``seconds`` (wall) or
        until ``restore_farm``: 2103, its contracts' quotes and the marks stop; then 2104 and
        they stream again."""
        back = None if seconds is None else time.monotonic() + seconds
        self.bad.farms_down[farm] = back
        log.warning("🔌 Market data farm %s broken (2103) for %s", farm, seconds or "a while")
        self._broadcast([(2103, errors.text(2103, farm=farm))])
        if seconds is not None:
            asyncio.get_running_loop().call_later(seconds, self._farm_back, farm, back)

    def _farm_back(self, farm: str, back: float | None) -> None:
        if farm in self.bad.farms_down and self.bad.farms_down[farm] == back:
            self.restore_farm(farm)  # not broken again (for longer) meanwhile

    def restore_farm(self, farm: str) -> None:
        """The farm is back (2104), if it was broken."""
        if self.bad.farms_down.pop(farm, False) is False:
            return
        log.warning("🔌 Market data farm %s OK again (2104)", farm)
        self._broadcast([(2104, errors.text(2104, farm=farm))])

    def farm_down_for(self, con_id: int) -> bool:
        """Whether the quotes of ``con_id`` stop: its market data farm is broken."""
        if not self.bad.farms_down:
            return False
        contract = self.broker.contract_by_id(con_id)
        return contract is None or bd.market_farm(contract.sec_type) in self.bad.farms_down

    @property
    def outage_active(self) -> bool:
        return self.bad.outage is not None

    # ----------------------------------------------------------------- ticker
    def _bad_day_step(self) -> None:
        now = self.clock.now()
        window = self.bad.outages.active(now)
        if window is not None and self.bad.outage is None:
            self._begin_outage(window, now)
        elif self.bad.outage is not None and (window is None or window != self.bad.outage):
            self._end_outage(self.bad.outage)
            if window is not None:
                self._begin_outage(window, now)
        elif self.bad.outage is not None and now - self.bad.last_1100 >= bd.REPEAT_1100:
            self.bad.last_1100 = now
            self._broadcast(bd.outage_started()[:1])
        competing = self.bad.competing.active(now) is not None
        if competing != self.bad.competing_now:
            self.bad.competing_now = competing
            log.warning(
                "📱 Competing live session %s",
                "started: live data stops (10197)" if competing else "ended",
            )
            if competing:
                self._stop_live_streams()

    def _begin_outage(self, window: bd.Window, now: float) -> None:
        self.bad.outage, self.bad.last_1100 = window, now
        self.bad.outages_seen += 1
        log.warning(
            "🌩️ IB servers unreachable (1100) for %.0fs of clock time (%s)",
            window.end - window.start,
            "data lost: 1101" if window.lost else "1102",
        )
        self._broadcast(bd.outage_started())

    def _end_outage(self, window: bd.Window) -> None:
        self.bad.outage = None
        held_events, self.bad.held_events = self.bad.held_events, []
        held_requests, self.bad.held_requests = self.bad.held_requests, []
        log.warning(
            "🌤️ IB servers reachable again (%s): %d message(s) %s, %d request(s) processed now",
            1101 if window.lost else 1102,
            len(held_events),
            "dropped" if window.lost else "delivered",
            len(held_requests),
        )
        if window.lost:
            for session in self.sessions:
                _drop_subscriptions(session)
        self._broadcast(bd.outage_ended(window.lost))
        if not window.lost:
            self._route_events(held_events)
        for session, request in held_requests:
            if session in self.sessions and not session.writer.is_closing():
                self._handlers[type(request)](session, request)

    # ----------------------------------------------------------------- holding
    def _held_by_outage(self, session: Session, request: Any) -> bool:
        """During an outage, keep a request that needs IB's servers for its end."""
        if self.bad.outage is None or not isinstance(request, HELD_REQUESTS):
            return False
        self.bad.held_requests.append((session, request))
        return True

    def _hold_events(self, events: list[Any]) -> bool:
        """During an outage, keep the broker's messages for its end (unless it lets them
        through)."""
        if self.bad.outage is None or self.bad.outage.through:
            return False
        self.bad.held_events.extend(events)
        return True

    def _route_events(self, events: list[Any]) -> None:
        for event in events:
            self._routes[type(event)](event)

    def _start_notices(self) -> list[bd.Notice]:
        """The notices a newly started API session gets."""
        if self.bad.outage is not None:
            return bd.outage_started()
        return bd.farm_notices_ok(broken=self.bad.farms_down)

    # ----------------------------------------------------------------- market data
    def _market_data_gate(self, session: Session, req_id: int, contract: Contract) -> int | None:
        """Answer the entitlement part of a reqMktData: the type of the ticks to send (and a
        notice first when IB sends one), or None when no ticks follow."""
        listing = f"{contract.symbol} {contract.primary_exchange or contract.exchange}/TOP/ALL"
        entitled = self.bad.entitlement
        if contract.sec_type == "CASH" and self.bad.fx_entitlement is not None:
            entitled = self.bad.fx_entitlement
        answer = bd.market_data_answer(
            entitled, session.market_data_type, self.bad.competing_now, listing
        )
        if answer.notice is not None:
            self._send(
                session, p.error(req_id, answer.notice[0], answer.notice[1], session.version)
            )
        if answer.delivered is not None and answer.delivered != 1:
            self._send(session, p.market_data_type(req_id, answer.delivered))
        return answer.delivered

    def _stop_live_streams(self) -> None:
        notice = bd.market_data_answer(bd.Entitlement.LIVE, 1, True, "").notice
        assert notice is not None
        for session in self.sessions:
            for req_id, kind in list(session.stream_types.items()):
                if kind in (1, 2):
                    self._send(session, p.error(req_id, notice[0], notice[1], session.version))
                    session.streams.pop(req_id, None)
                    session.stream_types.pop(req_id, None)


def _drop_subscriptions(session: Session) -> None:
    """1101: the servers forgot this session's market data and account subscriptions."""
    session.streams.clear()
    session.stream_types.clear()
    session.depth.clear()
    session.bar_streams.clear()
    session.rt_bars.clear()
    session.positions = session.account_updates = False
    session.multi.clear()
    session.summaries.clear()
    session.pnl.clear()
    session.pnl_single.clear()


def h_text(detail: str) -> str:
    from . import errors

    return errors.text(162, detail=detail)
