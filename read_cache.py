"""Answers of the read endpoints, built once per data version for every poller.

The big answers (/state, the first page of /orders, their gzip) are rebuilt when the data
change and once a second (their clocks move on). Sixteen server threads polled at once all
find the old version at that moment; each building its own copy made a gzip of /state (about
6 ms) ten times over. Here one thread builds a name's value and the others wait for it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class ReadCache:
    """A value per name, tagged with the data version it was built from."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[object, Any]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()  # makes the per-name locks

    def get(self, name: str, version: object, build: Callable[[], Any]) -> Any:
        """The value of ``name`` built from ``version``: kept, or built now by this thread
        while the others asking for it wait (a build may ask for other names: each name
        depends only on names built inside it, so their locks are taken in one order)."""
        entry = self._entries.get(name)
        if entry is not None and entry[0] == version:
            return entry[1]
        with self._lock(name):
            entry = self._entries.get(name)
            if entry is None or entry[0] != version:
                entry = (version, build())
                self._entries[name] = entry
        return entry[1]

    def _lock(self, name: str) -> threading.Lock:
        lock = self._locks.get(name)
        if lock is None:
            with self._guard:
                lock = self._locks.setdefault(name, threading.Lock())
        return lock
