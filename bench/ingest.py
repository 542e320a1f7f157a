"""End-to-end LightRAG ingest of 200 documents: aperag_pg's storages against LightRAG's asyncpg
storages and against aperag_pg's old text-adapter vector writes, same server, one run.

Each side ingests the same documents with ``ainsert`` (batches of 20) into a fresh
workspace in one long-lived event loop, with the offline stand-in LLM and tokenizer and
stand-in embeddings of 1,536 dimensions (a real model's size), HNSW-indexed:

  ours:     the PGSync* storages (vectors by binary COPY);
  asyncpg:  LightRAG's PGKV/PGVector/PGDocStatus storages and PGTableGraphStorage
            (plain tables; PGGraphStorage needs Apache AGE);
  text adapter (before):  ours, VectorStore.upsert replaced by execute_values with
            pgvector's adapter formatting every float in Python (aperag_pg's old path);
  ours, fenced:  ours inside the workspace's writer lease, as the lightrag_ingest task
            runs it: every store write is fenced by the lease;
  ours, no thread hop:  not a way to run, a measurement of the hop: the facades call the
            sync stores on the event loop's thread (blocking it) instead of in a worker
            thread.

Wall and client CPU (this process's, all threads) cover the ingest calls only; a run that
leaves a document unprocessed or a chunk unwritten stops the benchmark. Server transactions
are the delta of pg_stat_database.xact_commit over the ingest (read once the backends have
flushed their counts).

Then ours and asyncpg again with slow models: the same stand-ins behind a delay of 50 ms
per embedding request and 200 ms per LLM request (an ``asyncio.sleep`` in this process,
where a hosted model's latency would be), to see whether the storages still matter when
the models set the pace.

    python -m bench.ingest [--quick]
"""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import tempfile
import time
import uuid
import weakref
from collections.abc import Iterator
from contextlib import asynccontextmanager, contextmanager, nullcontext
from importlib.metadata import version

import numpy as np
import psycopg2.extras
from pgvector.psycopg2 import register_vector
from psycopg2 import sql

from aperag_pg.lightrag import register
from aperag_pg.lightrag.standins import embed_texts, lightrag_standins, standin_llm
from aperag_pg.lightrag.writer import one_writer
from aperag_pg.manager import PostgreSQLSyncConnectionManager as Manager
from aperag_pg.settings import PostgresSettings
from aperag_pg.stores.base import utc_now
from aperag_pg.stores.vector import VectorStore
from bench.common import benchmark_postgres, machine_line, run_benchmark, xact_commit
from devtools.corpus import documents

VECTOR_DIM = 1536  # text-embedding-3-small's size; never the stand-ins' 64
BATCH = 20  # documents per ainsert
CHUNK_BYTES = 100  # LightRAG's chunk_token_size, in the stand-in tokenizer's bytes
OURS = {
    "kv_storage": "PGSyncKVStorage",
    "vector_storage": "PGSyncVectorStorage",
    "doc_status_storage": "PGSyncDocStatusStorage",
    "graph_storage": "PGSyncGraphStorage",
}
STORAGES = {
    "ours": OURS,
    "asyncpg": {
        "kv_storage": "PGKVStorage",
        "vector_storage": "PGVectorStorage",
        "doc_status_storage": "PGDocStatusStorage",
        "graph_storage": "PGTableGraphStorage",
    },
    "text adapter (before)": OURS,
    # ours inside the workspace's writer lease, as the lightrag_ingest task runs: every
    # store write checks the lease in its COMMIT round trip (leases.py, fencing)
    "ours, fenced": OURS,
    # what the thread hop costs and buys: every store call blocks the loop instead
    "ours, no thread hop": OURS,
}
SIDES = tuple(STORAGES)


_embedding_requests = [0]  # calls of the embedding function, as a hosted model counts them
# A hosted model's latency per request, in seconds: (embedding, LLM).
SLOW_MODELS = (0.05, 0.2)


def embedding_func(delay: float = 0.0):
    """The stand-in embedding at VECTOR_DIM dimensions, as LightRAG takes it, each request
    ``delay`` seconds late."""
    from lightrag.utils import EmbeddingFunc

    async def embed(texts: list[str], **_kwargs) -> np.ndarray:
        _embedding_requests[0] += 1
        if delay:
            await asyncio.sleep(delay)
        return embed_texts(texts, dim=VECTOR_DIM)

    return EmbeddingFunc(
        embedding_dim=VECTOR_DIM,
        func=embed,
        model_name=f"ingestbench-{VECTOR_DIM}",
        max_token_size=8192,
    )


def slow_llm(delay: float):
    """The stand-in LLM, each request ``delay`` seconds late."""

    async def llm(*args, **kwargs) -> str:
        await asyncio.sleep(delay)
        return await standin_llm(*args, **kwargs)

    return llm


