"""Driving the Makefile's worker targets as a user does, for the tests."""

from __future__ import annotations

import subprocess
import time

from .conftest import REPO_ROOT

WORKER_NAME = "maketest"


def make(target: str, env: dict[str, str], run_dir) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            "make",
            "--no-print-directory",
            target,
            f"RUN_DIR={run_dir}",
            f"WORKER_NAME={WORKER_NAME}",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def make_ok(target: str, env: dict[str, str], run_dir) -> subprocess.CompletedProcess:
    """``make target``, which must succeed; for start and restart, until the worker is ready."""
    done = make(target, env, run_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    if target in ("worker-start", "worker-restart"):
        wait_ready(run_dir)
    return done


def wait_ready(run_dir, timeout: float = 60) -> None:
    """Until the worker's log says it is ready (Celery writes " ready." once consuming)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        logs = "".join(p.read_text(errors="replace") for p in run_dir.glob(f"{WORKER_NAME}*.log"))
        if logs.count(" ready.") >= 1:
            return
        time.sleep(0.2)
    raise AssertionError(f"worker did not become ready:\n{logs[-3000:]}")
