"""The lifecycle Tracker on its own: every writer changes exactly what it names, journals the
new record once, and gives verdicts only as the tables allow (the tables themselves:
tests/test_order_truth.py)."""

from __future__ import annotations

import asyncio
import time

import pytest

from order_records import FillRecord, IBMessage, Lifecycle, OrderIntent, StatusChange, Step
from orders import executions
from orders.lifecycle import (
    FINAL_VERDICTS,
    Event,
    IllegalTransition,
    Phase,
    Tracker,
    Verdict,
    average_price,
    change_words,
    is_final,
    may_become,
    next_phase,
)

LMT = OrderIntent(symbol="AAPL", action="BUY", quantity=10, order_type="LMT", limit_price=100.0)


def record(phase: Phase = Phase.QUEUED, **fields) -> Lifecycle:
    return Lifecycle(
        id="o-1",
        intent=LMT,
        source="api",
        created_at=fields.pop("created_at", 1.0),
        phase=phase,
        updated_at=1.0,
        steps=(Step(1.0, "queued"),),
        **fields,
    )


class Sink(list):
    """The journal's side: every record handed over, in order."""

    def __call__(self, record: Lifecycle) -> None:
        self.append(record)


def tracked(phase: Phase = Phase.QUEUED, **fields) -> tuple[Tracker, Sink]:
    sink = Sink()
    return Tracker(record(phase, **fields), sink), sink


def fill(exec_id: str, shares: float, price: float) -> FillRecord:
    return FillRecord(exec_id=exec_id, at=2.0, shares=shares, price=price)


# -------------------------------------------------------------------- the tables' helpers
def test_an_illegal_move_names_the_event_and_phase():
    with pytest.raises(IllegalTransition, match="^no send from phase monitoring$"):
        next_phase("monitoring", Event.SEND)
    assert next_phase("queued", Event.SEND) is Phase.SENDING


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"limit_price": 413.04, "quantity": 5}, "limit price 413.04, quantity 5"),
        # a future's price of seven digits keeps them all (``:g`` wrote 21034.8)
        ({"limit_price": 21034.75}, "limit price 21034.75"),
        ({"quantity": 1_234_567.0}, "quantity 1234567"),  # no exponent
        ({"stop_price": 0.00005}, "stop price 0.00005"),
        ({"limit_price": 170.03 + 0.1}, "limit price 170.13"),  # no float noise
    ],
)
def test_a_change_reads_as_the_trader_wrote_it(values, words):
    assert change_words(values) == words


def test_may_become_and_is_final():
    assert may_become(None, Verdict.NOT_SENT) and may_become("working", Verdict.FILLED)
    assert may_become("not_sent", Verdict.WORKING) and not may_become("not_sent", Verdict.UNKNOWN)
    assert not may_become("filled", Verdict.CANCELLED)
    assert [v for v in Verdict if is_final(v)] == [
        "filled",
        "cancelled",
        "rejected",
        "not_sent",
        "not_placed",
    ]
    assert not is_final(None) and set(FINAL_VERDICTS) == {v for v in Verdict if is_final(v)}


# ---------------------------------------------------------------------------- the tracker
def test_a_new_tracker_starts_unacknowledged_without_a_verdict():
    tracker, sink = tracked()
    assert tracker.id == "o-1" and not tracker.restored and tracker.trade is None
    assert not tracker.verdict_given.is_set() and not tracker.acknowledged
    assert not tracker.cancel_requested and tracker.terminal is None and sink == []


@pytest.mark.parametrize("status", ["PreSubmitted", "Submitted", "ApiPending", "PendingCancel"])
def test_a_broker_acknowledgement_in_the_history_counts(status):
    seen = (
        StatusChange(2.0, None, "PendingSubmit", 0, 10),
        StatusChange(3.0, "PendingSubmit", status, 0, 10),
    )
    assert Tracker(record(transitions=seen), Sink()).acknowledged
    unseen = (StatusChange(2.0, None, "PendingSubmit", 0, 10),)
    assert not Tracker(record(transitions=unseen), Sink()).acknowledged


def test_a_record_with_a_verdict_has_it_given_already():
    tracker = Tracker(record(Phase.DONE, verdict="filled"), Sink())
    assert tracker.verdict_given.is_set()


def test_restored_trackers_are_tracked_unless_finished():
    sink = Sink()
    tracker = Tracker.restored_from(record(Phase.MONITORING, verdict="working"), sink)
    assert tracker.restored and tracker.record.phase == "tracking"
    assert [r.phase for r in sink] == ["tracking"]
    done = Tracker.restored_from(record(Phase.DONE, verdict="not_sent"), sink)
    assert done.restored and done.record.phase == "done" and len(sink) == 1


def test_elapsed_is_seconds_since_queued():
    tracker, _ = tracked(created_at=time.time() - 12.34)
    assert tracker.elapsed() in ("[ 12.3s]", "[ 12.4s]")