# -- the old vector write, for the "text adapter (before)" side --------------------------

_UPSERT = """
INSERT INTO {table} (workspace, id, {columns}, content_vector, create_time, update_time)
VALUES %s
ON CONFLICT (workspace, id) DO UPDATE SET {updates}, update_time = EXCLUDED.update_time
"""
_registered: weakref.WeakSet = weakref.WeakSet()  # the old store registered once per connection


def text_adapter_upsert(self: VectorStore, data: dict) -> None:
    """VectorStore.upsert as it was before binary COPY: one execute_values per 500 rows, in
    key order, pgvector's adapter formatting every float as text. It skips the store's
    input checks, so if anything it flatters the old path."""
    if not data:
        return
    written = self.kind.written
    statement = sql.SQL(_UPSERT).format(
        table=self.table(self.table_name),
        columns=sql.SQL(", ").join(map(sql.Identifier, written)),
        updates=sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(column))
            for column in (*written, "content_vector")
        ),
    )
    casts = ", ".join("%s::varchar[]" if c == "chunk_ids" else "%s" for c in written)
    now = utc_now()
    rows = [
        (self.workspace, key, *self.kind.build(item, key),
         np.asarray(item["__vector__"], dtype=np.float32), now, now)
        for key, item in sorted(data.items())
    ]  # fmt: skip
    with self.cursor() as cur:  # the store's pool, one transaction, as the store does
        if cur.connection not in _registered:
            register_vector(cur.connection)
            _registered.add(cur.connection)
        psycopg2.extras.execute_values(
            cur, statement, rows, template=f"(%s, %s, {casts}, %s::vector, %s, %s)", page_size=500
        )


@contextmanager
def vector_writes(side: str, cpu: list[float]):
    """The side's VectorStore.upsert (the text adapter's for that side), each call's CPU
    time (its worker thread's) appended to ``cpu``; put back afterwards whatever happens."""
    original = VectorStore.upsert
    upsert = text_adapter_upsert if side == "text adapter (before)" else original

    def timed(self: VectorStore, data: dict) -> None:
        start = time.thread_time()
        try:
            upsert(self, data)
        finally:
            cpu.append(time.thread_time() - start)

    VectorStore.upsert = timed
    try:
        yield
    finally:
        VectorStore.upsert = original


@contextmanager
def without_thread_hop(side: str):
    """For "ours, no thread hop": the facades run each store call on the loop's thread."""
    if side != "ours, no thread hop":
        yield
        return
    from aperag_pg.lightrag import coalesce, storages

    async def on_this_thread(func, /, *args, **kwargs):
        return func(*args, **kwargs)

    hops = storages.to_thread, coalesce.to_thread
    storages.to_thread = coalesce.to_thread = on_this_thread
    try:
        yield
    finally:
        storages.to_thread, coalesce.to_thread = hops


# -- one ingest -----------------------------------------------------------------------

_COUNT = "SELECT count(*) FROM {} WHERE workspace = %s"


def _rows(table: str, workspace: str) -> int:
    with Manager.get_connection() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL(_COUNT).format(sql.Identifier(table.lower())), (workspace,))
        return cur.fetchone()[0]


async def checked(rag, side: str, docs: int) -> dict[str, int]:
    """Rows written per vector table; raises unless every document is processed and the
    chunks table holds exactly the chunks the doc status counts."""
    from lightrag.base import DocStatus

    processed = await rag.doc_status.get_docs_by_statuses([DocStatus.PROCESSED], strict=True)
    if len(processed) != docs:
        counts = await rag.doc_status.get_status_counts()
        raise RuntimeError(f"{side}: {len(processed)} of {docs} documents processed: {counts}")
    rows = {
        name: _rows(getattr(rag, f"{name}_vdb").table_name, rag.workspace)
        for name in ("chunks", "entities", "relationships")
    }
    expected = sum(status.chunks_count or 0 for status in processed.values())
    if rows["chunks"] != expected or not expected:
        raise RuntimeError(f"{side}: {rows['chunks']} chunk rows, doc status says {expected}")
    return rows


@asynccontextmanager
async def fresh_lightrag(side: str, embedding, prefix: str = "ingest", llm=None):
    """A LightRAG on ``side``'s storages in a fresh workspace, storages initialized (tables
    and indexes made) on entry and finalized on exit."""
    from lightrag import LightRAG

    with tempfile.TemporaryDirectory() as working_dir:
        rag = LightRAG(
            working_dir=working_dir,
            # several chunks per document (the stand-in tokenizer counts bytes), as real
            # documents have: the vector writes per document grow with them
            chunk_token_size=CHUNK_BYTES,
            chunk_overlap_token_size=CHUNK_BYTES // 10,
            workspace=f"{prefix}_{uuid.uuid4().hex[:8]}",
            vector_db_storage_cls_kwargs={"cosine_better_than_threshold": 0.2},
            **STORAGES[side],
            **{
                **lightrag_standins(),
                "embedding_func": embedding,
                **({"llm_model_func": llm} if llm else {}),
            },
        )
        await rag.initialize_storages()
        try:
            yield rag
        finally:
            await rag.finalize_storages()


