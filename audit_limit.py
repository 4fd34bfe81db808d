"""How many audit rows a stranger may write.

Every refusal of a request that showed no valid secret (a wrong token or password, a lockout's
429, an anonymous state-changing request) is audited. Without a bound anyone who can reach the
port could add a journal row per request for as long as they like: the file grows without
end, and each insert holds the journal's lock against the orders' own writes. So such rows are
recorded one by one up to a rate per address (an IPv6 address's /64, as the lockout counts)
and overall (the ``limits`` library's moving windows, as the lockout uses); past it they are
counted, and the next row recorded says how many were left out before it. Rows of signed-in
browsers and token holders, and sign-ins, are always recorded.
"""

from __future__ import annotations

import threading

from limits import parse, storage, strategies

PER_CLIENT = "20/minute"  # rows one address's refusals may write
OVERALL = "200/minute"  # rows all strangers' refusals may write together
MAX_TALLIES = 1024  # addresses whose left-out rows are counted apart; the rest count together
OTHERS = "*"  # the tally of addresses beyond MAX_TALLIES


class StrangerAudit:
    """Decides, per refusal, whether its audit row is written (thread-safe)."""

    def __init__(self, per_client: str = PER_CLIENT, overall: str = OVERALL) -> None:
        self._limiter = strategies.MovingWindowRateLimiter(storage.MemoryStorage())
        self._per_client = parse(per_client)
        self._overall = parse(overall)
        self._left_out: dict[str, int] = {}
        self._lock = threading.Lock()

    def admit(self, client_key: str) -> int | None:
        """None: leave this refusal's row out (it is counted). Else write it, telling the
        number of rows left out before it: this address's, and those counted together."""
        with self._lock:
            if self._limiter.test(self._per_client, "client", client_key) and self._limiter.test(
                self._overall, "all"
            ):
                self._limiter.hit(self._per_client, "client", client_key)
                self._limiter.hit(self._overall, "all")
                return self._left_out.pop(client_key, 0) + self._left_out.pop(OTHERS, 0)
            tallied = client_key in self._left_out or len(self._left_out) < MAX_TALLIES
            key = client_key if tallied else OTHERS
            self._left_out[key] = self._left_out.get(key, 0) + 1
            return None

    def left_out(self) -> int:
        """Rows left out and not told yet."""
        with self._lock:
            return sum(self._left_out.values())
