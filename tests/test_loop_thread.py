"""LoopThread: start/ready/error, call(), refusal from its own thread, stop."""

import asyncio
import threading

import pytest

from loop_thread import LoopThread, WrongThreadError, cancel_until_done, wait_event


@pytest.fixture
def loop_thread():
    thread = LoopThread("test-loop")
    thread.start()
    yield thread
    thread.stop()


def test_call_runs_on_the_loop_thread(loop_thread):
    async def where():
        return threading.current_thread().name, asyncio.get_running_loop()

    name, loop = loop_thread.call(where(), 5)
    assert name == "test-loop"
    assert loop is loop_thread.loop


def test_call_from_own_thread_is_refused(loop_thread):
    async def inner():
        return 1

    async def outer():
        coro = inner()
        try:
            loop_thread.call(coro, 1)
        except WrongThreadError as exc:
            return str(exc)
        return "not refused"

    assert "own thread" in loop_thread.call(outer(), 5)


def test_setup_error_is_reraised_by_start():
    async def boom():
        raise ValueError("cannot connect")

    thread = LoopThread("failing", setup=boom)
    with pytest.raises(ValueError, match="cannot connect"):
        thread.start()
    assert not thread.is_alive


def test_stop_runs_teardown_and_joins():
    seen = []

    async def teardown():
        seen.append(threading.current_thread().name)

    thread = LoopThread("stopping", teardown=teardown)
    thread.start()
    thread.stop()
    assert seen == ["stopping"]
    assert not thread.is_alive
    with pytest.raises(RuntimeError):
        thread.call(asyncio.sleep(0), 1)


def test_call_timeout_cancels_the_coroutine(loop_thread):
    cancelled = threading.Event()

    async def slow():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(TimeoutError):
        loop_thread.call(slow(), 0.1)
    assert cancelled.wait(2)


def test_exceptions_propagate_to_the_caller(loop_thread):
    async def fail():
        raise KeyError("x")

    with pytest.raises(KeyError):
        loop_thread.call(fail(), 5)
    assert loop_thread.is_alive


async def _cancel_just_after_a_wake(turns: int) -> bool:
    """A loop waking on an event or a period is cancelled ``turns`` loop turns after its
    event was set; True if the cancel ended it."""

    async def waker(event: asyncio.Event) -> None:
        while True:
            event.clear()
            await wait_event(event, 0.25)

    event = asyncio.Event()
    task = asyncio.create_task(waker(event))
    await asyncio.sleep(0.01)
    event.set()
    for _ in range(turns):
        await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=1)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return bool(done)


@pytest.mark.parametrize("turns", [0, 1, 2, 3])
def test_a_cancel_right_after_a_wake_ends_the_waiting_loop(turns):
    """(asyncio.wait_for on Python 3.11 swallows such a cancel: a service's stop then waited
    out its 10 s time-out for a refresher or ticker that carried on.)"""
    assert asyncio.run(_cancel_just_after_a_wake(turns))


def test_wait_event_says_whether_the_event_was_set():
    async def both() -> tuple[bool, bool]:
        event = asyncio.Event()
        timed_out = await wait_event(event, 0.01)
        asyncio.get_running_loop().call_soon(event.set)
        return timed_out, await wait_event(event, 5)

    assert asyncio.run(both()) == (False, True)


def test_a_stop_while_the_setup_runs_waits_for_it_then_tears_down(caplog):
    """A signal during the app's start (start() waiting for the setup) stops the services at
    once: the teardown was refused ('not running', logged as a failure with a traceback) and
    never ran."""
    setup_runs, setup_may_end = threading.Event(), threading.Event()
    torn_down = threading.Event()

    async def setup():
        setup_runs.set()
        await asyncio.to_thread(setup_may_end.wait, 5)

    async def teardown():
        torn_down.set()

    thread = LoopThread("slow-setup", setup=setup, teardown=teardown)
    starter = threading.Thread(target=thread.start)
    starter.start()  # the start() a signal interrupts: its thread runs on meanwhile
    assert setup_runs.wait(5)
    threading.Timer(0.3, setup_may_end.set).start()
    thread.stop()
    starter.join(5)
    assert torn_down.is_set()
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text


def test_a_stop_while_the_setup_fails_ends_quietly(caplog):
    """A signal while the setup is failing (the gateway refused the connection): the stop
    used to run the teardown of what was never set up on a loop that was closing, and could
    raise 'Event loop is closed' out of the shutdown."""
    setup_runs, setup_may_fail = threading.Event(), threading.Event()
    torn_down = threading.Event()
    raised: list[BaseException] = []

    async def setup():
        setup_runs.set()
        await asyncio.to_thread(setup_may_fail.wait, 5)
        raise ConnectionRefusedError("gateway refused")

    async def teardown():
        torn_down.set()

    def start() -> None:
        try:
            thread.start()
        except ConnectionRefusedError as exc:
            raised.append(exc)

    thread = LoopThread("failing-setup", setup=setup, teardown=teardown)
    starter = threading.Thread(target=start)
    starter.start()
    assert setup_runs.wait(5)
    threading.Timer(0.2, setup_may_fail.set).start()
    thread.stop(timeout=5)  # must not raise
    starter.join(5)
    assert raised and not torn_down.is_set()
    assert not thread.is_alive and thread.loop is not None and thread.loop.is_closed()
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text


def test_a_task_that_drops_a_cancel_is_cancelled_again():
    """Python 3.11's asyncio.wait_for drops a cancel that lands as its inner step completes
    (ib_async connects through it): a stop during a connect then waited for the gateway's
    handshake time-out (30 s) instead of ending."""

    async def drops_one_cancel() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            pass  # as wait_for does when the connection completed meanwhile
        await asyncio.sleep(30)  # the handshake's wait

    async def main() -> float:
        task = asyncio.create_task(drops_one_cancel())
        await asyncio.sleep(0)
        started = asyncio.get_running_loop().time()
        await asyncio.wait_for(cancel_until_done(task), 5)
        assert task.cancelled()
        return asyncio.get_running_loop().time() - started

    assert asyncio.run(main()) < 2