async def insert_all(rag, corpus: list[tuple[str, str]], batch_size: int = BATCH) -> None:
    """``ainsert`` the corpus in batches of ``batch_size`` documents."""
    for first in range(0, len(corpus), batch_size):
        batch = corpus[first : first + batch_size]
        await rag.ainsert([t for t, _ in batch], file_paths=[p for _, p in batch])


async def ingest(
    side: str, corpus: list[tuple[str, str]], embedding, llm=None, count: bool = False
) -> dict:
    """Wall and CPU seconds, embedding requests and (``count``: each count waits for the
    server's statistics) server transactions of ``side`` ingesting ``corpus`` into a fresh
    workspace."""
    upsert_cpu: list[float] = []
    stats = psycopg2.connect(**Manager.settings().connect_kwargs("ingestbench-stats"))
    stats.autocommit = True
    try:
        with vector_writes(side, upsert_cpu), without_thread_hop(side):
            # tables and indexes (fresh_lightrag's initialize_storages): not timed
            async with fresh_lightrag(side, embedding, llm=llm) as rag:
                writer = one_writer(rag.workspace) if side == "ours, fenced" else nullcontext()
                committed = xact_commit(stats) if count else 0
                requests = _embedding_requests[0]
                wall, cpu = time.perf_counter(), time.process_time()
                with writer:
                    await insert_all(rag, corpus)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                requests = _embedding_requests[0] - requests
                if count:
                    committed = xact_commit(stats) - committed - 1  # - the first read
                rows = await checked(rag, side, len(corpus))
    finally:
        stats.close()
    upserts = {"upsert_cpu": sum(upsert_cpu), "upserts": len(upsert_cpu)}
    counts = {"embeds": requests, "xacts": committed}
    return {"wall": wall, "cpu": cpu, **counts, **upserts, **rows}


async def rotated(sides, reps: int, run) -> dict[str, dict[str, float]]:
    """Medians per side of ``reps`` runs of ``await run(side, first)``, the sides' order
    rotated each time so that no side always goes first; server transactions are counted
    in the first run only (``first``), each count waiting for the statistics."""
    samples: dict[str, list[dict]] = {side: [] for side in sides}
    for rep in range(reps):
        turn = rep % len(sides)
        for side in sides[turn:] + sides[:turn]:
            samples[side].append(await run(side, rep == 0))
    return {
        side: {
            **{field: statistics.median(s[field] for s in runs) for field in runs[0]},
            "xacts": runs[0]["xacts"],
        }
        for side, runs in samples.items()
    }


async def measure(docs: int, reps: int, slow_docs: int) -> dict[str, dict]:
    embedding = embedding_func()
    for side in SIDES:  # untimed: tables, indexes, imports and first-call costs
        await ingest(side, documents(BATCH, start=100_000), embedding)
    corpus = documents(docs)
    offline = await rotated(
        SIDES, reps, lambda side, count: ingest(side, corpus, embedding, count=count)
    )
    slow_embedding, llm = embedding_func(SLOW_MODELS[0]), slow_llm(SLOW_MODELS[1])
    slow_corpus = documents(slow_docs)
    slow = await rotated(
        ("ours", "asyncpg"),
        reps,
        lambda side, count: ingest(side, slow_corpus, slow_embedding, llm, count),
    )
    return {"offline": offline, "slow": slow}


