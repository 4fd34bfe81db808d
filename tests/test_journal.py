"""The order journal: durable inserts, batched saves, idempotency keys, flags."""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

import journal as journal_module
from conftest import wait_for
from gateway_process import ROOT, free_port
from journal import DuplicateKey, Journal, JournalError
from order_handler import OrderHandler
from order_records import Lifecycle, OrderIntent, StatusChange, Step


def record(order_id: str, verdict: str | None = None, at: float = 1.0) -> Lifecycle:
    intent = OrderIntent(symbol="AAPL", action="BUY", quantity=1, order_type="MKT")
    return Lifecycle(
        id=order_id,
        intent=intent,
        source="api",
        created_at=at,
        phase="queued",
        verdict=verdict,
        updated_at=at,
        steps=(Step(at, "queued"),),
    )


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "data" / "orders.db")


@pytest.fixture
def journal(path):
    j = Journal(path)
    yield j
    j.close()


def test_insert_is_durable_and_reloads(journal, path):
    journal.insert(record("o-1"), "key-1", "hash-1", "127.0.0.1", {"decision": "accepted"})
    other = Journal(path)  # a second process would see it: it is committed
    try:
        entry = other.get("o-1")
        assert entry.record == record("o-1")
        assert (entry.idem_key, entry.request_hash, entry.risk) == (
            "key-1",
            "hash-1",
            {"decision": "accepted"},
        )
    finally:
        other.close()


def test_saves_keep_the_latest_record(journal, path):
    journal.insert(record("o-1"))
    first = record("o-1")
    filled = dataclasses.replace(
        first,
        status="Filled",
        verdict="filled",
        perm_id=77,
        transitions=(StatusChange(2.0, None, "Filled", 1, 0),),
    )
    journal.save(dataclasses.replace(first, status="PreSubmitted"))
    journal.save(filled)
    assert journal.flush(5)
    journal.close()
    again = Journal(path)
    try:
        assert again.get("o-1").record == filled
    finally:
        again.close()


def test_same_idempotency_key_is_refused_with_the_original(journal):
    journal.insert(record("o-1"), "key-1", "h1")
    with pytest.raises(DuplicateKey) as caught:
        journal.insert(record("o-2"), "key-1", "h2")
    assert caught.value.existing.record.id == "o-1" and str(caught.value) == "o-1"
    assert journal.count() == 1


