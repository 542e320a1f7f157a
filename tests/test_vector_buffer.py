"""PGSyncVectorStorage defers writes as LightRAG 1.5.7's PGVectorStorage does: upserts and
deletes are buffered in the storage instance, index_done_callback / finalize embed the
buffer in batches and write it; reads by id see the buffer, other instances do not.
"""

from __future__ import annotations

import asyncio
import uuid

import numpy as np
import pytest
from lightrag.utils import EmbeddingFunc
from psycopg2 import sql

from aperag_pg.errors import InvalidInput
from aperag_pg.lightrag.standins import (
    EMBEDDING_DIM,
    EMBEDDING_MODEL,
    embed_texts,
    lightrag_standins,
)

from .lightrag_support import (
    DOCS,
    FILE_PATHS,
    LIGHTRAGS_PG,
    OURS,
    make_rag,
    new_workspace,
    postgres_env,
)


class CountingEmbedding:
    """The stand-in embedding, counting its calls (one call: one request to a model);
    the first ``failures`` calls raise, as an embedding service that is down."""

    def __init__(self, failures: int = 0) -> None:
        self.calls: list[list[str]] = []
        self.failures = failures

    async def __call__(self, texts: list[str], **_kwargs) -> np.ndarray:
        self.calls.append(list(texts))
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the embedding service is down (test)")
        return embed_texts(texts)

    @property
    def texts(self) -> int:
        return sum(map(len, self.calls))

    def func(self) -> EmbeddingFunc:
        return EmbeddingFunc(
            embedding_dim=EMBEDDING_DIM, func=self, model_name=EMBEDDING_MODEL, max_token_size=8192
        )


def _rag(tmp_path, workspace: str, embedding: CountingEmbedding, storages=OURS, **options):
    # make_rag passes models on as LightRAG's keyword arguments: options go with them
    models = {**lightrag_standins(), "embedding_func": embedding.func(), **options}
    return make_rag(tmp_path / uuid.uuid4().hex[:8], workspace, storages, models=models)


def _chunk(i: int, text: str | None = None) -> dict:
    return {
        "content": text or f"chunk number {i} about Acme Robotics",
        "tokens": 7,
        "chunk_order_index": i,
        "full_doc_id": "doc-1",
        "file_path": "f.txt",
    }


def _stored_ids(admin_conn, storage) -> list[str]:
    """What another process sees: the table's rows of the storage's workspace."""
    with admin_conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT id FROM {} WHERE workspace = %s ORDER BY id").format(
                sql.Identifier(storage.table_name.lower())
            ),
            (storage.workspace,),
        )
        return [row[0] for row in cur.fetchall()]


async def _started(*rags):
    for rag in rags:
        await rag.initialize_storages()


async def _finalized(*rags):
    for rag in rags:
        await rag.finalize_storages()


