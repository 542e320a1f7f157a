"""LangGraph checkpointer: aperag_pg's PGSyncCheckpointSaver against PostgresSaver.

PostgresSaver runs as its documentation shows: one shared saver on a psycopg
``ConnectionPool`` (autocommit, ``prepare_threshold=0``, max_size 20). Ours runs
on aperag_pg's pool with the same 20 connections. Same server, same run, same
data shape: LangGraph-style checkpoints with a ~1.5 KB message window blob that
changes every step, a context blob that changes every 50 steps, two inline
scalars, and one pending write per checkpoint.

  put        20 threads, each appending to its own LangGraph thread
  get_tuple  20 threads, each reading the latest checkpoint of its thread
  list       a whole 200-checkpoint thread, and a whole 2,000-checkpoint thread
  get_tuple  the latest checkpoint of the 2,000-checkpoint thread (cost vs thread length)

    python -m bench.checkpoint [--quick]
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from langgraph.checkpoint.base.id import uuid6
from langgraph.checkpoint.postgres import PostgresSaver
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from aperag_pg.checkpoint import PGSyncCheckpointSaver
from aperag_pg.manager import PostgreSQLSyncConnectionManager as Manager
from aperag_pg.worker import cleanup_worker_postgres
from bench.common import (
    benchmark_postgres,
    comparison_header,
    comparison_row,
    concurrent,
    machine_line,
    run_benchmark,
)

THREADS = 20
OUR_SCHEMA = "bench_aperag"  # PostgresSaver uses unqualified names, so it gets "public"


# -- data ---------------------------------------------------------------------------


class ThreadWriter:
    """Appends LangGraph-shaped checkpoints to one thread, as a graph run would."""

    def __init__(self, saver: Any, thread_id: str) -> None:
        self.saver = saver
        self.thread_id = thread_id
        self.step = 0
        self.parent: str | None = None
        self.versions: dict[str, Any] = {}

    def put(self) -> None:
        step = self.step
        new = {"messages": self._bump("messages"), "step": self._bump("step")}
        if step % 50 == 0:
            new["context"] = self._bump("context")
        checkpoint = {
            "v": 4,
            "id": str(uuid6(clock_seq=step)),
            "ts": datetime.now(timezone.utc).isoformat(),
            "channel_values": {
                "messages": [
                    {"role": "user" if i % 2 else "assistant", "content": f"message {i} " * 12}
                    for i in range(max(0, step - 9), step + 1)
                ],
                "context": {"documents": [f"doc-{step // 50}-{i}" for i in range(20)]},
                "step": step,
                "topic": "benchmarks",
            },
            "channel_versions": dict(self.versions),
            "versions_seen": {"agent": {"messages": self.versions["messages"]}},
            "updated_channels": sorted(new),
        }
        configurable = {"thread_id": self.thread_id, "checkpoint_ns": ""}
        if self.parent:
            configurable["checkpoint_id"] = self.parent
        metadata = {"source": "loop", "step": step, "parents": {}, "run_id": "bench"}
        saved = self.saver.put({"configurable": configurable}, checkpoint, metadata, new)
        self.parent = saved["configurable"]["checkpoint_id"]
        self.step += 1
        return saved

    def put_with_write(self) -> None:
        saved = self.put()
        self.saver.put_writes(saved, [("messages", {"role": "tool", "content": "ok"})], "task-1")

    def _bump(self, channel: str) -> str:
        self.versions[channel] = self.saver.get_next_version(self.versions.get(channel), None)
        return self.versions[channel]


def config(thread_id: str) -> dict:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}


# -- timing -------------------------------------------------------------------------


def repeat(fn: Callable[[], object], n: int) -> list[float]:
    fn()  # warm up
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return samples


# -- run ----------------------------------------------------------------------------


def measure(saver: Any, per_thread: int, list_reps: tuple[int, int]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    run = uuid.uuid4().hex[:8]
    writers = [ThreadWriter(saver, f"put-{run}-{i}") for i in range(THREADS)]
    for w in writers:  # warm the connections and the statement caches
        w.put()
    results["put"] = concurrent([w.put for w in writers], per_thread)
    results["get_tuple"] = concurrent(
        [lambda tid=w.thread_id: saver.get_tuple(config(tid)) for w in writers], per_thread * 2
    )
    for length, reps in zip((200, 2000), list_reps, strict=True):
        writer = ThreadWriter(saver, f"list{length}-{run}")
        for _ in range(length):
            writer.put_with_write()
        listed = list(saver.list(config(writer.thread_id)))
        assert len(listed) == length and len(listed[0].pending_writes) == 1
        results[f"list{length}"] = (
            repeat(lambda w=writer: list(saver.list(config(w.thread_id))), reps),
            None,
        )
    # The latest checkpoint of the long thread: reading one checkpoint should not cost
    # the length of its thread.
    results["get_long"] = (repeat(lambda: saver.get_tuple(config(writer.thread_id)), 50), None)
    return results


def run(quick: bool) -> str:
    per_thread = 20 if quick else 100
    list_reps = (5, 2) if quick else (20, 5)
    with benchmark_postgres() as settings:
        Manager.initialize(
            settings.replace(min_connections=THREADS, max_connections=THREADS, schema=OUR_SCHEMA)
        )
        pool = ConnectionPool(
            conninfo=settings.dsn(),
            min_size=THREADS,
            max_size=THREADS,
            kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
            open=True,
        )
        try:
            theirs = PostgresSaver(pool)
            theirs.setup()
            ours = PGSyncCheckpointSaver()
            ours.setup()
            results = {
                "ours": measure(ours, per_thread, list_reps),
                "theirs": measure(theirs, per_thread, list_reps),
            }
        finally:
            pool.close()
            cleanup_worker_postgres()
    return report(results, per_thread, list_reps)


LABELS = {
    "put": f"put, {THREADS} threads",
    "get_tuple": f"get_tuple (latest), {THREADS} threads",
    "list200": "list a 200-checkpoint thread",
    "list2000": "list a 2,000-checkpoint thread",
    "get_long": "get_tuple (latest) of the 2,000-checkpoint thread, 1 thread",
}
TARGETS = {"put": 2.0, "get_tuple": 2.0, "list200": 1.0, "list2000": 5.0, "get_long": 1.0}


def report(results: dict, per_thread: int, list_reps: tuple[int, int]) -> str:
    lines = [
        "## LangGraph checkpointer (`bench/checkpoint.py`)",
        "",
        f"{machine_line()}; PostgreSQL on loopback TCP. PGSyncCheckpointSaver (aperag_pg pool, "
        f"{THREADS} connections) against PostgresSaver 3.2.0 on a psycopg ConnectionPool "
        f"(max_size {THREADS}, autocommit, prepare_threshold=0), one shared saver each. "
        f"put: {THREADS} threads x {per_thread} checkpoints; get_tuple: {THREADS} threads x "
        f"{per_thread * 2} reads; list: whole thread, {list_reps[0]} and {list_reps[1]} runs. "
        "Times in ms.",
        "",
        *comparison_header("PostgresSaver"),
    ]
    verdicts = []
    for key, label in LABELS.items():
        ours, ours_rate = results["ours"][key]
        theirs, theirs_rate = results["theirs"][key]
        row, ratio = comparison_row(label, ours, ours_rate, theirs, theirs_rate)
        lines.append(row)
        met = "met" if ratio >= TARGETS[key] else "NOT met"
        extra = f"; throughput {ours_rate / theirs_rate:.1f}x" if ours_rate else ""
        verdicts.append(
            f"- {label}: p50 {ratio:.1f}x faster ({met} for >= {TARGETS[key]:g}x){extra}"
        )
    lines += [
        "",
        "p50 ratio = PostgresSaver p50 / ours p50 (the target); throughput ratio = ours "
        "ops/s / PostgresSaver ops/s over the whole concurrent run.",
        "",
        *verdicts,
        "",
        "Why: PostgresSaver takes one lock per saver for every call, so its 20 threads take "
        "turns on a 20-connection pool and use one CPU; ours has no instance lock. Its read "
        "query joins the blobs of the thread to each checkpoint, so its get_tuple slows as the "
        "thread grows and listing is quadratic; ours looks each blob up by primary key and "
        "sends each distinct blob of a list page once. get_tuple, put and put_writes are one "
        "call each of a PL/pgSQL function, whose plans the server caches per backend without "
        "prepared statements (PgBouncer-safe); a put is one transaction, where PostgresSaver "
        "commits its blobs and its checkpoint separately. On this 2-CPU machine the concurrent "
        "put runs are CPU-bound for ours (client, server and commits share two cores), so its "
        "throughput gain stays below its latency gain.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    run_benchmark(__doc__.splitlines()[0], run, "checkpoint")
