"""The simulator (``python -m sim_gateway``) and the app (``python app_simple.py``) as separate
processes that a test can SIGKILL and start again on the same port and files.

Each start is a fork of this worker's zygote (tests/zygote.py), which imported the app and the
simulator once: the same ``__main__`` code as a new ``python``, without its 0.4-0.9 s of
imports at every start."""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
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


class Forked:
    """A process forked by the worker's zygote, held by a pidfd (it is the zygote's child, so
    not ours to wait for): SIGKILL, or SIGTERM and wait."""

    what = "the process"

    def __init__(self) -> None:
        self.pidfd: int | None = None

    def kill(self) -> None:
        """SIGKILL: no goodbye, nothing flushed."""
        self._end(graceful=False)

    def stop(self) -> bool:
        """SIGTERM (a graceful stop); whether it ended by itself (else it was SIGKILLed)."""
        return self._end(graceful=True)

    def _end(self, graceful: bool) -> bool:
        """SIGTERM and up to 15 s for it to end (``graceful``), then SIGKILL if it still runs;
        whether it ended before the SIGKILL."""
        pidfd, self.pidfd = self.pidfd, None
        if pidfd is None:
            return True
        try:
            if graceful:
                signal.pidfd_send_signal(pidfd, signal.SIGTERM)
                if _ended(pidfd, 15):
                    return True
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            assert _ended(pidfd, 10), f"{self.what} did not end on SIGKILL"
            return False
        finally:
            os.close(pidfd)
            self._gone()

    def _gone(self) -> None:
        """After the process ended: release what was kept for it."""


class GatewayProcess(Forked):
    """One simulated gateway process (``python -m sim_gateway``) at a time on a fixed port and
    state file."""

    what = "the gateway"

    def __init__(self, state_file: Path, *extra: str, port: int | None = None) -> None:
        super().__init__()
        self.state_file = state_file
        self.port = port or free_port()
        # market hours off: the orders of a test fill whatever the hour of the run
        self.extra = ["--always-open", *extra]
        self._stdout: int | None = None  # its stdout's read end, kept open

    def start(self, state_file: Path | None = None) -> GatewayProcess:
        """Start it and wait for its ready line (``state_file`` overrides the usual one)."""
        assert self.pidfd is None, "already running"
        argv = ["sim_gateway", "--port", str(self.port), "--log-level", "WARNING"]
        argv += ["--state-file", str(state_file or self.state_file), *self.extra]
        with tempfile.TemporaryDirectory() as folder:  # its stdout: a FIFO, gone once open
            fifo = Path(folder) / "stdout"
            os.mkfifo(fifo)
            # not blocking: a blocking open() would wait for a writer that may never come
            self._stdout = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
            os.set_blocking(self._stdout, True)
            self.pidfd = ZYGOTE.spawn(argv, dict(os.environ), ROOT, "sim_gateway", fifo)
            ready = self._ready_line()
        if not ready:
            self.kill()
            raise AssertionError("the gateway ended before it was ready")
        return self

    def _ready_line(self) -> bool:
        """Read its stdout until the ready line (True) or until it ends (False)."""
        assert self._stdout is not None and self.pidfd is not None
        seen = b""
        while READY.encode() not in seen:
            ready = select.select([self._stdout, self.pidfd], [], [], 30)[0]
            assert ready, "the gateway printed nothing for 30 s"
            chunk = os.read(self._stdout, 65536) if self._stdout in ready else b""
            if chunk:
                seen += chunk
            elif self.pidfd in ready:
                return False
            else:  # no writer (not yet, or no more): wait a little for one, or for the end
                select.select([self.pidfd], [], [], 0.01)
        return True

    def _gone(self) -> None:
        stdout, self._stdout = self._stdout, None
        if stdout is not None:
            os.close(stdout)


class Zygote:
    """This worker's tests/zygote.py, started on first use: ``spawn`` returns a pidfd on a new
    ``python <argv>`` whose imports were done once, in the zygote."""

    def __init__(self, *preload: str) -> None:
        self.preload = preload
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()

    def spawn(
        self,
        argv: list[str],
        env: dict[str, str],
        cwd: Path,
        module: str | None = None,
        stdout: Path | None = None,
    ) -> int:
        """A pidfd on ``python <argv>`` (``python -m <module> <argv[1:]>``), its stdout written
        to ``stdout`` (a FIFO, say; /dev/null when None)."""
        request = json.dumps(
            {
                "argv": argv,
                "env": env,
                "cwd": str(cwd),
                "module": module,
                "stdout": str(stdout) if stdout else None,
            }
        )
        with self._lock:
            proc = self._started()
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(request + "\n")
            proc.stdin.flush()
            answer = proc.stdout.readline()
        if not answer:
            raise AssertionError(f"the zygote ended (exit code {proc.wait(5)})")
        return os.pidfd_open(int(answer))

    def close(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is not None:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.close()  # end of its requests: it exits
            proc.wait(10)
            proc.stdout.close()

    def _started(self) -> subprocess.Popen[str]:
        if self._proc is None:
            self._proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).with_name("zygote.py")), *self.preload],
                cwd=ROOT,
                env={
                    **os.environ,
                    "PYTHONDONTWRITEBYTECODE": "1",
                    "PYTHONIOENCODING": "utf-8",
                    # this checkout's modules, not those of a path the virtualenv adds
                    "PYTHONPATH": os.pathsep.join(
                        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])
                    ),
                },
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            atexit.register(self.close)
        return self._proc


ZYGOTE = Zygote("app_simple", "sim_gateway.__main__", "sim_gateway.controller")


def _ended(pidfd: int, timeout: float) -> bool:
    """Whether the process behind ``pidfd`` ended within ``timeout`` seconds."""
    return bool(select.select([pidfd], [], [], timeout)[0])


class AppProcess(Forked):
    """The dashboard (``python app_simple.py``) as a separate process on a fixed port and data
    folder, against a gateway at ``gateway_port``; SIGKILL and start again like a crash."""

    what = "the app"

    def __init__(self, data: Path, gateway_port: int, token: str, **env: str) -> None:
        super().__init__()
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
            **env,
        }

    def start(self) -> AppProcess:
        """Start it (not waiting: ``up()`` tells when it answers)."""
        assert self.pidfd is None, "already running"
        self.pidfd = ZYGOTE.spawn(["app_simple.py"], self.env, ROOT)
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
