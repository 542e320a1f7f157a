"""Vector upserts at real embedding sizes: aperag_pg against LightRAG's asyncpg storage, the
pgvector text adapter aperag_pg used before, and the server's floor.

Then top-10 and top-100 queries over 100k vectors of 1,536 dimensions with HNSW: ours,
asyncpg, and the ways of sending the query vector on a plain psycopg2 connection.

For batches of 1, 10, 1k and 10k rows at 1,536 dimensions, and 1k at 768 and 3,072, each side
upserts the same new rows (dense random float32 vectors) into a LightRAG chunks table of its
own with its HNSW index, in one long-lived event loop:

  ours:     PGSyncVectorStorage.upsert + index_done_callback (checks, then binary COPY of
            whole rows into the table);
  asyncpg:  LightRAG's PGVectorStorage, the same calls;
  text:     psycopg2 execute_values with the pgvector adapter (each float formatted in
            Python), into a same-shaped table: what aperag_pg did before;
  floor:    a raw psycopg2 binary COPY of the same rows into a same-shaped table with the
            same index, no LightRAG and no checks: the server's own cost.

Wall time is the median of the runs; client CPU is this process's CPU time for the call
(the Python work a worker's other tasks wait for).

    python -m bench.vectors [--quick]
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import statistics
import struct
import tempfile
import time
import uuid

import numpy as np
import psycopg2
import psycopg2.extras
from pgvector.psycopg2 import register_vector
from psycopg2 import sql

from aperag_pg.lightrag import register
from aperag_pg.lightrag.standins import lightrag_standins
from aperag_pg.manager import PostgreSQLSyncConnectionManager as Manager
from aperag_pg.stores.binary_copy import SIGNATURE, TRAILER, vector_fields
from aperag_pg.stores.vector_tables import safe_index_name
from bench.common import benchmark_postgres, machine_line, run_benchmark

SIDES = ("ours", "asyncpg", "text", "floor")
QUERY_SIDES = ("ours", "asyncpg", "two binds", "one bind", "one bind + iterative")
# LightRAG's query with the vector as text, bound twice or once (read via a scalar
# subquery, as ours does), and with pgvector 0.8's iterative scan set in the same call.
_TWO_BINDS = (
    "SELECT id FROM {0} WHERE workspace = %s AND content_vector <=> %s::vector < 2 "
    "ORDER BY content_vector <=> %s::vector LIMIT %s"
)
_ONE_BIND = (
    "WITH q (v) AS (SELECT %s::vector) SELECT id FROM {0} WHERE workspace = %s "
    "AND content_vector <=> (SELECT v FROM q) < 2 ORDER BY content_vector <=> (SELECT v FROM q) "
    "LIMIT %s"
)
_ITERATIVE = "SET LOCAL hnsw.iterative_scan = strict_order; "
STORAGE = {"ours": "PGSyncVectorStorage", "asyncpg": "PGVectorStorage"}
QUERY_DIM = 1536


def chunk_rows(prefix: str, vectors: np.ndarray) -> dict[str, dict]:
    """LightRAG chunk rows for ``vectors``; each row's content names its vector."""
    return {
        f"{prefix}-{i}": {
            "content": f"{prefix}-{i}",
            "tokens": 120,
            "chunk_order_index": i,
            "full_doc_id": f"{prefix}-doc-{i // 10}",
            "file_path": f"bench/{i // 10}.txt",
        }
        for i in range(len(vectors))
    }


class Lookup:
    """An embedding function that looks the vector up by the row's content (its id), so
    every side stores the same vectors and no model runs."""

    def __init__(self, dim: int) -> None:
        self.dim, self.vectors = dim, {}

    async def __call__(self, texts: list[str], **_kwargs) -> np.ndarray:
        return np.stack([self.vectors[text] for text in texts])


