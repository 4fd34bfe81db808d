"""The requests Flask threads put on the order handler's queue, one typed command each."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orders.lifecycle import Tracker


@dataclass(frozen=True)
class Place:
    """Qualify, send, settle and monitor one order (and its bracket legs)."""

    tracker: Tracker


@dataclass(frozen=True)
class Cancel:
    """Cancel one of our orders (at once, or as soon as it is matched at the gateway)."""

    tracker: Tracker


@dataclass(frozen=True)
class Modify:
    """Change the quantity and/or prices of one of our working orders.

    ``basis``: the order's quantity and prices the change was checked against (the risk gate's
    "before", ``Tracker.next_basis``: as sent so far, or as the changes queued before it leave
    it); the change is sent only onto that order. None: unchecked.
    """

    tracker: Tracker
    quantity: float | None = None
    limit_price: float | None = None
    stop_price: float | None = None
    basis: Mapping[str, float | None] | None = None

    def changes(self) -> dict[str, Any]:
        """The values to change, by intent field name."""
        return {
            k: v
            for k, v in (
                ("quantity", self.quantity),
                ("limit_price", self.limit_price),
                ("stop_price", self.stop_price),
            )
            if v is not None
        }


@dataclass(frozen=True)
class CancelAll:
    """A global cancel: every working order of every client. ``ours``: our orders unfinished
    when it was asked (those the loop takes as cancelled; one accepted after it is not)."""

    ours: frozenset[str] = frozenset()


Command = Place | Cancel | Modify | CancelAll
