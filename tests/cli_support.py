"""Running ``python -m aperag_pg`` as a user would, and reading doctor's verdicts."""

from __future__ import annotations

import os
import subprocess
import sys

from .conftest import MODEL_AND_SERVICE_PREFIXES, REPO_ROOT


def run_cli(settings, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(MODEL_AND_SERVICE_PREFIXES)}
    env.update(settings.to_env(), LLM_BINDING="standin")
    env.update(extra_env)
    return subprocess.run(
        [sys.executable, "-m", "aperag_pg", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def verdicts(output: str) -> dict[str, str]:
    """check name -> worst verdict on its lines."""
    order = {"OK": 0, "WARN": 1, "FAIL": 2}
    found: dict[str, str] = {}
    for line in output.splitlines():
        if line.startswith("["):
            verdict, rest = line[1:].split("]", 1)
            check = rest.strip().split("  ")[0]
            verdict = verdict.strip()
            if order[verdict] >= order.get(found.get(check, "OK"), 0):
                found[check] = verdict
    return found
