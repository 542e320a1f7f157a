"""aperag_pg's LightRAG storages against LightRAG's own asyncpg storages, same server, one run.

Operations: KV upsert of 1k records, KV get_by_ids of 100, vector upsert of 1k (with the
same precomputed 1,536-dimension embeddings on both sides, a real model's size) then a
top-10 query, doc-status counts and a paginated listing. Two patterns:

  (a) one long-lived event loop, storages initialized once;
  (b) one ``asyncio.run`` per simulated task, the way Celery runs async code, with the
      storages either shared across those loops or re-created (initialize/finalize) per task.

    python -m bench.stores [--quick]
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import os
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable

import numpy as np

from aperag_pg.lightrag import register
from aperag_pg.lightrag.standins import embed_texts, lightrag_standins
from aperag_pg.manager import PostgreSQLSyncConnectionManager as Manager
from bench.common import (
    benchmark_postgres,
    machine_line,
    run_benchmark,
)

SIDES = {
    "aperag_pg": ("PGSyncKVStorage", "PGSyncVectorStorage", "PGSyncDocStatusStorage"),
    "LightRAG asyncpg": ("PGKVStorage", "PGVectorStorage", "PGDocStatusStorage"),
}
N_RECORDS = 1000
VECTOR_DIM = 1536  # text-embedding-3-small's size; never the stand-ins' 64


def _records(prefix: str) -> dict:
    chunks = {
        f"{prefix}-chunk-{i}": {
            "tokens": 120,
            "chunk_order_index": i,
            "full_doc_id": f"{prefix}-doc-{i // 10}",
            "content": f"Chunk {i} of the benchmark about Acme Robotics and warehouse robot {i}.",
            "file_path": f"bench/{i // 10}.txt",
        }
        for i in range(N_RECORDS)
    }
    statuses = {
        f"{prefix}-doc-{i}": {
            "status": ("processed", "pending", "failed")[i % 3],
            "content_summary": f"document {i}",
            "content_length": 1000 + i,
            "chunks_count": 10,
            "chunks_list": [f"{prefix}-chunk-{i * 10 + j}" for j in range(10)],
            "file_path": f"bench/{i}.txt",
            "track_id": "bench",
            "created_at": f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}+00:00",
            "updated_at": f"2026-01-02T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}+00:00",
            "metadata": {},
        }
        for i in range(N_RECORDS)
    }
    return {"chunks": chunks, "statuses": statuses}


class _Precomputed:
    """Embeddings looked up, not computed: both sides get identical vectors for free, so
    the vector figures measure storage, not the embedding model."""

    def __init__(self) -> None:
        self.cache: dict[str, np.ndarray] = {}

    async def __call__(self, texts: list[str], **_kwargs) -> np.ndarray:
        missing = [t for t in texts if t not in self.cache]
        if missing:
            self.cache.update(zip(missing, embed_texts(missing, dim=VECTOR_DIM), strict=True))
        return np.stack([self.cache[t] for t in texts])


_PRECOMPUTED = _Precomputed()  # one cache: both sides store the same vectors


def _precomputed_embedding_func(side: str):
    """The side's embedding function: the model name differs per side, so each side has a
    vector table of its own (LightRAG names it after the model), equally full."""
    from lightrag.utils import EmbeddingFunc

    model = "bench_ours" if side == "aperag_pg" else "bench_asyncpg"
    return EmbeddingFunc(
        embedding_dim=VECTOR_DIM, func=_PRECOMPUTED, model_name=f"{model}-{VECTOR_DIM}"
    )


class Storages:
    """The three storages of one side, built by LightRAG itself from the storage names."""

    def __init__(self, kv, vdb, status) -> None:
        self.kv, self.vdb, self.status = kv, vdb, status

    @classmethod
    def build(
        cls, side: str, names: tuple[str, str, str], workspace: str, working_dir: str
    ) -> Storages:
        from lightrag import LightRAG

        rag = LightRAG(
            working_dir=working_dir,
            workspace=workspace,
            kv_storage=names[0],
            vector_storage=names[1],
            doc_status_storage=names[2],
            vector_db_storage_cls_kwargs={"cosine_better_than_threshold": 0.2},
            **{**lightrag_standins(), "embedding_func": _precomputed_embedding_func(side)},
        )
        return cls(rag.text_chunks, rag.chunks_vdb, rag.doc_status)

    def fresh(self) -> Storages:
        """New storage objects over the same tables (the "re-created per task" pattern)."""
        # LightRAG's storages keep their client in the `db` field: start without one.
        return Storages(
            *(
                dataclasses.replace(s, **({"db": None} if hasattr(s, "db") else {}))
                for s in (self.kv, self.vdb, self.status)
            )
        )

    async def initialize(self) -> None:
        for storage in (self.kv, self.vdb, self.status):
            await storage.initialize()

    async def finalize(self) -> None:
        for storage in (self.kv, self.vdb, self.status):
            await storage.finalize()


def operations(data: dict) -> dict[str, Callable[[Storages], Awaitable[object]]]:
    chunk_ids = list(data["chunks"])

    async def vector_upsert(s: Storages) -> None:
        await s.vdb.upsert(data["chunks"])
        await s.vdb.index_done_callback()  # LightRAG's PG vector storage writes on flush

    return {
        "KV upsert 1k": lambda s: s.kv.upsert(data["chunks"]),
        "KV get_by_ids 100": lambda s: s.kv.get_by_ids(chunk_ids[:100]),
        "vector upsert 1k": vector_upsert,
        "vector query top-10": lambda s: s.vdb.query("warehouse robot 42", top_k=10),
        "doc-status counts": lambda s: s.status.get_all_status_counts(),
        "doc-status page of 50": lambda s: s.status.get_docs_paginated(
            page=3, page_size=50, sort_field="updated_at", sort_direction="desc"
        ),
    }


async def _setup(storages: Storages, data: dict) -> None:
    await storages.initialize()
    await storages.status.upsert(data["statuses"])
    await storages.kv.upsert(data["chunks"])


HANG_SECONDS = 120


def _median_ms_or_hang(make_coro: Callable[[], Awaitable[object]], reps: int) -> float:
    """Median ms of ``asyncio.run(make_coro())``, each run in a thread of its own; inf when
    one never returns: LightRAG's model-call limiter can leave worker tasks in a loop that
    ``asyncio.run`` waits for forever while it closes the loop."""
    samples = []
    for _ in range(reps):
        done = threading.Event()
        start = time.perf_counter()

        def in_new_loop(done: threading.Event = done) -> None:
            try:
                asyncio.run(make_coro())
            except Exception:  # noqa: BLE001 - a failed call still took its time
                pass
            finally:
                done.set()

        threading.Thread(target=in_new_loop, daemon=True).start()
        if not done.wait(HANG_SECONDS):
            return math.inf  # the thread stays stuck; later cells go on without it
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def measure_side(side: str, names, working_dir, reps: int) -> dict[str, dict[str, float]]:
    workspace = f"bench_{uuid.uuid4().hex[:6]}"
    data = _records(workspace)
    storages = Storages.build(side, names, workspace, working_dir)
    ops = operations(data)
    results: dict[str, dict[str, float]] = {op: {} for op in ops}

    async def long_lived_loop() -> None:
        await _setup(storages, data)
        loop = asyncio.get_running_loop()
        for op, run in ops.items():  # (a): time each await inside this one loop
            samples = []
            for _ in range(reps):
                start = loop.time()
                await run(storages)
                samples.append(loop.time() - start)
            results[op]["a"] = statistics.median(samples) * 1000

    asyncio.run(long_lived_loop())
    for op, run in ops.items():  # (b) shared: the same objects, a new loop per task
        results[op]["b_shared"] = _median_ms_or_hang(lambda run=run: run(storages), reps)
    finalize_error = _finalize_quietly(storages)
    if finalize_error:
        results["_notes"] = {"finalize": finalize_error}

    async def recreated_task(run) -> None:
        fresh = storages.fresh()
        await fresh.initialize()
        try:
            await run(fresh)
        finally:
            await fresh.finalize()

    for op, run in ops.items():  # (b) re-created: initialize + finalize inside every task
        results[op]["b_recreated"] = _median_ms_or_hang(lambda run=run: recreated_task(run), reps)
    return results


def _finalize_quietly(storages: Storages) -> str | None:
    """Finalize the shared storages in yet another loop, as a worker's shutdown would.

    LightRAG's asyncpg pool belongs to the loop that last rebuilt it, so this fails with
    "Event loop is closed"; its process-wide client is then forgotten so that the
    re-created pattern starts clean, as in a fresh worker process.
    """
    try:
        asyncio.run(storages.finalize())
        return None
    except Exception as exc:  # noqa: BLE001 - reported in the benchmark output
        from lightrag.kg.postgres_impl import ClientManager

        ClientManager._instances.update(db=None, ref_count=0, vector_signature=None)
        return f"{type(exc).__name__}: {exc}"


def report(results: dict[str, dict], reps: int) -> str:
    notes = {side: r.pop("_notes", {}) for side, r in results.items()}
    ours, theirs = results["aperag_pg"], results["LightRAG asyncpg"]
    lines = [
        "## LightRAG storages: aperag_pg vs LightRAG's asyncpg storages (`bench/stores.py`)",
        "",
        f"{machine_line()}; same PostgreSQL 18 + pgvector server, loopback TCP; median of "
        f"{reps} runs per cell, in ms; vectors of {VECTOR_DIM} dimensions with an HNSW index. "
        "Speed-up = LightRAG time / aperag_pg time.",
        "",
        "| operation | (a) ours | (a) LightRAG | (a) speed-up | (b) ours, shared | "
        "(b) LightRAG, shared | (b) LightRAG, re-created | (b) speed-up vs shared | "
        "(b) speed-up vs re-created |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for op in ours:
        o, t = ours[op], theirs[op]
        lines.append(
            f"| {op} | {o['a']:.2f} | {t['a']:.2f} | {t['a'] / o['a']:.2f}x | "
            f"{o['b_shared']:.2f} | {t['b_shared']:.2f} | {t['b_recreated']:.2f} | "
            f"{t['b_shared'] / o['b_shared']:.1f}x | {t['b_recreated'] / o['b_shared']:.1f}x |"
        )
    lines += [
        "",
        "(b) ours re-created per task: "
        + ", ".join(f"{op} {ours[op]['b_recreated']:.2f}" for op in ours)
        + " ms.",
    ]
    if any(math.isinf(cell) for r in results.values() for op in r for cell in r[op].values()):
        lines.append(
            f"inf: a call in a new loop had not returned after {HANG_SECONDS} s: asyncio.run "
            "waits forever, closing the loop, for worker tasks of LightRAG's model-call limiter "
            "(priority_limit_async_func_call, around the embedding function) that do not end "
            "when cancelled. It is LightRAG's, with any storage; aperag_pg's tasks run on one "
            "loop per process (run_async) and never close it per task."
        )
    for side, note in notes.items():
        if note:
            lines.append(
                f"Finalizing {side}'s shared storages in a new loop failed: {note['finalize']}."
            )
    return "\n".join(lines)


def run(quick: bool) -> str:
    reps = 3 if quick else 9
    logging.getLogger("lightrag").setLevel(logging.CRITICAL)  # LightRAG logs each pool reset
    register()
    results = {}
    with benchmark_postgres() as settings, tempfile.TemporaryDirectory() as working_dir:
        os.environ.update(settings.to_env())  # LightRAG's PG storages read os.environ
        Manager.initialize(settings)
        try:
            for side, names in SIDES.items():
                results[side] = measure_side(side, names, working_dir, reps)
        finally:
            Manager.close()
    return report(results, reps)


if __name__ == "__main__":
    run_benchmark(__doc__.splitlines()[0], run, "stores")
