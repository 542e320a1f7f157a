"""Real LightRAG 1.5.7 end to end on the PGSync storages, offline (stand-in LLM and embeddings)."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from lightrag import QueryParam
from lightrag.base import DocStatus
from lightrag.utils import compute_mdhash_id

from aperag_pg.errors import ConfigError
from aperag_pg.lightrag.selection import lightrag_storage_kwargs
from aperag_pg.worker import run_async

from .lightrag_support import (
    DOCS,
    FILE_PATHS,
    LOCAL,
    OURS,
    graph_snapshot,
    make_rag,
    new_workspace,
)

MODES = ("local", "global", "hybrid", "naive", "mix")
CHUNK_FIELDS = ("content", "tokens", "chunk_order_index", "full_doc_id", "file_path")
STATUS_FIELDS = (
    "status",
    "chunks_count",
    "chunks_list",
    "content_summary",
    "content_length",
    "file_path",
)


async def snapshot(rag) -> dict:
    """What a pipeline run stored, in a form that does not depend on the backend."""
    counts = await rag.doc_status.get_all_status_counts()
    statuses = await rag.doc_status.get_docs_by_statuses([DocStatus.PROCESSED])
    doc_ids = sorted(statuses)
    docs = {i: (await rag.full_docs.get_by_id(i))["content"] for i in doc_ids}
    status = {i: {f: _plain(getattr(statuses[i], f)) for f in STATUS_FIELDS} for i in doc_ids}
    chunk_ids = sorted({c for s in statuses.values() for c in s.chunks_list})
    chunks = dict(zip(chunk_ids, await rag.text_chunks.get_by_ids(chunk_ids), strict=True))
    chunks = {i: {f: c[f] for f in CHUNK_FIELDS} for i, c in chunks.items()}
    vdb_chunks = await rag.chunks_vdb.get_by_ids(chunk_ids)
    entities = sorted(await rag.chunk_entity_relation_graph.get_all_labels())
    entity_rows = await rag.entities_vdb.get_by_ids(
        [compute_mdhash_id(name, prefix="ent-") for name in entities]
    )
    edges = await rag.chunk_entity_relation_graph.get_all_edges()
    relation_ids = sorted(  # the graph may list an edge either way round
        compute_mdhash_id(a + b, prefix="rel-")
        for e in edges
        for a, b in ((e["source"], e["target"]), (e["target"], e["source"]))
    )
    relation_rows = await rag.relationships_vdb.get_by_ids(relation_ids)
    full_entities = {i: await rag.full_entities.get_by_id(i) for i in doc_ids}
    graph = rag.chunk_entity_relation_graph
    return {
        "graph": await graph_snapshot(graph, await graph.get_popular_labels(limit=3)),
        # LightRAG's PG storage lists only statuses that occur; the JSON one lists all.
        "counts": {status: n for status, n in counts.items() if n},
        "docs": docs,
        "status": status,
        "chunks": chunks,
        "vdb_chunk_contents": sorted(r["content"] for r in vdb_chunks if r),
        "entities": entities,
        "entity_vdb_names": sorted(r["entity_name"] for r in entity_rows if r),
        # PG rows name the ends source_id/target_id, NanoVectorDB keeps src_id/tgt_id.
        "relation_vdb": sorted(
            tuple(
                sorted((r.get("src_id", r.get("source_id")), r.get("tgt_id", r.get("target_id"))))
            )
            for r in relation_rows
            if r
        ),
        "full_entities": {
            i: sorted(v["entity_names"]) if v else None for i, v in full_entities.items()
        },
    }


def _plain(value):
    return getattr(value, "value", value)


async def ingest_and_query(rag) -> tuple[dict, dict[str, str]]:
    await rag.initialize_storages()
    try:
        await rag.ainsert(DOCS, file_paths=FILE_PATHS)
        contexts = {
            mode: await rag.aquery(
                "How is Acme Robotics related to Globex Corporation?",
                param=QueryParam(mode=mode, only_need_context=True, enable_rerank=False),
            )
            for mode in MODES
        }
        answers = {
            mode: await rag.aquery("Who founded Acme Robotics?", param=QueryParam(mode=mode))
            for mode in MODES
        }
        assert all(a.startswith("Stand-in answer") for a in answers.values())
        return await snapshot(rag), contexts
    finally:
        await rag.finalize_storages()


def test_pipeline_stores_what_the_local_storages_store(manager, tmp_path):
    ours, ours_context = asyncio.run(
        ingest_and_query(make_rag(tmp_path / "ours", new_workspace(), OURS))
    )
    local, local_context = asyncio.run(
        ingest_and_query(make_rag(tmp_path / "local", new_workspace(), LOCAL))
    )
    assert ours["counts"]["processed"] == len(DOCS)
    assert len(ours["chunks"]) >= len(DOCS) and len(ours["entities"]) >= 8
    assert ours == local
    for mode in MODES:
        assert "Acme Robotics" in ours_context[mode] or "Globex" in ours_context[mode], mode
        # The same knowledge is retrieved; its order may differ between vector backends.
        assert _retrieved(ours_context[mode]) == _retrieved(local_context[mode]), mode


async def ingest_then_delete(rag, doc_index: int) -> tuple[dict, dict]:
    """The graph after ingesting DOCS, and after deleting one of them again."""
    await rag.initialize_storages()
    try:
        await rag.ainsert(DOCS, file_paths=FILE_PATHS)
        graph = rag.chunk_entity_relation_graph
        labels = await graph.get_popular_labels(limit=3)
        before = await graph_snapshot(graph, labels)
        statuses = await rag.doc_status.get_docs_by_statuses([DocStatus.PROCESSED])
        name = FILE_PATHS[doc_index].rsplit("/", 1)[-1]
        (doc_id,) = [i for i, status in statuses.items() if status.file_path.endswith(name)]
        result = await rag.adelete_by_doc_id(doc_id)
        assert result.status == "success", result
        return before, await graph_snapshot(graph, labels)
    finally:
        await rag.finalize_storages()


def test_document_deletion_removes_its_graph_as_networkx_does(manager, tmp_path):
    """Deleting a document takes its own entities and relations out of the graph and keeps
    the ones other documents share, exactly as LightRAG's file-based graph does."""
    ours_before, ours_after = asyncio.run(
        ingest_then_delete(make_rag(tmp_path / "ours", new_workspace(), OURS), 3)
    )
    local_before, local_after = asyncio.run(
        ingest_then_delete(make_rag(tmp_path / "local", new_workspace(), LOCAL), 3)
    )
    assert ours_before == local_before
    assert ours_after == local_after
    gone = set(ours_before["nodes"]) - set(ours_after["nodes"])
    assert gone, "the deleted document's own entities left the graph"
    assert "Dana Lee" in gone  # named only by the deleted document
    assert {"Initech Systems", "Globex Corporation"} <= set(ours_after["nodes"])  # shared
    assert len(ours_after["edges"]) < len(ours_before["edges"])