def test_buffered_rows_are_read_here_before_the_flush_and_nowhere_else(
    manager, admin_conn, tmp_path
):
    embedding = CountingEmbedding()
    workspace = new_workspace("buf")
    writer = _rag(tmp_path, workspace, embedding)
    reader = _rag(tmp_path, workspace, CountingEmbedding())  # another process's instance

    async def check() -> None:
        await _started(writer, reader)
        ours, theirs = writer.chunks_vdb, reader.chunks_vdb
        try:
            await ours.upsert({"c-0": _chunk(0)})
            await ours.index_done_callback()
            await ours.upsert({"c-1": _chunk(1), "c-2": _chunk(2)})
            await ours.upsert({"c-2": _chunk(2, "chunk two, replaced")})  # replaces c-2
            assert embedding.calls == [["chunk number 0 about Acme Robotics"]]

            row = await ours.get_by_id("c-1")
            assert {k: row[k] for k in ("id", "content", "tokens", "full_doc_id")} == {
                "id": "c-1",
                "content": "chunk number 1 about Acme Robotics",
                "tokens": 7,
                "full_doc_id": "doc-1",
            }
            assert isinstance(row["created_at"], int) and "__vector__" not in row
            rows = await ours.get_by_ids(["c-2", "nope", "c-0", "c-1"])
            assert [r and r["content"] for r in rows] == [
                "chunk two, replaced",
                None,
                "chunk number 0 about Acme Robotics",
                "chunk number 1 about Acme Robotics",
            ]
            assert await theirs.get_by_ids(["c-1", "c-2"]) == [None, None]
            assert _stored_ids(admin_conn, ours) == ["c-0"]
            # query searches the table only, as 1.5.7's does
            hits = await ours.query("", 5, query_embedding=embed_texts(["chunk two replaced"])[0])
            assert [h["id"] for h in hits] == ["c-0"]

            # read-your-writes of vectors: embedded now, and not again at the flush
            vectors = await ours.get_vectors_by_ids(["c-1", "c-0"])
            assert set(vectors) == {"c-0", "c-1"}
            assert len(embedding.calls) == 2
            await ours.index_done_callback()
            assert embedding.calls[2:] == [["chunk two, replaced"]]
            assert _stored_ids(admin_conn, ours) == ["c-0", "c-1", "c-2"]
            stored = await theirs.get_vectors_by_ids(["c-1"])
            assert np.array_equal(stored["c-1"], vectors["c-1"])
            assert (await theirs.get_by_id("c-2"))["content"] == "chunk two, replaced"
        finally:
            await _finalized(writer, reader)

    asyncio.run(check())


def test_deletes_prune_the_buffer_and_reach_the_table_at_the_flush(manager, admin_conn, tmp_path):
    embedding = CountingEmbedding()
    workspace = new_workspace("del")
    rag = _rag(tmp_path, workspace, embedding)

    def entity(name: str) -> dict:
        return {"entity_name": name, "content": f"{name} is an entity", "source_id": "c-1"}

    def relation(src: str, tgt: str) -> dict:
        return {"src_id": src, "tgt_id": tgt, "content": f"{src} knows {tgt}", "source_id": "c-1"}

    async def check() -> None:
        await _started(rag)
        chunks, entities, relations = rag.chunks_vdb, rag.entities_vdb, rag.relationships_vdb
        try:
            await chunks.upsert({"stored": _chunk(0)})
            await chunks.index_done_callback()
            calls = len(embedding.calls)

            await chunks.upsert({"a": _chunk(1), "b": _chunk(2), "c": _chunk(3)})
            await chunks.delete(["a", "stored"])
            assert await chunks.get_by_ids(["a", "stored", "b"]) == [
                None,
                None,
                await chunks.get_by_id("b"),
            ]
            assert await chunks.get_vectors_by_ids(["a", "stored"]) == {}
            assert _stored_ids(admin_conn, chunks) == ["stored"]  # until the flush
            await chunks.delete(["c"])
            await chunks.upsert({"c": _chunk(3, "c again")})  # cancels the delete of c
            await chunks.index_done_callback()
            assert _stored_ids(admin_conn, chunks) == ["b", "c"]
            assert embedding.calls[calls:] == [  # "a" was never embedded
                ["chunk number 2 about Acme Robotics", "c again"]
            ]

            # the predicate deletes run at once and prune the buffer
            await entities.upsert({"ent-x": entity("Alice"), "ent-y": entity("Bob")})
            await entities.index_done_callback()
            await entities.upsert({"ent-other-id": entity("Alice"), "ent-z": entity("Carol")})
            await entities.delete_entity("Alice")
            assert await entities.get_by_ids(["ent-x", "ent-other-id", "ent-z"]) == [
                None,
                None,
                await entities.get_by_id("ent-z"),
            ]
            assert _stored_ids(admin_conn, entities) == ["ent-y"]
            await relations.upsert(
                {"r-1": relation("Alice", "Bob"), "r-2": relation("Carol", "Alice")}
            )
            await relations.upsert({"r-3": relation("Bob", "Carol")})
            await relations.delete_entity_relation("Alice")
            await entities.index_done_callback()
            await relations.index_done_callback()
            assert _stored_ids(admin_conn, entities) == ["ent-y", "ent-z"]
            assert _stored_ids(admin_conn, relations) == ["r-3"]

            # drop() clears the buffer with the rows
            await chunks.upsert({"d": _chunk(4)})
            await chunks.delete(["b"])
            assert (await chunks.drop())["status"] == "success"
            await chunks.index_done_callback()
            assert _stored_ids(admin_conn, chunks) == []
        finally:
            await _finalized(rag)

    asyncio.run(check())


