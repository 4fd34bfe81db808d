"""The order journal: durable inserts, batched saves, idempotency keys, flags."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from journal import DuplicateKey, Journal, JournalError
from order_records import Lifecycle, OrderIntent, StatusChange, Step


def record(order_id: str, verdict: str | None = None, at: float = 1.0) -> Lifecycle:
    intent = OrderIntent(symbol="AAPL", action="BUY", quantity=1, order_type="MKT")
    return Lifecycle(id=order_id, intent=intent, source="api", created_at=at, phase="queued",
                     verdict=verdict, updated_at=at, steps=(Step(at, "queued"),))


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
        assert (entry.idem_key, entry.request_hash, entry.risk) == ("key-1", "hash-1",
                                                                    {"decision": "accepted"})
    finally:
        other.close()


def test_saves_keep_the_latest_record(journal, path):
    journal.insert(record("o-1"))
    first = record("o-1")
    filled = dataclasses.replace(first, status="Filled", verdict="filled", perm_id=77,
                                 transitions=(StatusChange(2.0, None, "Filled", 1, 0),))
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
    assert caught.value.existing.record.id == "o-1"
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