def _retrieved(context: str) -> dict[str, set[str]]:
    """The entities, relations and chunks a query context contains."""
    found = {"entity": set(), "entity1": set(), "content": set()}
    for line in context.splitlines():
        if line.startswith("{"):
            row = json.loads(line)
            for key in found:
                if key in row:
                    found[key].add(
                        row[key] if key != "entity1" else (row["entity1"], row["entity2"])
                    )
    return found


STORAGE_TROUBLE = (
    "Event loop is closed",
    "another operation is in progress",
    "attached to a different loop",
    "PostgreSQL",
    "asyncpg",
    "pool",
)


def _use_one_instance(rag, run, manager) -> dict:
    """Ingest and query through ``run`` (one coroutine at a time); return the pool's growth."""
    run(rag.initialize_storages())
    opened_before = manager.stats()["connections_num"]
    for doc, path in zip(DOCS, FILE_PATHS, strict=True):
        run(rag.ainsert(doc, file_paths=path))
        param = QueryParam(mode="hybrid", enable_rerank=False)
        answer = run(rag.aquery("Acme Robotics", param=param))
        assert answer.startswith("Stand-in answer")
    counts = run(rag.doc_status.get_all_status_counts())
    run(rag.finalize_storages())
    assert counts == {"processed": len(DOCS), "all": len(DOCS)}
    stats = manager.stats()
    assert stats["connections_lost"] == 0 and stats["requests_timeouts"] == 0
    return {"opened": stats["connections_num"] - opened_before}


def run_in_a_new_loop(coro):
    """``asyncio.run``, except that tasks still pending at the end get a bounded wait.

    LightRAG's queue workers (``priority_limit_async_func_call``) catch the CancelledError
    of a call they are running and go back to waiting on their queue, so ``asyncio.run``
    cancelling them at exit can wait forever when one is mid-call (seen under load). What
    this test checks, storages used from a new loop each time, is the same either way.
    """
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.wait(pending, timeout=10))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