def test_an_upsert_is_checked_before_it_is_buffered(manager, tmp_path):
    rag = _rag(tmp_path, new_workspace("chk"), CountingEmbedding())

    async def check() -> None:
        await _started(rag)
        chunks = rag.chunks_vdb
        try:
            missing = {k: v for k, v in _chunk(1).items() if k != "full_doc_id"}
            with pytest.raises(InvalidInput, match="has no 'full_doc_id' field"):
                await chunks.upsert({"ok": _chunk(0), "bad": missing})
            with pytest.raises(InvalidInput, match="vector id must be a string"):
                await chunks.upsert({7: _chunk(0)})
            with pytest.raises(InvalidInput, match="contains"):
                await chunks.upsert({"ok": _chunk(0, "a NUL \x00 here")})
            with pytest.raises(InvalidInput, match="single string"):
                await chunks.delete("ok")
            assert await chunks.get_by_ids(["ok", "bad"]) == [None, None]  # nothing buffered
        finally:
            await _finalized(rag)

    asyncio.run(check())


def test_a_failed_flush_keeps_the_buffer_and_the_next_writes_everything(
    manager, admin_conn, tmp_path
):
    embedding = CountingEmbedding(failures=1)
    rag = _rag(tmp_path, new_workspace("fail"), embedding, embedding_batch_num=2)
    rows = {f"c-{i}": _chunk(i) for i in range(5)}
    rows["poison"] = _chunk(5, "poison")

    async def check() -> None:
        await _started(rag)
        chunks = rag.chunks_vdb
        table = sql.Identifier(chunks.table_name.lower())
        constraint = sql.Identifier(f"refuse_{chunks.workspace}")
        try:
            await chunks.upsert(rows)
            await chunks.delete(["gone"])
            with pytest.raises(ConnectionError, match="embedding service is down"):
                await chunks.index_done_callback()
            assert len(embedding.calls) == 3  # 6 texts in batches of embedding_batch_num=2
            assert _stored_ids(admin_conn, chunks) == []
            assert (await chunks.get_by_id("c-3"))["content"] == rows["c-3"]["content"]

            # the database refuses the write: embedded vectors are kept for the next flush
            with admin_conn.cursor() as cur:
                cur.execute(
                    sql.SQL(
                        "ALTER TABLE {} ADD CONSTRAINT {} "
                        "CHECK (workspace <> %s OR content <> 'poison') NOT VALID"
                    ).format(table, constraint),
                    (chunks.workspace,),
                )
            try:
                with pytest.raises(Exception, match="violates check constraint"):
                    await chunks.index_done_callback()
                assert len(embedding.calls) == 6
                assert _stored_ids(admin_conn, chunks) == []
            finally:
                with admin_conn.cursor() as cur:
                    cur.execute(
                        sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(table, constraint)
                    )
            await chunks.index_done_callback()
            assert len(embedding.calls) == 6  # nothing embedded twice after it succeeded
            assert _stored_ids(admin_conn, chunks) == sorted(rows)
            got = await chunks.get_vectors_by_ids(list(rows))
            expected = embed_texts([row["content"] for row in rows.values()])
            assert np.array_equal(np.array([got[k] for k in rows]), expected)
        finally:
            await _finalized(rag)

    asyncio.run(check())