def test_advance_moves_and_journals_only_real_moves():
    tracker, sink = tracked()
    before = time.time()
    tracker.advance(Event.SEND)
    assert tracker.record.phase == "sending" and sink == [tracker.record]
    assert tracker.record.updated_at >= before
    tracker.advance(Event.MONITOR)
    tracker.advance(Event.LEG_ACK)
    tracker.advance(Event.LEG_ACK)  # tracking -> tracking: nothing to journal
    assert [r.phase for r in sink] == ["sending", "monitoring", "tracking"]
    with pytest.raises(IllegalTransition):
        tracker.advance(Event.SEND)


def test_conclude_final_verdict_finishes_and_wakes_waiters():
    tracker, sink = tracked(Phase.MONITORING)
    tracker.terminal = asyncio.Event()
    assert tracker.conclude(Verdict.FILLED, "filled 10 at 100")
    record_ = tracker.record
    assert (record_.verdict, record_.verdict_reason, record_.phase) == (
        "filled",
        "filled 10 at 100",
        "done",
    )
    assert record_.steps[-1].text == "verdict: filled (filled 10 at 100)"
    assert record_.steps[:-1] == (Step(1.0, "queued"),)
    assert tracker.verdict_given.is_set() and tracker.terminal.is_set()
    assert sink == [record_]
    assert not tracker.conclude(Verdict.FILLED, "filled 10 at 100")  # the same again: no-op
    assert len(sink) == 1
    with pytest.raises(IllegalTransition, match="^o-1: no cancelled after filled$"):
        tracker.conclude(Verdict.CANCELLED, "too late")


def test_conclude_interim_verdict_keeps_the_phase_and_the_terminal_event():
    tracker, sink = tracked(Phase.MONITORING)
    tracker.terminal = asyncio.Event()
    assert tracker.conclude(Verdict.WORKING, "resting")
    assert tracker.record.phase == "monitoring" and tracker.verdict_given.is_set()
    assert not tracker.terminal.is_set()
    assert tracker.conclude(Verdict.WORKING, "still resting")  # a new reason is news
    assert [r.verdict_reason for r in sink] == ["resting", "still resting"]
    assert tracker.conclude(Verdict.STUCK_PENDING_SUBMIT, "no answer")
    assert tracker.record.verdict == "stuck_pending_submit"


def test_conclude_after_our_own_final_verdict_readopts():
    tracker, _ = tracked(Phase.QUEUED)
    tracker.conclude(Verdict.NOT_SENT, "gateway down")
    assert tracker.record.phase == "done"
    with pytest.raises(IllegalTransition):
        tracker.conclude(Verdict.UNKNOWN, "our guess is no evidence")
    tracker.conclude(Verdict.WORKING, "the broker has it after all")
    assert (tracker.record.verdict, tracker.record.phase) == ("working", "tracking")


def test_readopt_tracks_a_closed_order_again_with_the_reason():
    tracker, sink = tracked(Phase.DONE, verdict="not_placed")
    tracker.readopt("the broker reports it")
    assert tracker.record.phase == "tracking"
    assert tracker.record.steps[-1].text == "the broker reports it" and len(sink) == 1


def test_step_sent_matched_linked_and_message_change_only_their_fields():
    tracker, sink = tracked(Phase.SENDING)
    tracker.step("settle 1")
    assert [s.text for s in tracker.record.steps] == ["queued", "settle 1"]
    tracker.sent(42, 1000, "PendingSubmit")
    r = tracker.record
    assert (r.order_id, r.client_id, r.status) == (42, 1000, "PendingSubmit")
    assert r.steps[-1].text == "sent as orderId 42"
    tracker.matched(77, 1001)
    assert (tracker.record.order_id, tracker.record.client_id) == (77, 1001)
    tracker.linked(("o-2", "o-3"))
    assert tracker.record.children == ("o-2", "o-3")
    tracker.message(201, "Order rejected")
    [msg] = tracker.record.messages
    assert (msg.code, msg.text) == (201, "Order rejected") and msg.at >= r.updated_at
    assert isinstance(msg, IBMessage)
    assert len(sink) == 5 and sink[-1] is tracker.record
    assert tracker.record.phase == "sending" and tracker.record.intent == LMT


def test_broker_status_records_transitions_only_on_change():
    tracker, sink = tracked(Phase.MONITORING, perm_id=555)
    assert tracker.broker_status("Submitted", 0, 10, None, None) is None
    assert tracker.record.perm_id == 555  # a missing permId keeps the one we had
    assert tracker.broker_status("Submitted", 4, 6, 556, 100.5) == "Submitted"
    r = tracker.record
    assert (r.status, r.filled, r.remaining, r.perm_id, r.avg_fill_price) == (
        "Submitted",
        4,
        6,
        556,
        100.5,
    )
    assert [(t.old, t.new, t.filled, t.remaining) for t in r.transitions] == [
        (None, "Submitted", 0, 10)
    ]
    tracker.broker_status("Filled", 10, 0, 556, 100.2)
    assert [(t.old, t.new) for t in tracker.record.transitions] == [
        (None, "Submitted"),
        ("Submitted", "Filled"),
    ]
    assert len(sink) == 3


