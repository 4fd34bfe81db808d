"""Run every app benchmark (modest sizes by default) and print a summary table.

Each benchmark runs as its own subprocess (own gateway, own app, own port), one after the other;
its full output is printed as it goes, then one table lists every target line (the lines with
PASS / MISS) per benchmark, with its wall time.

  --full            the sizes of the brief (10,000 orders and 1,000 SSE clients in footprint,
                    20 latency trials, 5 cold starts, 5 s per read endpoint): ~15-20 minutes
  --only a,b        run only these (names without .py)
  --experiments "…" extra flags for every benchmark that takes experiment switches, e.g.
                    "--pace 40/4 --refresh-gap 0.1" (see bench/README.md)

Usage: python bench/run_all.py [--full] [--only pacing,cold_start] [--experiments "..."]
Exit status 0 when every benchmark passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

MODEST = {
    "order_pipeline": [],
    "pacing": ["--orders", "200"],
    "pacing_vs_raw": ["--rounds", "3"],
    "sim_connect": ["--runs", "20"],
    "read_endpoints": ["--duration", "3"],
    "event_latency": ["--trials", "10"],
    "cold_start": ["--runs", "3"],
    "footprint": ["--orders", "4000", "--sample-every", "500", "--sse-clients", "100"],
    "screen": ["--seconds", "8"],
}
FULL = {
    "order_pipeline": [],
    "pacing": ["--orders", "200"],
    "pacing_vs_raw": ["--rounds", "5"],
    "sim_connect": ["--runs", "50"],
    "read_endpoints": ["--duration", "5"],
    "event_latency": ["--trials", "20"],
    "cold_start": ["--runs", "5"],
    "footprint": [
        "--orders",
        "10000",
        "--sample-every",
        "1000",
        "--sse-clients",
        "1000",
        "--max-minutes",
        "25",
    ],
    "screen": ["--seconds", "30", "--cached", "200", "--browser"],
}
TAKES_EXPERIMENTS = {
    "order_pipeline",
    "pacing",
    "pacing_vs_raw",
    "read_endpoints",
    "event_latency",
    "footprint",
}


def run(name: str, args: list[str]) -> tuple[int, float, list[str]]:
    command = [sys.executable, str(HERE / f"{name}.py"), *args]
    print(f"\n{'=' * 100}\n$ {' '.join(shlex.quote(c) for c in command)}\n", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        print(line, end="", flush=True)
        lines.append(line.rstrip("\n"))
    code = proc.wait()
    targets = [
        " ".join(ln.split())
        for ln in lines
        if re.search(r"\b(PASS|MISS)\b", ln) and not ln.startswith("Overall")
    ]
    if code not in (0, 1) or any(ln.startswith("Traceback") for ln in lines):
        code = 2
        targets.append(f"CRASHED: {lines[-1] if lines else ''}")
    return code, time.perf_counter() - t0, targets


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--only", default="")
    ap.add_argument("--experiments", default="")
    args = ap.parse_args(argv)
    plan = FULL if args.full else MODEST
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(plan)
    unknown = [n for n in names if n not in plan]
    if unknown:
        ap.error(f"unknown benchmark(s): {unknown}; choose from {list(plan)}")
    extra = shlex.split(args.experiments)
    print(
        f"run_all: {', '.join(names)} ({'full' if args.full else 'modest'} sizes; "
        f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}"
        + (f"; experiments {' '.join(extra)}" if extra else "")
        + ")"
    )
    results = {}
    for name in names:
        flags = plan[name] + (extra if name in TAKES_EXPERIMENTS else [])
        results[name] = run(name, flags)

    print(
        f"\n{'=' * 100}\nSUMMARY ({'full' if args.full else 'modest'} sizes"
        + (f", experiments {' '.join(extra)}" if extra else "")
        + ")\n"
    )
    print(f"{'benchmark':<16} {'result':<7} {'time':>7}  targets")
    ok = True
    for name, (code, seconds, targets) in results.items():
        result = "PASS" if code == 0 else "MISS" if code == 1 else "ERROR"
        ok &= code == 0
        first, *rest = targets or ["(no target lines)"]
        print(f"{name:<16} {result:<7} {seconds:>6.0f}s  {first}")
        for line in rest:
            print(f"{'':<16} {'':<7} {'':>7}  {line}")
    print(f"\nOverall: {'PASS' if ok else 'MISS'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
