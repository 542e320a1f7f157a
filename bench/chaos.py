"""Chaos under a steady load: tasks/s before, during and after faults, and the longest stall.

A prefork worker (2 processes, offline stand-in models) keeps a steady mix in flight:
LightRAG ingests into two workspaces (2 documents a task), queries, and LangGraph
workflows started and resumed. After a quiet phase, PostgreSQL is restarted, every
application backend terminated and every TCP connection cut, each twice, in a random
order and at random moments; then a quiet phase again. PostgreSQL is a dedicated
embedded server (it is restarted), reached through a loopback TCP proxy.

At the end it checks what the chaos test checks: every task succeeded (retries
allowed), every document processed exactly once, no ``dup-`` record, every workflow at
its end, and no connection left after a warm shutdown.

    python bench/chaos.py [--quick]
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

from common import machine_line, run_benchmark  # noqa: E402

from devtools.chaos import FAULTS, ChaosTarget, closed_pool_stats  # noqa: E402
from devtools.corpus import documents  # noqa: E402
from devtools.services import EmbeddedRedis, celery_worker  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
IN_FLIGHT = 6  # tasks kept outstanding
FAULT_GAP = (3.0, 6.0)  # seconds between faults, drawn at random


class Load:
    """Keeps IN_FLIGHT tasks outstanding and records when each one completes."""

    def __init__(self, worker, workspaces: list[str]) -> None:
        self.worker = worker
        self.workspaces = workspaces
        self.pending: list[tuple[str, object, object]] = []  # (kind, result, detail)
        self.done: list[tuple[float, str, dict]] = []  # (time, kind, result)
        self.next_doc = 0
        self.threads_waiting: list[str] = []  # workflows started, to resume
        self.threads_done: list[str] = []
        self.ingested_docs: dict[str, int] = dict.fromkeys(workspaces, 0)
        self.turn = 0

    def fill(self) -> None:
        while len(self.pending) < IN_FLIGHT:
            self.turn += 1
            kind = ("ingest", "ingest", "query", "workflow")[self.turn % 4]
            if kind == "workflow" and self.threads_waiting:
                thread = self.threads_waiting.pop(0)
                self.pending.append(("resume", self._send_resume(thread), thread))
            elif kind == "workflow":
                thread = f"chaos-bench-{uuid.uuid4().hex}"
                result = self.worker.send("aperag_pg.checkpoint_demo_start", thread, "chaos")
                self.pending.append(("start", result, thread))
            elif kind == "query":
                workspace = self.workspaces[self.turn % 2]
                result = self.worker.send("aperag_pg.lightrag_query", workspace, "Who leads?")
                self.pending.append(("query", result, workspace))
            else:
                workspace = self.workspaces[self.turn % 2]
                batch = documents(2, start=self.next_doc)
                self.next_doc += 2
                self.ingested_docs[workspace] += 2
                result = self.worker.send(
                    "aperag_pg.lightrag_ingest",
                    workspace,
                    [t for t, _ in batch],
                    [p for _, p in batch],
                )
                self.pending.append(("ingest", result, workspace))

    def _send_resume(self, thread: str):
        return self.worker.send("aperag_pg.checkpoint_demo_resume", thread, "yes")

    def collect(self) -> None:
        still = []
        for kind, result, detail in self.pending:
            if not result.ready():
                still.append((kind, result, detail))
                continue
            value = result.get(timeout=1)  # raises if the task failed
            self.done.append((time.monotonic(), kind, value))
            if kind == "start":
                self.threads_waiting.append(detail)
            elif kind == "resume":
                assert value["next"] == [], value
                self.threads_done.append(detail)
        self.pending = still

    def run_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.fill()
            self.collect()
            time.sleep(0.02)  # paces the polling of task results

    def drain(self, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while self.pending or self.threads_waiting:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.pending)} tasks still outstanding")
            while self.threads_waiting and len(self.pending) < IN_FLIGHT:
                thread = self.threads_waiting.pop(0)
                self.pending.append(("resume", self._send_resume(thread), thread))
            self.collect()
            time.sleep(0.02)


def rate(done: list[tuple[float, str, dict]], start: float, end: float) -> float:
    return sum(start <= t < end for t, _, _ in done) / (end - start)


def longest_stall(done: list[tuple[float, str, dict]], start: float, end: float) -> float:
    """The longest time between two completions (or a phase edge and one) in [start, end)."""
    times = [start, *sorted(t for t, _, _ in done if start <= t < end), end]
    return max(b - a for a, b in zip(times, times[1:], strict=False))


def run(quick: bool) -> str:
    rng = random.Random(20261204)
    quiet = 8.0 if quick else 30.0
    schedule = list(FAULTS) * 2
    rng.shuffle(schedule)
    with tempfile.TemporaryDirectory(prefix="apg-chaos-") as tmp:
        base = Path(tmp)
        base.chmod(0o755)
        redis = None if os.environ.get("REDIS_URL") else EmbeddedRedis(base / "redis").start()
        try:
            with ChaosTarget(base) as target:
                report = _run(target, base, redis, rng, quiet, schedule)
        finally:
            if redis is not None:
                redis.stop()
    return report


def _run(target, base, redis, rng, quiet, schedule) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "LLM_", "OPENAI"))}
    env.update(target.worker_settings().to_env())
    env.update(
        POSTGRES_MAX_CONNECTIONS="3",
        REDIS_URL=os.environ.get("REDIS_URL") or redis.url,
        LLM_BINDING="standin",
        LIGHTRAG_WORKING_DIR=str(base / "rag"),
        PYTHONPATH=str(REPO),
    )
    workspaces = [f"chaos_{uuid.uuid4().hex[:6]}_{side}" for side in "ab"]
    with celery_worker(env, base, concurrency=2, cwd=REPO) as worker:
        worker.call("aperag_pg.lightrag_status", workspaces[0], timeout=120)
        load = Load(worker, workspaces)
        load.run_for(5.0)  # warm-up: both processes have built their LightRAG
        t0 = time.monotonic()
        load.run_for(quiet)
        t1 = time.monotonic()
        for fault in schedule:
            load.run_for(rng.uniform(*FAULT_GAP))
            target.inject(fault)
        load.run_for(rng.uniform(*FAULT_GAP))
        t2 = time.monotonic()
        load.run_for(quiet)
        t3 = time.monotonic()
        load.drain()
        assert worker.warm_shutdown(timeout=180) == 0
        log = worker.log_text()
    left = target.app_connections()
    rows = target.query(
        "SELECT workspace, count(*), count(*) FILTER (WHERE status <> 'processed'), "
        "count(*) FILTER (WHERE id LIKE 'dup-%%') FROM lightrag_doc_status GROUP BY 1"
    )
    stats = closed_pool_stats(log)
    done = load.done
    stored = {ws: (n, bad, dup) for ws, n, bad, dup in rows}
    for workspace, docs in load.ingested_docs.items():
        assert stored[workspace] == (docs, 0, 0), (workspace, stored[workspace], docs)
    assert left == 0, f"{left} connections left after the warm shutdown"
    retries = log.count("Retry in")
    lost = [s["connections_lost"] for s in stats.values()]
    lines = [
        "## Chaos under load (`bench/chaos.py`)",
        "",
        f"{machine_line()}. A prefork worker (2 processes, offline stand-in models, "
        f"POSTGRES_MAX_CONNECTIONS=3) with {IN_FLIGHT} tasks always in flight (ingests of 2 "
        "documents into two workspaces, queries, LangGraph workflows started and resumed). "
        f"Faults, in this order, {FAULT_GAP[0]:g}-{FAULT_GAP[1]:g} s apart: "
        f"{', '.join(schedule)}.",
        "",
        "| phase | seconds | tasks done | tasks/s | longest stall (s) |",
        "|---|---|---|---|---|",
    ]
    for name, start, end in (("before", t0, t1), ("during faults", t1, t2), ("after", t2, t3)):
        count = sum(start <= t < end for t, _, _ in done)
        lines.append(
            f"| {name} | {end - start:.1f} | {count} | {rate(done, start, end):.2f} | "
            f"{longest_stall(done, start, end):.2f} |"
        )
    lines += [
        "",
        f"All {len(done)} tasks succeeded ({retries} retries of tasks hit by a fault). "
        f"Documents: {sum(load.ingested_docs.values())} ingested, each processed exactly once, "
        f"no `dup-` record; {len(load.threads_done)} workflows resumed to their end. "
        f"Connections lost per worker process: {lost}. After the warm shutdown: {left} "
        "connections left.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    run_benchmark(__doc__.splitlines()[0], run, "chaos")
