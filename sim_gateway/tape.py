"""One price process for history and live ticks: a contract's tape, sans-IO.

A contract is put on the tape (``watch``) the first time a client asks for its history, its
real-time bars or a live last bar. From that instant (the anchor) every price step of the
simulator is recorded into 1-minute bars and 5-second bins. Before the anchor the path is a
deterministic random walk at 1-minute resolution that ends exactly at the anchor's price, going
back ``HISTORY_SECONDS`` — a pure function of (seed, conId, minutes before the anchor). Every bar
size of one minute or more is an aggregate of the same minutes, so a chart's 1-day bar holds its
1-hour bars, and its last bar continues into the live ticks with no gap.

The historical walk uses at most ``MAX_MINUTE_VOL`` per minute (the simulator's live volatility,
0.0005 per 1 s step, is 0.39 % a minute: a year of that would wander off to zero or the moon).
Bars are 24-hour (the simulator quotes around the clock); a recorded gap (the simulator's clock
jumped) has no bars, as IB shows none for a halt. Sub-minute history and live bars older than
``LIVE_MINUTES`` are not kept (memory stays bounded per watched contract).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from .prices import round_to_tick
from .types import Quote

MINUTE = 60
BIN = 5  # real-time bar seconds
HISTORY_SECONDS = 366 * 86400
HISTORY_MINUTES = HISTORY_SECONDS // MINUTE
MAX_MINUTE_VOL = 0.0008
LIVE_MINUTES = 7 * 1440
LIVE_BINS = 720
BLOCK = 4096


@dataclass(frozen=True)
class Bar:
    """OHLCV of ``start`` .. ``start + seconds``; ``count`` is the number of trades."""

    start: float
    open: float
    high: float
    low: float
    close: float
    volume: int
    wap: float
    count: int


@dataclass
class _Slot:
    """A bar being built from steps."""

    open: float
    high: float
    low: float
    close: float
    volume: float = 0.0
    count: int = 0
    turnover: float = 0.0

    def add(self, price: float, volume: float) -> None:
        self.high, self.low, self.close = max(self.high, price), min(self.low, price), price
        self.volume += volume
        self.count += 1 if volume else 0
        self.turnover += price * volume


@dataclass
class _Track:
    """One watched contract: its anchor, pre-anchor walk and recorded minutes and bins."""

    anchor_minute: int
    anchor_price: float
    tick: float
    last_volume: float
    before: float = 0.0  # the close of the minute before the oldest walked one
    # index i = the minute (anchor_minute - 1 - i); closes[0] is the anchor price
    closes: np.ndarray = field(default_factory=lambda: np.empty(0))
    highs: np.ndarray = field(default_factory=lambda: np.empty(0))
    lows: np.ndarray = field(default_factory=lambda: np.empty(0))
    volumes: np.ndarray = field(default_factory=lambda: np.empty(0))
    minutes: collections.OrderedDict = field(default_factory=collections.OrderedDict)
    bins: collections.OrderedDict = field(default_factory=collections.OrderedDict)


class Tape:
    """Watched contracts' minutes: walked before their anchor, recorded after it."""

    def __init__(self, seed: int, minute_vol: float, step_volume: float = 1050.0) -> None:
        self.seed = seed
        self.minute_vol = min(minute_vol, MAX_MINUTE_VOL)
        self.minute_volume = step_volume
        self._tracks: dict[int, _Track] = {}

    def watching(self, con_id: int) -> bool:
        return con_id in self._tracks

    def watch(self, con_id: int, now: float, quote: Quote, tick: float) -> None:
        """Start recording ``con_id`` (no-op if it is already on the tape)."""
        if con_id in self._tracks:
            return
        price = quote.last or quote.close or 100.0
        track = _Track(int(now // MINUTE), price, tick, quote.volume, before=price)
        track.minutes[track.anchor_minute] = _Slot(price, price, price, price)
        self._tracks[con_id] = track

    def record(self, now: float, quote_of: Callable[[int], Quote]) -> None:
        """One price step at ``now`` for every watched contract."""
        for con_id, track in self._tracks.items():
            quote = quote_of(con_id)
            price = quote.last or track.anchor_price
            volume = max(0.0, quote.volume - track.last_volume)
            track.last_volume = quote.volume
            minute, chunk = int(now // MINUTE), int(now // BIN)
            for slots, key, limit in (
                (track.minutes, minute, LIVE_MINUTES),
                (track.bins, chunk, LIVE_BINS),
            ):
                slot = slots.get(key)
                if slot is None:
                    slot = slots[key] = _Slot(price, price, price, price)
                    while len(slots) > limit:
                        slots.popitem(last=False)
                slot.add(price, volume)

    # ------------------------------------------------------------------ the walk before the anchor
    def _extend(self, con_id: int, track: _Track, minutes: int) -> None:
        """Walk back until ``minutes`` minutes before the anchor are known (whole blocks, each
        seeded by its number, so the walk does not depend on how far earlier requests went)."""
        minutes = min(minutes, HISTORY_MINUTES)
        blocks = []
        known = len(track.closes)
        before = track.before
        while known < minutes:
            rng = np.random.default_rng([self.seed, con_id, known // BLOCK])
            steps = np.exp(-self.minute_vol * np.cumsum(rng.standard_normal(BLOCK)))
            opens = before * steps
            closes = np.concatenate(([before], opens[:-1]))
            wiggle = np.abs(rng.standard_normal(BLOCK)) * (self.minute_vol / 3)
            highs = np.maximum(opens, closes) * (1 + wiggle)
            lows = np.minimum(opens, closes) * (1 - wiggle)
            volumes = self.minute_volume * rng.integers(30, 91, BLOCK)
            blocks.append((closes, highs, lows, volumes))
            before = float(opens[-1])
            known += BLOCK
        if blocks:
            track.closes = np.concatenate([track.closes, *(b[0] for b in blocks)])
            track.highs = np.concatenate([track.highs, *(b[1] for b in blocks)])
            track.lows = np.concatenate([track.lows, *(b[2] for b in blocks)])
            track.volumes = np.concatenate([track.volumes, *(b[3] for b in blocks)])
            track.before = before

    @staticmethod
    def _open(track: _Track, i: int) -> float:
        """The open of walk minute ``i`` = the close of the minute before it."""
        return float(track.closes[i + 1]) if i + 1 < len(track.closes) else track.before

    # ------------------------------------------------------------------ bars
    def head(self, con_id: int) -> float:
        """Epoch seconds of the first minute on the tape."""
        track = self._tracks[con_id]
        return float((track.anchor_minute - HISTORY_MINUTES) * MINUTE)

    def bars(self, con_id: int, first: float, seconds: int, count: int) -> list[Bar]:
        """``count`` bars of ``seconds`` (a multiple of a minute) from ``first``; bars with no
        minute on the tape (before its head, in a recorded gap, in the future) are left out."""
        track = self._tracks[con_id]
        per = max(1, seconds // MINUTE)
        start_minute = int(first // MINUTE)
        needed = track.anchor_minute - start_minute
        if needed > 0:
            self._extend(con_id, track, needed)
        out = []
        for n in range(count):
            bar = self._bar(track, start_minute + n * per, per)
            if bar is not None:
                out.append(bar)
        return out

    def _bar(self, track: _Track, first: int, per: int) -> Bar | None:
        rows = list(self._walk_rows(track, first, per)) + list(self._live_rows(track, first, per))
        if not rows:
            return None
        opens, highs, lows, closes, volumes, counts = zip(*rows, strict=True)
        tick = track.tick
        volume = int(sum(volumes))
        o, h, lo, c = (
            round_to_tick(p, tick) for p in (opens[0], max(highs), min(lows), closes[-1])
        )
        h, lo = max(o, h, c), min(o, lo, c)
        wap = round((o + h + lo + c) / 4, 6)
        return Bar(first * MINUTE, o, h, lo, c, volume, wap, sum(counts))

    def _walk_rows(self, track: _Track, first: int, per: int) -> Iterable[tuple]:
        """Rows of the pre-anchor walk in minutes ``first .. first + per`` (oldest first)."""
        last = min(first + per, track.anchor_minute) - 1  # newest walk minute in the bar
        oldest = max(first, track.anchor_minute - min(len(track.closes), HISTORY_MINUTES))
        if last < oldest:
            return []
        hi_i, lo_i = track.anchor_minute - 1 - oldest, track.anchor_minute - 1 - last
        volume = float(track.volumes[lo_i : hi_i + 1].sum())
        return [
            (
                self._open(track, hi_i),
                float(track.highs[lo_i : hi_i + 1].max()),
                float(track.lows[lo_i : hi_i + 1].min()),
                float(track.closes[lo_i]),
                volume,
                max(1, int(volume // 500)),
            )
        ]

    @staticmethod
    def _live_rows(track: _Track, first: int, per: int) -> Iterable[tuple]:
        start = max(first, track.anchor_minute)
        for minute in range(start, first + per):
            slot = track.minutes.get(minute)
            if slot is not None:
                yield slot.open, slot.high, slot.low, slot.close, slot.volume, slot.count

    def completed_bins(self, con_id: int, after: int, now: float) -> list[Bar]:
        """Finished 5-second bins with index > ``after`` (an index is epoch seconds // 5)."""
        track = self._tracks[con_id]
        current = int(now // BIN)
        out = []
        for key, slot in track.bins.items():
            if after < key < current:
                wap = slot.turnover / slot.volume if slot.volume else slot.close
                out.append(
                    Bar(
                        key * BIN,
                        slot.open,
                        slot.high,
                        slot.low,
                        slot.close,
                        int(slot.volume),
                        round(wap, 6),
                        slot.count,
                    )
                )
        return out
