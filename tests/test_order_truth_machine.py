"""Issue 13's state machine: the app and the simulated gateway as two processes, orders placed
and cancelled through the HTTP API, and either process SIGKILLed (then started again on the same
files) between any two steps, including right after a burst of orders.

Whenever the machine checks, with both sides up again:
* every accepted order has a definite verdict within RECONCILE_GRACE + 10 s;
* no order was sent twice (each of our ids is on at most one order at the gateway);
* journal, API and broker agree on every accepted order (the broker is read from its
  write-ahead state file and log, which hold all it ever acknowledged or filled);
* no order is counted in two states: one row per order in ``GET /orders``, open exactly when its
  verdict is not final, and the open rows are the ``working`` ones.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

from conftest import API_TOKEN, wait_for
from gateway_process import AppProcess, GatewayProcess
from sim_gateway.state_store import StateStore

GRACE = 1.0
FINAL = {"filled", "cancelled", "rejected", "not_sent", "not_placed"}
DEFINITE = FINAL | {"working"}
BODIES = {  # a market order fills at once; a limit far below the market rests
    "fills": {"symbol": "AAPL", "action": "BUY", "quantity": 1, "order_type": "MKT"},
    "rests": {
        "symbol": "IBM",
        "action": "BUY",
        "quantity": 1,
        "order_type": "LMT",
        "limit_price": 1.0,
    },
}
BROKER_STATUS = {
    "filled": {"Filled"},
    "cancelled": {"Cancelled"},
    "working": {"Submitted", "PreSubmitted"},
}


class OrderTruth(RuleBasedStateMachine):
    """Places, cancels, SIGKILLs of the app, SIGKILLs of the gateway, checks."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.root = Path(self.tmp.name)
        self.gateway = GatewayProcess(self.root / "gateway.json").start()
        self.app = AppProcess(
            self.root,
            self.gateway.port,
            API_TOKEN,
            RECONCILE_GRACE=str(GRACE),
            ORDER_MONITOR_TIMEOUT="2",
            SETTLE_FIRST_WAIT="0.1",
            SETTLE_VALIDATION_WAIT="0.1",
            SETTLE_FINAL_WAIT="0.1",
            RISK_PRICE_COLLAR_PCT="100",
        ).start()
        self.accepted: dict[str, str] = {}  # our id -> "fills" / "rests"
        self.checks = 0
        self.kills = 0
        self.dirty = False  # something happened since the last check
        wait_for(self.app.up, timeout=30)

    def teardown(self) -> None:
        try:
            if self.accepted:
                self.check()  # whatever the last step was, it ends in agreement
        finally:
            self.app.stop()
            self.gateway.stop()
            self.tmp.cleanup()

    # ------------------------------------------------------------------ steps
    @initialize(kind=st.sampled_from(sorted(BODIES)), count=st.integers(2, 5))
    def first_burst(self, kind: str, count: int) -> None:
        self.place(kind, count)

    @rule(kind=st.sampled_from(sorted(BODIES)), count=st.integers(1, 5))
    def place(self, kind: str, count: int) -> None:
        """A burst of orders, not waiting for their outcome (a kill may come next)."""
        self.dirty = True
        for _ in range(count):
            status, body = self.app.request("POST", "/orders", BODIES[kind])
            if status == 202:
                self.accepted[body["id"]] = kind
            else:  # down, starting, reconnecting or reconciling: refused, never half-taken
                assert status in (0, 503), (status, body)

    @rule(pick=st.integers(0, 1000))
    def cancel(self, pick: int) -> None:
        resting = sorted(i for i, kind in self.accepted.items() if kind == "rests")
        if resting:
            self.dirty = True
            order_id = resting[pick % len(resting)]
            status, body = self.app.request("POST", f"/orders/{order_id}/cancel")
            assert status in (0, 202, 409, 503), (status, body)

    @rule()
    def kill_app(self) -> None:
        self.dirty = True
        self.kills += 1
        self.app.kill()
        self.app.start()

    @rule()
    def kill_gateway(self) -> None:
        self.dirty = True
        self.kills += 1
        self.gateway.kill()
        self.gateway.start()

    @precondition(lambda self: self.dirty)
    @rule()
    def check(self) -> None:
        """Both sides up: verdicts in time, then journal, API and broker agree."""
        wait_for(self.app.up, timeout=40)
        up = time.monotonic()
        wait_for(self._all_definite, timeout=GRACE + 10)
        assert time.monotonic() - up <= GRACE + 10
        if not self._agree(within=10):  # the reader and the journal writer may lag a bit
            self._assert_agree()  # fails naming the order and the sides that disagree
        self.checks += 1
        self.dirty = False

    # ------------------------------------------------------------------ views
    def _api(self, order_id: str) -> dict:
        status, body = self.app.request("GET", f"/orders/{order_id}")
        assert status == 200, (order_id, status, body)
        return body

    def _all_definite(self) -> bool:
        return all(self._api(i)["verdict"] in DEFINITE for i in self.accepted)

    def _journal(self) -> dict[str, str | None]:
        db = sqlite3.connect(f"file:{self.root / 'orders.db'}?mode=ro", uri=True)
        try:
            return dict(db.execute("SELECT id, verdict FROM orders").fetchall())
        finally:
            db.close()

    def _broker(self) -> tuple[dict[str, str], list[str]]:
        """(status by our id, every orderRef) from the gateway's write-ahead state file."""
        state = StateStore(str(self.gateway.state_file)).load() or {"orders": []}
        refs = [o["order_ref"] for o in state["orders"] if o.get("order_ref")]
        return {o["order_ref"]: o["status"] for o in state["orders"] if o.get("order_ref")}, refs

    def _agree(self, within: float) -> bool:
        deadline = time.monotonic() + within
        while True:
            try:
                self._assert_agree()
            except AssertionError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.05)
            else:
                return True

    def _assert_agree(self) -> None:
        journal = self._journal()
        broker, refs = self._broker()
        assert len(refs) == len(set(refs)), "an order was sent twice"
        status, listing = self.app.request("GET", "/orders?status=all&limit=500")
        assert status == 200, listing
        rows = [r for r in listing["orders"] if r.get("ours")]
        ids = [r["id"] for r in rows]
        assert len(ids) == len(set(ids)), "an order is listed twice"
        rows_by_id = {r["id"]: r for r in rows}
        for order_id, kind in self.accepted.items():
            api = self._api(order_id)
            verdict = api["verdict"]
            assert verdict in DEFINITE, api
            assert journal.get(order_id) == verdict, (order_id, journal.get(order_id), verdict)
            assert api["open"] is (verdict not in FINAL)
            row = rows_by_id[order_id]
            assert (row["verdict"], row["status"], row["open"]) == (
                verdict,
                api["status"],
                api["open"],
            )
            at_broker = broker.get(order_id)
            if verdict in ("not_placed", "not_sent") or _cancelled_unsent(api):
                assert at_broker is None, (order_id, verdict, at_broker)
            elif verdict in BROKER_STATUS:
                assert at_broker in BROKER_STATUS[verdict], (order_id, verdict, at_broker)
                assert api["status"] == at_broker, (order_id, api["status"], at_broker)
            if kind == "fills":
                assert verdict in ("filled", "not_placed", "not_sent"), (order_id, verdict)
            if verdict == "filled":
                assert api["avg_fill_price"] is not None and api["remaining"] == 0
        working = {i for i in self.accepted if rows_by_id[i]["verdict"] == "working"}
        assert {i for i in self.accepted if rows_by_id[i]["open"]} == working


def _cancelled_unsent(api: dict) -> bool:
    """Cancelled while still queued in the app (a cancel right after a burst on a busy
    machine): never sent, so the broker never had it."""
    return (
        api["verdict"] == "cancelled"
        and api["order_id"] is None
        and api["verdict_reason"] == "cancelled before it was sent"
    )


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("part", [1, 2, 3])  # three tests that the workers run side by side
def test_one_truth_through_sigkills_of_app_and_gateway(part):
    """Six runs in all (two a part, each part drawing its own; ten times more with
    --hypothesis-profile=deep) of up to ten steps, each kill restarting a process (a fork of
    tests/zygote.py); five to ten seconds a part on an idle machine."""
    run_state_machine_as_test(
        OrderTruth,
        settings=settings(
            max_examples=max(2, settings().max_examples // 250),  # 2; 20 with the deep profile
            stateful_step_count=10,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
