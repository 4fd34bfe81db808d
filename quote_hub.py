"""Streaming quotes for the watchlist, the charts and the alerts, on the reader connection.

One reqMktData per symbol however many browsers watch it: each open event stream is a watcher
(the watchlist plus the symbols it names, e.g. its chart's); a symbol is streamed while a
watcher wants it or an armed alert needs it, and cancelled when nobody does. IB allows an account
``MARKET_DATA_LINES`` concurrent lines (100 by default); the hub keeps ``SNAPSHOT_RESERVE`` of
them free for the snapshot quotes of orders and /quote, never asks for more, and says which
symbols were left out and why. IB's own refusals are explained per symbol: 101 (max tickers),
354 / 10168 / 10197 (no subscription, competing session), 10167 (delayed data, labelled), 10089
(no subscription for the API: no data on a live-only request, delayed data labelled otherwise).

A dashboard that cannot hold a stream polls GET /quotes instead: each poll ``lease``s the
watchlist and its symbols for ``LEASE_SECONDS`` (a watcher that expires), so quotes keep flowing
while polling and the lines are released soon after the polls stop.

Runs on the connector's loop; Flask threads only call ``watch`` / ``unwatch`` / ``lease`` / ``resync``
(which wake the loop) and read ``snapshot()`` (an immutable value swapped in whole).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ib_async import IB, Contract, Ticker

import market_data
from ib_compat import logged, number
from ib_connector import IBConnector
from loop_thread import wait_event
from screen_store import PriceAlert, ScreenStore, WatchItem

log = logging.getLogger(__name__)

SNAPSHOT_RESERVE = 2
SYNC_INTERVAL = 1.0  # s: the loop checks subscriptions at least this often (reconnects)
RECENT_ALERTS = 20
LEASE_SECONDS = 5.0  # a poll of GET /quotes keeps its symbols streamed this long (5 polls)
MAX_LEASES = 64  # distinct polled symbol sets kept (the oldest gives way)
LINE_LIMIT_CODE = 101
STOPPED_RETRY = 5.0  # s: a line IB stopped (354 / 10168 / 10197) is asked again after this
Key = tuple[str, str]  # (symbol, sec_type)


@dataclass(frozen=True)
class QuoteRow:
    symbol: str
    sec_type: str
    bid: float | None
    ask: float | None
    last: float | None
    close: float | None
    change_pct: float | None
    market_data: str  # live | delayed | frozen | delayed-frozen
    time: float
    notice: str | None = None  # why there is no price, in words


@dataclass(frozen=True)
class HubSnapshot:
    version: int
    quotes: tuple[QuoteRow, ...]
    lines_used: int
    lines_limit: int
    refused: tuple[str, ...]  # symbols left out for lack of market data lines
    message: str | None
    alerts: tuple[tuple[int, PriceAlert], ...]  # (sequence, alert) of recently fired alerts
    alerts_version: int = 0  # the screen store's version: the list of alerts changed when it did


@dataclass
class _Line:
    contract: Contract
    ticker: Ticker
    notice: str | None = None
    stopped_at: float | None = None  # monotonic: IB stopped the line (no data), no price since


@dataclass
class _State:
    lines: dict[Key, _Line] = field(default_factory=dict)
    pending: set[Key] = field(default_factory=set)  # being qualified
    unknown: dict[Key, str] = field(default_factory=dict)
    timed_out: set[Key] = field(default_factory=set)  # in ``unknown`` until asked again
    refused: tuple[str, ...] = ()
    gateway_limit: bool = False


class QuoteHub:
    """Shared market-data lines (see the module docstring)."""

    def __init__(
        self, connector: IBConnector, store: ScreenStore, lines: int, on_change: Callable[[], None]
    ) -> None:
        self.connector, self.store, self.limit = connector, store, lines
        self.on_change = on_change
        self._lock = threading.Lock()
        self._watchers: dict[int, tuple[Key, ...]] = {}
        self._leases: dict[tuple[Key, ...], float] = {}  # polled symbols -> monotonic expiry
        self._ids = itertools.count(1)
        self._state = _State()
        self._ib: IB | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._rows: dict[Key, QuoteRow] = {}
        self._fired: collections.deque[tuple[int, PriceAlert]] = collections.deque(
            maxlen=RECENT_ALERTS
        )
        self._seq = itertools.count(1)
        self._snapshot = HubSnapshot(0, (), 0, self.capacity, (), None, ())
        self._version = 0

    @property
    def capacity(self) -> int:
        return max(1, self.limit - SNAPSHOT_RESERVE)

    # ------------------------------------------------------------------ Flask side
    def start(self) -> None:
        self.connector.thread.call_soon(self._start_task)

    def watch(self, extra: Iterable[WatchItem] = ()) -> int:
        """A stream opened (wanting the watchlist plus ``extra``): its watcher id."""
        watcher = next(self._ids)
        with self._lock:
            self._watchers[watcher] = tuple((i.symbol, i.sec_type) for i in extra)
        self.resync()
        return watcher

    def unwatch(self, watcher: int) -> None:
        with self._lock:
            self._watchers.pop(watcher, None)
        self.resync()

    def lease(self, extra: Iterable[WatchItem] = ()) -> None:
        """A poll (wanting the watchlist plus ``extra``): streamed for ``LEASE_SECONDS`` more."""
        keys = tuple((i.symbol, i.sec_type) for i in extra)
        now = time.monotonic()
        with self._lock:
            known = self._leases.get(keys, 0.0) > now
            if not known and len(self._leases) >= MAX_LEASES:
                del self._leases[min(self._leases, key=self._leases.__getitem__)]
            self._leases[keys] = now + LEASE_SECONDS
        if not known:
            self.resync()

    def watchers(self) -> int:
        return len(self._watchers)

    def resync(self) -> None:
        """The wanted symbols may have changed: let the loop look (thread-safe)."""
        try:
            self.connector.thread.call_soon(self._poke)
        except RuntimeError:
            log.debug("quote hub: loop gone")

    def snapshot(self) -> HubSnapshot:
        return self._snapshot

    def lines_in_use(self) -> int:
        return len(self._state.lines)

    # ------------------------------------------------------------------ loop side
    def _start_task(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="quote-hub")

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await wait_event(self._wake, SYNC_INTERVAL)
            self._wake.clear()
            try:
                await self._sync()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("quote hub sync failed; carrying on")

    def _wanted(self) -> list[Key]:
        now = time.monotonic()
        with self._lock:
            self._leases = {keys: until for keys, until in self._leases.items() if until > now}
            watchers = list(self._watchers.values()) + list(self._leases)
        wanted: list[Key] = []
        if watchers:
            wanted += [(i.symbol, i.sec_type) for i in self.store.watchlist()]
            wanted += [key for extra in watchers for key in extra]
        wanted += [(a.symbol, a.sec_type) for a in self.store.armed()]
        return list(dict.fromkeys(wanted))

    async def _sync(self) -> None:
        ib = self.connector.ib
        if ib is None or not ib.isConnected():
            if self._state.lines:
                self._state = _State()
                self._rows.clear()  # no price is known until a new line brings one
                self._publish()
            self._ib = None
            return
        if ib is not self._ib:  # a new connection: its subscriptions and prices are gone
            self._ib = ib
            self._state = _State()
            self._rows.clear()
            ib.pendingTickersEvent += logged(log, "the watchlist's ticks", self._on_tickers)
            ib.errorEvent += logged(log, "a watchlist notice", self._on_error)
        wanted = self._wanted()
        keep = wanted[: self.capacity]
        state = self._state
        for key in [k for k in state.lines if k not in keep]:
            line = state.lines.pop(key)
            ib.cancelMktData(line.contract)
            self._rows.pop(key, None)
        self._drop_stopped(ib)
        for key in state.timed_out:  # IB did not answer (an outage holds look-ups): ask again
            state.unknown.pop(key, None)
        state.timed_out.clear()
        state.refused = tuple(sym for sym, _ in wanted[self.capacity :])
        for key in keep:
            if key not in state.lines and key not in state.pending and key not in state.unknown:
                state.pending.add(key)
                try:
                    contract = await self.connector.contract_for(*key)
                except LookupError as exc:
                    state.unknown[key] = str(exc)
                    continue
                except TimeoutError:
                    state.unknown[key] = f"{key[0]}: IB did not answer the contract look-up yet"
                    state.timed_out.add(key)
                    continue
                finally:
                    state.pending.discard(key)
                if key in self._wanted()[: self.capacity] and key not in state.lines:
                    ticker = ib.reqMktData(contract, "", False, False)
                    state.lines[key] = _Line(contract, ticker)
        self._publish()

    def _drop_stopped(self, ib: IB) -> None:
        """Lines IB stopped ``STOPPED_RETRY`` s ago are given up, so that the sync asks again
        (a competing session ends, a subscription is bought); their notice row stays until
        the new line brings something."""
        now, lines = time.monotonic(), self._state.lines
        for key in [k for k, line in lines.items() if _stopped_since(line, now, STOPPED_RETRY)]:
            ib.cancelMktData(lines.pop(key).contract)

    def _on_error(self, req_id: int, code: int, text: str, contract: Contract | None) -> None:
        if contract is None:
            return
        asked = self.connector.market_data_type
        for key, line in self._state.lines.items():
            if line.contract.conId != contract.conId:
                continue
            if code == LINE_LIMIT_CODE:
                line.notice = (
                    f"IB error 101: the account's market data lines are all taken "
                    f"(MARKET_DATA_LINES={self.limit}); {key[0]} is not streamed. "
                    "Remove symbols or buy quote booster packs."
                )
            elif market_data.no_data(code, asked):
                line.notice = market_data.explain([(code, text)], key[0], asked)[1]
                line.stopped_at = time.monotonic()  # no tick follows: the last prices are old
            else:
                continue
            self._rows[key] = self._row(key, line)
            self._publish()

    def _on_tickers(self, tickers: set[Ticker]) -> None:
        by_id = {line.contract.conId: key for key, line in self._state.lines.items()}
        changed = False
        for ticker in tickers:
            key = by_id.get(ticker.contract.conId if ticker.contract else 0)
            if key is None:
                continue
            row = self._row(key, self._state.lines[key])
            if row.last is not None:
                for alert in self.store.fire(key[0], key[1], row.last):
                    self._fired.append((next(self._seq), alert))
            if row != self._rows.get(key):
                self._rows[key] = row
                changed = True
        if changed:
            self._publish()

    def _row(self, key: Key, line: _Line) -> QuoteRow:
        t, old = line.ticker, self._rows.get(key)
        bid, ask, last, close = (
            _price(getattr(t, name)) for name in ("bid", "ask", "last", "close")
        )
        if last is None and bid is not None and ask is not None:
            last = round((bid + ask) / 2, 8)  # FX has no trades: the midpoint
        if line.stopped_at is not None:
            bid = ask = last = None  # the ticker keeps the prices of before IB stopped the line
        elif old is not None and bid is None and ask is None and last is None:
            # a snapshot request on the same contract clears the shared ticker; one side
            # missing alone is real (no bid or no offer: closed, halted) and shows as such
            bid, ask, last, close = old.bid, old.ask, old.last, close or old.close
        change = round((last - close) / close * 100, 3) if last is not None and close else None
        return QuoteRow(
            key[0],
            key[1],
            bid,
            ask,
            last,
            close,
            change,
            market_data.type_name(t.marketDataType),
            time.time(),
            line.notice,
        )

    def _publish(self) -> None:
        state = self._state
        message = None
        if state.refused:
            message = (
                f"market data lines: {len(state.lines)} of the {self.capacity} the "
                f"dashboard may use are taken (MARKET_DATA_LINES={self.limit}, "
                f"{SNAPSHOT_RESERVE} kept for order quotes); not streamed: "
                f"{', '.join(state.refused)}"
            )
        order = {key: i for i, key in enumerate(self._wanted())}
        rows = sorted(
            (r for k, r in self._rows.items() if k in state.lines),
            key=lambda r: order.get((r.symbol, r.sec_type), 1 << 30),
        )
        unknown = [
            QuoteRow(k[0], k[1], None, None, None, None, None, "none", time.time(), text)
            for k, text in state.unknown.items()
            if k in order
        ]
        self._version += 1
        self._snapshot = HubSnapshot(
            self._version,
            tuple(rows + unknown),
            len(state.lines),
            self.capacity,
            state.refused,
            message,
            tuple(self._fired),
            self.store.version,
        )
        try:
            self.on_change()
        except Exception:
            log.exception("quote hub listener failed; carrying on")

    def stop(self) -> None:
        if self._task is not None:
            try:
                self.connector.thread.call_soon(self._task.cancel)
            except RuntimeError:
                log.debug("quote hub: loop already gone")


def _stopped_since(line: _Line, now: float, seconds: float) -> bool:
    return line.stopped_at is not None and now - line.stopped_at >= seconds


def _price(value: Any) -> float | None:
    """A tick's price; None for ib_async's "no price" (nan, -1) and for what is no price
    (±Infinity, IB's UNSET_DOUBLE), which fired every alert it passed."""
    price = number(value)
    return None if price is None or price == -1 else price
