"""The order journal: SQLite (stdlib), WAL, synchronous=FULL.

Every submission is written *before* it is queued (``insert``, synchronous, in the caller's
thread): if that write fails the order is refused. After that, every change of the order's
lifecycle record (orderId, permId, each transition, IB message, fill and commission, the verdict)
is saved by a writer thread (``save``, non-blocking for the event loop, batched commits). The
record is stored whole as JSON beside the searched columns; app-wide flags (kill switch) too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from journal_health import WriteHealth
from order_records import FillRecord, IBMessage, Lifecycle, OrderIntent, StatusChange, Step

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    id TEXT PRIMARY KEY,
    idem_key TEXT UNIQUE,
    request_hash TEXT,
    source TEXT NOT NULL,
    remote TEXT,
    risk TEXT,
    created_at REAL NOT NULL,
    perm_id INTEGER,
    verdict TEXT,
    updated_at REAL NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_verdict ON orders(verdict);
CREATE INDEX IF NOT EXISTS orders_created ON orders(created_at);
CREATE TABLE IF NOT EXISTS flags (name TEXT PRIMARY KEY, value TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS notional_added (at REAL NOT NULL, order_id TEXT, notional REAL);
CREATE INDEX IF NOT EXISTS notional_added_at ON notional_added(at);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    source TEXT NOT NULL,
    remote TEXT,
    order_id TEXT,
    request TEXT,
    decision TEXT,
    outcome TEXT NOT NULL
);
"""
FINAL_VERDICTS = ("filled", "cancelled", "rejected", "not_sent", "not_placed")
BUSY_TIMEOUT, PROBE_EVERY = 10.0, 2.0  # s: a write waits for another's lock; between probes


class JournalError(RuntimeError):
    """The journal cannot be opened (damaged, emptied), written or read: no order is sent."""


class DuplicateKey(Exception):
    """An order with this idempotency key is already journaled."""

    def __init__(self, existing: JournalEntry) -> None:
        super().__init__(existing.record.id)
        self.existing = existing


@dataclasses.dataclass(frozen=True)
class JournalEntry:
    """One journaled order."""

    record: Lifecycle
    idem_key: str | None
    request_hash: str | None
    risk: dict[str, Any] | None


ENTRY = "SELECT record, idem_key, request_hash, risk FROM orders"  # a JournalEntry's columns
# a change's added notional, on the day it was made (in the order's risk before: its own day)
ADD_NOTIONAL = "INSERT INTO notional_added (at, order_id, notional) VALUES (?, ?, ?)"


