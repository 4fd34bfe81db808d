"""Wall and CPU time of the test suite, run as a developer runs it.

Runs ``python -m pytest -q`` (pytest.ini's options: the pytest-xdist workers, warnings as
errors) from the repo root ``--runs`` times in a row, each in a subprocess, and prints per run:
wall time, CPU time (user + system of pytest and every process it waited for: the xdist
workers, the app subprocesses; not Chromium's helper processes, which their own parent never
waits for), the machine's busy CPU time over the run from /proc/stat (every process, Chromium's
included: on a quiet machine the suite's whole cost), CPU / wall, the load average when it started, the
share of the machine's CPU time its host took while it ran (steal: on a VM, other tenants slow a
run down without showing in its CPU figure) and pytest's own summary (passed / failed counts).
Extra arguments after ``--`` go to pytest, e.g. ``-- -m "not browser and not slow"``.

Target: the full suite in <= 60 s wall on 2 cores (a shared or busy machine shows more: compare
the CPU figure, which load inflates much less, and the load average).

A failed run's output tail is printed; ``--logs DIR`` keeps every run's full output there.

Usage: python bench/suite_time.py [--runs 1] [--stop-on-failure] [--logs DIR] [-- pytest args...]
Exit status 0 when every run passed, 1 otherwise (the wall target is printed, not enforced).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_WALL = 60.0


@dataclass(frozen=True)
class Run:
    wall: float
    cpu: float
    load: float
    steal: float  # share of the machine's CPU time its host took (a VM's noisy neighbours)
    busy: float  # CPU seconds the whole machine spent (not idle, not stolen) during the run
    code: int
    summary: str


def cpu_ticks() -> tuple[int, int, int]:
    """(all, idle, stolen) CPU ticks of the machine so far, from /proc/stat (zeros elsewhere);
    idle counts iowait too."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(f) for f in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0, 0, 0
    return sum(fields), fields[3] + fields[4], fields[7]


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def one_run(pytest_args: list[str], log: Path | None) -> Run:
    load = os.getloadavg()[0]
    ticks0, idle0, stolen0 = cpu_ticks()
    cpu0, wall0 = children_cpu(), time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", *pytest_args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    wall, cpu = time.perf_counter() - wall0, children_cpu() - cpu0
    ticks, idle, stolen = cpu_ticks()
    steal = (stolen - stolen0) / max(1, ticks - ticks0)
    busy_ticks = (ticks - ticks0) - (idle - idle0) - (stolen - stolen0)
    busy = busy_ticks / os.sysconf("SC_CLK_TCK")
    lines = [ln.strip("= ") for ln in proc.stdout.splitlines() if ln.strip()]
    summary = lines[-1] if lines else "(no output)"
    if log is not None:
        log.write_text(proc.stdout, encoding="utf-8")
    if proc.returncode != 0:
        print(proc.stdout[-6000:], flush=True)
    return Run(wall, cpu, load, steal, busy, proc.returncode, summary)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    pytest_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, pytest_args = argv[:cut], argv[cut + 1 :]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--stop-on-failure", action="store_true")
    ap.add_argument("--logs", type=Path, help="keep each run's output in DIR/run-N.log")
    args = ap.parse_args(argv)
    if not 1 <= args.runs <= 100:
        ap.error("--runs 1..100")
    print(
        f"test suite timing (python {sys.version.split()[0]}; {os.cpu_count()} CPUs; "
        f"pytest {' '.join(pytest_args) or '(pytest.ini options only)'})",
        flush=True,
    )
    print(
        f"{'run':>4} {'wall s':>8} {'cpu s':>8} {'busy s':>8} {'cpu/wall':>9} {'load':>6} "
        f"{'steal':>6}  pytest says"
    )
    runs: list[Run] = []
    for i in range(1, args.runs + 1):
        if args.logs is not None:
            args.logs.mkdir(parents=True, exist_ok=True)
        run = one_run(pytest_args, args.logs / f"run-{i}.log" if args.logs else None)
        runs.append(run)
        print(
            f"{i:>4} {run.wall:>8.1f} {run.cpu:>8.1f} {run.busy:>8.1f} {run.cpu / run.wall:>9.2f} "
            f"{run.load:>6.2f} {run.steal:>6.1%}  {run.summary}",
            flush=True,
        )
        if run.code != 0 and args.stop_on_failure:
            break
    walls, cpus, busies = [r.wall for r in runs], [r.cpu for r in runs], [r.busy for r in runs]
    green = sum(r.code == 0 for r in runs)
    print(f"\n  runs green        {green}/{len(runs)}")
    print(
        f"  wall              median {statistics.median(walls):.1f} s   min {min(walls):.1f} s"
        f"   max {max(walls):.1f} s"
    )
    print(
        f"  cpu               median {statistics.median(cpus):.1f} s   min {min(cpus):.1f} s"
        f"   max {max(cpus):.1f} s   (cpu / wall {statistics.median(cpus) / statistics.median(walls):.2f})"
    )
    print(
        f"  machine busy      median {statistics.median(busies):.1f} s   min {min(busies):.1f} s"
        f"   max {max(busies):.1f} s   (all processes; {os.cpu_count()} CPUs x "
        f"{TARGET_WALL:.0f} s = {(os.cpu_count() or 1) * TARGET_WALL:.0f} s)"
    )
    if not pytest_args:  # the target is about the full suite
        verdict = "PASS" if min(walls) <= TARGET_WALL else "MISS"
        print(f"  fastest wall <= {TARGET_WALL:.0f} s  {verdict}  (figure, not enforced)")
    return 0 if green == len(runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