def lightrag_storage(
    name: str,
    embed,
    working_dir: str,
    workspace: str | None = None,
    threshold: float = 0.2,
    model: str = "vecbench",
):
    from lightrag import LightRAG
    from lightrag.utils import EmbeddingFunc

    rag = LightRAG(
        working_dir=working_dir,
        workspace=workspace or f"vec_{uuid.uuid4().hex[:6]}",
        vector_storage=name,
        vector_db_storage_cls_kwargs={"cosine_better_than_threshold": threshold},
        **{
            **lightrag_standins(),
            "embedding_func": EmbeddingFunc(
                embedding_dim=embed.dim, func=embed, model_name=f"{model}-{embed.dim}"
            ),
        },
    )
    return rag.chunks_vdb


def text_adapter_upsert(conn, table: str, workspace: str, rows: dict, vectors) -> None:
    """The old path: execute_values with pgvector's adapter formatting every float."""
    values = [
        (workspace, key, r["tokens"], r["chunk_order_index"], r["full_doc_id"], r["content"],
         r["file_path"], vectors[i])
        for i, (key, r) in enumerate(rows.items())
    ]  # fmt: skip
    with conn, conn.cursor() as cur:
        psycopg2.extras.execute_values(
            cur,
            sql.SQL(
                "INSERT INTO {} (workspace, id, tokens, chunk_order_index, full_doc_id, content, "
                "file_path, content_vector) VALUES %s ON CONFLICT (workspace, id) DO UPDATE SET "
                "content_vector = EXCLUDED.content_vector"
            ).format(sql.Identifier(table)),
            values,
            template="(%s, %s, %s, %s, %s, %s, %s, %s::vector)",
            page_size=500,
        )


def floor_copy(conn, table: str, workspace: str, rows: dict, vectors: np.ndarray) -> None:
    """A raw binary COPY of every column, vectors as bytes: no checks, no upsert logic."""
    vector_field = vector_fields(vectors)
    out = io.BytesIO()
    out.write(SIGNATURE)
    for i, (key, r) in enumerate(rows.items()):
        fields = (workspace, key, r["full_doc_id"], r["content"], r["file_path"])
        texts = [field.encode() for field in fields]
        out.write(struct.pack(">h", 8))
        for text in texts[:2]:
            out.write(struct.pack(">i", len(text)) + text)
        out.write(struct.pack(">iiii", 4, r["tokens"], 4, r["chunk_order_index"]))
        for text in texts[2:]:
            out.write(struct.pack(">i", len(text)) + text)
        out.write(vector_field[i].tobytes())  # the vector field, its length first
    out.write(TRAILER)
    out.seek(0)
    with conn, conn.cursor() as cur:
        cur.copy_expert(
            sql.SQL(
                "COPY {} (workspace, id, tokens, chunk_order_index, full_doc_id, content, "
                "file_path, content_vector) FROM STDIN (FORMAT BINARY)"
            ).format(sql.Identifier(table)),
            out,
        )


def run_between(storages: tuple, conn, body) -> None:
    """Run ``body`` in one event loop between the storages' initialize and finalize, then
    close ``conn``."""

    async def main() -> None:
        for storage in storages:
            await storage.initialize()
        try:
            await body()
        finally:
            for storage in storages:
                await storage.finalize()

    try:
        asyncio.run(main())
    finally:
        conn.close()