class Journal:
    """Thread-safe SQLite order journal with a background writer."""

    def __init__(self, path: str) -> None:
        self.path = path
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = _open(path)
        self._lock = threading.Lock()
        self._pending: dict[str, Lifecycle] = {}
        self._writing: set[str] = set()  # the ids of a batch taken from _pending, committing
        self._pending_lock = threading.Condition()
        self._wake: queue.SimpleQueue[bool] = queue.SimpleQueue()
        self._closed = False
        self.health = WriteHealth()
        self._writer = threading.Thread(target=self._write_loop, name="journal-writer", daemon=True)
        self._writer.start()

    # ------------------------------------------------------------- writes
    def insert(
        self,
        record: Lifecycle,
        idem_key: str | None = None,
        request_hash: str | None = None,
        remote: str | None = None,
        risk: dict[str, Any] | None = None,
    ) -> None:
        """Write a new submission durably, or raise (JournalError / DuplicateKey)."""
        risk_json = json.dumps(risk) if risk is not None else None
        keys = (record.id, idem_key, request_hash, record.source, remote, risk_json)
        state = (record.created_at, record.perm_id, record.verdict, record.updated_at)
        try:
            with self._lock:
                self._db.execute(
                    "INSERT INTO orders (id, idem_key, request_hash, source, remote, risk, "
                    "created_at, perm_id, verdict, updated_at, record) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (*keys, *state, _dump(record)),
                )
        except sqlite3.IntegrityError:
            existing = self.find_by_key(idem_key) if idem_key else None
            if existing is None:
                raise JournalError(f"journal refused order {record.id}") from None
            raise DuplicateKey(existing) from None
        except sqlite3.Error as exc:
            self._write_failed(exc)
            raise JournalError(f"order journal unavailable: {exc}") from exc
        self.health.succeeded()

    def add_notional(self, order_id: str, notional: float) -> None:
        """Count ``notional`` more towards today's cap (a change made an order bigger now)."""
        self._write(ADD_NOTIONAL, (time.time(), order_id, notional))

    def _write(self, sql: str, args: tuple) -> None:
        """One statement, durably, or raise JournalError."""
        try:
            with self._lock:
                self._db.execute(sql, args)
        except sqlite3.Error as exc:
            self._write_failed(exc)
            raise JournalError(f"order journal unavailable: {exc}") from exc
        self.health.succeeded()

    def save(self, record: Lifecycle) -> None:
        """Queue the latest state of a record for the writer thread (never blocks long)."""
        with self._pending_lock:
            self._pending[record.id] = record
        self._wake.put(True)

    def flush(self, timeout: float = 10.0, order_ids: Iterable[str] | None = None) -> bool:
        """Wait until every queued record (``order_ids``' alone) is committed; False on time-out."""
        deadline = time.monotonic() + timeout
        unsaved = bool if order_ids is None else frozenset(order_ids).intersection  # of the ids
        with self._pending_lock:
            while unsaved(self._pending.keys() | self._writing) and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._pending_lock.wait(remaining)
        return True

    def _write_loop(self) -> None:
        while True:
            try:  # while writes fail, a probe now and then learns when they succeed again
                self._wake.get(timeout=PROBE_EVERY if self.health.failure else None)
            except queue.Empty:
                self._probe()
                continue
            with self._pending_lock:
                batch, self._pending = self._pending, {}
                self._writing = set(batch)
            if batch:
                self._commit(batch)
            with self._pending_lock:
                self._writing = set()
                self._pending_lock.notify_all()
                if self._closed:  # what a last attempt could not save is named by close()
                    return

    def _write_failed(self, exc: sqlite3.Error) -> None:
        self.health.failed(exc)
        self._wake.put(True)  # the writer starts probing

    def _probe(self) -> None:
        """One small write (a failed insert or audit leaves nothing to retry)."""
        try:
            with self._lock:
                self._db.execute(
                    "INSERT OR REPLACE INTO flags VALUES ('journal_probe', '', ?)", (time.time(),)
                )
        except sqlite3.Error as exc:
            self.health.failed(exc)
            return
        self.health.succeeded()

    def _commit(self, batch: dict[str, Lifecycle]) -> None:
        try:
            rows = [(r.perm_id, r.verdict, r.updated_at, _dump(r), r.id) for r in batch.values()]
        except (TypeError, ValueError):  # log and carry on: one bad record must not stop saving
            log.exception("❌ journal: a record could not be serialised; skipped")
            rows = []
            for r in batch.values():
                try:
                    rows.append((r.perm_id, r.verdict, r.updated_at, _dump(r), r.id))
                except (TypeError, ValueError):
                    log.error("journal: record %s not saved", r.id)
        try:
            with self._lock:  # rolled back under the same hold: an insert by another thread
                try:  # in between would run inside this transaction and be rolled back too
                    self._db.execute("BEGIN")
                    self._db.executemany(
                        "UPDATE orders SET perm_id=?, verdict=?, updated_at=?, record=? WHERE id=?",
                        rows,
                    )
                    self._db.execute("COMMIT")
                except sqlite3.Error:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            with self._pending_lock:
                for key, record in batch.items():
                    self._pending.setdefault(key, record)
            if self.health.failed(exc, backlog=True):  # the first of a run: why, in full
                log.exception("❌ journal write of %d records failed; will retry", len(rows))
            elif (reminder := self.health.remind()) is not None:
                log.error("❌ %s (%d orders' changes wait)", reminder, self.unsaved())
            time.sleep(0.2)
            self._wake.put(True)
            return
        self.health.succeeded(backlog_saved=True)

    def unsaved(self) -> int:
        """Orders whose latest changes are not committed yet."""
        with self._pending_lock:
            return len(self._pending)

    def stop(self) -> None:
        """Same as close() (the Services shutdown protocol)."""
        self.close()

    def close(self, timeout: float = 10.0) -> None:
        """Flush (up to ``timeout`` s), stop the writer and close the database; the orders
        whose last changes could not be saved (a full disk) are named in the log."""
        self.flush(timeout)
        with self._pending_lock:
            self._closed = True
        self._wake.put(True)
        self._writer.join(5)
        with self._lock:
            self._db.close()
        with self._pending_lock:
            lost = sorted(self._pending)
        if lost:
            log.error(
                "❌ journal closed with the last changes of %d order(s) not saved: %s (the "
                "next start takes their state from the broker again)",
                len(lost),
                ", ".join(lost),
            )

    # -------------------------------------------------------------- reads
    def find_by_key(self, idem_key: str) -> JournalEntry | None:
        """The order journaled under an idempotency key, if any."""
        return next(iter(self._entries(f"{ENTRY} WHERE idem_key=?", (idem_key,))), None)

    def get(self, order_id: str) -> JournalEntry | None:
        """One journaled order by our id."""
        return next(iter(self._entries(f"{ENTRY} WHERE id=?", (order_id,))), None)

    def load(self, recent: int = 500) -> list[JournalEntry]:
        """Every unfinished order plus the ``recent`` latest finished ones (by their last
        change, as the handler keeps them in memory), oldest first."""
        marks = ",".join("?" * len(FINAL_VERDICTS))
        entries = self._entries(
            f"{ENTRY} WHERE verdict IS NULL OR verdict NOT IN ({marks}) UNION SELECT * FROM "
            f"({ENTRY} WHERE verdict IN ({marks}) ORDER BY updated_at DESC LIMIT ?)",
            (*FINAL_VERDICTS, *FINAL_VERDICTS, recent),
        )
        return sorted(entries, key=lambda e: e.record.created_at)

    def count(self) -> int:
        """How many orders were ever journaled."""
        return self._query("SELECT COUNT(*) FROM orders", ())[0][0]

    def _entries(self, sql: str, args: tuple) -> list[JournalEntry]:
        rows = self._query(sql, args)
        with self._reading():
            return [_entry(r) for r in rows]

    def _query(self, sql: str, args: tuple) -> list[tuple]:
        with self._reading(), self._lock:
            return self._db.execute(sql, args).fetchall()

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """A read's sqlite3 error or undecodable record: JournalError naming the file."""
        try:
            yield
        except (sqlite3.Error, ValueError, TypeError, KeyError, AttributeError) as exc:
            what = exc if isinstance(exc, sqlite3.Error) else f"a record does not decode ({exc!r})"
            raise JournalError(
                f"the order journal {self.path} cannot be read: {what}. {_way_out(exc)}"
            ) from exc

    # -------------------------------------------------------------- flags
    def flag(self, name: str) -> str | None:
        """A persisted flag's value."""
        rows = self._query("SELECT value FROM flags WHERE name=?", (name,))
        return rows[0][0] if rows else None

    def set_flag(self, name: str, value: str | None) -> None:
        """Persist (or, with None, clear) a flag durably."""
        if value is None:
            self._write("DELETE FROM flags WHERE name=?", (name,))
        else:
            self._write("INSERT OR REPLACE INTO flags VALUES (?,?,?)", (name, value, time.time()))

    def audit(
        self,
        source: str,
        remote: str | None,
        request: Any,
        decision: Any,
        outcome: str,
        order_id: str | None = None,
    ) -> None:
        """Record one order request and what became of it (never raises)."""
        asked = json.dumps(request, default=str)[:4000]
        decided = json.dumps(decision, default=str) if decision is not None else None
        outcome = outcome[:500].encode("utf-8", "backslashreplace").decode()  # a stranger's text
        try:
            with self._lock:
                self._db.execute(
                    "INSERT INTO audit (at, source, remote, order_id, request, decision, outcome)"
                    " VALUES (?,?,?,?,?,?,?)",
                    (time.time(), source, remote, order_id, asked, decided, outcome),
                )
        except sqlite3.Error as exc:
            log.exception("audit record not written (%s from %s: %s)", source, remote, outcome)
            self._write_failed(exc)
            return
        self.health.succeeded()

    def audit_rows(self, limit: int = 100) -> list[dict[str, Any]]:
        """The latest audit records, newest first."""
        rows = self._query(
            "SELECT at, source, remote, order_id, request, decision, outcome "
            "FROM audit ORDER BY seq DESC LIMIT ?",
            (limit,),
        )
        keys = ("at", "source", "remote", "order_id", "request", "decision", "outcome")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def notional_since(self, since: float) -> float:
        """Notional of the orders accepted by the risk gate since ``since`` (epoch), and of
        the changes that made orders bigger since then."""
        rows = self._query(
            "SELECT risk FROM orders WHERE created_at >= ? AND risk IS NOT NULL", (since,)
        )
        [(added,)] = self._query(
            "SELECT coalesce(sum(notional), 0) FROM notional_added WHERE at >= ?", (since,)
        )
        with self._reading():
            return sum((json.loads(r[0]) or {}).get("notional") or 0.0 for r in rows) + added

    def make_read_only(self) -> None:
        """Refuse every later write (a fault switch for tests and drills)."""
        with self._lock:
            self._db.execute("PRAGMA query_only=ON")


