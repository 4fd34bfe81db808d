"""The kill switch: a journal flag that halts new orders and survives restarts."""

from __future__ import annotations

import logging
import threading

from journal import Journal

log = logging.getLogger(__name__)

KILL_SWITCH = "kill_switch"  # the journal flag's name


class KillSwitch:
    """Engaged or not, and why; ``lock`` orders engaging against an order being queued."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.reason = journal.flag(KILL_SWITCH)
        self.lock = threading.Lock()

    @property
    def engaged(self) -> bool:
        """New orders are refused."""
        return self.reason is not None

    def engage(self, reason: str) -> None:
        """Halt new orders (persisted first)."""
        self.journal.set_flag(KILL_SWITCH, reason or "engaged")
        with self.lock:
            self.reason = reason or "engaged"
        log.warning("🛑 KILL SWITCH engaged: %s", reason)

    def release(self) -> None:
        """Allow new orders again."""
        self.journal.set_flag(KILL_SWITCH, None)
        self.reason = None
        log.warning("✅ Kill switch released")