def test_one_instance_across_successive_event_loops(manager, tmp_path, caplog):
    """The common Celery pattern: every task calls asyncio.run() on the same instance.

    The storages hold nothing bound to a loop: no errors, no pool rebuilds, no retries.
    (LightRAG's own LLM and embedding queues do log "bound to a different event loop"
    here and restart; aperag_pg.worker.run_async avoids that, see the next test.)
    """
    caplog.set_level(logging.WARNING)
    rag = make_rag(tmp_path, new_workspace(), OURS)
    growth = _use_one_instance(rag, run_in_a_new_loop, manager)
    assert growth["opened"] <= manager.settings().max_connections
    storage_records = [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("aperag_pg") or any(t in r.getMessage() for t in STORAGE_TROUBLE)
    ]
    assert storage_records == []


def test_one_instance_on_the_worker_loop_is_clean(manager, tmp_path, caplog):
    """The recommended pattern, run_async: not a single warning from anyone."""
    caplog.set_level(logging.WARNING)
    growth = _use_one_instance(make_rag(tmp_path, new_workspace(), OURS), run_async, manager)
    assert growth["opened"] <= manager.settings().max_connections
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_storage_selection_from_environment():
    kwargs = lightrag_storage_kwargs(
        {
            "LIGHTRAG_KV_STORAGE": "PGSyncKVStorage",
            "LIGHTRAG_VECTOR_DB_STORAGE": "PGSyncVectorStorage",
            "LIGHTRAG_DOC_STATUS_STORAGE": "PGDocStatusStorage",
            "LIGHTRAG_GRAPH_STORAGE": "NetworkXStorage",
        }
    )
    assert kwargs == {
        "kv_storage": "PGSyncKVStorage",
        "vector_storage": "PGSyncVectorStorage",
        "doc_status_storage": "PGDocStatusStorage",
        "graph_storage": "NetworkXStorage",
    }
    assert lightrag_storage_kwargs({}) == {}
    with pytest.raises(ConfigError) as info:
        lightrag_storage_kwargs({"LIGHTRAG_KV_STORAGE": "PGSyncKV"})
    message = str(info.value)
    assert "LIGHTRAG_KV_STORAGE" in message and "PGSyncKV'" in message
    assert "PGSyncKVStorage" in message and "JsonKVStorage" in message


def test_drop_reports_in_lightrags_status_dict_what_the_stores_raise(manager, tmp_path):
    rag = make_rag(tmp_path, new_workspace(), OURS)
    storages = ("full_docs", "chunks_vdb", "doc_status", "chunk_entity_relation_graph")

    async def check() -> None:
        await rag.initialize_storages()
        for name in storages:
            assert await getattr(rag, name).drop() == {
                "status": "success",
                "message": "data dropped",
            }
        settings = manager.settings()
        manager.close()  # every store call now raises PoolClosed
        try:
            for name in storages:
                result = await getattr(rag, name).drop()
                assert (
                    result["status"] == "error"
                    and "pool of this process was closed" in result["message"]
                )
        finally:
            manager.initialize(settings)
        await rag.finalize_storages()

    asyncio.run(check())


def test_an_ingest_never_reports_documents_still_on_their_way(manager, tmp_path):
    """LightRAG's pipeline returns at once while an earlier run (left going by a failed
    delivery) is busy, leaving this delivery's documents mid-way: the ingest raises the
    retried DocumentsUnfinished instead of reporting success."""
    from aperag_pg.lightrag.ingest import DocumentsUnfinished, document_id, finish

    rag = make_rag(tmp_path, new_workspace(), OURS)
    doc_id = document_id(DOCS[0], FILE_PATHS[0])

    async def check() -> None:
        await rag.initialize_storages()
        try:
            await rag.doc_status.upsert(
                {
                    doc_id: {
                        "status": DocStatus.PROCESSING,
                        "content_summary": DOCS[0][:20],
                        "content_length": len(DOCS[0]),
                        "file_path": FILE_PATHS[0],
                    }
                }
            )
            with pytest.raises(DocumentsUnfinished, match="not processed yet"):
                await finish(rag, [doc_id], run_pipeline=False)
        finally:
            await rag.finalize_storages()

    run_async(check())