def create_journal(path: str) -> None:
    """Make a new journal at ``path`` now (in the 0-byte file made for its mode, if any)."""
    if path != ":memory:":
        _open(path, new=True).close()


def _open(path: str, new: bool = False) -> sqlite3.Connection:
    """The journal's database, in WAL mode with full sync and its tables; JournalError naming
    the file when it cannot be, is damaged or was emptied (a damaged file is left as it is)."""
    db = None
    try:
        if not new:
            _check_size(path)
        db = sqlite3.connect(
            path, check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT
        )
        found = [row[0] for row in db.execute("PRAGMA quick_check(3)")]  # 2,000 orders: 5 ms
        if found != ["ok"]:
            raise sqlite3.DatabaseError(f"it is damaged ({'; '.join(found)})")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(SCHEMA)
    except sqlite3.Error as exc:
        if db is not None:
            db.close()
        raise JournalError(
            f"the order journal {path} cannot be opened: {exc}. {_way_out(exc)}"
        ) from exc
    return db


def _check_size(path: str) -> None:
    """sqlite3.DatabaseError for a journal under one page: emptied (SQLite never leaves one so)."""
    size = os.path.getsize(path) if path != ":memory:" and os.path.isfile(path) else None
    if size is not None and size < 512:
        raise sqlite3.DatabaseError(f"it has {size} bytes, its orders and keys lost")


