"""Runs langgraph-checkpoint-postgres 3.2.0's store tests against PGSyncStore in pytest
subprocesses, and reads back one outcome per upstream test.

The sdist's test files come from ``devtools.upstream_tests`` (downloaded, checked by
sha256, cached). A run folder holds a copy of them in ``tests/`` (upstream's package name,
which their imports use) and ``upstream_conftest.py`` as the root ``conftest.py``; pytest
runs there with its own ini file, so our suite's configuration and ``tests`` package stay
out of it.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from devtools.upstream_tests import LANGGRAPH_STORE_TESTS, upstream_test_files

from ..conftest import MODEL_AND_SERVICE_PREFIXES

TEST_FILES = ("test_store.py", "test_async_store.py")
CONFTEST = Path(__file__).with_name("upstream_conftest.py")
# Upstream's configuration, minus what is not installed here: anyio's auto mode stands
# in for pytest-asyncio's.
PYTEST_INI = """[pytest]
anyio_mode = auto
addopts = -p no:cacheprovider -p no:langsmith_plugin --strict-markers
"""
RUN_TIMEOUT = 600  # seconds, for all shards together
# Seconds each takes on PGSyncStore, three runs sharing 2 CPUs (about 1 for the rest):
# test_store_ttl sleeps 17 s; test_large_batches_async awaits 60,000 calls, each its own
# batch here (AsyncPostgresStore merges concurrent calls into shared batches).
SLOW = {"test_store_ttl": 18.0, "test_large_batches_async": 50.0, "test_large_batches": 4.0}


@dataclass
class Outcome:
    """What one upstream test did: passed, failed (in any phase) or skipped, and why."""

    nodeid: str
    outcome: str = "passed"
    text: str = ""
    duration: float = 0.0


def case_id(nodeid: str) -> str:
    """Our id of an upstream test: its node id without upstream's ``tests/`` folder."""
    return nodeid.removeprefix("tests/")


def prepare(folder: Path) -> Path:
    """A run folder in ``folder``: upstream's test files and our root conftest."""
    source = upstream_test_files(LANGGRAPH_STORE_TESTS) / "tests"
    shutil.copytree(source, folder / "tests")
    shutil.copyfile(CONFTEST, folder / "conftest.py")
    (folder / "pytest.ini").write_text(PYTEST_INI, encoding="utf-8")
    return folder


def _pytest(folder: Path, args: list[str]) -> list[str]:
    return [sys.executable, "-m", "pytest", "-c", str(folder / "pytest.ini"), *args]


@functools.cache
def collect_case_ids() -> tuple[str, ...]:
    """Every upstream test id of the two files, as pytest collects them here (no database
    needed)."""
    with tempfile.TemporaryDirectory(prefix="upstream-store-") as tmp:
        folder = prepare(Path(tmp))
        files = [f"tests/{name}" for name in TEST_FILES]
        done = subprocess.run(
            _pytest(folder, ["--collect-only", "-q", *files]),
            cwd=folder,
            env=_clean_env(os.environ),
            capture_output=True,
            text=True,
            timeout=120,
        )
    ids = [line.strip() for line in done.stdout.splitlines() if "::" in line]
    if done.returncode != 0 or not ids:
        raise RuntimeError(
            "collecting langgraph-checkpoint-postgres' store tests failed "
            f"(exit {done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}"
        )
    return tuple(case_id(i) for i in ids)


def _clean_env(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without model or database settings (as a test worker's: the run gets
    the test server's only) and without our pytest options."""
    return {
        k: v
        for k, v in environ.items()
        if not k.startswith(MODEL_AND_SERVICE_PREFIXES)
        and k not in ("DATABASE_URL", "PYTEST_ADDOPTS")
    }


def shards(case_ids: Iterable[str], count: int) -> list[list[str]]:
    """``case_ids`` in ``count`` groups of about equal running time (slowest first, each
    to the least loaded group), each group in upstream's order."""
    order = {c: i for i, c in enumerate(case_ids)}
    groups: list[list[str]] = [[] for _ in range(count)]
    load = [0.0] * count

    def weight(case: str) -> float:
        return SLOW.get(case.split("::", 1)[1].split("[", 1)[0], 1.0)

    for case in sorted(order, key=weight, reverse=True):
        i = load.index(min(load))
        groups[i].append(case)
        load[i] += weight(case)
    return [sorted(g, key=order.__getitem__) for g in groups if g]


def run_cases(
    case_ids: list[str], server_env: Mapping[str, str], workdir: Path, processes: int = 3
) -> tuple[dict[str, Outcome], str]:
    """Run ``case_ids`` in ``processes`` pytest subprocesses at once, each with its own pool
    on the server of ``server_env`` (POSTGRES_* variables); return each case's outcome and
    the runs' output (for cases that have none)."""
    if not case_ids:
        return {}, ""
    folder = prepare(workdir)
    running = []
    for n, group in enumerate(shards(case_ids, processes)):
        results = workdir / f"results-{n}.jsonl"
        env = _clean_env(os.environ) | dict(server_env) | {"UPSTREAM_RESULTS": str(results)}
        log = open(workdir / f"output-{n}.txt", "w", encoding="utf-8")
        process = subprocess.Popen(
            _pytest(folder, ["-p", "no:warnings", *(f"tests/{c}" for c in group)]),
            cwd=folder,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        running.append((process, log, results))
    output = []
    outcomes: dict[str, Outcome] = {}
    deadline = time.monotonic() + RUN_TIMEOUT
    try:
        for process, _, _ in running:
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0))
            except subprocess.TimeoutExpired:
                output.append(f"killed after {RUN_TIMEOUT} s: {process.args[-1]} and others")
    finally:
        for process, log, _ in running:  # none outlives the run, also on an interrupt
            if process.poll() is None:
                process.kill()
                process.wait()
            log.close()
    for _, log, results in running:
        output.append(Path(log.name).read_text(encoding="utf-8")[-4000:])
        if results.exists():
            for line in results.read_text(encoding="utf-8").splitlines():
                _merge(outcomes, json.loads(line))
    return outcomes, "\n".join(output)


def _merge(outcomes: dict[str, Outcome], report: dict) -> None:
    """One phase's report into the case's outcome: a failure in any phase (setup, call,
    teardown) fails it; a skip counts unless something failed."""
    case = case_id(report["nodeid"])
    outcome = outcomes.setdefault(case, Outcome(case))
    outcome.duration += report["duration"]
    if report["outcome"] == "failed" and outcome.outcome != "failed":
        outcome.outcome = "failed"
        outcome.text = f"[{report['when']}] {report['text']}"
    elif report["outcome"] == "skipped" and outcome.outcome == "passed":
        outcome.outcome = "skipped"
        outcome.text = report["text"]
