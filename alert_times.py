"""When a target-position alert was sent, and the newest one acted on for each contract.

TradingView sends alerts from several addresses, so two alerts a second apart may arrive in
either order, and a script retrying an older alert after a 409 / 503 sends it after newer ones.
A target alert names where the position should be now: applied after a newer one, it undoes it
(long 10 after flat leaves the account long while the strategy is flat). ``NewestTargets``
keeps, per contract and account, the newest ``time`` of a target alert acted on, so that the
webhook can refuse an older one (409 ``stale_alert``). In memory only: see the README.
"""

from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from datetime import UTC, datetime

# a number as alerts write it in text ("10", "187.25", "1e3"): also webhook's quoted numbers
NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
MILLIS_FROM = 1e11  # an epoch number from here on is in milliseconds (1e11 s is the year 5138)
LATEST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()  # the last time shown
MAX_CONTRACTS = 10_000  # contracts remembered; the one acted on least recently goes first

Contract = tuple[str, str, str, str]  # account, sec_type, symbol (no dots), currency


def sent_at(text: str) -> float:
    """``time`` as epoch seconds: ISO 8601 text (TradingView's ``{{time}}`` / ``{{timenow}}``,
    2026-11-27T15:00:00Z; UTC when it names no offset) or an epoch number, in seconds or in
    milliseconds. ValueError for anything else."""
    text = text.strip()
    if NUMBER.fullmatch(text):
        seconds = float(text)
        seconds = seconds / 1000 if seconds >= MILLIS_FROM else seconds
    else:
        seconds = _iso(text)
    if not (math.isfinite(seconds) and 0 <= seconds <= LATEST):
        raise ValueError(f"{text!r} is no time from 1970 to 9999")
    return seconds


def _iso(text: str) -> float:
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    except (ValueError, OverflowError):
        raise ValueError(f"{text!r} is no ISO 8601 time nor epoch number") from None


def shown(seconds: float) -> str:
    """Epoch seconds as TradingView writes a time (2026-11-27T15:00:00Z; milliseconds if any)."""
    moment = datetime.fromtimestamp(seconds, UTC)
    spec = "seconds" if moment.microsecond == 0 else "milliseconds"
    return moment.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


class NewestTargets:
    """The newest ``time`` of a target alert acted on, per contract: one entry each, at most
    ``limit`` (the contract acted on least recently is forgotten first). Thread-safe."""

    def __init__(self, limit: int = MAX_CONTRACTS) -> None:
        self._lock = threading.Lock()
        self._newest: OrderedDict[Contract, float] = OrderedDict()
        self._limit = limit

    def newer_than(self, contract: Contract, at: float) -> float | None:
        """The newest time acted on for ``contract`` when it is later than ``at``, else None."""
        with self._lock:
            newest = self._newest.get(contract)
        return newest if newest is not None and newest > at else None

    def acted(self, contract: Contract, at: float) -> None:
        """A target alert sent at ``at`` was acted on (an order placed, or nothing to do)."""
        with self._lock:
            self._newest[contract] = max(at, self._newest.get(contract, at))
            self._newest.move_to_end(contract)
            while len(self._newest) > self._limit:
                self._newest.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._newest)
