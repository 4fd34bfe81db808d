"""Cold start: ``python app_simple.py`` (embedded simulated gateway) until both connections are synced.

Each run starts the app as a subprocess with a free ``DASHBOARD_PORT``, ``JOURNAL_PATH`` in a
fresh temp dir (cwd is that dir too, so no ``.env`` is read), ``IB_MODE=sim`` and an API token,
then polls ``GET /api/v1/status`` every 20 ms until ``ok`` is true and ``orders_age`` is not null
(the reader has its first order table). Reported: time to the first HTTP answer and to synced,
from ``Popen``; then the app is stopped with SIGINT (time to exit reported too).

For attribution it also times ``python -c "import app_simple"`` (the interpreter plus every
import, nothing started) the same number of times.

Target: synced <= 2 s on every run (median, max printed). ``--runs`` (5).

Usage: python bench/cold_start.py [--runs 5]
Exit status 0 when the target passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from _harness import AppProcess, get_json, verdict

TARGET = 2.0


def one_run(timeout: float) -> dict:
    app = AppProcess()
    first_answer = synced = None
    status: dict = {}
    try:
        deadline = app.started + timeout
        while time.perf_counter() < deadline:
            if app.proc.poll() is not None:
                err = app.proc.stderr.read().decode(errors="replace") if app.proc.stderr else ""
                raise RuntimeError(f"app exited with {app.proc.returncode}: {err[-1500:]}")
            code, body = get_json(app.base, "/api/v1/status", timeout=1.0)
            now = time.perf_counter()
            if code and first_answer is None:
                first_answer = now - app.started
            if code == 200 and body and body.get("ok") and body.get("orders_age") is not None:
                synced = now - app.started
                status = body
                break
            time.sleep(0.02)
    finally:
        t0 = time.perf_counter()
        app.stop()
        stopped = time.perf_counter() - t0
    return {
        "first_answer": first_answer,
        "synced": synced,
        "stop": stopped,
        "server_version": status.get("server_version"),
    }


def import_time() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import app_simple"], cwd="/", check=True)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=30.0)
    args = ap.parse_args(argv)
    if not 1 <= args.runs <= 50:
        ap.error("--runs 1..50")
    print(
        f"cold start benchmark (python {sys.version.split()[0]}; python app_simple.py with the "
        f"embedded simulator; load average {os.getloadavg()[0]:.2f})"
    )
    imports = []
    runs = []
    for i in range(args.runs):
        imports.append(import_time())  # interleaved, so both see the same machine load
        r = one_run(args.timeout)
        runs.append(r)
        synced_at = f"{r['synced']:.3f} s" if r["synced"] is not None else "never"
        first = f"{r['first_answer']:.3f} s" if r["first_answer"] is not None else "never"
        print(
            f"  run {i + 1}: first HTTP answer {first}, synced {synced_at}, SIGINT -> exit "
            f"{r['stop']:.2f} s"
        )
    synced = [r["synced"] for r in runs if r["synced"] is not None]
    print(
        f"  import app_simple alone (interpreter + imports): median "
        f"{statistics.median(imports):.3f} s, max {max(imports):.3f} s"
    )
    ok = len(synced) == args.runs and max(synced) <= TARGET
    if synced:
        print(f"  synced: median {statistics.median(synced):.3f} s, max {max(synced):.3f} s")
    print(f"  target every run synced <= {TARGET:g} s: {verdict(ok)}")
    print(f"\nOverall: {verdict(ok)}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