def test_confirmed_takes_the_brokers_echo_of_a_modify():
    tracker, _ = tracked(Phase.TRACKING)
    tracker.confirmed(quantity=5.0, limit_price=101.5)
    assert (tracker.record.intent.quantity, tracker.record.intent.limit_price) == (5.0, 101.5)
    assert tracker.record.intent.symbol == "AAPL"
    assert (
        tracker.record.steps[-1].text
        == "broker confirmed the change: quantity 5, limit price 101.5"
    )


def test_fills_accumulate_with_their_average_price():
    tracker, sink = tracked(Phase.MONITORING)
    tracker.fills_added((fill("e1", 4, 100.0),), 900)
    r = tracker.record
    assert (r.filled, r.avg_fill_price, r.perm_id) == (4, 100.0, 900)
    assert r.steps == (Step(1.0, "queued"),)  # no step unless one is given
    tracker.fills_added((fill("e2", 6, 101.0), fill("e3", 0, 50.0)), 901, "recovered")
    r = tracker.record
    assert r.filled == 10 and r.avg_fill_price == pytest.approx(100.6)
    assert r.perm_id == 900  # the first permId stays
    assert [f.exec_id for f in r.fills] == ["e1", "e2", "e3"]
    assert r.steps[-1].text == "recovered"
    assert average_price(r) == pytest.approx(100.6)
    tracker.broker_status("Filled", 12, 0, 900, 100.7)  # the broker's count can be ahead
    tracker.fills_added((), None)
    assert tracker.record.filled == 12 and len(sink) == 4


def test_fills_without_shares_keep_the_brokers_average():
    tracker, _ = tracked(Phase.MONITORING, avg_fill_price=99.5, perm_id=None)
    tracker.fills_added((fill("e1", 0, 50.0),), 321)
    assert tracker.record.avg_fill_price == 99.5 and tracker.record.perm_id == 321
    assert average_price(tracker.record) is None


def test_commission_lands_on_its_execution_only():
    tracker, _ = tracked(Phase.MONITORING)
    tracker.fills_added((fill("e1", 4, 100.0), fill("e2", 6, 101.0)), 900)
    tracker.commission("e2", 1.25)
    assert [f.commission for f in tracker.record.fills] == [None, 1.25]


def test_restore_of_an_unfinished_record_moves_it_to_tracking():
    tracker, sink = tracked(Phase.SETTLING)
    tracker.restore()
    assert tracker.record.phase == "tracking" and len(sink) == 1
    finished, sink = tracked(Phase.DONE, verdict="cancelled")
    finished.restore()
    assert finished.record.phase == "done" and sink == []


def test_every_step_message_and_transition_is_stamped_with_the_time():
    before = time.time()
    tracker, _ = tracked(Phase.QUEUED)
    tracker.advance(Event.SEND)
    tracker.sent(7, 1000, "PendingSubmit")
    tracker.step("settle 1")
    tracker.broker_status("Submitted", 0, 10, 900, None)
    tracker.message(399, "warning")
    tracker.confirmed(quantity=8.0)
    tracker.fills_added((fill("e1", 8, 100.0),), 900, "fill recovered")
    tracker.conclude(Verdict.NOT_PLACED, "drill")
    tracker.readopt("seen again")
    record_ = tracker.record
    stamps = (
        [s.at for s in record_.steps[1:]]
        + [m.at for m in record_.messages]
        + [t.at for t in record_.transitions]
        + [record_.updated_at]
    )
    assert len(stamps) == 9
    assert all(before <= at <= time.time() for at in stamps), stamps


def test_an_interim_verdict_on_a_queued_order_keeps_it_queued():
    tracker, _ = tracked(Phase.QUEUED)
    assert tracker.conclude(Verdict.UNKNOWN, "asked before it was sent")
    assert (tracker.record.verdict, tracker.record.phase) == ("unknown", "queued")


def test_executions_merge_ibs_corrections_in_any_order():
    """A correction (the execId's last part raised) replaces what it corrects wherever each
    comes from (live, or the gateway's list read again after a reconnect, which holds both);
    an older one arriving after it is dropped; other executions and exact repeats stay one."""
    first = FillRecord("0000e0d5.65000001.01.01", 1.0, 100, 150.0)
    fixed = FillRecord("0000e0d5.65000001.01.02", 2.0, 100, 150.1)
    other = FillRecord("0000e0d5.65000002.01.01", 3.0, 50, 151.0)
    fills, notes = executions.merged((first,), (fixed, other))
    assert fills == (fixed, other) and len(notes) == 1 and first.exec_id in notes[0]
    assert executions.merged((fixed, other), (first, other, fixed)) == ((fixed, other), ())
    plain = FillRecord("exec-7", 1.0, 1, 10.0)  # an id of no such form is its own execution
    assert executions.merged((plain,), (FillRecord("exec-8", 1.0, 1, 10.0),))[0][0] == plain
