"""``python app_simple.py`` refusing to start: one line naming the setting, exit code 3."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from gateway_process import free_port


def start_app(folder: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The app run as a trader runs it, from ``folder`` (no .env there); it should not start."""
    values = {
        "IB_MODE": "gateway",
        "IB_HOST": "127.0.0.1",
        "IB_PORT": str(free_port()),  # nobody listens: the connections just retry
        "DASHBOARD_PORT": "0",
        "JOURNAL_PATH": str(folder / "data" / "orders.db"),
        "LOG_LEVEL": "WARNING",
        **env,
    }
    return subprocess.run(
        [sys.executable, str(ROOT / "app_simple.py")],
        cwd=folder,
        env={**os.environ, **values},
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