def _way_out(exc: Exception) -> str:
    """What to do about a journal that cannot be opened or read."""
    if getattr(exc, "sqlite_errorname", "") in ("SQLITE_BUSY", "SQLITE_LOCKED"):
        return "Another program holds it: close that program and start again"
    return (
        "It was left as it is: put back a copy, or move it aside to start with an empty "
        "journal (the broker keeps its orders)"
    )


# ------------------------------------------------------------ (de)serialising
def _dump(record: Lifecycle) -> str:
    return json.dumps(dataclasses.asdict(record), separators=(",", ":"))


def _entry(row: tuple) -> JournalEntry:
    record, idem_key, request_hash, risk = row
    return JournalEntry(
        record=load_record(record),
        idem_key=idem_key,
        request_hash=request_hash,
        risk=json.loads(risk) if risk else None,
    )


def load_record(text: str) -> Lifecycle:
    """A Lifecycle from its journal JSON."""
    data = json.loads(text)
    data["intent"] = OrderIntent(**data["intent"])
    data["transitions"] = tuple(StatusChange(**x) for x in data["transitions"])
    data["messages"] = tuple(IBMessage(**x) for x in data["messages"])
    data["fills"] = tuple(FillRecord(**x) for x in data["fills"])
    data["steps"] = tuple(Step(**x) for x in data["steps"])
    data["children"] = tuple(data.get("children") or ())
    return Lifecycle(**data)
