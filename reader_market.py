"""The read path's market data: quotes, contracts, option chains, futures months, bars."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, TypeVar

from ib_async import IB, Contract

import history
import instruments
import market_data
import options_data
from ib_compat import make_contract
from ib_connection import IBConnection, NotConnectedError
from reader_rows import PositionRow, Quote, _num

QUOTE_TIMEOUT = 5.0
HISTORY_TIMEOUT = 10.0

log = logging.getLogger(__name__)
T = TypeVar("T")


class MarketData(IBConnection):
    """Quotes, contract details, option chains, futures months and bars, asked on the reader's
    connection (the only reads that go to the broker)."""

    if TYPE_CHECKING:  # IBConnector's own

        def _schedule_rebuild(self) -> None: ...

    _contracts: dict[tuple[str, str, str, int], Contract]  # (symbol, secType, currency, conId)
    _entitled: market_data.Entitlements
    _history: history.HistoryPacer
    _history_inflight: dict[history.BarsKey, asyncio.Future]
    _market_rules: dict[int, instruments.Increments]
    market_data_type: int
    _quoting: dict[int, asyncio.Future[Quote]]

    def quote(
        self,
        symbol: str,
        sec_type: str = "STK",
        currency: str = "USD",
        silence: float | None = None,
        con_id: int = 0,
    ) -> Quote:
        """A snapshot quote (one broker round trip; not a snapshot read). TimeoutError when
        the gateway has not answered within QUOTE_TIMEOUT, or (with ``silence``) has sent
        nothing at all for ``silence`` seconds meanwhile. ``con_id``: a derivative the broker
        resolved (``contract``)."""
        self.require_connected()
        return self.thread.call(
            self.answer_within(
                self._quote(symbol, sec_type, currency, con_id), QUOTE_TIMEOUT, silence
            ),
            QUOTE_TIMEOUT + 1,
        )

    def contract(self, spec: instruments.ContractSpec) -> instruments.Resolved:
        """The one derivative ``spec`` names at the broker (instruments.ContractError when
        none or several match)."""
        self.require_connected()
        return self.thread.call(
            self.answer_within(self._resolve(spec), QUOTE_TIMEOUT * 2), QUOTE_TIMEOUT * 2 + 1
        )

    def option_chain(self, symbol: str) -> options_data.Chain:
        """Expiries and strikes of ``symbol``'s options (reqSecDefOptParams)."""
        self.require_connected()
        return self.thread.call(
            self.answer_within(
                self._on_ib(lambda ib: options_data.chain(ib, symbol)), QUOTE_TIMEOUT * 2
            ),
            QUOTE_TIMEOUT * 2 + 1,
        )

    def option_quotes(self, symbol: str, expiry: str, around: int) -> options_data.Board:
        """Calls and puts of one expiry, ``around`` strikes each side of the money."""
        self.require_connected()
        return self.thread.call(
            self.answer_within(
                self._on_ib(lambda ib: options_data.board(ib, symbol, expiry, around)),
                options_data.BOARD_TIMEOUT,
            ),
            options_data.BOARD_TIMEOUT + 1,
        )

    def future_months(self, symbol: str, exchange: str = "") -> tuple[instruments.FutureMonth, ...]:
        """The listed contract months of a futures product (contract details)."""
        self.require_connected()
        return self.thread.call(
            self.answer_within(
                self._on_ib(lambda ib: instruments.future_months(ib, symbol, exchange)),
                QUOTE_TIMEOUT * 2,
            ),
            QUOTE_TIMEOUT * 2 + 1,
        )

    async def _resolve(self, spec: instruments.ContractSpec) -> instruments.Resolved:
        ib = self.ib
        assert ib is not None
        return await instruments.resolve(ib, spec, self._market_rules)

    async def _on_ib(self, call: Callable[[IB], Awaitable[T]]) -> T:
        ib = self.ib
        assert ib is not None
        return await call(ib)

    def bars(self, key: history.BarsKey) -> tuple[history.Bars, bool]:
        """Historical bars and whether they came from the cache (paced below IB's limits, see
        ``history``). HistoryBudgetSpent / HistoryRefused / TimeoutError when there are none."""
        self.require_connected()
        return self.thread.call(self._bars(key), HISTORY_TIMEOUT + history.BURST_WINDOW + 1)

    async def _bars(self, key: history.BarsKey) -> tuple[history.Bars, bool]:
        ib = self.ib
        assert ib is not None
        hit = self._history.cached(key, time.monotonic())
        if hit is not None:
            return hit, True
        if key in self._history_inflight:  # the same request is on its way: share its answer
            return await asyncio.shield(self._history_inflight[key]), True
        done: asyncio.Future = asyncio.get_running_loop().create_future()
        self._history_inflight[key] = done
        try:
            while (delay := self._history.wait(key, time.monotonic())) > 0:
                await asyncio.sleep(delay)
            contract = await self._qualified(ib, key.symbol, key.sec_type, "USD")
            bars = await history.fetch_bars(ib, contract, key, HISTORY_TIMEOUT)
            self._history.store(key, bars, time.monotonic())
            done.set_result(bars)
            return bars, False
        except asyncio.CancelledError:
            done.cancel()
            raise
        except Exception as exc:  # handed to whoever shares this request, then re-raised
            done.set_exception(exc)
            done.exception()  # retrieved: no "never retrieved" warning when nobody shared it
            raise
        finally:
            del self._history_inflight[key]

    async def _quote(self, symbol: str, sec_type: str, currency: str, con_id: int = 0) -> Quote:
        ib = self.ib
        assert ib is not None
        contract = await self._qualified(ib, symbol, sec_type, currency, con_id)
        pending = self._quoting.get(contract.conId)
        if pending is None:
            pending = asyncio.ensure_future(self._snapshot_quote(ib, contract, symbol, sec_type))
            self._quoting[contract.conId] = pending
            pending.add_done_callback(partial(self._quote_done, contract.conId))
        try:
            return await asyncio.shield(pending)  # a waiter that gives up leaves it to the others
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if pending.cancelled() and not (task is not None and task.cancelling()):
                # dropped with its connection (forget_quotes): ask again on the new one
                raise NotConnectedError("the connection closed while the quote was asked") from None
            raise

    def _quote_done(self, con_id: int, done: asyncio.Future[Quote]) -> None:
        """A quote request ended: the next one of its contract is asked anew (unless one for
        the new connection is already there, forget_quotes)."""
        if self._quoting.get(con_id) is done:
            del self._quoting[con_id]

    def forget_quotes(self) -> None:
        """The connection closed: its quote requests will never be answered (ib_async neither
        fails nor ends them at a disconnect of ours), so none is shared with the next one."""
        pending, self._quoting = list(self._quoting.values()), {}
        for quote in pending:
            quote.cancel()

    async def _snapshot_quote(
        self, ib: IB, contract: Contract, symbol: str, sec_type: str
    ) -> Quote:
        notices: list[tuple[int, str]] = []

        def on_error(req_id: int, code: int, text: str, about: Contract | None) -> None:
            if (
                code in market_data.NOTICE_CODES
                and about is not None
                and about.conId == contract.conId
            ):
                notices.append((code, text))

        market_data.reset_ticker(ib.ticker(contract))
        ib.errorEvent += on_error
        try:  # bounded: every later quote of the contract would wait on an unanswered one
            tickers = await asyncio.wait_for(ib.reqTickersAsync(contract), QUOTE_TIMEOUT)
        finally:
            ib.errorEvent -= on_error
        ticker = tickers[0]
        code, notice = market_data.explain(notices, symbol, self.market_data_type)
        kind = market_data.type_name(ticker.marketDataType)
        priced = any(
            _num(p) is not None for p in (ticker.bid, ticker.ask, ticker.last, ticker.close)
        )
        if priced and self._entitled.learn(contract.conId, kind):
            self._schedule_rebuild()  # the positions' label follows
        return Quote(
            symbol=symbol,
            sec_type=sec_type,
            con_id=contract.conId,
            currency=contract.currency,
            bid=_num(ticker.bid),
            ask=_num(ticker.ask),
            last=_num(ticker.last),
            close=_num(ticker.close),
            time=time.time(),
            market_data=kind,
            notice_code=code,
            notice=notice,
        )

    async def _probe_market_data(self, row: PositionRow) -> None:
        """Ask one quote of a held contract, so the positions' prices say whether they are
        live or delayed before anyone asked for a quote (once per session)."""
        plain = row.sec_type in ("STK", "CASH")  # by symbol, as the quote panel asks
        try:
            await asyncio.wait_for(
                self._quote(row.symbol, row.sec_type, row.currency, 0 if plain else row.con_id),
                QUOTE_TIMEOUT,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # log and carry on: the positions stay unlabelled
            log.warning(
                "could not learn whether %s's price is live or delayed: %s", row.symbol, exc
            )

    async def contract_for(self, symbol: str, sec_type: str) -> Contract:
        """The qualified contract (cached; loop side). LookupError when unknown."""
        ib = self.ib
        if ib is None:
            raise LookupError("not connected")
        return await self._qualified(ib, symbol, sec_type, "USD")

    def matching_symbols(self, pattern: str) -> list[Contract]:
        """IB's symbol search (reqMatchingSymbols): stocks and FX pairs first."""
        self.require_connected()

        async def ask() -> list[Contract]:
            ib = self.ib
            assert ib is not None
            found = await asyncio.wait_for(ib.reqMatchingSymbolsAsync(pattern), QUOTE_TIMEOUT)
            return [d.contract for d in found or [] if d.contract is not None]

        return self.thread.call(ask(), QUOTE_TIMEOUT + 1)

    async def _qualified(
        self, ib: IB, symbol: str, sec_type: str, currency: str, con_id: int = 0
    ) -> Contract:
        key = (symbol, sec_type, currency, con_id)  # AAPL in EUR is another listing
        if key not in self._contracts:
            contract = make_contract(symbol, sec_type, currency, con_id)
            found = await asyncio.wait_for(ib.qualifyContractsAsync(contract), QUOTE_TIMEOUT)
            if not found or not isinstance(found[0], Contract):  # None: unknown or ambiguous
                raise LookupError(f"unknown symbol {symbol!r} ({sec_type})")
            self._contracts[key] = found[0]
        return self._contracts[key]
