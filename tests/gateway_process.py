"""The simulator as a separate process (``python -m sim_gateway``) that a test can SIGKILL and
start again on the same port and state file."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
READY = "Ctrl+C to stop"


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class GatewayProcess:
    """One simulated gateway process at a time on a fixed port and state file."""

    def __init__(self, state_file: Path, *extra: str, port: int | None = None) -> None:
        self.state_file = state_file
        self.port = port or free_port()
        # market hours off: the orders of a test fill whatever the hour of the run
        self.extra = ["--always-open", *extra]
        self.proc: subprocess.Popen[str] | None = None

    def start(self, state_file: Path | None = None) -> GatewayProcess:
        """Start it and wait for its ready line (``state_file`` overrides the usual one)."""
        assert self.proc is None, "already running"
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sim_gateway", "--port", str(self.port), "--log-level",
             "WARNING", "--state-file", str(state_file or self.state_file), *self.extra],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # blocks until the ready line (or EOF on failure)
            if READY in line:
                return self
        self.proc.wait(5)
        raise AssertionError(f"the gateway exited with {self.proc.returncode} before it was ready")

    def kill(self) -> None:
        """SIGKILL: no shutdown save, no goodbye to the clients."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()

    def stop(self) -> None:
        """SIGTERM (a graceful stop), or SIGKILL if it does not end."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
