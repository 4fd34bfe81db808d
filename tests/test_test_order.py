"""The standalone baseline script, run as a trader runs it."""

import asyncio
import contextlib
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest
from ib_async import IB

from conftest import ROOT, TRADING_CLOCK
from sim_gateway.broker import BrokerConfig
from sim_gateway.controller import SimGateway
from sim_gateway.server import ServerSettings


def run_script(*args, timeout=60):
    return subprocess.run(
        [sys.executable, "test_order.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_fills_against_the_embedded_gateway():
    result = run_script("--settle", "0.2,0.3,0.2")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Embedded simulated IB Gateway" in out
    assert "📊 Status: None → PendingSubmit" in out
    assert "→ Filled" in out
    assert "⏱️ Applying sleep workaround" in out and "✅ Sleep completed" in out
    assert "🎉 SUCCESS! Order reached: Filled" in out


def test_non_zero_exit_when_the_order_does_not_fill(gateway):
    result = run_script(
        "--port",
        str(gateway.port),
        "--host",
        "127.0.0.1",
        "--order-type",
        "LMT",
        "--limit-price",
        "1",
        "--settle",
        "0,0,0",
        "--timeout",
        "1",
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Submitted" in result.stdout and "did not fill" in result.stdout
    # a baseline check leaves nothing working at the broker
    assert "🛑 Not done (Submitted): cancelling orderId" in result.stdout
    assert "→ Cancelled" in result.stdout and "may still be working" not in result.stdout
    assert asyncio.run(_open_orders(gateway.port)) == []


def test_a_short_sale_held_for_a_locate_is_cancelled_not_left_working(gateway):
    """IB holds a short sale it cannot borrow for (404, Inactive with whyHeld "locate"): the
    check took ib_async's Inactive for the end, cancelled nothing and left the order working
    at IB, where it filled once the shares were located. Now it is watched and cancelled."""
    gateway.set_hard_to_borrow("IBM")
    result = run_script(
        *("--port", str(gateway.port), "--host", "127.0.0.1", "--symbol", "IBM"),
        *("--side", "SELL", "--settle", "0,0,0", "--timeout", "1"),
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "→ Inactive (held: locate)" in result.stdout
    assert "🛑 Not done (Inactive): cancelling orderId" in result.stdout
    assert "may still be working" not in result.stdout
    assert asyncio.run(_open_orders(gateway.port)) == []
    gateway.shares_located("IBM")
    assert not gateway.executions()


@contextlib.contextmanager
def ctrl_c_reaches_children() -> Iterator[None]:
    """A test run started in the background by a non-interactive shell ignores SIGINT, and an
    ignored signal stays ignored in every process started from it: the script would never see
    the test's Ctrl-C (as a trader's foreground terminal delivers it). Handled in this process
    while the script starts, it reaches the script as the default."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def watched(
    gateway, act: Callable[[subprocess.Popen, str], None], timeout: int = 60, ctrl_c=False
) -> tuple[int, str]:
    """The script's exit code and output watching a resting LMT order (for up to ``timeout``
    s) while ``act(script, line)`` sees each line of its output as it comes."""
    args = ["--host", "127.0.0.1", "--port", str(gateway.port), "--order-type", "LMT"]
    args += ["--limit-price", "1", "--settle", "0,0,0", "--timeout", str(timeout)]
    seen: list[str] = []
    with (
        ctrl_c_reaches_children() if ctrl_c else contextlib.nullcontext(),
        subprocess.Popen(
            [sys.executable, "test_order.py", *args], cwd=ROOT, stdout=subprocess.PIPE, text=True
        ) as script,
    ):
        assert script.stdout is not None
        for line in script.stdout:
            seen.append(line)
            act(script, line)
        code = script.wait(timeout=30)
    return code, "".join(seen)


def interrupted(gateway, at: tuple[str, ...]) -> tuple[int, str]:
    """Ctrl-C at each line holding one of ``at``."""

    def press(script: subprocess.Popen, line: str) -> None:
        if any(words in line for words in at):
            script.send_signal(signal.SIGINT)

    return watched(gateway, press, ctrl_c=True)


def test_ctrl_c_while_watching_cancels_the_order(gateway):
    code, out = interrupted(gateway, ("✅ Sleep completed",))  # Ctrl-C while it watches
    assert code == 2, out
    assert "🛑 Not done (" in out and "): cancelling orderId" in out and "→ Cancelled" in out
    assert "Interrupted." in out
    assert asyncio.run(_open_orders(gateway.port)) == []


def test_a_second_ctrl_c_during_the_cancel_still_names_the_order(gateway):
    """The trader presses Ctrl-C again while IB has not confirmed the cancel yet: the script
    said only 'Interrupted.', not that its order may still be working. The status shown is the
    one ib_async holds last: its own PendingCancel, or the order's late acknowledgement from IB
    (PreSubmitted, Submitted) when that came after the cancel was sent, so the cancel is named
    too."""
    gateway.set_cancel_delay(30)  # IB is slow to confirm the cancel
    # Ctrl-C, and again while IB cancels
    code, out = interrupted(gateway, ("✅ Sleep completed", "→ PendingCancel"))
    assert code == 2, out
    unconfirmed = r"\((PendingCancel|PreSubmitted|Submitted), the cancel sent but not confirmed\)"
    assert re.search(rf"may still be working at IB {unconfirmed}: check TWS", out), out
    assert out.rstrip().endswith("Interrupted."), out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_or_a_closed_terminal_cancels_the_order_too(gateway, sig):
    """kill, timeout(1) or a service manager (SIGTERM), or the terminal window closed (SIGHUP):
    the script died at once, silently, and left its order working at IB."""

    def signal_it(script: subprocess.Popen, line: str) -> None:
        if "✅ Sleep completed" in line:
            script.send_signal(sig)

    code, out = watched(gateway, signal_it)
    assert code == 2, out
    assert f"🛑 {sig.name} received" in out and "): cancelling orderId" in out, out
    assert "→ Cancelled" in out and "Interrupted." in out
    assert asyncio.run(_open_orders(gateway.port)) == []


def test_a_dropped_connection_is_reconnected_to_cancel_the_order(gateway):
    """The gateway closed the socket while the order worked (its daily restart, the network):
    the script sat out its time-out, found it could not send the cancel ('Not connected') and
    exited with the order still working. It now connects again as the same client (the only
    one IB lets cancel it) and cancels it."""

    def drop(script: subprocess.Popen, line: str) -> None:
        if "→ Submitted" in line:  # working at the gateway
            gateway.drop_connections()

    code, out = watched(gateway, drop, timeout=10)
    assert code == 1, out
    assert "🔌 Lost the connection to the gateway: connecting again" in out, out
    assert "❌ Order did not fill: Cancelled" in out and "may still be working" not in out, out
    assert asyncio.run(_open_orders(gateway.port)) == []


@pytest.mark.slow
def test_an_ib_message_ib_async_takes_for_a_cancel_does_not_end_the_watch(gateway):
    """IB's informational 10349 on a working order: ib_async marks it Cancelled, and the
    script believed it ('did not fill: Cancelled', exit 1) and exited with the order still
    working at IB. The end is now checked against the gateway's open orders."""
    seen: list[str] = []

    def notice(script: subprocess.Popen, line: str) -> None:
        seen.append(line)
        if "Status: PreSubmitted → Submitted" in line:
            found = re.search(r"Submitted orderId (\d+)", "".join(seen))
            assert found is not None
            order_id = int(found[1])
            text = "Order TIF was set to DAY based on order preset."
            assert gateway.send_error(7, order_id, 10349, text)

    code, out = watched(gateway, notice, timeout=2)
    assert code == 1, out
    assert "IB's message 10349 ended nothing: the order is still working at IB" in out, out
    assert "🛑 Not done (Submitted): cancelling orderId" in out and "→ Cancelled" in out, out
    assert asyncio.run(_open_orders(gateway.port)) == []


def test_a_live_account_places_nothing_without_the_live_flag(live_gateway):
    args = ("--host", "127.0.0.1", "--port", str(live_gateway.port), "--settle", "0,0,0")
    result = run_script(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "U7654321 is a live account" in result.stdout and "--live" in result.stdout
    assert live_gateway.stats().requests_by_client.get((7, "PlaceOrder"), 0) == 0
    result = run_script(*args, "--live")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "🎉 SUCCESS! Order reached: Filled" in result.stdout


async def _open_orders(port: int) -> list:
    """Every client's open orders, as another API client sees them."""
    ib = IB()
    await ib.connectAsync("127.0.0.1", port, clientId=31, timeout=10)
    try:
        return await ib.reqAllOpenOrdersAsync()
    finally:
        ib.disconnect()
        await asyncio.sleep(0)  # let the transport finish closing on this loop


def test_unknown_symbol_and_bad_flags_fail_clearly(gateway):
    result = run_script("--port", str(gateway.port), "--host", "127.0.0.1", "--symbol", "ZZZZ")
    assert result.returncode == 2 and "Unknown symbol" in result.stdout
    result = run_script("--order-type", "LMT")
    assert result.returncode == 2 and "--limit-price" in result.stderr
    assert run_script("--quantity", "0").returncode == 2


def test_a_port_alone_means_the_gateway_on_this_machine(gateway):
    """`test_order.py --port 4002` (the module docstring's own example, no --host) started
    the embedded simulator and ignored the port: a trader's gateway was never tested, and
    the script said SUCCESS."""
    result = run_script("--port", str(gateway.port), "--settle", "0,0,0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Embedded simulated IB Gateway" not in result.stdout
    assert f"Connected to 127.0.0.1:{gateway.port}" in result.stdout
    assert gateway.stats().requests_by_client.get((7, "PlaceOrder"), 0) == 1


def test_connection_refused_is_reported(gateway):
    port = gateway.port
    gateway.stop()
    result = run_script("--host", "127.0.0.1", "--port", str(port))
    assert result.returncode == 2 and "Cannot connect" in result.stdout


def test_fills_on_an_account_without_any_market_data(start_gateway_without_data):
    """No subscription and no delayed data (--market-data-subscriptions none): an order needs
    no quote, so the baseline still fills — embedded and against a separate gateway."""
    result = run_script("--settle", "0.2,0.3,0.2", "--sim-market-data", "none")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "🎉 SUCCESS! Order reached: Filled" in result.stdout
    gateway = start_gateway_without_data
    result = run_script("--host", "127.0.0.1", "--port", str(gateway.port), "--settle", "0,0,0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not any(f"Error {code}" in result.stdout for code in (354, 10167, 10168))


@pytest.fixture
def live_gateway():
    """A gateway whose (simulated) account id looks live: U, not DU."""
    broker = BrokerConfig(seed=7, account="U7654321", live_account_drill=True)
    gw = SimGateway(ServerSettings(port=0, clock_start=TRADING_CLOCK), broker).start()
    yield gw
    gw.stop()


@pytest.fixture
def start_gateway_without_data():
    gw = SimGateway(
        ServerSettings(port=0, clock_start=TRADING_CLOCK, market_data="none"), BrokerConfig(seed=7)
    ).start()
    yield gw
    gw.stop()