def measure(settings, working_dir: str, dim: int, count: int, reps: int) -> dict:
    """Each side writes into a table of its own, all of one shape and index and all as full
    as each other before every run (an HNSW insert costs more in a bigger graph); the
    order of the sides turns from run to run."""
    rng = np.random.default_rng(dim + count)
    embed = Lookup(dim)
    ours = lightrag_storage(STORAGE["ours"], embed, working_dir, model="vb_ours")
    theirs = lightrag_storage(STORAGE["asyncpg"], embed, working_dir, model="vb_asyncpg")
    conn = psycopg2.connect(**settings.connect_kwargs(application_name="vecbench"))
    register_vector(conn)
    samples: dict[str, list[tuple[float, float]]] = {side: [] for side in SIDES}

    async def measured() -> None:
        tables = {"text": f"vecbench_text_{dim}", "floor": f"vecbench_floor_{dim}"}
        with conn, conn.cursor() as cur:
            for table in tables.values():
                statement = "DROP TABLE IF EXISTS {f}; CREATE TABLE {f} (LIKE {t} INCLUDING ALL)"
                cur.execute(
                    sql.SQL(statement).format(
                        f=sql.Identifier(table), t=sql.Identifier(ours.table_name.lower())
                    )
                )
        loop = asyncio.get_running_loop()
        for rep in range(-1, reps):  # run -1 warms every side up (connections, types)
            vectors = rng.standard_normal((count if rep >= 0 else 2, dim)).astype(np.float32)
            for side in SIDES[rep % len(SIDES) :] + SIDES[: rep % len(SIDES)]:
                prefix = f"{side}{rep}-{uuid.uuid4().hex[:6]}"  # the same vectors, new ids
                rows = chunk_rows(prefix, vectors)
                embed.vectors.update(zip(rows, vectors, strict=True))
                wall, cpu = time.perf_counter(), time.process_time()
                if side in STORAGE:
                    storage = ours if side == "ours" else theirs
                    await storage.upsert(rows)
                    await storage.index_done_callback()
                else:
                    write = text_adapter_upsert if side == "text" else floor_copy
                    await loop.run_in_executor(
                        None, write, conn, tables[side], f"ws-{prefix}", rows, vectors
                    )
                if rep >= 0:
                    samples[side].append(
                        ((time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000)
                    )
                for key in rows:
                    del embed.vectors[key]
        with conn, conn.cursor() as cur:
            for table in (ours.table_name, theirs.table_name, *tables.values()):
                cur.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(table.lower())))

    run_between((ours, theirs), conn, measured)
    return {
        side: (statistics.median(w for w, _ in s), statistics.median(c for _, c in s))
        for side, s in samples.items()
    }


def measure_queries(settings, working_dir: str, dim: int, count: int, reps: int) -> dict:
    """Median ms of top-10 and top-100 queries over ``count`` vectors with HNSW: ours,
    LightRAG's asyncpg storage, and a raw psycopg2 query with the same index; and how
    many rows each returned (an HNSW scan stops at hnsw.ef_search, 40 by default)."""
    rng = np.random.default_rng(count)
    embed = Lookup(dim)
    workspace = f"q_{uuid.uuid4().hex[:6]}"
    # Random vectors are far apart: a threshold of -1 (distance below 2) keeps every hit.
    ours = lightrag_storage(STORAGE["ours"], embed, working_dir, workspace, threshold=-1)
    theirs = lightrag_storage(STORAGE["asyncpg"], embed, working_dir, workspace, threshold=-1)
    asked = [f"question {i}" for i in range(reps + 5)]
    chosen = rng.standard_normal((reps + 5, dim)).astype(np.float32)
    embed.vectors.update(zip(asked, chosen, strict=True))
    warm_up, questions = asked[:5], asked[5:]
    conn = psycopg2.connect(**settings.connect_kwargs(application_name="vecbench"))
    conn.autocommit = True
    results: dict = {}

    async def measured() -> None:
        table = ours.table_name.lower()
        index = sql.Identifier(safe_index_name(table, "hnsw_cosine"))
        with conn.cursor() as cur:  # loaded first, indexed after: a bulk build is faster
            cur.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(index))
        for first in range(0, count, 10_000):  # the table, written by ours (not timed)
            vectors = rng.standard_normal((min(10_000, count - first), dim)).astype(np.float32)
            rows = chunk_rows(f"row{first}", vectors)
            embed.vectors.update(zip(rows, vectors, strict=True))
            await ours.upsert(rows)
            for key in rows:
                del embed.vectors[key]
        with conn.cursor() as cur:
            cur.execute("SET maintenance_work_mem = '1GB'")
            cur.execute(
                sql.SQL(
                    "CREATE INDEX {} ON {} USING hnsw (content_vector vector_cosine_ops) "
                    "WITH (m = 16, ef_construction = 64)"
                ).format(index, sql.Identifier(table))
            )
            cur.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))
        target = sql.Identifier(table)
        raw = {  # the ways to send the query vector, on a plain psycopg2 connection
            "two binds": sql.SQL(_TWO_BINDS).format(target),
            "one bind": sql.SQL(_ONE_BIND).format(target),
            "one bind + iterative": sql.SQL(_ITERATIVE + _ONE_BIND).format(target),
        }
        loop = asyncio.get_running_loop()

        async def ask(side: str, question: str, top_k: int) -> list:
            if side not in raw:
                storage = ours if side == "ours" else theirs
                return await storage.query(question, top_k=top_k)
            text = str(embed.vectors[question].tolist())
            params = (
                (workspace, text, text, top_k) if side == "two binds" else (text, workspace, top_k)
            )

            def query() -> list:
                with conn.cursor() as cur:
                    cur.execute(raw[side], params)
                    return cur.fetchall()

            return await loop.run_in_executor(None, query)

        for top_k in (10, 100):
            for question in warm_up:  # the index's pages in the cache for every side
                for side in QUERY_SIDES:
                    await ask(side, question, top_k)
            samples: dict[str, list[tuple[float, int]]] = {side: [] for side in QUERY_SIDES}
            for turn, question in enumerate(questions):  # each question asked by every side
                for side in (
                    QUERY_SIDES[turn % len(QUERY_SIDES) :] + QUERY_SIDES[: turn % len(QUERY_SIDES)]
                ):
                    start = time.perf_counter()
                    hits = await ask(side, question, top_k)
                    samples[side].append(((time.perf_counter() - start) * 1000, len(hits)))
            for side, runs in samples.items():
                results[top_k, side] = (
                    statistics.median(t for t, _ in runs),
                    min(n for _, n in runs),
                )

    run_between((ours, theirs), conn, measured)
    return results


