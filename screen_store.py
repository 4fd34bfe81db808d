"""The watchlist and the price alerts, kept in the data folder (``watchlist.json``,
``alerts.json``, 0600, written whole to a temporary file then renamed: a crash leaves the old
or the new file, never half of one). With an in-memory journal they live in memory only.

An alert fires once, when the symbol's last price CROSSES its level in the alert's direction
after the alert was made: it is first ``primed`` by a price on the near side (under the level
for ``above``, over it for ``below``), then fires at the first price at or beyond the level
(``above``: at or over, ``below``: at or under). An alert made while the price is already at or
beyond its level waits until the price comes back and crosses again. ``primed_at`` is kept in the
file, so a restart neither loses nor invents a crossing. A fired alert stays, marked
``triggered_at`` and ``price``, until deleted. Thread-safe: Flask threads edit, the quote hub
(reader loop) evaluates.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import TypeAdapter

from durable_files import write_whole

log = logging.getLogger(__name__)

MAX_WATCHLIST = 200
MAX_ALERTS = 500
WATCHLIST_FILE, ALERTS_FILE = "watchlist.json", "alerts.json"


@dataclass(frozen=True)
class WatchItem:
    symbol: str
    sec_type: str = "STK"


@dataclass(frozen=True)
class PriceAlert:
    id: str
    symbol: str
    sec_type: str
    condition: Literal["above", "below"]
    level: float
    note: str
    created_at: float
    triggered_at: float | None = None
    price: float | None = None  # the last price that fired it
    # when a price on the near side of the level was seen (from then on a price at or beyond
    # the level fires it); None: waiting for the price to come to the near side first
    primed_at: float | None = None

    def reached(self, last: float) -> bool:
        """``last`` is at or beyond the level."""
        return last >= self.level if self.condition == "above" else last <= self.level


@dataclass(frozen=True, kw_only=True)
class FiredAlert(PriceAlert):
    """A recently fired alert as the stream's ``quotes`` events carry it."""

    seq: int  # the order alerts fired in (from 1 in each run of the app)


Row = TypeVar("Row", WatchItem, PriceAlert)
_WATCH_ROWS = TypeAdapter(list[WatchItem])
_ALERT_ROWS = TypeAdapter(list[PriceAlert])


class ScreenStore:
    """Watchlist and alerts with their files."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._watchlist: tuple[WatchItem, ...] = tuple(self._load(WATCHLIST_FILE, _WATCH_ROWS))
        self._alerts: dict[str, PriceAlert] = {
            alert.id: alert for alert in self._load(ALERTS_FILE, _ALERT_ROWS)
        }
        self.version = 0  # bumped on every change (watchers resubscribe)

    # ------------------------------------------------------------------ files
    def _load(self, name: str, rows: TypeAdapter[list[Row]]) -> list[Row]:
        """The file's rows, each checked (a row of another shape, or of a newer version's
        extra fields ignored, set the whole file aside: it crashed the start)."""
        if self.folder is None or not (self.folder / name).is_file():
            return []
        try:
            return rows.validate_json((self.folder / name).read_bytes())
        except (OSError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
            log.error(
                "⚠️ %s is unreadable (%s): starting with none; the file is kept as %s.bad",
                name,
                exc,
                name,
            )
            try:
                os.replace(self.folder / name, self.folder / f"{name}.bad")
            except OSError:
                log.exception("could not set %s aside", name)
            return []

    def _save(self, name: str, rows: list) -> None:
        if self.folder is None:
            return
        write_whole(self.folder / name, json.dumps(rows, indent=1))

    # ------------------------------------------------------------------ watchlist
    def watchlist(self) -> tuple[WatchItem, ...]:
        return self._watchlist

    def set_watchlist(self, items: list[WatchItem]) -> tuple[WatchItem, ...]:
        unique = tuple(dict.fromkeys(items))
        if len(unique) > MAX_WATCHLIST:
            raise ValueError(f"at most {MAX_WATCHLIST} symbols in the watchlist")
        with self._lock:
            self._save(WATCHLIST_FILE, [asdict(item) for item in unique])
            self._watchlist = unique
            self.version += 1
        return unique

    # ------------------------------------------------------------------ alerts
    def alerts(self) -> list[PriceAlert]:
        return sorted(self._alerts.values(), key=lambda a: a.created_at)

    def alert(self, alert_id: str) -> PriceAlert | None:
        return self._alerts.get(alert_id)

    def add_alert(
        self,
        symbol: str,
        sec_type: str,
        condition: Literal["above", "below"],
        level: float,
        note: str = "",
        last: float | None = None,
    ) -> PriceAlert:
        """A new alert; primed at once when ``last`` (the price now, if known) is on the near
        side of the level."""
        now = time.time()
        alert = PriceAlert(secrets.token_hex(6), symbol, sec_type, condition, level, note, now)
        if last is not None and not alert.reached(last):
            alert = replace(alert, primed_at=now)
        with self._lock:
            if len(self._alerts) >= MAX_ALERTS:
                raise ValueError(f"at most {MAX_ALERTS} alerts; delete some first")
            alerts = {**self._alerts, alert.id: alert}
            self._save_alerts(alerts)
        return alert

    def delete_alert(self, alert_id: str) -> bool:
        with self._lock:
            if alert_id not in self._alerts:
                return False
            alerts = {k: v for k, v in self._alerts.items() if k != alert_id}
            self._save_alerts(alerts)
        return True

    def armed(self) -> list[PriceAlert]:
        """Alerts that have not fired."""
        return [a for a in self._alerts.values() if a.triggered_at is None]

    def fire(self, symbol: str, sec_type: str, last: float) -> list[PriceAlert]:
        """A new last price of ``symbol``: primes the armed alerts it is on the near side of,
        fires the primed ones it reaches (crossed); the ones that fired."""
        mine = [a for a in self.armed() if a.symbol == symbol and a.sec_type == sec_type]
        if not any(a.reached(last) == (a.primed_at is not None) for a in mine):
            return []  # nothing to prime, nothing crossed
        now = time.time()
        with self._lock:
            current = [
                self._alerts[a.id]
                for a in mine
                if a.id in self._alerts and self._alerts[a.id].triggered_at is None
            ]
            fired = [
                replace(a, triggered_at=now, price=last)
                for a in current
                if a.primed_at is not None and a.reached(last)
            ]
            primed = [
                replace(a, primed_at=now)
                for a in current
                if a.primed_at is None and not a.reached(last)
            ]
            alerts = {**self._alerts, **{a.id: a for a in fired + primed}}
            self._save_alerts(alerts, unsaved_ok=True)
        for alert in fired:
            log.info(
                "🔔 alert: %s %s %s %s (last %s)",
                alert.symbol,
                alert.condition,
                alert.level,
                alert.note,
                last,
            )
        return fired

    def _save_alerts(self, alerts: dict[str, PriceAlert], unsaved_ok: bool = False) -> None:
        """Write then swap in (caller holds the lock). ``unsaved_ok``: a write that fails is
        logged and the alerts still swapped in (an alert fires though the disk is full; the
        next save that succeeds writes it)."""
        try:
            self._save(
                ALERTS_FILE,
                [asdict(a) for a in sorted(alerts.values(), key=lambda a: a.created_at)],
            )
        except OSError:
            if not unsaved_ok:
                raise
            log.exception("❌ The alerts could not be saved; kept in memory meanwhile")
        self._alerts = alerts
        self.version += 1
