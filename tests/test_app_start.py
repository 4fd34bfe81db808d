"""``python app_simple.py`` refusing to start: one line naming the setting, exit code 3."""

import fcntl
import os
import resource
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from test_journal import damage_a_data_page, journal_of

from conftest import ROOT
from gateway_process import free_port


def app_env(folder: Path, **env: str) -> dict[str, str]:
    """The environment of the app run from ``folder`` on a gateway at IB_PORT (default: a
    port nobody listens on, so the connections just retry)."""
    values = {
        "IB_MODE": "gateway",
        "IB_HOST": "127.0.0.1",
        "IB_PORT": str(free_port()),
        "DASHBOARD_PORT": "0",
        "JOURNAL_PATH": str(folder / "data" / "orders.db"),
        "LOG_LEVEL": "WARNING",
        **env,
    }
    return {**os.environ, **values}


def start_app(folder: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The app run as a trader runs it, from ``folder`` (no .env there); it should not start."""
    return subprocess.run(
        [sys.executable, str(ROOT / "app_simple.py")],
        cwd=folder,
        env=app_env(folder, **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def refused(result: subprocess.CompletedProcess[str], first_words: str) -> None:
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()  # the connections' log lines may come first
    assert lines[-1].startswith(f"Refusing to start: {first_words}"), result.stderr


def test_a_journal_folder_that_cannot_be_made_is_named(tmp_path):
    """A file where the data folder should be (or /proc, a read-only disk): a traceback ending
    in FileExistsError, which named no setting."""
    (tmp_path / "blocker").write_text("a file, not a folder\n")
    journal = tmp_path / "blocker" / "orders.db"
    result = start_app(tmp_path, JOURNAL_PATH=str(journal))
    refused(result, f"JOURNAL_PATH={str(journal)!r}: the data folder {journal.parent} cannot")


@pytest.mark.parametrize("key", ["SIM_PORT", "DASHBOARD_PORT"])
def test_a_port_in_use_is_named(tmp_path, key):
    """The embedded simulator's port or the dashboard's taken by another program: a traceback
    ending in 'address already in use' from asyncio or waitress, naming neither setting."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        extra = {"IB_MODE": "sim", "SIM_NIGHTLY_RESET": "off"} if key == "SIM_PORT" else {}
        result = start_app(tmp_path, **extra, **{key: str(port)})
    refused(result, f"{key}={port}: ")
    assert "in use" in result.stderr


def test_sigterm_while_connecting_stops_cleanly(tmp_path):
    """A gateway that takes the socket and never answers (IB Gateway at its login dialog):
    the start waits for the handshake's time-out. SIGTERM then killed the app outright (its
    handler came only after the start) and Ctrl-C ended in a traceback, exit code 1."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        env = app_env(tmp_path, IB_PORT=str(silent.getsockname()[1]), IB_CONNECT_TIMEOUT="30")
        with subprocess.Popen(
            [sys.executable, str(ROOT / "app_simple.py")],
            cwd=tmp_path,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        ) as app:
            silent.settimeout(30)
            first, _ = silent.accept()  # the app is connecting: its start waits on the answer
            first.close()
            app.send_signal(signal.SIGTERM)
            _, err = app.communicate(timeout=30)
    assert app.returncode == 0, err
    assert "Traceback" not in err, err
    assert err.splitlines()[-1] == "🛑 Stopped while starting: what had started is stopped"
    # the instance lock was let go: another start may take it
    with open(tmp_path / "data" / "app.lock") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)


def serve_then_signal(tmp_path: Path, sig: signal.Signals) -> tuple[int, str]:
    """Start ``app_simple.py`` in ``tmp_path``, send ``sig`` once it serves: (exit code,
    stderr)."""
    with subprocess.Popen(
        [sys.executable, str(ROOT / "app_simple.py")],
        cwd=tmp_path,
        env=app_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as app:
        assert app.stdout is not None
        for line in app.stdout:
            if "Ctrl+C to stop" in line:  # serving
                app.send_signal(sig)
        _, err = app.communicate(timeout=30)
    return app.returncode, err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_the_terminal_closed_stops_the_app_as_gracefully_as_sigterm(tmp_path, sig):
    """SIGHUP (the terminal window of ./scripts/run closed) killed the app outright: the
    journal was never closed (its -wal file left behind), the shutdown never ran."""
    code, _ = serve_then_signal(tmp_path, sig)
    assert code == 0
    assert not (tmp_path / "data" / "orders.db-wal").exists()  # the journal was closed


def undecodable(journal: Path) -> None:
    """Give every record a field this version does not know (another version wrote them)."""
    raw = sqlite3.connect(journal, isolation_level=None)
    try:
        raw.execute("UPDATE orders SET record = json_set(record, '$.new_field', 1)")
    finally:
        raw.close()


@pytest.mark.parametrize(
    ("damage", "says"),
    [(damage_a_data_page, "opened: "), (undecodable, "read: a record does not decode")],
    ids=["damaged page", "record of another version"],
)
def test_a_damaged_journal_stops_the_start_with_one_line(tmp_path, damage, says):
    """A journal whose header and schema were sound opened, then the order handler's load()
    ended the start in a traceback (sqlite3's 'database disk image is malformed', or a
    TypeError), exit code 1, naming no file and nothing to do."""
    journal = tmp_path / "data" / "orders.db"
    journal_of(str(journal), 400)
    damage(journal)
    result = start_app(tmp_path)
    refused(result, f"the order journal {journal} cannot be {says}")
    assert "put back a copy, or move it aside" in result.stderr


def test_an_emptied_journal_stops_the_start(tmp_path):
    """A journal cut to 0 bytes was taken for a new one: every idempotency key, the day's
    notional and the unfinished orders forgotten, and the app served on."""
    journal = tmp_path / "data" / "orders.db"
    journal_of(str(journal), 3)
    journal.write_bytes(b"")
    result = start_app(tmp_path)
    refused(result, f"the order journal {journal} cannot be opened: it has 0 bytes")
    assert journal.stat().st_size == 0


def _disk_full() -> None:
    """In the child: every file stops growing at 1 KB (as on a full disk: SQLite's 'database or
    disk is full'), the signal for it ignored so that the write fails instead."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def test_a_first_start_on_a_full_disk_leaves_no_journal_taken_for_emptied(tmp_path):
    """The first start could not write the new journal (a full disk) and left its 0-byte
    file: every later start, the disk freed, refused it as 'it has 0 bytes, its orders and
    keys lost', though no order ever existed, until the file was moved aside by hand."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "app_simple.py")],
        cwd=tmp_path,
        env=app_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=_disk_full,
    )
    journal = tmp_path / "data" / "orders.db"
    refused(result, f"the order journal {journal} cannot be opened")
    assert "full" in result.stderr
    assert not journal.exists()
    code, err = serve_then_signal(tmp_path, signal.SIGTERM)  # the disk has room again
    assert code == 0, err
    assert journal.stat().st_size >= 512


def test_a_start_stopped_before_the_journal_opened_leaves_none_taken_for_emptied(tmp_path):
    """The data folder's set-up makes the journal's file (0 bytes, for its mode) before the
    journal opens it: a first start stopped in between (the simulator's port taken) must not
    leave a file the next start refuses as an emptied journal."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        sim = {"IB_MODE": "sim", "SIM_NIGHTLY_RESET": "off", "SIM_PORT": str(port)}
        refused(start_app(tmp_path, **sim), f"SIM_PORT={port}: ")
    code, err = serve_then_signal(tmp_path, signal.SIGTERM)
    assert code == 0, err
