"""The kill switch: a journal flag that halts new orders and survives restarts."""

from __future__ import annotations

import logging
import threading

from journal import Journal, JournalError

log = logging.getLogger(__name__)

KILL_SWITCH = "kill_switch"  # the journal flag's name


class KillSwitch:
    """Engaged or not, and why; ``lock`` orders engaging against an order being queued."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.reason = journal.flag(KILL_SWITCH)
        self.persisted = True  # the journal holds the state in force (it survives a restart)
        self.lock = threading.Lock()

    @property
    def engaged(self) -> bool:
        """New orders are refused."""
        return self.reason is not None

    def engage(self, reason: str) -> None:
        """Halt new orders at once, then persist it. A journal that cannot be written does
        not stop the halt (nor the cancels that follow it): it then lasts until a restart."""
        with self.lock:
            self.reason = reason or "engaged"
        log.warning("🛑 KILL SWITCH engaged: %s", reason)
        try:
            self.journal.set_flag(KILL_SWITCH, self.reason)
        except JournalError:
            self.persisted = False
            log.exception("🛑 kill switch engaged but NOT saved: it ends if the app restarts")
        else:
            self.persisted = True

    def release(self) -> None:
        """Allow new orders again."""
        self.journal.set_flag(KILL_SWITCH, None)
        self.reason, self.persisted = None, True
        log.warning("✅ Kill switch released")
