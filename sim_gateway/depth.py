"""Market depth (``reqMktDepth``): ten levels a side built around the current quote.

Level 0 is the quote itself (bid/ask and their sizes); deeper levels step away by the
contract's price increment (its market rule) with deterministic sizes, so a book depends only
on the quote. ``changes`` turns two books into the insert/update/delete operations of
updateMktDepth (op 0/1/2, side 0 ask / 1 bid).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from .market_rules import increment_at
from .prices import round_to_tick
from .types import Contract, Quote

MAX_ROWS = 10
INSERT, UPDATE, DELETE = 0, 1, 2
ASK, BID = 0, 1
MARKET_MAKERS = ("NSDQ", "ARCA", "BATS", "EDGX", "IEX", "NYSE", "MEMX", "BYX", "EDGEA", "PEARL")
# the simulator's depth venues (reqMktDepthExchanges): exchange, secType, listing, service type
DEPTH_EXCHANGES = (
    ("ISLAND", "STK", "NASDAQ", "Deep2"),
    ("ARCA", "STK", "NYSE", "Deep2"),
    ("IDEALPRO", "CASH", "", "Deep"),
    ("CME", "FUT", "", "Deep"),
    ("NYMEX", "FUT", "", "Deep"),
    ("CBOE", "OPT", "", "Deep"),
)
NO_DEPTH = frozenset({"IND"})


@dataclass(frozen=True)
class Level:
    price: float
    size: float
    market_maker: str = ""


@dataclass(frozen=True)
class Book:
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]


@dataclass(frozen=True)
class DepthOp:
    """One updateMktDepth / updateMktDepthL2 row."""

    position: int
    operation: int
    side: int
    price: float
    size: float
    market_maker: str = ""


def _size(contract: Contract, side: int, level: int, price: float) -> float:
    lot = 100 if contract.sec_type in ("STK", "CASH") else 1
    draw = zlib.crc32(f"{contract.con_id}/{side}/{level}/{price!r}".encode())
    return float(lot * (1 + draw % 25))


def _side(
    contract: Contract, top: float, top_size: float, side: int, rows: int, smart: bool
) -> tuple[Level, ...]:
    levels, price = [], top
    for level in range(rows):
        if price <= 0:
            break
        size = top_size if level == 0 else _size(contract, side, level, price)
        levels.append(
            Level(price, size, MARKET_MAKERS[level % len(MARKET_MAKERS)] if smart else "")
        )
        step = increment_at(contract, price)
        price = round_to_tick(price - step if side == BID else price + step, step)
    return tuple(levels)


def book(contract: Contract, quote: Quote, rows: int, smart: bool) -> Book:
    """``rows`` (at most MAX_ROWS) levels a side; bids fall, asks rise from the quote."""
    rows = max(1, min(rows, MAX_ROWS))
    return Book(
        bids=_side(contract, quote.bid, quote.bid_size, BID, rows, smart),
        asks=_side(contract, quote.ask, quote.ask_size, ASK, rows, smart),
    )


def _side_ops(old: tuple[Level, ...], new: tuple[Level, ...], side: int) -> list[DepthOp]:
    ops = []
    for position, level in enumerate(new):
        if position >= len(old):
            ops.append(DepthOp(position, INSERT, side, level.price, level.size, level.market_maker))
        elif old[position] != level:
            ops.append(DepthOp(position, UPDATE, side, level.price, level.size, level.market_maker))
    for position in range(len(old) - 1, len(new) - 1, -1):
        ops.append(
            DepthOp(position, DELETE, side, old[position].price, 0.0, old[position].market_maker)
        )
    return ops


def changes(old: Book, new: Book) -> list[DepthOp]:
    """Operations turning ``old`` into ``new`` (an empty old book gives inserts only)."""
    return _side_ops(old.bids, new.bids, BID) + _side_ops(old.asks, new.asks, ASK)


EMPTY = Book((), ())
