"""Persistence of the ``Broker`` (a mixin): the state snapshot, the write-ahead changes of
orders and the restore after a restart.
"""

from __future__ import annotations

import heapq
from dataclasses import asdict
from typing import TYPE_CHECKING

from .broker_state import (
    _Fill,
    _Order,
    _Position,
)
from .broker_types import (
    STATE_VERSION,
)
from .prices import PriceBook
from .types import (
    CommissionReport,
    Contract,
    Execution,
)


class BrokerPersistence:
    """The broker's state to and from JSON-serialisable dicts."""

    _book: PriceBook
    _clock: float
    _cash: dict[str, float]
    _start_net_liq: float
    _positions: dict[int, _Position]
    _orders: dict[int, _Order]
    _live: dict[int, _Order]
    _index: dict[tuple[int, int], int]
    _max_ids: dict[int, int]
    _completed: list[int]
    _fills: list[_Fill]
    _dues: list[tuple[float, int, str, int]]
    _counters: dict[str, int]
    validation_delay: float
    fill_delay: float
    cancel_delay: float
    tif_preset_warning: bool
    filled_status: bool
    hard_to_borrow: set[str]
    _reject_reason: str | None

    if TYPE_CHECKING:

        def _pending(self, entry: tuple[float, int, str, int]) -> bool: ...

    def to_state(self) -> dict:
        """JSON-serialisable state (switches included)."""
        return {
            **self._small_state(),
            "orders": [asdict(o) for o in self._orders.values()],
            "index": [[*key, perm_id] for key, perm_id in self._index.items()],
            "completed": list(self._completed),
            "fills": [asdict(fill) for fill in self._fills],
            # only work still to do (a filled order's expiry stays in the heap until its time)
            "dues": [list(entry) for entry in self._dues if self._pending(entry)],
        }

    def marks(self) -> tuple[int, int]:
        """(fills, completed orders) so far: where the next ``changes`` starts."""
        return len(self._fills), len(self._completed)

    def perm_id_of(self, client_id: int, order_id: int) -> int | None:
        """The permId of a client's order id, if known."""
        return self._index.get((client_id, order_id))

    def changes(self, perm_ids: set[int], marks: tuple[int, int]) -> dict:
        """A write-ahead entry: the orders ``perm_ids`` as they are now, the fills and completed
        orders since ``marks``, and the small parts of ``to_state`` in full. The work due for
        these orders replaces theirs (``dues``)."""
        orders = [self._orders[p] for p in sorted(perm_ids) if p in self._orders]
        return {
            **self._small_state(),
            "orders": [asdict(o) for o in orders],
            "index": [[o.client_id, o.order_id, o.perm_id] for o in orders],
            "completed": self._completed[marks[1] :],
            "fills": [asdict(fill) for fill in self._fills[marks[0] :]],
            "dues": [list(entry) for entry in self._dues if entry[3] in perm_ids],
        }

    def _small_state(self) -> dict:
        """The parts of the state that do not grow with the number of orders."""
        return {
            "version": STATE_VERSION,
            "clock": self._clock,
            "prices": self._book.to_state(),
            "cash": dict(self._cash),
            "start_net_liq": self._start_net_liq,
            "positions": [asdict(p) for p in self._positions.values()],
            "max_ids": [[client_id, max_id] for client_id, max_id in self._max_ids.items()],
            "counters": dict(self._counters),
            "switches": {
                "validation_delay": self.validation_delay,
                "fill_delay": self.fill_delay,
                "cancel_delay": self.cancel_delay,
                "tif_preset_warning": self.tif_preset_warning,
                "filled_status": self.filled_status,
                "hard_to_borrow": sorted(self.hard_to_borrow),
                "reject_reason": self._reject_reason,
            },
        }

    def _restore(self, state: dict) -> None:
        self._book.restore(state["prices"])
        self._cash = dict(state["cash"])
        self._start_net_liq = state["start_net_liq"]
        positions = [
            _Position(**{**p, "contract": Contract(**p["contract"])}) for p in state["positions"]
        ]
        self._positions = {p.contract.con_id: p for p in positions}
        orders = [_Order(**{**o, "contract": Contract(**o["contract"])}) for o in state["orders"]]
        self._orders = {o.perm_id: o for o in orders}
        self._live = {o.perm_id: o for o in orders if o.live}
        self._index = {
            (client_id, order_id): perm_id for client_id, order_id, perm_id in state["index"]
        }
        self._max_ids = {client_id: max_id for client_id, max_id in state["max_ids"]}
        self._completed = list(state["completed"])
        self._fills = [
            _Fill(
                Execution(**{**f["execution"], "contract": Contract(**f["execution"]["contract"])}),
                CommissionReport(**f["report"]),
                f["at"],
            )
            for f in state["fills"]
        ]
        self._dues = [(at, seq, kind, perm_id) for at, seq, kind, perm_id in state["dues"]]
        heapq.heapify(self._dues)
        self._counters = dict(state["counters"])
        switches = state["switches"]
        self.validation_delay, self.fill_delay = (
            switches["validation_delay"],
            switches["fill_delay"],
        )
        self.cancel_delay = switches.get("cancel_delay", 0.0)
        self.tif_preset_warning = switches["tif_preset_warning"]
        self.filled_status = switches.get("filled_status", True)
        self.hard_to_borrow = set(switches.get("hard_to_borrow", ()))
        self._reject_reason = switches["reject_reason"]

    def _shift(self, offset: float) -> None:
        """Move the model's timeline by ``offset`` seconds."""
        self._book.origin += offset
        self._clock += offset
        self._dues = [(at + offset, seq, kind, perm_id) for at, seq, kind, perm_id in self._dues]
        for order in self._live.values():
            if order.fill_due is not None:
                order.fill_due += offset
            if order.opens_at is not None:
                order.opens_at += offset
            if order.expires_at is not None:
                order.expires_at += offset
