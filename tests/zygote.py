"""A Python process that has imported the app once and forks a copy of itself per start.

The order-truth state machine starts ``python app_simple.py`` and ``python -m sim_gateway`` and
SIGKILLs them a dozen or more times a run, and each app start spent about 0.9 s of CPU
importing the app before it did anything else (a gateway start 0.4 s in all).

Run as a script (``python tests/zygote.py app_simple ...``) this imports the modules named on
its command line, then reads one JSON request per line on stdin (``argv``, ``env``, ``cwd``,
optionally ``module`` and ``stdout``) and answers each with the pid of a fork that runs
``argv[0]`` (or ``module``) as ``__main__`` in that environment and folder: what ``python
app_simple.py`` (``python -m module``) does once its imports are done. The fork's stdout goes
to the file or FIFO named (/dev/null by default), the rest to /dev/null. The zygote reaps its
children (so their CPU time counts in the test run's); the test holds a pidfd on each child to
signal it and to wait for its end (tests/gateway_process.py). End of stdin ends the zygote.

Importing a module must not start a thread (the house rule "nothing starts at import"), or the
forks would copy a process whose other threads are gone: the zygote refuses to serve then.
"""

from __future__ import annotations

import importlib
import json
import os
import runpy
import signal
import sys
import threading
import traceback


def _child(request: dict) -> None:
    """In the fork: become ``python <argv>`` (or ``python -m <module> <argv>``) with ``env``
    in ``cwd``, its stdout on the file or FIFO ``stdout``; never returns."""
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 2):
            os.dup2(devnull, fd)
        os.dup2(os.open(request.get("stdout") or os.devnull, os.O_WRONLY), 1)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = list(request["argv"])
        module = request.get("module")
        if module:  # as `python -m module`: the current folder first on the path
            sys.path[0] = os.getcwd()
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        else:  # as `python script.py`: the script's folder first
            sys.path[0] = os.path.dirname(os.path.abspath(sys.argv[0]))
            runpy.run_path(sys.argv[0], run_name="__main__")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except BaseException:  # log and end: the exit code tells the failure
        traceback.print_exc()
    finally:
        os._exit(code)


def _reap(signum: int, frame: object) -> None:
    """Wait for every child that ended (so its CPU time counts in this process's children,
    and so in the test run's)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def serve() -> int:
    for name in sys.argv[1:]:
        importlib.import_module(name)
    if threading.active_count() != 1:
        print(f"importing {sys.argv[1:]} started threads: cannot fork", file=sys.stderr)
        return 1
    signal.signal(signal.SIGCHLD, _reap)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        sys.stdout.write(f"{pid}\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(serve())
