"""A thread that owns one asyncio event loop for its whole life.

Both IB connections (the read-side IBConnector and the write-side
OrderHandler) and the embedded simulated gateway run on one of these. Other
threads never touch objects that belong to the loop: they hand a coroutine to
``call()``, which runs it on the loop and waits for the result.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``event``; True if it was set.

    Loops that wake on an event or a period use this, not ``asyncio.wait_for``: on Python
    3.11, ``wait_for`` returns normally when a cancel arrives within a few loop turns of the
    event being set, so the task it was meant to end carries on, and whoever awaits it (a
    shutdown) waits out its own time-out. ``asyncio.timeout`` passes every cancel on.
    """
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True


CANCEL_AGAIN = 0.2  # s: how long a cancelled task may run on before it is cancelled again


async def cancel_until_done(task: asyncio.Task) -> None:
    """Cancel ``task`` and wait for its end, cancelling it again while it runs on. Python 3.11's
    ``asyncio.wait_for`` (ib_async connects through it) drops a cancel that lands as the awaited
    step completes: a stop during a connect then waited for the gateway's handshake answer (the
    time-out) instead of ending, and the stop's own time-out broke off its teardown."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=CANCEL_AGAIN)
    await asyncio.gather(task, return_exceptions=True)  # its outcome is not needed: retrieved


class WrongThreadError(RuntimeError):
    """A blocking call was made from the loop's own thread (it would deadlock)."""


class LoopThread:
    """Runs ``setup`` then the loop forever on a dedicated daemon thread.

    ``setup`` (optional) is awaited on the new loop before ``start()`` returns;
    an exception it raises is re-raised by ``start()`` in the caller's thread.
    ``teardown`` (optional) is awaited when ``stop()`` is called.
    """

    def __init__(
        self,
        name: str,
        setup: Callable[[], Awaitable[None]] | None = None,
        teardown: Callable[[], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        self.name = name
        self._setup = setup
        self._teardown = teardown
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle ---------------------------------------------------------
    def start(self, timeout: float = 30.0) -> None:
        """Start the thread, wait until setup finished, re-raise its error."""
        if self._thread is not None:
            raise RuntimeError(f"{self.name} already started")
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"{self.name} did not start within {timeout:.0f}s")
        if self._error is not None:
            self._thread.join(5)
            raise self._error

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self.loop = loop
        try:
            if self._setup is not None:
                loop.run_until_complete(self._setup())
        except BaseException as exc:  # re-raised in start()'s thread
            self._error = exc
            self._ready.set()
            self._close(loop)
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            self._close(loop)

    def _close(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()

    def stop(self, timeout: float = 10.0) -> None:
        """Run teardown on the loop, stop the loop and join the thread. A stop during
        ``start()`` (a signal while it waited) first waits for the setup to end."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        if not self._ready.wait(timeout):
            log.error("%s: setup still running after %.0fs; stopping anyway", self.name, timeout)
        loop = self.loop
        if loop is None:
            return
        if self._error is None:  # a failed setup closes its loop itself: nothing to tear down
            self._tear_down(loop, timeout)
        thread.join(timeout)
        if thread.is_alive():
            log.error("%s: thread did not stop within %.0fs", self.name, timeout)

    def _tear_down(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        if self._teardown is not None and self.is_alive and not loop.is_closed():
            try:
                self.call(self._teardown(), timeout)
            except Exception:
                log.exception("%s: teardown failed; stopping anyway", self.name)
        try:
            loop.call_soon_threadsafe(loop.stop)
        except RuntimeError:  # closed meanwhile: its loop has ended by itself
            if not loop.is_closed():
                raise

    # -- use ---------------------------------------------------------------
    @property
    def is_alive(self) -> bool:
        """True while the thread runs its loop."""
        return self._thread is not None and self._thread.is_alive() and self._ready.is_set()

    def in_loop_thread(self) -> bool:
        """True when called from the loop's own thread."""
        return self._thread is not None and threading.current_thread() is self._thread

    def call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run ``coro`` on the loop and wait up to ``timeout`` seconds for it.

        Refuses calls from the loop's own thread (that would block the loop
        that must run the coroutine). On time-out the coroutine is cancelled.
        """
        if self.in_loop_thread():
            coro.close()
            raise WrongThreadError(f"{self.name}: call() from the loop's own thread")
        loop = self.loop
        if loop is None or loop.is_closed() or not self.is_alive:
            coro.close()
            raise RuntimeError(f"{self.name} is not running")
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Schedule a plain callback on the loop from any thread."""
        loop = self.loop
        if loop is None or loop.is_closed():
            raise RuntimeError(f"{self.name} is not running")
        loop.call_soon_threadsafe(fn, *args)
