"""Start (or restart) a detached Celery worker and say whether it really started.

``celery multi start`` only detaches: it prints OK even when the worker then refuses to
start (an embedding that does not fit the vector tables, a factory that cannot be
loaded), and the reason is only in the log file. This runs the ``celery multi`` command,
then watches what the worker appends to its log until it says it is ready (exit 0) or its
process is gone (exit 1, with the log's reason printed).

    python -m devtools.worker_wait --pidfile run/aperag.pid --logfile run/aperag.log \
        [--timeout 60] -- celery multi start ...
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

# Celery's worker logs "<node> ready." once it consumes; a refusal to start (our
# startup_check's "worker not started: <reason>", an unrecoverable error) is logged at
# CRITICAL, and the process exits after its shutdown.
_READY = re.compile(r"\S+@\S+ ready\.")
_REFUSED = re.compile(r"\bCRITICAL\b")
_REASON = re.compile(r"\b(CRITICAL|ERROR)\b")
POLL_S = 0.2


def _alive(pidfile: Path) -> bool | None:
    """True while the pid file names a live process; None before the file exists."""
    try:
        pid = int(pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    return True


def _new_text(logfile: Path, since: int) -> str:
    try:
        with logfile.open("rb") as log:
            log.seek(since)
            return log.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def wait(pidfile: Path, logfile: Path, since: int, timeout: float) -> tuple[bool, str]:
    """(started, what to print) once the log says ready, the process is gone, or time is up."""
    deadline = time.monotonic() + timeout
    seen_alive = False
    while True:
        text = _new_text(logfile, since)
        if _READY.search(text):
            return True, ""
        if _REFUSED.search(text):
            time.sleep(POLL_S)  # the rest of what it wrote
            return False, _reason(_new_text(logfile, since), "the worker refused to start")
        alive = _alive(pidfile)
        seen_alive = seen_alive or bool(alive)
        if alive is False or (alive is None and seen_alive):
            time.sleep(POLL_S)  # the last lines it wrote before exiting
            return False, _reason(_new_text(logfile, since), "the worker exited")
        if time.monotonic() > deadline:
            return False, _reason(text, f"the worker was not ready after {timeout:g} s")
        time.sleep(POLL_S)


def _reason(text: str, what: str) -> str:
    lines = [line for line in text.splitlines() if _REASON.search(line)]
    shown = lines or text.splitlines()[-20:]
    return "\n".join([f"{what}; from its log:", *shown]) if shown else f"{what}; its log is empty"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pidfile", type=Path, required=True)
    parser.add_argument("--logfile", type=Path, required=True)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the celery multi command after --")
    since = args.logfile.stat().st_size if args.logfile.exists() else 0
    done = subprocess.run(command)
    if done.returncode != 0:
        return done.returncode
    started, message = wait(args.pidfile, args.logfile, since, args.timeout)
    if not started:
        print(message, file=sys.stderr)
        return 1
    print(f"worker ready (log: {args.logfile})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