def test_finalize_flushes_and_says_what_a_failed_flush_left(manager, admin_conn, tmp_path):
    embedding = CountingEmbedding(failures=1)
    rag = _rag(tmp_path, new_workspace("fin"), embedding)

    async def check() -> None:
        await _started(rag)
        chunks = rag.chunks_vdb
        await chunks.upsert({"c-0": _chunk(0), "c-1": _chunk(1)})
        with pytest.raises(RuntimeError, match="2 buffered upserts and 0 deletes") as caught:
            await chunks.finalize()
        assert isinstance(caught.value.__cause__, ConnectionError)
        await chunks.finalize()  # the store stayed open: this flush writes the buffer
        assert _stored_ids(admin_conn, chunks) == ["c-0", "c-1"]
        await chunks.finalize()  # finalized, nothing buffered: nothing to do
        with pytest.raises(RuntimeError, match="not initialized"):
            await chunks.get_by_id("c-0")
        await _finalized(rag)

    asyncio.run(check())


async def _ingest(tmp_path, storages, embedding: CountingEmbedding) -> None:
    # One document and one merge at a time: when LightRAG flushes, and so what each flush
    # embeds, then depends on the documents alone, not on which task finishes first.
    rag = _rag(
        tmp_path,
        new_workspace("count"),
        embedding,
        storages=storages,
        max_parallel_insert=1,
        llm_model_max_async=1,
    )
    await rag.initialize_storages()
    try:
        await rag.ainsert(DOCS, file_paths=FILE_PATHS)
        assert (await rag.doc_status.get_all_status_counts())["processed"] == len(DOCS)
    finally:
        await rag.finalize_storages()


def test_an_ingest_makes_no_more_embedding_calls_than_lightrags_pg_storage(
    manager, base_settings, tmp_path
):
    ours, theirs = CountingEmbedding(), CountingEmbedding()
    with postgres_env(base_settings):
        asyncio.run(_ingest(tmp_path, OURS, ours))
        asyncio.run(_ingest(tmp_path, LIGHTRAGS_PG, theirs))
    assert sorted(map(len, ours.calls)) == sorted(map(len, theirs.calls))
    assert len(ours.calls) < ours.texts / 2  # was one call per text: every upsert embedded


def test_lightrags_pg_storage_reads_what_a_flush_wrote(
    manager, base_settings, admin_conn, tmp_path
):
    workspace = new_workspace("swap")
    entities = {
        f"ent-{i}": {
            "entity_name": f"Entity {i}",
            "content": f"Entity {i} works with Entity {i + 1}",
            "source_id": "c-1<SEP>c-2",
            "file_path": "f.txt",
        }
        for i in range(4)
    }

    async def check() -> None:
        ours = _rag(tmp_path, workspace, CountingEmbedding())
        theirs = _rag(tmp_path, workspace, CountingEmbedding(), storages=LIGHTRAGS_PG)
        await _started(ours, theirs)
        try:
            await ours.entities_vdb.upsert(entities)
            assert await theirs.entities_vdb.get_by_ids(list(entities)) == [None] * 4
            buffered = await ours.entities_vdb.get_vectors_by_ids(list(entities))
            await ours.entities_vdb.index_done_callback()
            rows = await theirs.entities_vdb.get_by_ids(list(entities))
            assert [(r["entity_name"], r["chunk_ids"]) for r in rows] == [
                (e["entity_name"], ["c-1", "c-2"]) for e in entities.values()
            ]
            assert rows == await ours.entities_vdb.get_by_ids(list(entities))
            read = await theirs.entities_vdb.get_vectors_by_ids(list(entities))
            for key in entities:
                assert np.asarray(read[key], np.float32).tobytes() == (
                    np.asarray(buffered[key], np.float32).tobytes()
                )
            hits = await theirs.entities_vdb.query("Entity 2 works with Entity 3", top_k=1)
            assert hits[0]["entity_name"] == "Entity 2"
        finally:
            await _finalized(theirs, ours)

    with postgres_env(base_settings):
        asyncio.run(check())
