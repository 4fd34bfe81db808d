"""The read endpoints' cache: one build per data version, however many pollers ask at once."""

from __future__ import annotations

import threading
import time

from read_cache import ReadCache


def _ask_at_once(cache: ReadCache, threads: int, ask) -> list:
    start = threading.Barrier(threads)
    got: list = []

    def one() -> None:
        start.wait()
        got.append(ask())

    workers = [threading.Thread(target=one) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(10)
    assert not any(w.is_alive() for w in workers), "a thread is stuck in the cache"
    return got


def test_pollers_asking_at_a_change_build_the_answer_once():
    cache = ReadCache()
    builds = []

    def build() -> bytes:
        builds.append(1)
        time.sleep(0.05)  # a gzip of /state takes milliseconds
        return b"body-2"

    cache.get("state", 1, lambda: b"body-1")
    got = _ask_at_once(cache, 16, lambda: cache.get("state", 2, build))
    assert got == [b"body-2"] * 16
    assert len(builds) == 1
    assert cache.get("state", 2, lambda: b"never built") == b"body-2"


def test_a_build_that_asks_for_another_name_does_not_block_the_others():
    cache = ReadCache()

    def outer() -> str:
        return "page:" + cache.get("rows", 5, lambda: "rows")

    got = _ask_at_once(cache, 8, lambda: cache.get("page", 5, outer))
    assert got == ["page:rows"] * 8


def test_a_failed_build_is_not_kept_and_lets_the_next_one_try():
    cache = ReadCache()

    def broken() -> str:
        raise RuntimeError("snapshot gone")

    try:
        cache.get("state", 3, broken)
    except RuntimeError:
        pass
    else:
        raise AssertionError("the build's error was swallowed")
    assert cache.get("state", 3, lambda: "fresh") == "fresh"
