"""One supervised ib_async connection living on its own loop thread.

Both the read path (IBConnector, clientId 999) and the write path
(OrderHandler, clientId 1000) are built on this class. It owns:

* a ``LoopThread`` whose loop runs for the whole app lifetime;
* the ``ib_async.IB`` object, created and connected *inside* that thread
  (a fresh one per connection attempt, since ib_async wipes its state on
  disconnect anyway);
* a supervisor task that connects, watches the connection with a heartbeat
  (a stalled gateway keeps the socket open, so ``isConnected()`` alone lies)
  and reconnects with backoff and jitter.

Subclasses override ``on_connected(ib)`` / ``on_disconnected()`` and call
into the loop with ``self.thread.call(coro, timeout)``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from ib_async import IB

from ib_compat import current_time, logged
from ib_link import LinkMonitor
from ib_pacing import SmoothPacer, queued_seconds
from ib_servers import IBServers
from loop_thread import LoopThread, cancel_until_done, wait_event

log = logging.getLogger(__name__)

T = TypeVar("T")
HEARTBEAT_INTERVAL = 2.0
FLUSH_AT_STOP = 2.0  # s a stop waits for what was written to leave the socket
SILENCE_CHECK = 0.1  # seconds between looks at the gateway's silence while a call waits
HEARTBEAT_TIMEOUT = 4.0
BACKOFF_FIRST = 0.25
BACKOFF_MAX = 5.0


class NotConnectedError(RuntimeError):
    """The connection to the gateway is down; nothing was sent."""


class ServersUnreachable(NotConnectedError):
    """The gateway is up but has lost IB's servers (1100): nothing was sent."""


def check_account(account: str, managed: tuple[str, ...]) -> None:
    """ConnectionError unless ``account`` (IB_ACCOUNT; "" = the first) is one the gateway
    manages: a mistyped one got no account data and every order refused by IB."""
    if account and account not in managed:
        raise ConnectionError(
            f"IB_ACCOUNT={account} is not an account of this gateway (it manages "
            f"{', '.join(managed) or 'none'}): correct it, or leave it empty for the first one"
        )


@dataclass(frozen=True)
class ConnectionState:
    """What the status endpoint reports about one connection."""

    name: str
    client_id: int
    state: str  # starting | connecting | connected | disconnected | stopped
    thread_alive: bool
    server_version: int | None
    accounts: tuple[str, ...]
    connected_since: float | None  # epoch seconds
    last_error: str | None
    reconnects: int
    last_heartbeat: float | None  # epoch seconds of the last answered heartbeat


async def _settled(future: asyncio.Future | None) -> None:
    assert future is not None
    await asyncio.shield(future)


