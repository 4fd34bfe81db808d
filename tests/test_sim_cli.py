"""The command line ``python -m sim_gateway``, run as a real subprocess from the repo root."""

from __future__ import annotations

import asyncio
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
PORT_LINE = re.compile(r"^Simulated IB Gateway on (?P<host>\S+):(?P<port>\d+) .*Ctrl\+C to stop$")
SWITCHES = (
    "--port", "--host", "--account", "--seed", "--master-client-id", "--max-clients",
    "--max-rate", "--max-version", "--state-file", "--validation-delay", "--fill-delay",
    "--tif-preset-warning", "--partial-fill-above", "--partial-fill-chunk", "--cash",
    "--log-level", "--clock", "--clock-speed", "--always-open", "--pacing-disconnect-after",
)  # fmt: skip


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONIOENCODING": "utf-8", "PYTHONDONTWRITEBYTECODE": "1"}


def run_cli(*args: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    """Run the CLI to completion (for --help and arguments that must be refused)."""
    return subprocess.run(
        [sys.executable, "-m", "sim_gateway", *args],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
    )


class CliGateway:
    """``python -m sim_gateway`` in the background; stdout lines arrive on a queue."""

    def __init__(self, args: list[str], stderr_path: Path) -> None:
        self.stderr_path = stderr_path
        self._stderr = stderr_path.open("w", encoding="utf-8")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sim_gateway", *args],
            cwd=ROOT,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            encoding="utf-8",
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)  # EOF: the process ended

    def wait_started(self, timeout: float = START_TIMEOUT) -> re.Match[str] | None:
        """The port line's match, or None if the process ended without printing it."""
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(
                    f"no port line within {timeout}s; stderr:\n{self.stderr()}"
                ) from None
            if line is None:
                return None
            match = PORT_LINE.match(line)
            if match:
                return match

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(encoding="utf-8")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        self._reader.join(STOP_TIMEOUT)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()


@pytest.fixture
def start_cli(tmp_path):
    """Factory: start the CLI with arguments; every process is stopped at teardown."""
    started: list[CliGateway] = []

    def start(*args: str) -> CliGateway:
        cli = CliGateway(list(args), tmp_path / f"stderr-{len(started)}.log")
        started.append(cli)
        return cli

    yield start
    for cli in started:
        cli.close()


def starts_or_exits(start_cli, *args: str) -> tuple[str, CliGateway]:
    """("started", cli) if the gateway came up, else ("exited", cli) with the process ended."""
    cli = start_cli("--port", "0", *args)
    if cli.wait_started() is not None:
        return "started", cli
    cli.proc.wait(STOP_TIMEOUT)
    return "exited", cli


# --------------------------------------------------------------------------- help


def test_help_lists_every_switch() -> None:
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m sim_gateway")
    missing = [
        switch for switch in SWITCHES if not re.search(rf"(?m)^\s+{switch}\b", result.stdout)
    ]
    assert missing == [], f"--help does not describe {missing}"


# --------------------------------------------------------------------------- run and stop


async def _connect_and_qualify(port: int) -> tuple[list[str], int, int]:
    from ib_async import IB, Contract, Stock

    ib = IB()
    try:
        await ib.connectAsync("127.0.0.1", port, clientId=7, timeout=5)
        [contract] = await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
        assert isinstance(contract, Contract), contract
        return ib.managedAccounts(), contract.conId, ib.client.serverVersion()
    finally:
        ib.disconnect()