@pytest.mark.parametrize("file_path", ["", "unknown_source", "no-file-path"])
def test_an_unnamed_document_that_fails_fails_the_ingest(manager, tmp_path, file_path):
    """A text without a usable file name is tracked by LightRAG's content-hash id: when its
    LLM call fails, the ingest raises DocumentsFailed naming it, as for a named file."""
    from aperag_pg.lightrag.ingest import DocumentsFailed, document_id, ingest_once
    from aperag_pg.lightrag.standins import lightrag_standins

    async def failing_llm(*_args, **_kwargs):
        raise RuntimeError("the model is down")

    models = {**lightrag_standins(), "llm_model_func": failing_llm}
    rag = make_rag(tmp_path, new_workspace(), OURS, models)
    text = f"{DOCS[0]} ({file_path or 'blank'})"

    async def check() -> None:
        await rag.initialize_storages()
        try:
            with pytest.raises(DocumentsFailed, match="the model is down") as info:
                await ingest_once(rag, [text], [file_path])
            assert document_id(text, file_path) in str(info.value)
            counts = await rag.doc_status.get_all_status_counts()
            assert counts.get("failed") == 1 and counts.get("processed", 0) == 0
        finally:
            await rag.finalize_storages()

    run_async(check())


def test_an_unnamed_document_is_tracked_and_not_inserted_twice(manager, tmp_path):
    from aperag_pg.lightrag.ingest import document_id, ingest_once

    rag = make_rag(tmp_path, new_workspace(), OURS)

    async def check() -> None:
        await rag.initialize_storages()
        try:
            first = await ingest_once(rag, [DOCS[0]], [""])
            doc_id = document_id(DOCS[0], "")
            assert first.inserted == [doc_id] and first.statuses == {doc_id: "processed"}
            again = await ingest_once(rag, [DOCS[0]], ["unknown_source"])
            assert again.already_processed == [doc_id] and again.inserted == []
            counts = await rag.doc_status.get_all_status_counts()
            assert counts.get("processed") == 1 and not counts.get("failed")
        finally:
            await rag.finalize_storages()

    run_async(check())


@pytest.mark.parametrize("lost", ["both anchors", "the relation anchor of a doc without edges"])
def test_a_document_whose_recovery_anchors_were_lost_is_repaired_and_retried(
    manager, tmp_path, lost
):
    """A fault between LightRAG's purge of a half-done document and its next merge can leave
    the document marked as having written to the graph with no recovery anchors; LightRAG
    then refuses to purge it. The ingest runs LightRAG's own repair (audit_kg_integrity) and
    fails with the retried DocumentsFailedTransiently; the retry processes the document."""
    from lightrag.base import DocStatus

    from aperag_pg.lightrag.ingest import DocumentsFailedTransiently, document_id, ingest_once

    rag = make_rag(tmp_path, new_workspace(), OURS)
    doc_id = document_id(DOCS[0], FILE_PATHS[0])

    async def check() -> None:
        await rag.initialize_storages()
        try:
            await ingest_once(rag, [DOCS[0]], [FILE_PATHS[0]])
            record = await rag.doc_status.get_by_id(doc_id)
            assert record["metadata"].get("kg_write_state") == "graph_mutation_started"
            if lost == "both anchors":  # what the fault left behind
                await rag.full_entities.delete([doc_id])
            else:  # its edges gone (purged) and only their anchor row lost: nothing to audit
                graph = rag.chunk_entity_relation_graph
                edges = await graph.get_all_edges()
                await graph.remove_edges([(e["source"], e["target"]) for e in edges])
            await rag.full_relations.delete([doc_id])
            await rag.doc_status.update_doc_status_fields(
                doc_id, {"status": DocStatus.FAILED, "error_msg": "cut off mid-merge"}
            )
            with pytest.raises(DocumentsFailedTransiently, match="recovery anchor"):
                await ingest_once(rag, [DOCS[0]], [FILE_PATHS[0]])
            assert await rag.full_entities.get_by_id(doc_id) is not None  # rebuilt
            assert await rag.full_relations.get_by_id(doc_id) is not None
            report = await ingest_once(rag, [DOCS[0]], [FILE_PATHS[0]])  # the retry
            assert report.retried == [doc_id] and report.statuses == {doc_id: "processed"}
        finally:
            await rag.finalize_storages()

    run_async(check())