def runs_for(count: int, quick: bool) -> int:
    """Small batches are quick and vary most: more runs."""
    if quick:
        return 3 if count <= 10 else 1
    return 30 if count <= 10 else 3 if count <= 1000 else 1


def report(results: dict, quick: bool, queries: dict, query_rows: int, dim: int) -> str:
    lines = [
        "## Vector upserts at real dimensions (`bench/vectors.py`)",
        "",
        f"{machine_line()}; one PostgreSQL 18 + pgvector server, loopback TCP; new rows of "
        "dense random float32 vectors into a LightRAG chunks table with its HNSW index "
        "(m=16, ef_construction=64; pgvector indexes at most 2,000 dimensions, so the "
        "3,072-dimension tables have none on every side), in one long-lived loop. Each side "
        "writes into a table of its own, all equally full before each run, in turns. Wall "
        "and client CPU in ms, medians. ours = PGSyncVectorStorage: checks, then one binary "
        "COPY of whole rows straight into the table (the stored rows of the batch's ids are "
        "deleted first, keeping their create_time); asyncpg = LightRAG's PGVectorStorage "
        "(executemany with asyncpg's binary vector codec); text = execute_values with "
        "pgvector's text adapter (what aperag_pg did before); floor = a raw binary COPY into "
        "a same-shaped table with the same index, no checks: the server's own cost.",
        "",
        "| rows x dims | runs | ours | asyncpg | text adapter | floor | ours vs asyncpg | "
        "ours / floor | client CPU ours | asyncpg | text adapter |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (count, dims), r in results.items():
        (ow, oc), (aw, ac), (tw, tc), (fw, _) = (r[s] for s in SIDES)
        digits = 1 if count <= 10 else 0
        lines.append(
            f"| {count:,} x {dims} | {runs_for(count, quick)} | {ow:,.{digits}f} | "
            f"{aw:,.{digits}f} | {tw:,.{digits}f} | {fw:,.{digits}f} | {aw / ow:.2f}x | "
            f"{ow / fw:.2f}x | {oc:,.{digits}f} | {ac:,.{digits}f} | {tc:,.{digits}f} |"
        )
    lines += [
        "",
        f"Queries over {query_rows:,} vectors of {dim} dimensions in one workspace, HNSW index "
        "built after loading (one long-lived loop; 20 questions, each asked by every side in "
        "turn, after 5 warm-up questions; median ms, fewest rows returned in brackets). "
        "asyncpg binds the vector once, in binary. The raw sides are LightRAG's query on a "
        "plain psycopg2 connection with the vector as text: bound twice (as "
        "LightRAG's SQL reads), once through a scalar subquery (ours), and once with "
        "SET LOCAL hnsw.iterative_scan = strict_order in the same call (ours, without the "
        "store and its thread). Ratios above 1: ours is faster. An HNSW scan without the "
        "iterative scan stops at hnsw.ef_search (40) rows.",
        "",
        "| query | " + " | ".join(QUERY_SIDES) + " | asyncpg / ours | two binds / ours | "
        "its raw form / ours |",
        "|---|" + "---:|" * (len(QUERY_SIDES) + 3),
    ]
    for top_k in (10, 100):
        cells = [
            f"{queries[top_k, side][0]:.2f} ({queries[top_k, side][1]})" for side in QUERY_SIDES
        ]
        ours, theirs = queries[top_k, "ours"][0], queries[top_k, "asyncpg"][0]
        two_binds, own_raw = (
            queries[top_k, side][0] for side in ("two binds", "one bind + iterative")
        )
        lines.append(
            f"| top-{top_k} | " + " | ".join(cells) + f" | {theirs / ours:.2f}x | "
            f"{two_binds / ours:.2f}x | {own_raw / ours:.2f}x |"
        )
    return "\n".join(lines + ["", *targets(results, queries)])


def targets(results: dict, queries: dict) -> list[str]:
    """The issue's targets, read off this run: upserts of 1k rows or more, top-10 queries
    (top-100 returns 100 rows for ours and 40 for the others, so it is not compared)."""

    def spread(values: list[float]) -> str:
        return f"{min(values):.2f}-{max(values):.2f}x"

    # --quick has no 1k batches: its largest ones stand in
    bulk_size = min(1000, max(count for count, _ in results))
    bulk = [r for (count, _), r in results.items() if count >= bulk_size]
    wall = {side: [r[side][0] for r in bulk] for side in SIDES}
    versus_asyncpg = [a / o for a, o in zip(wall["asyncpg"], wall["ours"], strict=True)]
    versus_floor = [o / f for o, f in zip(wall["ours"], wall["floor"], strict=True)]
    floor_asyncpg = [a / f for a, f in zip(wall["asyncpg"], wall["floor"], strict=True)]
    cpu = [r["text"][1] / r["ours"][1] for r in bulk]
    ours, theirs, raw = (queries[10, side][0] for side in ("ours", "asyncpg", "two binds"))
    return [
        f"- Upserts of 1k+ rows: ours / floor {spread(versus_floor)} (target <= 1.25x); "
        f"asyncpg / ours {spread(versus_asyncpg)} (target >= 1.5x), where even the floor is "
        f"asyncpg / floor {spread(floor_asyncpg)}: the server's own work (the HNSW inserts) "
        "is what is left.",
        f"- Client CPU of those upserts, text adapter / ours: {spread(cpu)}.",
        f"- Top-10: raw psycopg2 (two binds) / ours {raw / ours:.2f}x (target: within 1.1x "
        f"of it); asyncpg / ours {theirs / ours:.2f}x (target >= 1.2x; asyncpg reads binary "
        "rows on the event loop, ours hops to a thread and reads text).",
    ]


def run(quick: bool) -> str:
    query_rows = 5_000 if quick else 100_000
    cases = [(1, 1536), (10, 1536), (200, 768), (200, 1536), (200, 3072)]
    if not quick:
        cases = [(1, 1536), (10, 1536), (1000, 768), (1000, 1536), (1000, 3072), (10_000, 1536)]
    logging.getLogger("lightrag").setLevel(logging.CRITICAL)
    register()
    results = {}
    with benchmark_postgres() as settings, tempfile.TemporaryDirectory() as working_dir:
        os.environ.update(settings.to_env())  # LightRAG's PG storages read os.environ
        Manager.initialize(settings)
        try:
            for count, dim in cases:
                reps = runs_for(count, quick)
                results[count, dim] = measure(settings, working_dir, dim, count, reps)
            queries = measure_queries(settings, working_dir, QUERY_DIM, query_rows, 20)
        finally:
            Manager.close()
    return report(results, quick, queries, query_rows, QUERY_DIM)


if __name__ == "__main__":
    run_benchmark(__doc__.splitlines()[0], run, "vectors")