class IBConnection(IBServers):
    """A supervised IB connection on a dedicated loop thread."""

    readonly = False

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        client_id: int,
        connect_timeout: float = 10.0,
        account: str = "",
    ) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.client_id = client_id
        self.connect_timeout = connect_timeout
        self.account = account
        self.thread = LoopThread(name, setup=self._setup, teardown=self._teardown)
        self.ib: IB | None = None
        self._supervisor: asyncio.Task | None = None
        self._first_attempt: asyncio.Future | None = None
        self._connected = False
        self._stopping = False
        self._state = "starting"
        self._since: float | None = None
        self._last_error: str | None = None
        self._reconnects = 0
        self._last_heartbeat: float | None = None
        self._last_received = time.monotonic()  # when the gateway last sent us any bytes
        self.gateway_clock_offset: float | None = None  # gateway clock - ours, lower bound
        self._server_version: int | None = None
        self._accounts: tuple[str, ...] = ()
        self.state_listener: Callable[[], None] | None = None  # called on connect/disconnect
        self.link = LinkMonitor()  # IB's servers and data farms, from the gateway's notices
        self._link_tasks: set[asyncio.Task] = set()
        self._restarting = False  # restart_connection() dropped the socket on purpose

    # ------------------------------------------------------------------ life
    def start(self, wait_connected: bool = True) -> None:
        """Start the thread; by default wait for the first connection attempt (a failed one
        does not raise: the supervisor keeps retrying, the state says ``disconnected``)."""
        self.thread.start()
        if wait_connected:
            self.wait_first_attempt()

    def wait_first_attempt(self) -> None:
        """Block until the first connection attempt after ``start`` succeeded or failed."""
        self.thread.call(_settled(self._first_attempt), self.connect_timeout + 5)

    def stop(self) -> None:
        """Disconnect cleanly and end the thread."""
        self._stopping = True
        self.thread.stop()
        self._state = "stopped"

    async def _setup(self) -> None:
        self._first_attempt = asyncio.get_running_loop().create_future()
        self._supervisor = asyncio.create_task(self._supervise(), name=f"{self.name}-supervisor")

    async def _teardown(self) -> None:
        self._stopping = True
        await self.before_stop()
        if self._supervisor is not None:
            await cancel_until_done(self._supervisor)
        await self.before_disconnect()
        await _disconnect_flushed(self.ib)
        self._connected = False

    # ------------------------------------------------------------ supervisor
    async def _supervise(self) -> None:
        backoff = BACKOFF_FIRST
        while not self._stopping:
            self._state = "connecting"
            connected = await self._connect_once()
            self._mark_first_attempt()
            if connected:
                backoff = BACKOFF_FIRST
                await self._watch()
                self._reconnects += 1
            self._state = "disconnected"  # (``_watch`` said so too when it ended)
            if self._stopping:
                return
            delay = backoff * (1 + random.random() * 0.5)
            backoff = min(BACKOFF_MAX, backoff * 2)
            await asyncio.sleep(delay)

    def _on_bytes(self, data: bytes) -> None:
        self._last_received = time.monotonic()

    async def answer_within(
        self, awaitable: Awaitable[T], timeout: float, silence: float | None = None
    ) -> T:
        """Await ``awaitable`` for up to ``timeout`` seconds. With ``silence``, give up sooner
        once the gateway has sent nothing at all for that long: it is not answering (stalled),
        as opposed to busy answering what was asked before. TimeoutError either way."""
        task = asyncio.ensure_future(awaitable)
        asked = time.monotonic()
        deadline = asked + timeout
        try:
            while True:
                step = deadline - time.monotonic()
                if silence is not None:
                    step = min(step, SILENCE_CHECK)
                if step <= 0:
                    raise TimeoutError(f"no answer in {timeout:g}s")
                done, _ = await asyncio.wait({task}, timeout=step)
                if done:
                    return task.result()
                # silent since the later of its last bytes and our question: a gateway that
                # had nothing to say before we asked is not thereby stalled
                quiet_since = max(self._last_received, asked)
                if silence is not None and time.monotonic() - quiet_since >= silence:
                    raise TimeoutError(f"the gateway sent nothing for {silence:g}s")
        finally:
            if not task.done():
                task.cancel()

    def _mark_first_attempt(self) -> None:
        if self._first_attempt is not None and not self._first_attempt.done():
            self._first_attempt.set_result(None)

    async def _connect_once(self) -> bool:
        ib = IB()
        ib.client.conn.hasData += self._on_bytes
        self.link.reset()  # a new socket: the gateway tells its farms (and any outage) again
        ib.errorEvent += logged(
            log,
            f"{self.name}'s notice",
            lambda req_id, code, text, _: self._on_notice(ib, req_id, code, text),
        )
        SmoothPacer(ib.client)  # 45 msg/s, 4 at once (ib_pacing.py)
        set_up = False  # on_connected entered: what it bound to ``ib`` must be let go
        try:
            await ib.connectAsync(
                self.host,
                self.port,
                clientId=self.client_id,
                timeout=self.connect_timeout,
                readonly=self.readonly,
                account=self.account,
            )
            check_account(self.account, tuple(ib.managedAccounts()))
            self.ib = ib
            self._server_version = ib.client.serverVersion()
            self._accounts = tuple(ib.managedAccounts())
            self._connected = True
            set_up = True
            await self.on_connected(ib)
        except asyncio.CancelledError:
            ib.disconnect()
            raise
        except Exception as exc:  # log and carry on: the supervisor retries
            self._connected = False
            self._last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            log.warning(
                "❌ %s: connect to %s:%s as clientId %d failed: %s",
                self.name,
                self.host,
                self.port,
                self.client_id,
                self._last_error,
            )
            ib.disconnect()
            if set_up:  # e.g. orders matched to this connection's trades before a failure
                await self._let_go()
            return False
        self._state = "connected"
        self._since = time.time()
        self._last_heartbeat = time.time()
        self._last_error = None
        log.info(
            "✅ %s connected to %s:%s as clientId %d (server version %s)",
            self.name,
            self.host,
            self.port,
            self.client_id,
            self._server_version,
        )
        self._notify_state()
        return True

    async def _let_go(self) -> None:
        """``on_disconnected`` after a setup that failed (logged: the supervisor retries)."""
        try:
            await self.on_disconnected()
        except Exception:
            log.exception("%s: cleanup after the failed setup failed; carrying on", self.name)

    def _notify_state(self) -> None:
        if self.state_listener is not None:
            try:
                self.state_listener()
            except Exception:
                log.exception("state listener failed; carrying on")

    async def _watch(self) -> None:
        """Return when the connection is lost (hard close or failed heartbeat)."""
        ib = self.ib
        assert ib is not None
        lost = asyncio.Event()
        handler = lambda *_: lost.set()  # noqa: E731
        ib.disconnectedEvent += handler
        try:
            while not lost.is_set() and ib.isConnected():
                if await wait_event(lost, HEARTBEAT_INTERVAL) or not await self._heartbeat(ib):
                    break
        finally:
            ib.disconnectedEvent -= handler
            self._connected = False
            self._state = "disconnected"
            if ib.isConnected():
                ib.disconnect()
            if self._restarting:
                log.info("🔁 %s reconnecting on purpose: %s", self.name, self._last_error)
            elif not self._stopping:
                log.warning(
                    "🔌 %s lost the connection to the gateway: %s",
                    self.name,
                    self._last_error or "peer closed",
                )
            self._restarting = False
            await self.on_disconnected()
            self._notify_state()

    async def _heartbeat(self, ib: IB) -> bool:
        # the heartbeat waits behind requests still queued in the pacer: allow for them
        backlog = queued_seconds(ib.client)
        try:
            await self.gateway_time(ib, HEARTBEAT_TIMEOUT + backlog)
        except TimeoutError:
            self._last_error = f"gateway stalled: no heartbeat answer in {HEARTBEAT_TIMEOUT:.0f}s"
            return False
        except ConnectionError as exc:
            self._last_error = f"heartbeat failed: {exc}"
            return False
        self._last_heartbeat = time.time()
        return True

    async def gateway_time(self, ib: IB, timeout: float) -> None:
        """Ask the gateway for its clock (one message); keeps ``gateway_clock_offset``."""
        now = await current_time(ib, timeout)
        # the gateway read its clock (whole seconds) before we got the answer: so this is a
        # lower bound of its offset to our clock, the safe side for "since" filters
        self.gateway_clock_offset = now.timestamp() - time.time()

    # ------------------------------------------------------------- for users
    @property
    def connected(self) -> bool:
        """True while connected and answering heartbeats."""
        return self._connected and self.thread.is_alive

    @property
    def ready(self) -> bool:
        """Connected and set up (``on_connected`` done: the order handler's journal matched)."""
        return self.connected and self._state == "connected"

    def require_connected(self) -> None:
        """Raise NotConnectedError unless connected (nothing is sent then), ServersUnreachable
        while the gateway has lost IB's servers."""
        if not self.connected:
            raise NotConnectedError(
                f"{self.name} is not connected to the gateway"
                + (f" ({self._last_error})" if self._last_error else "")
            )
        link = self.link.state
        if not link.reachable:
            raise ServersUnreachable(link.reason())

    def state(self) -> ConnectionState:
        """A frozen view of the connection for the status endpoint."""
        return ConnectionState(
            name=self.name,
            client_id=self.client_id,
            state=self._state,
            thread_alive=self.thread.is_alive,
            server_version=self._server_version,
            accounts=self._accounts,
            connected_since=self._since,
            last_error=self._last_error,
            reconnects=self._reconnects,
            last_heartbeat=self._last_heartbeat,
        )

    # ------------------------------------------------------------ overrides
    async def on_connected(self, ib: IB) -> None:
        """Called on the loop after each successful connect (subscribe here)."""

    async def on_disconnected(self) -> None:
        """Called on the loop after the connection was lost."""

    async def before_stop(self) -> None:
        """Called on the loop when a clean shutdown begins, the connection still up; then
        ``before_disconnect``, called before it disconnects."""

    async def before_disconnect(self) -> None: ...


async def _disconnect_flushed(ib: IB | None) -> None:
    """Disconnect, the loop running until what was written has left (an order handed to the
    socket just before a stop would otherwise die in its buffer with the loop), 2 s at most."""
    if ib is None or not ib.isConnected():
        return
    transport = ib.client.conn.transport
    ib.disconnect()
    deadline = time.monotonic() + FLUSH_AT_STOP
    while transport is not None and transport.get_write_buffer_size():
        if time.monotonic() > deadline:
            log.warning("⚠️ %d bytes not sent at the stop", transport.get_write_buffer_size())
            return
        await asyncio.sleep(0.01)