def report(measured: dict, docs: int, reps: int, slow_docs: int) -> str:
    results, slow = measured["offline"], measured["slow"]
    ours = results["ours"]

    def per_chunk(r: dict, field: str = "cpu") -> float:
        return r[field] / r["chunks"] * 1000

    lines = [
        f"## LightRAG ingest of {docs:,} documents at {VECTOR_DIM:,} dimensions "
        "(`bench/ingest.py`)",
        "",
        f"{machine_line()}; one PostgreSQL 18 + pgvector server, loopback TCP; lightrag-hku "
        f"{version('lightrag-hku')} with the offline stand-in LLM and tokenizer and stand-in "
        f"embeddings of {VECTOR_DIM:,} dimensions (HNSW index), chunks of {CHUNK_BYTES} "
        f"bytes; `ainsert` in batches of {BATCH} into a fresh workspace per run, one "
        f"long-lived event loop; median of {reps} {'runs' if reps > 1 else 'run'}, sides in "
        "rotating order. Client CPU = this process's CPU time, all threads; vector writes = "
        "the CPU time of the VectorStore.upsert calls, in their threads; server transactions "
        "= the delta of pg_stat_database.xact_commit over the first run's ingest. ours = the "
        "PGSync* storages; asyncpg = LightRAG's PGKVStorage, PGVectorStorage, "
        "PGDocStatusStorage and PGTableGraphStorage; text adapter (before) = ours with vector "
        "upserts by execute_values and pgvector's text adapter (what aperag_pg did before).",
        "",
        "| side | wall s | client CPU s | chunks | client CPU ms per chunk | embedding "
        "requests | server transactions per chunk | vector writes: calls | CPU ms per "
        "chunk | wall vs ours | CPU per chunk vs ours |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for side, r in results.items():
        writes = (
            f"{r['upserts']:,.0f} | {per_chunk(r, 'upsert_cpu'):.2f}" if r["upserts"] else "- | -"
        )
        lines.append(
            f"| {side} | {r['wall']:.2f} | {r['cpu']:.2f} | {r['chunks']:,.0f} | "
            f"{per_chunk(r):.1f} | {r['embeds']:,.0f} | {r['xacts'] / r['chunks']:.1f} | "
            f"{writes} | {r['wall'] / ours['wall']:.2f}x | "
            f"{per_chunk(r) / per_chunk(ours):.2f}x |"
        )
    text, theirs = results["text adapter (before)"], results["asyncpg"]
    fenced, hopless = results["ours, fenced"], results["ours, no thread hop"]
    lines += [
        "",
        f"Each run wrote {ours['chunks']:,.0f} chunk, {ours['entities']:,.0f} entity and "
        f"{ours['relationships']:,.0f} relation vectors (ours). Client CPU per chunk, "
        f"before / ours: **{per_chunk(text) / per_chunk(ours):.2f}x** for the whole ingest, "
        f"**{per_chunk(text, 'upsert_cpu') / per_chunk(ours, 'upsert_cpu'):.2f}x** for the "
        f"vector writes. asyncpg / ours: wall **{theirs['wall'] / ours['wall']:.2f}x**, "
        f"client CPU per chunk **{per_chunk(theirs) / per_chunk(ours):.2f}x**, embedding "
        f"requests **{theirs['embeds'] / ours['embeds']:.2f}x**, server transactions "
        f"**{theirs['xacts'] / ours['xacts']:.2f}x**. Fencing (ours, fenced / ours): "
        f"wall **{fenced['wall'] / ours['wall']:.2f}x**, client CPU per chunk "
        f"**{per_chunk(fenced) / per_chunk(ours):.2f}x**. The thread hop (ours, no thread "
        f"hop / ours): client CPU per chunk **{per_chunk(hopless) / per_chunk(ours):.2f}x**, "
        f"wall **{hopless['wall'] / ours['wall']:.2f}x**.",
        "",
        f"With slow models ({SLOW_MODELS[0] * 1000:.0f} ms per embedding request, "
        f"{SLOW_MODELS[1] * 1000:.0f} ms per LLM request, LightRAG's default concurrency), "
        f"{slow_docs:,} documents, median of {reps} {'runs' if reps > 1 else 'run'}:",
        "",
        "| side | wall s | client CPU ms per chunk | embedding requests | server transactions "
        "per chunk | wall vs ours |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for side, r in slow.items():
        lines.append(
            f"| {side} | {r['wall']:.2f} | {per_chunk(r):.1f} | {r['embeds']:,.0f} | "
            f"{r['xacts'] / r['chunks']:.1f} | {r['wall'] / slow['ours']['wall']:.2f}x |"
        )
    return "\n".join(lines)


@contextmanager
def lightrag_postgres() -> Iterator[PostgresSettings]:
    """The benchmark server for both sides: this process's pool open on it (ours) and
    POSTGRES_* set (LightRAG's PG storages read os.environ); the PGSync* names registered."""
    logging.getLogger("lightrag").setLevel(logging.CRITICAL)  # LightRAG logs every step
    register()
    with benchmark_postgres() as settings:
        os.environ.update(settings.to_env())
        Manager.initialize(settings)
        try:
            yield settings
        finally:
            Manager.close()


def run(quick: bool) -> str:
    reps, docs, slow_docs = (1, 50, 20) if quick else (3, 200, 100)
    with lightrag_postgres():
        results = asyncio.run(measure(docs, reps, slow_docs))
    return report(results, docs, reps, slow_docs)


if __name__ == "__main__":
    run_benchmark(__doc__.splitlines()[0], run, "ingest")
