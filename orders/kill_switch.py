"""The kill switch: a journal flag that halts new orders and survives restarts, and a second
one that keeps its global cancel pending until the gateway has read it: sent at every
connection until then, never again after (a global cancel at each reconnect would cancel the
orders a trader places in TWS while the switch is on)."""

from __future__ import annotations

import logging
import threading

from journal import Journal, JournalError

log = logging.getLogger(__name__)

KILL_SWITCH = "kill_switch"  # the journal flag's name
CANCEL_FLAG = "kill_switch_cancel"  # "pending" until the gateway read the global cancel: "sent"


class KillSwitch:
    """Engaged or not, and why; ``lock`` orders engaging against an order being queued."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.reason = journal.flag(KILL_SWITCH)
        # engaged by a version without the flag: pending (sent once more)
        self.cancel_pending = self.reason is not None and journal.flag(CANCEL_FLAG) != "sent"
        self.persisted = True  # the journal holds the state in force (it survives a restart)
        self.lock = threading.Lock()
        self.generation = 0  # engagements so far: a cancel read counts for the one it followed

    @property
    def engaged(self) -> bool:
        """New orders are refused."""
        return self.reason is not None

    def engage(self, reason: str) -> None:
        """Halt new orders at once, then persist it. A journal that cannot be written does
        not stop the halt (nor the cancels that follow it): it then lasts until a restart."""
        self.reason = reason or "engaged"  # at once: the orders queued already see it
        with self.lock:  # then waits for an order being queued (it passed its check before)
            self.cancel_pending = True
            self.generation += 1
        log.warning("🛑 KILL SWITCH engaged: %s", reason)
        try:
            self.journal.set_flag(CANCEL_FLAG, "pending")
            self.journal.set_flag(KILL_SWITCH, self.reason)
        except JournalError:
            self.persisted = False
            log.exception("🛑 kill switch engaged but NOT saved: it ends if the app restarts")
        else:
            self.persisted = True

    def cancel_sent(self, generation: int) -> None:
        """The gateway read a global cancel sent while engaged (``generation``: the engagement
        then in force; a later one's cancel stays pending): not sent again."""
        if not self.cancel_pending or generation != self.generation:
            return
        self.cancel_pending = False
        try:
            self.journal.set_flag(CANCEL_FLAG, "sent")
        except JournalError:  # log and carry on: a restart sends it once more
            log.exception("the kill switch's global cancel was sent; not saved so")

    def release(self) -> None:
        """Allow new orders again."""
        self.journal.set_flag(KILL_SWITCH, None)
        self.journal.set_flag(CANCEL_FLAG, None)
        self.reason, self.persisted, self.cancel_pending = None, True, False
        log.warning("✅ Kill switch released")
