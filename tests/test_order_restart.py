"""After a crash and a restart: the restored records take the broker's truth.

"SIGKILL of the app" is the in-process handler stopped after its journal was copied with
SQLite's backup API (``test_order_truth.crash_copy``): what a SIGKILL leaves on disk at that
instant. The gateway is the embedded simulator, which keeps everything it was told.
"""

from __future__ import annotations

import os
import select
from pathlib import Path

from gateway_process import ROOT, ZYGOTE


def test_a_started_process_runs_this_checkouts_modules(tmp_path):
    """The zygote imports the app before it forks: from this checkout, not from a folder the
    virtualenv's path adds (a clone's process tests then ran another copy's code)."""
    script = tmp_path / "where.py"
    out = tmp_path / "where.txt"
    script.write_text(
        "import pathlib, orders.reconcile, services\n"
        f"pathlib.Path({str(out)!r}).write_text(services.__file__ + '\\n' + orders.reconcile.__file__)\n"
    )
    pidfd = ZYGOTE.spawn([str(script)], dict(os.environ), ROOT)
    try:
        assert select.select([pidfd], [], [], 30)[0], "the process did not end"
    finally:
        os.close(pidfd)
    paths = out.read_text().split("\n")
    assert all(Path(p).is_relative_to(ROOT) for p in paths), paths
