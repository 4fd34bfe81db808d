"""Deterministic price paths: one geometric random walk per contract.

The shock of step ``k`` of contract ``c`` is a pure function of (seed, c, k) (an RNG seeded per
block of steps, not one long-lived RNG), so a path depends only on the seed and the number of
steps taken — however the steps are batched, and after a save/restore.
"""

from __future__ import annotations

import collections
import math
import random
from dataclasses import asdict, dataclass
from decimal import Decimal
from functools import cache, lru_cache

from .types import Quote

BLOCK = 4096  # steps drawn per RNG seeding


@cache
def _decimals(tick: float) -> int:
    """Number of decimals of a tick size (0.01 → 2, 0.00005 → 5)."""
    return max(0, -int(Decimal(str(tick)).as_tuple().exponent))


def round_to_tick(price: float, tick: float) -> float:
    """``price`` rounded to the nearest multiple of ``tick``, without float noise."""
    return round(round(price / tick) * tick, _decimals(tick))


def on_tick(price: float, tick: float) -> bool:
    """Whether ``price`` is a multiple of ``tick``."""
    steps = price / tick
    return abs(steps - round(steps)) < 1e-6


@lru_cache(maxsize=256)
def _block(seed: int, con_id: int, block: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Normal shocks and traded volumes of steps ``block * BLOCK ..`` of one contract."""
    rng = random.Random(f"{seed}/{con_id}/{block}")  # str seeds are hashed with SHA-512: stable
    normals = tuple(rng.gauss(0.0, 1.0) for _ in range(BLOCK))
    return normals, tuple(100.0 * rng.randint(1, 20) for _ in range(BLOCK))


@dataclass
class _Path:
    """Mutable state of one contract's path (``mid`` is unrounded)."""

    tick: float
    mid: float
    open: float
    close: float
    high: float
    low: float
    volume: float = 0.0


class PriceBook:
    """All paths, stepped together every ``step_seconds`` from ``origin``."""

    def __init__(
        self,
        starts: dict[int, tuple[float, float]],  # conId → (start price, tick)
        seed: int,
        volatility: float,
        step_seconds: float,
        origin: float,
        delay_steps: int = 0,
    ) -> None:
        self.seed, self.volatility, self.step_seconds = seed, volatility, step_seconds
        self.origin = origin
        self.steps = 0
        self._paths = {}
        for con_id, (price, tick) in starts.items():
            first = round_to_tick(price, tick)
            self._paths[con_id] = _Path(tick, price, first, first, first, first)
        self._delay_steps = delay_steps
        self._history: dict[int, collections.deque[float]] = {}  # each path's recent mids
        self._start_history()

    def _start_history(self) -> None:
        """Delayed quotes from now: each path's mids of the last ``delay_steps`` steps."""
        self._history = {
            con_id: collections.deque([path.mid], maxlen=self._delay_steps + 1)
            for con_id, path in self._paths.items()
        }

    def next_step_time(self) -> float:
        """Time of the next step."""
        return self.origin + (self.steps + 1) * self.step_seconds

    def step(self) -> None:
        """Take one step on every path."""
        self.steps += 1
        block, index = divmod(self.steps, BLOCK)
        for con_id, path in self._paths.items():
            normals, volumes = _block(self.seed, con_id, block)
            path.mid *= math.exp(self.volatility * normals[index])
            last = round_to_tick(path.mid, path.tick)
            path.high, path.low = max(path.high, last), min(path.low, last)
            path.volume += volumes[index]
            self._history[con_id].append(path.mid)

    def _path(self, con_id: int) -> _Path:
        path = self._paths.get(con_id)
        if path is None:
            raise KeyError(f"no price path for conId {con_id}")
        return path

    def last(self, con_id: int) -> float:
        """Last price (the mid rounded to tick)."""
        path = self._path(con_id)
        return round_to_tick(path.mid, path.tick)

    def quote(self, con_id: int) -> Quote:
        """Top of book: bid/ask one tick either side of last."""
        path = self._path(con_id)
        return self._quote_at(con_id, path, path.mid)

    def delayed_quote(self, con_id: int) -> Quote:
        """The quote of ``delay_steps`` steps ago (IB's delayed data: 15-20 minutes old; the
        start price until that long has passed); the day's open, close, high and low as now."""
        path = self._path(con_id)
        return self._quote_at(con_id, path, self._history[con_id][0])

    @staticmethod
    def _quote_at(con_id: int, path: _Path, mid: float) -> Quote:
        last = round_to_tick(mid, path.tick)
        return Quote(
            con_id=con_id,
            bid=round_to_tick(last - path.tick, path.tick),
            ask=round_to_tick(last + path.tick, path.tick),
            last=last,
            close=path.close,
            open=path.open,
            high=path.high,
            low=path.low,
            volume=path.volume,
        )

    def to_state(self) -> dict:
        """JSON-serialisable state."""
        return {
            "origin": self.origin,
            "steps": self.steps,
            "paths": {str(con_id): asdict(path) for con_id, path in self._paths.items()},
        }

    def restore(self, state: dict) -> None:
        """Load ``to_state`` output; paths of contracts no longer known are dropped."""
        self.origin, self.steps = state["origin"], state["steps"]
        for key, fields in state["paths"].items():
            if int(key) in self._paths:
                self._paths[int(key)] = _Path(**fields)
        self._start_history()
