"""The simulator (``python -m sim_gateway``) and the app (``python app_simple.py``) as separate
processes that a test can SIGKILL and start again on the same port and files."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
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
            [
                sys.executable,
                "-m",
                "sim_gateway",
                "--port",
                str(self.port),
                "--log-level",
                "WARNING",
                "--state-file",
                str(state_file or self.state_file),
                *self.extra,
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
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


class AppProcess:
    """The dashboard (``python app_simple.py``) as a separate process on a fixed port and data
    folder, against a gateway at ``gateway_port``; SIGKILL and start again like a crash."""

    def __init__(self, data: Path, gateway_port: int, token: str, **env: str) -> None:
        self.port = free_port()
        self.token = token
        self.base = f"http://127.0.0.1:{self.port}/api/v1"
        self.env = {
            **os.environ,
            "IB_MODE": "gateway",
            "IB_HOST": "127.0.0.1",
            "IB_PORT": str(gateway_port),
            "DASHBOARD_PORT": str(self.port),
            "JOURNAL_PATH": str(data / "orders.db"),
            "LOG_LEVEL": "WARNING",
            "API_TOKEN": token,
            "PYTHONDONTWRITEBYTECODE": "1",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AppProcess:
        """Start it (not waiting: ``up()`` tells when it answers)."""
        assert self.proc is None, "already running"
        self.proc = subprocess.Popen(
            [sys.executable, "app_simple.py"],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return self

    def request(
        self, method: str, path: str, body: object = None, timeout: float = 10
    ) -> tuple[int, dict]:
        """(status, JSON body) of one API call; (0, {}) when nothing answers."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            f"{self.base}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as res:
                return res.status, json.load(res)
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, json.load(exc)
        except OSError:
            return 0, {}

    def up(self) -> bool:
        """Both of its gateway connections are up."""
        return self.request("GET", "/status", timeout=3)[1].get("ok") is True

    def kill(self) -> None:
        """SIGKILL: no journal flush, no goodbye to the gateway."""
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)

    def stop(self) -> int | None:
        """SIGTERM (a graceful stop); its exit code."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            return None
