"""Rows written by LightRAG's own PG storages (asyncpg) read correctly by ours, and the other
way round, for all three kinds: switching a deployment either way keeps its data.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from lightrag.base import DocStatus
from psycopg2 import sql

from aperag_pg.stores.base import table_for_namespace

from .lightrag_support import (
    DOCS,
    FILE_PATHS,
    KV_ATTRIBUTES,
    LIGHTRAGS_PG,
    OURS,
    VECTOR_ATTRIBUTES,
    graph_snapshot,
    make_rag,
    new_workspace,
    postgres_env,
)


def _ids(admin_conn, table: str, workspace: str) -> list[str]:
    with admin_conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT id FROM {} WHERE workspace = %s ORDER BY id").format(
                sql.Identifier(table.lower())
            ),
            (workspace,),
        )
        return [row[0] for row in cur.fetchall()]


async def _read_everything(rag, ids: dict[str, list[str]]) -> dict:
    """Everything a reader returns for the given ids, through the LightRAG interface."""
    out: dict = {}
    for attr in KV_ATTRIBUTES:
        storage = getattr(rag, attr)
        out[attr] = await storage.get_by_ids(ids[attr])
        out[attr + ".missing"] = await storage.filter_keys({*ids[attr], "no-such-id"})
    for attr in VECTOR_ATTRIBUTES:
        storage = getattr(rag, attr)
        rows = await storage.get_by_ids(ids[attr])
        out[attr] = rows
        vectors = await storage.get_vectors_by_ids(ids[attr])
        out[attr + ".vectors"] = {
            k: np.round(np.asarray(v, dtype=float), 5).tolist() for k, v in vectors.items()
        }
        hits = await storage.query("Acme Robotics Globex", top_k=5)
        out[attr + ".query"] = [
            {k: v for k, v in hit.items() if k not in ("distance", "created_at")} for hit in hits
        ]
    status = rag.doc_status
    doc_ids = ids["doc_status"]
    out["doc_status"] = await status.get_by_ids(doc_ids)
    out["doc_status.counts"] = await status.get_all_status_counts()
    out["doc_status.processed"] = await status.get_docs_by_statuses([DocStatus.PROCESSED])
    out["doc_status.page"] = await status.get_docs_paginated(
        page=1, page_size=10, sort_field="file_path", sort_direction="asc"
    )
    out["doc_status.by_path"] = await status.get_doc_by_file_path(FILE_PATHS[0])
    graph = rag.chunk_entity_relation_graph
    out["graph"] = await graph_snapshot(graph, await graph.get_popular_labels(limit=3))
    return out


async def _write_then_compare(tmp_path, settings, admin_conn, writer: dict, reader: dict):
    workspace = new_workspace("swap")
    with postgres_env(settings):
        written = make_rag(tmp_path / "w", workspace, writer)
        read = make_rag(tmp_path / "r", workspace, reader)
        await written.initialize_storages()
        await read.initialize_storages()
        try:
            await written.ainsert(DOCS, file_paths=FILE_PATHS)
            ids = {
                a: _ids(admin_conn, table_for_namespace(getattr(written, a).namespace), workspace)
                for a in KV_ATTRIBUTES
            }
            ids.update(
                {
                    a: _ids(admin_conn, getattr(written, a).table_name, workspace)
                    for a in VECTOR_ATTRIBUTES
                }
            )
            ids["doc_status"] = _ids(admin_conn, "LIGHTRAG_DOC_STATUS", workspace)
            by_writer = await _read_everything(written, ids)
            by_reader = await _read_everything(read, ids)
        finally:
            await read.finalize_storages()
            await written.finalize_storages()
    assert all(ids[a] for a in ("full_docs", "text_chunks", "chunks_vdb", "entities_vdb"))
    assert len(ids["doc_status"]) == len(DOCS)
    assert by_writer["doc_status.counts"]["processed"] == len(DOCS)
    for key in by_writer:
        assert by_reader[key] == by_writer[key], key


@pytest.mark.parametrize(
    ("writer", "reader"),
    [(LIGHTRAGS_PG, OURS), (OURS, LIGHTRAGS_PG)],
    ids=["theirs->ours", "ours->theirs"],
)
def test_interchange_with_lightrag_pg_storages(
    manager, base_settings, admin_conn, tmp_path, writer, reader
):
    asyncio.run(_write_then_compare(tmp_path, base_settings, admin_conn, writer, reader))


DIM = 1536  # a real embedding size


def _exact_embedding(vectors: dict[str, np.ndarray]):
    """An embedding function that returns, for each text, the vector chosen for it."""
    from lightrag.utils import EmbeddingFunc

    async def embed(texts, **_kwargs):
        return np.stack([vectors[text] for text in texts])

    return EmbeddingFunc(embedding_dim=DIM, func=embed, model_name="exact-test")


async def _write_and_read_vectors(tmp_path, settings, writer, reader, vectors) -> dict:
    from aperag_pg.lightrag.standins import lightrag_standins

    models = {**lightrag_standins(), "embedding_func": _exact_embedding(vectors)}
    workspace = new_workspace("exact")
    rows = {
        f"chunk-{i}": {
            "content": text,
            "tokens": 3,
            "chunk_order_index": i,
            "full_doc_id": "doc-1",
            "file_path": "f.txt",
        }
        for i, text in enumerate(vectors)
    }
    with postgres_env(settings):
        written = make_rag(tmp_path / "w", workspace, writer, models=models)
        read = make_rag(tmp_path / "r", workspace, reader, models=models)
        await written.initialize_storages()
        await read.initialize_storages()
        try:
            await written.chunks_vdb.upsert(rows)
            await written.chunks_vdb.index_done_callback()
            return await read.chunks_vdb.get_vectors_by_ids(list(rows))
        finally:
            await read.finalize_storages()
            await written.finalize_storages()


@pytest.mark.parametrize(
    ("writer", "reader"),
    [(OURS, LIGHTRAGS_PG), (LIGHTRAGS_PG, OURS)],
    ids=["ours->theirs", "theirs->ours"],
)
def test_vectors_cross_over_bit_for_bit_as_float32(
    manager, base_settings, tmp_path, writer, reader
):
    """What one side writes, the other reads back equal as float32, bit for bit: a
    subnormal, -0.0 and the largest float32 included."""
    rng = np.random.default_rng(1536)
    chosen = rng.standard_normal((25, DIM)).astype(np.float32)
    chosen[0, :3] = [np.float32(1e-45), -0.0, np.finfo(np.float32).max]
    vectors = {f"text {i}": chosen[i] for i in range(len(chosen))}
    got = asyncio.run(_write_and_read_vectors(tmp_path, base_settings, writer, reader, vectors))
    assert len(got) == len(chosen)
    for i in range(len(chosen)):
        read_back = np.asarray(got[f"chunk-{i}"], dtype=np.float32)
        assert read_back.view(np.uint32).tolist() == chosen[i].view(np.uint32).tolist(), i
