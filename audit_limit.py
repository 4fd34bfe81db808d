"""How many audit rows a stranger may write.

Every refusal of a request that showed no valid secret (a wrong token or password, a lockout's
429, an anonymous state-changing request, a webhook call from a stranger) is audited. Without a
bound anyone who can reach the port could add a journal row per request for as long as they
like: the file grows without end, and each insert holds the journal's lock against the orders'
own writes. So such rows are recorded one by one up to a rate per address (an IPv6 address's
/64, as the lockout counts) and overall, in sliding windows; past it they are counted, and the
next row recorded says how many were left out before it. Rows of signed-in browsers, token
holders and authentic webhook calls, and sign-ins, are always recorded.
"""

from __future__ import annotations

import threading
import time

from rate_window import Clock, MovingWindows

PER_CLIENT = 20  # rows one address's refusals may write per window
OVERALL = 200  # rows all strangers' refusals may write together per window
WINDOW = 60.0  # seconds
MAX_TALLIES = 1024  # addresses whose left-out rows are counted apart; the rest count together
OTHERS = "*"  # the tally of addresses beyond MAX_TALLIES


class StrangerAudit:
    """Decides, per refusal, whether its audit row is written (thread-safe). Memory stays
    bounded: an address has a window only while it holds rows of the last ``seconds`` (at
    most ``overall`` addresses), and the tallies of left-out rows are capped."""

    def __init__(
        self,
        per_client: int = PER_CLIENT,
        overall: int = OVERALL,
        seconds: float = WINDOW,
        monotonic: Clock = time.monotonic,
    ) -> None:
        self.per_client, self.overall, self.seconds = per_client, overall, seconds
        self._by_client = MovingWindows(
            ((per_client, seconds),), max_keys=overall, monotonic=monotonic
        )
        self._all = MovingWindows(((overall, seconds),), max_keys=1, monotonic=monotonic)
        self._left_out: dict[str, int] = {}
        self._lock = threading.Lock()

    def admit(self, client_key: str) -> int | None:
        """None: leave this refusal's row out (it is counted). Else write it, telling the
        number of rows left out before it: this address's, and those counted together."""
        with self._lock:  # both windows checked and counted as one
            if self._all.wait("") <= 0 and self._by_client.wait(client_key) <= 0:
                self._all.hit("")
                self._by_client.hit(client_key)
                return self._left_out.pop(client_key, 0) + self._left_out.pop(OTHERS, 0)
            tallied = client_key in self._left_out or len(self._left_out) < MAX_TALLIES
            key = client_key if tallied else OTHERS
            self._left_out[key] = self._left_out.get(key, 0) + 1
            return None

    def left_out(self) -> int:
        """Rows left out and not told yet."""
        with self._lock:
            return sum(self._left_out.values())

    def windows(self) -> int:
        """Addresses holding a window now (at most ``overall``)."""
        return self._by_client.keys()
