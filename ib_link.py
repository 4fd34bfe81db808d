"""The gateway's link to IB's servers, as its notices tell it (pure; time is passed in).

A gateway can keep the API socket open while IB's servers are unreachable: it says so with
1100 (or 2110), and later 1102 (restored, data maintained) or 1101 (restored, data lost: market
data and account subscriptions must be requested again). Data farms come and go with 2103/2104
(market data), 2105/2106 (historical), 2107/2108 (inactive, available on demand) and 2157/2158
(security definitions). ``LinkMonitor.on_message`` folds these into a frozen ``LinkState`` and
returns what the connection must do (``LinkEvent``).
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass

LOST_CODES = frozenset({1100, 2110})
RESTORED_KEPT, RESTORED_LOST = 1102, 1101
FARM_CODES: dict[int, tuple[str, str]] = {  # code -> (kind, state)
    2103: ("market data", "broken"),
    2104: ("market data", "ok"),
    2105: ("historical data", "broken"),
    2106: ("historical data", "ok"),
    2107: ("historical data", "inactive"),
    2108: ("market data", "inactive"),
    2157: ("security definitions", "broken"),
    2158: ("security definitions", "ok"),
}
LINK_CODES = LOST_CODES | {RESTORED_KEPT, RESTORED_LOST} | set(FARM_CODES)
# s after a new socket in which its 1100 is the outage told on the old one (not a new one)
OUTAGE_CARRIED_FOR = 60.0


class LinkEvent(enum.Enum):
    LOST = "lost"  # 1100: orders cannot reach IB
    RESTORED = "restored"  # 1102: reconcile
    RESTORED_DATA_LOST = "restored_data_lost"  # 1101: reconcile and re-subscribe


@dataclass(frozen=True)
class FarmState:
    """One data farm as the last notice about it said."""

    name: str  # e.g. "usfarm"
    kind: str  # market data | historical data | security definitions
    state: str  # ok | broken | inactive
    since: float  # epoch seconds of that notice
    code: int


@dataclass(frozen=True)
class LinkState:
    """IB's servers and farms as one connection knows them."""

    reachable: bool = True
    since: float | None = None  # when the last change of ``reachable`` was told
    code: int | None = None  # the notice that told it (1100, 1101, 1102, 2110)
    message: str = ""  # the gateway's text
    farms: tuple[FarmState, ...] = ()

    def reason(self) -> str:
        """A sentence for /health, the header and refused orders ("" while reachable)."""
        if self.reachable:
            return ""
        # UTC, named: the server's own zone need not be the trader's
        since = time.strftime("%H:%M:%S UTC", time.gmtime(self.since)) if self.since else "?"
        return (
            f"IB servers unreachable (error {self.code} since {since}: the gateway lost its "
            "connection to IB; it reconnects by itself)"
        )

    def as_dict(self) -> dict:
        return {
            "reachable": self.reachable,
            "since": self.since,
            "code": self.code,
            "message": self.message,
            "reason": self.reason(),
            "farms": [
                {"name": f.name, "kind": f.kind, "state": f.state, "since": f.since, "code": f.code}
                for f in self.farms
            ],
        }


class LinkMonitor:
    """Folds notices into a LinkState (one per connection; reset on every new socket)."""

    def __init__(self) -> None:
        self.state = LinkState()
        self._farms: dict[tuple[str, str], FarmState] = {}
        self._outage: tuple[float, float] | None = None  # (since, when reset) of an outage

    def reset(self) -> None:
        """A new socket. An outage told on the old one is kept a while: the gateway tells it
        again (1100) on the new one, whose notice is not when it began."""
        now = time.time()
        if not self.state.reachable and self.state.since is not None:
            self._outage = (self.state.since, now)
        elif self._outage is not None:  # the last socket told nothing: still the same outage
            self._outage = (self._outage[0], now)
        self.state = LinkState()
        self._farms.clear()

    def on_message(self, code: int, text: str, now: float) -> LinkEvent | None:
        """Take one error/notice; the action it calls for, if any."""
        if code in FARM_CODES:
            self._on_farm(code, text, now)
            return None
        if code in LOST_CODES:
            if self.state.reachable:  # 1100 repeats while the outage lasts: keep its start
                since = now
                if self._outage is not None and now - self._outage[1] <= OUTAGE_CARRIED_FOR:
                    since = self._outage[0]  # the one told before a reconnect, still on
                self.state = LinkState(False, since, code, text, self.state.farms)
            self._outage = None
            return LinkEvent.LOST
        if code in (RESTORED_KEPT, RESTORED_LOST):
            self._outage = None
            self.state = LinkState(True, now, code, text, self.state.farms)
            return LinkEvent.RESTORED if code == RESTORED_KEPT else LinkEvent.RESTORED_DATA_LOST
        return None

    def _on_farm(self, code: int, text: str, now: float) -> None:
        kind, state = FARM_CODES[code]
        if state == "ok" and self.state.reachable:  # a new socket's notices of a working link:
            self._outage = None  # an outage told on an earlier one has ended meanwhile
        name = _farm_name(text)
        old = self._farms.get((kind, name))
        if old is not None and old.state == state:
            return  # the same news again: keep "since"
        self._farms[(kind, name)] = FarmState(name, kind, state, now, code)
        farms = tuple(sorted(self._farms.values(), key=lambda f: (f.kind, f.name)))
        s = self.state
        self.state = LinkState(s.reachable, s.since, s.code, s.message, farms)


def _farm_name(text: str) -> str:
    """The farm a notice is about: after its colon ("…is OK:usfarm.nj"), or, in the inactive
    notices (2107, 2108), after "demand." ("…available upon demand.usfarm")."""
    if ":" in text:
        return text.rpartition(":")[2].strip() or "?"
    return text.partition("demand.")[2].strip() or "?"