def test_concurrent_inserts_with_one_key_keep_exactly_one(journal):
    outcomes = []

    def insert(n):
        try:
            journal.insert(record(f"o-{n}"), "shared", "h")
            outcomes.append("inserted")
        except DuplicateKey:
            outcomes.append("duplicate")

    threads = [threading.Thread(target=insert, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("inserted") == 1 and journal.count() == 1


def test_unwritable_journal_refuses(journal):
    journal.make_read_only()
    with pytest.raises(JournalError):
        journal.insert(record("o-1"))
    with pytest.raises(JournalError):
        journal.set_flag("kill_switch", "x")


def test_load_returns_unfinished_and_recent_finished(journal):
    for n in range(5):
        journal.insert(record(f"done-{n}", verdict="filled", at=float(n)))
    journal.insert(record("open", verdict="working", at=0.5))
    journal.insert(record("new", verdict=None, at=0.7))
    ids = [e.record.id for e in journal.load(recent=2)]
    assert ids == ["open", "new", "done-3", "done-4"]


def test_flags_persist(journal, path):
    journal.set_flag("kill_switch", "panic")
    journal.close()
    again = Journal(path)
    try:
        assert again.flag("kill_switch") == "panic"
        again.set_flag("kill_switch", None)
        assert again.flag("kill_switch") is None
    finally:
        again.close()


# --------------------------------------------------------------- durability settings
def test_the_journal_is_wal_with_full_sync(journal, path):
    assert journal._query("PRAGMA journal_mode", ()) == [("wal",)]
    assert journal._query("PRAGMA synchronous", ()) == [(2,)]  # FULL
    assert journal._query("PRAGMA query_only", ()) == [(0,)]
    journal.make_read_only()
    assert journal._query("PRAGMA query_only", ()) == [(1,)]


def test_in_memory_journal_needs_no_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    memory = Journal(":memory:")
    try:
        memory.insert(record("o-1"))
        assert memory.count() == 1 and not (tmp_path / ":memory:").exists()
    finally:
        memory.close()
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------- refused inserts
def test_a_clashing_order_id_is_refused_not_overwritten(journal):
    journal.insert(record("o-1"), "key-1", "h1")
    with pytest.raises(JournalError, match="^journal refused order o-1$"):
        journal.insert(record("o-1", verdict="filled"))  # no key: nothing to replay
    with pytest.raises(JournalError, match="^journal refused order o-1$"):
        journal.insert(record("o-1"), "key-2", "h2")  # a new key, an old id
    assert journal.count() == 1 and journal.get("o-1").record.verdict is None
    assert journal.find_by_key("key-2") is None and journal.get("o-2") is None


def test_unwritable_journal_says_why(journal, caplog):
    journal.make_read_only()
    why = "^order journal unavailable: attempt to write a readonly database$"
    with pytest.raises(JournalError, match=why):
        journal.insert(record("o-1"))
    with pytest.raises(JournalError, match=why):
        journal.set_flag("kill_switch", "on")
    journal.audit("api", "127.0.0.1", {"symbol": "AAPL"}, None, "queued")  # never raises
    assert journal.audit_rows() == []
    assert "audit record not written (api from 127.0.0.1: queued)" in [
        r.getMessage() for r in caplog.records
    ]


# ---------------------------------------------------------------------- saves
@pytest.mark.parametrize("first", ["save", "insert"])
def test_a_failed_commit_is_retried_until_it_succeeds(journal, path, caplog, first):
    journal.insert(record("o-1"))
    journal.make_read_only()  # every commit fails for now
    if first == "insert":  # the run of failures begins with an order refused: the saves that
        with pytest.raises(JournalError):  # fail after it were never told in full
            journal.insert(record("o-2"))
    filled = dataclasses.replace(record("o-1"), verdict="filled", status="Filled")
    journal.save(filled)
    wait_for(lambda: any("will retry" in r.getMessage() for r in caplog.records))
    assert not journal.flush(1.0)  # not committed: still pending (retried every 0.2 s)
    # why, in full, once: each retry's traceback filled the log while the disk was full
    failures = [r for r in caplog.records if "journal write of" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info, [r.getMessage() for r in failures]
    journal._query("PRAGMA query_only=OFF", ())  # the disk is writable again
    assert journal.flush(5)
    other = Journal(path)
    try:
        assert other.get("o-1").record == filled
    finally:
        other.close()


def test_an_order_inserted_while_a_failed_save_unwinds_is_kept(journal, path):
    """A failed save's transaction is rolled back before anyone else may write: an order
    journaled meanwhile (intake, on another thread) must not be rolled back with it. Here the
    insert runs from the failure's log line, between the failure and its clean-up."""
    journal.insert(record("o-1"))
    journal.make_read_only()
    inserted: list[bool] = []

    class InsertOnFailure(logging.Handler):
        def emit(self, line: logging.LogRecord) -> None:
            if "will retry" in line.getMessage() and not inserted:
                journal._query("PRAGMA query_only=OFF", ())  # writable again
                journal.insert(record("o-2"), "key-2", "hash-2")
                inserted.append(True)

    hook, logger = InsertOnFailure(), logging.getLogger("journal")
    logger.addHandler(hook)
    try:
        journal.save(dataclasses.replace(record("o-1"), verdict="filled"))
        wait_for(lambda: inserted)
        assert journal.flush(5)
    finally:
        logger.removeHandler(hook)
    other = Journal(path)  # what is on disk
    try:
        assert other.find_by_key("key-2") is not None
        assert other.get("o-1").record.verdict == "filled"
    finally:
        other.close()


def test_a_failed_batch_is_retried_whole_and_says_so(journal, caplog):
    for n in (1, 2):
        journal.insert(record(f"o-{n}"))
    journal.make_read_only()
    journal.save(dataclasses.replace(record("o-1"), verdict="filled"))
    journal.save(dataclasses.replace(record("o-2"), verdict="cancelled"))
    wait_for(
        lambda: (
            "❌ journal write of 2 records failed; will retry"
            in [r.getMessage() for r in caplog.records]
        )
    )
    journal._query("PRAGMA query_only=OFF", ())
    assert journal.flush(5)
    assert [journal.get(f"o-{n}").record.verdict for n in (1, 2)] == ["filled", "cancelled"]


def test_flush_waits_up_to_its_time_out(journal):
    journal.insert(record("o-1"))
    journal._lock.acquire()  # the writer's commit waits for this ...
    journal.save(dataclasses.replace(record("o-1"), verdict="filled"))
    threading.Timer(0.1, journal._lock.release).start()  # ... for a tenth of a second
    assert journal.flush(0.9)  # less than a second is still worth waiting for
    assert journal.get("o-1").record.verdict == "filled"


def test_a_retry_keeps_a_newer_save_of_the_same_order(journal, caplog):
    journal.insert(record("o-1"))
    journal.make_read_only()
    journal.save(dataclasses.replace(record("o-1"), status="Submitted"))
    wait_for(lambda: any("will retry" in r.getMessage() for r in caplog.records))
    newest = dataclasses.replace(record("o-1"), status="Filled", verdict="filled")
    journal.save(newest)
    journal._query("PRAGMA query_only=OFF", ())
    assert journal.flush(5)
    assert journal.get("o-1").record == newest


def test_flush_waits_for_the_commit_not_just_the_hand_over(journal):
    journal.insert(record("o-1"))
    filled = dataclasses.replace(record("o-1"), verdict="filled")
    with journal._lock:  # the writer's commit waits for this
        journal.save(filled)
        wait_for(lambda: not journal._pending)  # the writer took the batch
        assert not journal.flush(0.2)  # ... but has not committed it
    assert journal.flush(5)
    assert journal.get("o-1").record == filled


def test_one_unserialisable_record_does_not_stop_the_others(journal, caplog):
    for n in (1, 2):
        journal.insert(record(f"o-{n}"))
    bad = dataclasses.replace(record("o-1"), steps=(Step(1.0, object()),))
    good = dataclasses.replace(record("o-2"), verdict="filled")
    journal.save(bad)
    journal.save(good)
    assert journal.flush(5)
    assert journal.get("o-2").record == good and journal.get("o-1").record == record("o-1")
    logged = [r.getMessage() for r in caplog.records]
    assert "journal: record o-1 not saved" in logged
    assert "❌ journal: a record could not be serialised; skipped" in logged


def test_close_commits_what_was_saved_and_stops_the_writer(path):
    journal = Journal(path)
    journal.insert(record("o-1"))
    journal.save(dataclasses.replace(record("o-1"), verdict="cancelled"))
    journal.stop()
    assert not journal._writer.is_alive()
    again = Journal(path)
    try:
        assert again.get("o-1").record.verdict == "cancelled"
    finally:
        again.close()


# ----------------------------------------------------------------------- reads
def test_reload_keeps_every_part_of_a_bracket_record(journal, path):
    from order_records import FillRecord, IBMessage, StatusChange

    parent = dataclasses.replace(
        record("o-1"),
        children=("o-2", "o-3"),
        order_id=7,
        perm_id=70,
        client_id=1000,
        messages=(IBMessage(2.0, 399, "warning"),),
        fills=(FillRecord("e1", 3.0, 1, 100.0, 1.0),),
        transitions=(StatusChange(2.0, None, "Filled", 1, 0),),
        verdict="filled",
    )
    child = dataclasses.replace(record("o-2"), parent="o-1")
    journal.insert(parent)
    journal.insert(child)
    journal.close()
    again = Journal(path)
    try:
        assert again.get("o-1").record == parent
        assert again.get("o-2").record == child
        assert {e.record.id: e.record for e in again.load()}["o-1"].children == ("o-2", "o-3")
    finally:
        again.close()


def test_load_takes_the_latest_finished_not_the_latest_created(journal):
    """An old order (a GTC limit) that fills after newer orders finished is among the latest
    finished, as in memory before the restart (it was left out after one, and listed as
    another client's order)."""
    journal.insert(record("gtc", verdict="working", at=0.0))
    for n in range(1, 4):
        journal.insert(record(f"done-{n}", verdict="filled", at=float(n)))
    journal.save(dataclasses.replace(record("gtc", verdict="filled"), updated_at=10.0))
    assert journal.flush(5)
    assert [e.record.id for e in journal.load(recent=2)] == ["gtc", "done-3"]


def test_load_defaults_to_the_500_latest_finished(journal):
    for n in range(502):
        journal.insert(record(f"done-{n}", verdict="cancelled", at=float(n)))
    ids = [e.record.id for e in journal.load()]
    assert len(ids) == 500 and ids[0] == "done-2" and ids[-1] == "done-501"
    assert journal.count() == 502


def test_notional_since_counts_orders_from_that_moment_on(journal):
    journal.insert(record("old", at=99.0), risk={"notional": 1000.0})
    journal.insert(record("edge", at=100.0), risk={"notional": 250.5})
    journal.insert(record("later", at=150.0), risk={"notional": 49.5, "accepted": True})
    journal.insert(record("no-figure", at=150.0), risk={"notional": None})
    journal.insert(record("ungated", at=150.0))  # no risk decision
    assert journal.notional_since(100.0) == 300.0
    assert journal.notional_since(100.5) == 49.5
    assert journal.notional_since(151.0) == 0.0


def test_a_change_counts_on_the_day_it_was_made_across_a_restart(tmp_path):
    """A change that made yesterday's order bigger counted towards today's cap in memory but
    was journaled onto the order's own day: after a restart today's figure forgot it, and
    that much more could be placed."""
    now = time.time()
    midnight = now - now % 86400
    path = str(tmp_path / "orders.db")
    journal = Journal(path)
    journal.insert(record("yesterday", at=midnight - 3600), risk={"notional": 1000.0})
    journal.insert(record("today", at=midnight + 1), risk={"notional": 200.0})
    journal.add_notional("yesterday", 300.0)
    journal.add_notional("today", 50.0)
    journal.close()
    restarted = Journal(path)
    try:
        assert restarted.notional_since(midnight) == 200.0 + 300.0 + 50.0
        assert restarted.notional_since(midnight - 7200) == 1000.0 + 200.0 + 300.0 + 50.0
        assert restarted.notional_since(now + 60) == 0.0
    finally:
        restarted.close()


def test_audit_rows_newest_first_with_their_fields(journal):
    journal.audit(
        "api",
        "127.0.0.1",
        {"q": "x" * 5000},
        {"rule": "max_quantity"},
        "risk_rejected: max_quantity",
        "o-1",
    )
    journal.audit("webhook", None, {"symbol": "AAPL"}, None, "queued")
    newest, oldest = journal.audit_rows()
    assert (
        newest["source"],
        newest["remote"],
        newest["order_id"],
        newest["decision"],
        newest["outcome"],
    ) == ("webhook", None, None, None, "queued")
    assert newest["request"] == '{"symbol": "AAPL"}'
    assert oldest["order_id"] == "o-1" and oldest["decision"] == '{"rule": "max_quantity"}'
    assert len(oldest["request"]) == 4000 and oldest["at"] <= newest["at"]
    assert [r["source"] for r in journal.audit_rows(limit=1)] == ["webhook"]
    assert journal.flag("never-set") is None


def test_audit_keeps_what_json_cannot_say_as_text_and_lists_100_by_default(journal):
    from datetime import UTC, datetime

    when = datetime(2026, 1, 2, tzinfo=UTC)
    journal.audit("api", None, {"at": when}, {"at": when}, "queued")
    [row] = journal.audit_rows()
    assert row["request"] == row["decision"] == '{"at": "2026-01-02 00:00:00+00:00"}'
    for n in range(100):
        journal.audit("api", None, {"n": n}, None, "queued")
    rows = journal.audit_rows()
    assert len(rows) == 100 and rows[-1]["request"] == '{"n": 0}'


def test_the_journal_makes_its_folders(tmp_path):
    path = tmp_path / "a" / "b" / "orders.db"
    journal = Journal(str(path))
    try:
        journal.insert(record("o-1"))
    finally:
        journal.close()
    again = Journal(str(path))  # the folders exist now: fine too
    try:
        assert again.count() == 1
    finally:
        again.close()


def test_the_writer_keeps_saving_batch_after_batch(path):
    journal = Journal(path)
    try:
        assert journal.path == path
        assert journal._writer.daemon  # never keeps the app's process alive on its own
        journal.insert(record("o-1"))
        for status in ("PreSubmitted", "Submitted", "Filled"):
            journal.save(dataclasses.replace(record("o-1"), status=status))
            assert journal.flush(5)
            assert journal.get("o-1").record.status == status
    finally:
        journal.close()


def test_a_journal_that_is_no_database_stops_the_start_naming_the_file(tmp_path):
    """A damaged journal file: one line naming it and what to do, exit code 3, the file left
    as it was (it stopped the start with a traceback ending in sqlite3's 'file is not a
    database', which named no file)."""
    damaged = tmp_path / "orders.db"
    damaged.write_bytes(b"not a database" * 512)
    env = {
        **os.environ,
        "IB_MODE": "gateway",
        "IB_HOST": "127.0.0.1",
        "IB_PORT": str(free_port()),  # never reached: the journal opens first
        "DASHBOARD_PORT": "0",
        "JOURNAL_PATH": str(damaged),
        "LOG_LEVEL": "WARNING",
    }
    done = subprocess.run(
        [sys.executable, "app_simple.py"], cwd=ROOT, env=env, capture_output=True, timeout=60
    )
    err = done.stderr.decode()
    assert done.returncode == 3, err
    assert err.startswith(f"Refusing to start: the order journal {damaged} cannot be opened")
    assert "Traceback" not in err
    assert damaged.read_bytes() == b"not a database" * 512


def test_a_journal_another_program_holds_says_so(tmp_path, monkeypatch):
    """Locked by another program (a rollback-journal file in a write): the error says to close
    that program, not to move a sound journal aside."""
    monkeypatch.setattr(journal_module, "BUSY_TIMEOUT", 0.1)
    held = tmp_path / "orders.db"
    other = sqlite3.connect(held, isolation_level=None)
    try:
        other.execute("CREATE TABLE t (x)")
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(JournalError, match=f"^the order journal {held} cannot be opened: "):
            Journal(str(held))
        with pytest.raises(JournalError, match="Another program holds it"):
            Journal(str(held))
    finally:
        other.close()


def test_closing_a_journal_that_cannot_save_names_what_was_lost(path, caplog):
    """A full disk at shutdown: close() gives up after its flush time, names the orders whose
    last changes were not saved and stops the writer (it waited 5 s more for the writer, said
    only 'will retry', and the writer went on retrying on the closed database)."""
    journal = Journal(path)
    journal.insert(record("o-1"))
    journal.make_read_only()  # every commit fails
    journal.save(dataclasses.replace(record("o-1"), verdict="filled"))
    wait_for(lambda: any("will retry" in r.getMessage() for r in caplog.records))
    journal.close(timeout=0.3)
    assert not journal._writer.is_alive()
    closed = [r for r in caplog.records if "journal closed" in r.getMessage()]
    assert [(r.levelno, r.getMessage()) for r in closed] == [
        (
            logging.ERROR,
            "❌ journal closed with the last changes of 1 order(s) not saved: o-1 (the next "
            "start takes their state from the broker again)",
        )
    ]
    again = Journal(path)
    try:
        assert again.get("o-1").record.verdict is None  # as the log says: not saved
    finally:
        again.close()


def journal_of(path: str, orders: int) -> None:
    """A closed journal of ``orders`` orders, each under an idempotency key."""
    journal = Journal(path)
    try:
        for n in range(orders):
            long = dataclasses.replace(record(f"o-{n}"), steps=(Step(1.0, "queued " + "x" * 400),))
            journal.insert(long, f"key-{n}", "h", None, {"notional": 100.0})
    finally:
        journal.close()


def damage_a_data_page(path: str | os.PathLike[str]) -> bytes:
    """Overwrite one page in the middle of the file (a bad disk block); the file's new bytes."""
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2 // 4096 * 4096)
        f.write(b"\xff" * 4096)
    with open(path, "rb") as f:
        return f.read()


def test_a_journal_with_a_damaged_page_is_refused_at_open_not_at_the_first_read(path):
    """Only the header and schema were read at open: a journal with a damaged data page opened,
    then the start's load() ended in a traceback ('database disk image is malformed')."""
    journal_of(path, 400)
    damaged = damage_a_data_page(path)
    with pytest.raises(JournalError) as caught:
        Journal(path)
    message = str(caught.value)
    assert message.startswith(f"the order journal {path} cannot be opened: ")
    assert "put back a copy, or move it aside" in message
    with open(path, "rb") as f:
        assert f.read() == damaged  # left as it is


def test_a_record_this_version_cannot_read_is_a_journal_error_naming_the_file(journal, path):
    """A record whose JSON does not fit the current classes (another version wrote it) raised
    TypeError from every read of it: a traceback at start, a 500 from the API."""
    journal.insert(record("o-1"), "key-1", "h", None, {"notional": 100.0})
    raw = sqlite3.connect(path, isolation_level=None)
    try:
        raw.execute("UPDATE orders SET record = json_set(record, '$.new_field', 1)")
        raw.execute("UPDATE orders SET risk = '{not json'")
    finally:
        raw.close()
    reads = (journal.load, lambda: journal.get("o-1"), lambda: journal.find_by_key("key-1"))
    for read in (*reads, lambda: journal.notional_since(0)):
        with pytest.raises(JournalError, match=f"^the order journal {path} cannot be read: "):
            read()


def test_a_read_the_database_refuses_is_a_journal_error(journal, path):
    """A raw sqlite3 error at run time (here: a read after the journal was closed, as a late
    request during shutdown) was no JournalError, so the API answered 500, not its 503."""
    journal.insert(record("o-1"), "key-1")
    journal.close()
    with pytest.raises(JournalError, match=f"^the order journal {path} cannot be read: "):
        journal.find_by_key("key-1")


def test_an_emptied_journal_is_refused_not_taken_for_a_new_one(path):
    """A journal cut to 0 bytes opened as a new empty one: its idempotency keys forgotten, a
    client's retry with an old key placed a second order. SQLite never leaves one so: a new
    journal has its first page (and the file the app makes for it is made one at once)."""
    journal_of(path, 3)
    with open(path, "r+b") as f:
        f.truncate(0)
    with pytest.raises(JournalError) as caught:
        Journal(path)
    assert str(caught.value).startswith(f"the order journal {path} cannot be opened: it has 0 b")
    assert "move it aside to start with an empty journal" in str(caught.value)
    assert os.path.getsize(path) == 0  # left as it is
    fresh = os.path.join(os.path.dirname(path), "new.db")
    Journal(fresh).close()
    made = os.path.join(os.path.dirname(path), "made.db")
    open(made, "w").close()  # as security.secure_data_dir makes it, for its mode
    journal_module.create_journal(made)
    assert os.path.getsize(fresh) >= 512 and os.path.getsize(made) >= 512
    Journal(made).close()


def test_runs_started_apart_never_share_order_ids(monkeypatch):
    """Ids were o-<24 random bits>-<counter from 1>: two runs that drew the same bits reused
    ids (the journal refused each order as a clash; with the journal moved aside, IB still
    held the orderRef). The prefix carries the run's start now, to the millisecond."""
    monkeypatch.setattr(secrets, "token_hex", lambda n: "ab" * n)  # the same bits each run
    started = 1_750_000_000.0
    prefixes = []
    for start in (started, started + 0.001, started + 1, started + 86400, started + 11 * 86400):
        monkeypatch.setattr(time, "time", lambda at=start: at)
        memory = Journal(":memory:")
        prefixes.append(OrderHandler("127.0.0.1", free_port(), journal=memory)._id_prefix)
        memory.close()
    assert len(set(prefixes)) == len(prefixes)
    assert {len(f"o-{prefix}-000001") for prefix in prefixes} == {15}  # as short as they were


def test_a_run_of_failed_writes_is_recalled_in_the_log_now_and_then():
    import sqlite3

    from journal_health import WriteHealth

    health = WriteHealth()
    assert health.remind() is None  # nothing fails
    assert health.failed(sqlite3.OperationalError("database or disk is full")) is True
    assert health.failed(sqlite3.OperationalError("database or disk is full")) is False
    assert health.remind() is None  # the first failure was just told in full
    line = health.remind(every=0.0)
    assert line is not None and "still failing" in line and "disk is full" in line
    health.succeeded()
    assert health.remind(every=0.0) is None