def test_runs_serves_ib_async_and_stops_on_sigterm(start_cli, tmp_path) -> None:
    state = tmp_path / "state.json"
    cli = start_cli(
        "--port",
        "0",
        "--account",
        "DU7654321",
        "--seed",
        "3",  # real time: no
        "--state-file",
        str(state),
        "--log-level",
        "WARNING",
        "--no-nightly-reset",
    )  # 1100 at 23:45
    match = cli.wait_started()
    assert match is not None, f"gateway exited early (rc={cli.proc.poll()}):\n{cli.stderr()}"
    port = int(match["port"])
    assert match["host"] == "127.0.0.1" and port > 0  # --port 0 prints the real port

    accounts, con_id, version = asyncio.run(_connect_and_qualify(port))
    assert accounts == ["DU7654321"] and con_id == 265598 and version == 178

    cli.proc.send_signal(signal.SIGTERM)
    assert cli.proc.wait(STOP_TIMEOUT) == 0
    stderr = cli.stderr()
    assert "Traceback" not in stderr, stderr
    assert state.exists(), "the state file is written on shutdown"


def test_sigint_also_stops_cleanly(start_cli) -> None:
    cli = start_cli("--port", "0")
    assert cli.wait_started() is not None, cli.stderr()
    cli.proc.send_signal(signal.SIGINT)
    assert cli.proc.wait(STOP_TIMEOUT) == 0
    assert "Traceback" not in cli.stderr()


# --------------------------------------------------------------------------- invalid values


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--validation-delay", "-1"],
            "argument --validation-delay: -1 must be a finite number >= 0",
        ),
        (["--fill-delay", "-0.5"], "argument --fill-delay: -0.5 must be a finite number >= 0"),
        (["--fill-delay", "soon"], "argument --fill-delay: 'soon' is not a number"),
        (["--account", "U123"], "paper account ids start with 'DU', got 'U123'"),
        (
            ["--partial-fill-above", "10", "--partial-fill-chunk", "0"],
            "partial_fill_chunk must be positive when partial fills are on",
        ),
        (["--port", "abc"], "argument --port: 'abc' is not an integer"),
        (["--no-such-switch"], "unrecognized arguments: --no-such-switch"),
        (
            ["--clock", "2026-11-30T10:00:00"],
            "argument --clock: '2026-11-30T10:00:00' needs a UTC offset",
        ),
        (["--clock", "tomorrow"], "argument --clock: Invalid isoformat string: 'tomorrow'"),
        (["--clock-speed", "0"], "argument --clock-speed: 0 is outside (0, 10000]"),
        (
            ["--pacing-disconnect-after", "-1"],
            "argument --pacing-disconnect-after: -1 is outside 0..1000",
        ),
    ],
    ids=[
        "negative-validation-delay",
        "negative-fill-delay",
        "non-numeric-delay",
        "live-account",
        "zero-chunk",
        "bad-port",
        "unknown-switch",
        "clock-without-offset",
        "clock-unparsable",
        "clock-speed-zero",
        "pacing-negative",
    ],
)
def test_invalid_values_exit_nonzero_with_message(args: list[str], message: str) -> None:
    result = run_cli("--port", "0", *args)
    assert result.returncode == 2
    assert f"python -m sim_gateway: error: {message}" in result.stderr
    assert "Traceback" not in result.stderr
    assert "Ctrl+C to stop" not in result.stdout


# Out-of-range values of the listener switches are usage errors, not tracebacks.
CLI_RANGE_CHECKS = [
    pytest.param(["--max-version", "100"], id="max-version-below-157"),
    pytest.param(["--max-rate", "0"], id="max-rate-zero"),
    pytest.param(["--max-clients", "0"], id="max-clients-zero"),
    pytest.param(["--fill-delay", "nan"], id="fill-delay-nan"),
    pytest.param(["--log-level", "bogus"], id="log-level-unknown"),
    pytest.param(["--port", "70000"], id="port-out-of-range"),
]


@pytest.mark.parametrize("args", CLI_RANGE_CHECKS)
def test_out_of_range_values_are_refused_with_usage_error(start_cli, args: list[str]) -> None:
    outcome, cli = starts_or_exits(start_cli, *args)
    assert outcome == "exited", f"gateway started with {args}"
    stderr = cli.stderr()
    assert cli.proc.returncode == 2, f"rc={cli.proc.returncode}\n{stderr}"
    assert "python -m sim_gateway: error:" in stderr and "Traceback" not in stderr
