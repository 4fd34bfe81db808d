"""The simulator's state file, written ahead like a real gateway's own store.

Two files: ``<state-file>`` holds a whole snapshot of the broker (``Broker.to_state``), written
atomically (a temporary file, then ``os.replace``) at start, about once a second while something
changes, and at stop; ``<state-file>.log`` holds one JSON line per batch of order events, appended
*before* those events leave for the clients: the orders they concern as they are now, the new
fills and completed orders, the work due for those orders, and the small parts of the state
(cash, positions, ids, counters) in full. A line handed to the kernel survives a SIGKILL of the process, so nothing the
gateway said is lost, and a line costs the size of the change, not of the day's orders.

Every entry carries a sequence number and the snapshot the last one it includes, so an entry
already in a snapshot is never applied twice; a torn last line (a kill mid-write, before the
answer left) is ignored. Loading never writes.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_MERGED = ("orders", "index", "completed", "fills", "dues")  # every other key is replaced


class StateStore:
    """The snapshot and the write-ahead log of one state file."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.log_path = Path(f"{path}.log")
        self.seq = 0  # the last entry written (or loaded)
        self.marks = (0, 0)  # (fills, completed orders) already in the snapshot or log
        self._fd: int | None = None

    # ------------------------------------------------------------------ reading
    def load(self) -> dict[str, Any] | None:
        """The snapshot with the log's later entries applied; None when there is no state."""
        if not self.path.exists():
            return None
        state: dict[str, Any] = json.loads(self.path.read_text())
        self.seq = int(state.pop("seq", 0))
        entries = [e for e in self._entries() if e["seq"] > self.seq]
        if entries:
            apply_entries(state, entries)
            self.seq = entries[-1]["seq"]
            log.info(
                "💾 %d write-ahead entr%s applied from %s",
                len(entries),
                "y" if len(entries) == 1 else "ies",
                self.log_path,
            )
        return state

    def _entries(self) -> list[dict[str, Any]]:
        if not self.log_path.exists():
            return []
        entries = []
        for line in self.log_path.read_bytes().splitlines():
            try:
                entries.append(json.loads(line))
            except ValueError:  # torn by a kill mid-write: its events never left
                log.warning("💾 ignoring a torn write-ahead entry at the end of %s", self.log_path)
                break
        return entries

    # ------------------------------------------------------------------ writing
    def snapshot(self, state: dict[str, Any], marks: tuple[int, int]) -> None:
        """Write a whole snapshot (including every entry so far), then start an empty log."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({**state, "seq": self.seq}))
        os.replace(tmp, self.path)
        self._close()
        self._fd = os.open(
            self.log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600
        )
        self.marks = marks

    def append(self, entry: dict[str, Any], marks: tuple[int, int]) -> None:
        """Append one entry (before the events it describes are sent)."""
        if self._fd is None:
            self._fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.seq += 1
        os.write(self._fd, json.dumps({**entry, "seq": self.seq}).encode() + b"\n")
        self.marks = marks

    def close(self) -> None:
        """Close the log (the files stay)."""
        self._close()

    def _close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def apply_entries(state: dict[str, Any], entries: list[dict[str, Any]]) -> None:
    """Apply write-ahead entries to a snapshot, in order."""
    orders = {o["perm_id"]: n for n, o in enumerate(state["orders"])}
    index = {(c, o): n for n, (c, o, _) in enumerate(state["index"])}
    completed = set(state["completed"])
    fills = {f["execution"]["exec_id"] for f in state["fills"]}
    for entry in entries:
        state.update({k: v for k, v in entry.items() if k not in _MERGED and k != "seq"})
        for order in entry["orders"]:
            at = orders.setdefault(order["perm_id"], len(state["orders"]))
            state["orders"][at : at + 1] = [order]
        for client_id, order_id, perm_id in entry["index"]:
            at = index.setdefault((client_id, order_id), len(state["index"]))
            state["index"][at : at + 1] = [[client_id, order_id, perm_id]]
        state["completed"] += [p for p in entry["completed"] if p not in completed]
        completed.update(entry["completed"])
        state["fills"] += [f for f in entry["fills"] if f["execution"]["exec_id"] not in fills]
        fills.update(f["execution"]["exec_id"] for f in entry["fills"])
        changed = {o["perm_id"] for o in entry["orders"]}  # their work due is the entry's
        state["dues"] = [d for d in state["dues"] if d[3] not in changed] + entry["dues"]
