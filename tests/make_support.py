"""Driving the Makefile's worker targets as a user does, for the tests."""

from __future__ import annotations

import socket
import subprocess
import time

from celery import Celery

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
    """``make target``, which must succeed; for start and restart, until the worker answers."""
    done = make(target, env, run_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    if target in ("worker-start", "worker-restart"):
        wait_ready(env["REDIS_URL"])
    return done


def wait_ready(redis_url: str, timeout: float = 60) -> None:
    """Until the worker answers Celery's ping (each ping waits up to a second for replies)."""
    client = Celery(broker=redis_url, backend=redis_url)
    node = f"{WORKER_NAME}@{socket.gethostname()}"
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if client.control.ping(destination=[node], timeout=1.0):
                return
    finally:
        client.close()
    raise AssertionError(f"worker {node} did not answer a ping within {timeout:g} s")
