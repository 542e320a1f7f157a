"""LightRAG storages (``PGSyncKVStorage``, ``PGSyncVectorStorage``, ``PGSyncDocStatusStorage``,
``PGSyncGraphStorage``) that run aperag_pg's sync stores in worker threads.

They subclass lightrag-hku 1.5.7's base classes and use the same tables as its
PostgreSQL storages, so a deployment can switch by configuration and keep its data.
No connection is bound to an event loop: every call runs the store's sync method
on the process pool through ``to_thread``, so one LightRAG instance works from any
number of successive ``asyncio.run()`` calls, as Celery tasks make them.

``to_thread`` is ``aperag_pg.threads.to_thread``: ``asyncio.to_thread`` semantics on a
thread pool that outlives each ``asyncio.run`` (the stdlib one starts and joins a
thread per loop; see docs/BENCHMARKS.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import psycopg2
from lightrag.base import (
    CURSOR_END,
    CURSOR_START,
    BaseGraphStorage,
    BaseKVStorage,
    BaseVectorStorage,
    CursorPosition,
    DocStatus,
    DocStatusPage,
    DocStatusStorage,
    SourceConflictPage,
    SourceConflictRepairResult,
)
from lightrag.constants import DEFAULT_QUERY_PRIORITY
from lightrag.exceptions import (
    SourceConflictRepairCASError,
    StorageControlPlaneError,
    StorageRecordNotFoundError,
)
from lightrag.types import KnowledgeGraph, KnowledgeGraphEdge, KnowledgeGraphNode
from lightrag.utils import compute_mdhash_id

from ..errors import (
    AperagPGError,
    DocStatusNotFound,
    InvalidInput,
    MalformedCursor,
    SourceConflictChanged,
)
from ..stores.base import TableStore, check_key, table_for_namespace
from ..stores.doc_status import DocStatusStore
from ..stores.graph import GraphStore, Subgraph
from ..stores.kv import KVStore
from ..stores.vector import VectorStore
from ..threads import to_thread
from . import doc_status_convert as convert
from .coalesce import Coalescer

logger = logging.getLogger(__name__)


def runs_in_thread(name: str, result: Callable[[Any], Any] | None = None):
    """An async method that runs the store's sync method ``name`` in a worker thread,
    optionally turning its plain result into LightRAG's type with ``result``.
    """

    async def method(self: _TableStoreFacade, *args: Any, **kwargs: Any) -> Any:
        value = await to_thread(getattr(self.store, name), *args, **kwargs)
        return value if result is None else result(value)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"Runs the sync store's ``{name}`` in a worker thread."
    return method


class _TableStoreFacade:
    """The parts every facade shares: open the store in ``initialize()``, nothing to flush."""

    _store: TableStore | None = None
    namespace: str  # LightRAG's storage base class sets it

    def make_store(self) -> TableStore:
        raise NotImplementedError

    @property
    def store(self) -> Any:
        if self._store is None:
            raise RuntimeError(
                f"{type(self).__name__} is not initialized: await storage.initialize() first "
                "(LightRAG does it in initialize_storages())."
            )
        return self._store

    async def initialize(self) -> None:
        self._store = await to_thread(self._open_store)
        # The store applied LightRAG's workspace rule (POSTGRES_WORKSPACE > ours > "default").
        self.workspace = self._store.workspace

    def _open_store(self) -> TableStore:
        store = self.make_store()
        store.ensure_tables()
        return store

    async def finalize(self) -> None:
        # The pool belongs to the process, not to this storage: nothing to release.
        self._store = None

    def coalesced(self, name: str, read_many: Callable[[list[Any]], Mapping]) -> Coalescer:
        """The storage's ``Coalescer`` ``name`` of single-key reads (``coalesce.py``),
        made on first use; ``read_many`` is the store's batched read."""
        coalescers = self.__dict__.setdefault("_coalescers", {})
        if name not in coalescers:
            coalescers[name] = Coalescer(read_many)
        return coalescers[name]

    async def index_done_callback(self) -> None:
        # Every write is committed when its call returns; there is no buffer to flush.
        return None

    async def drop(self) -> dict[str, str]:
        """LightRAG's contract: a status dict, a failure reported in it instead of raised
        (the stores raise; this is the one place that translates)."""
        try:
            await to_thread(self.store.drop)
        except (psycopg2.Error, AperagPGError) as exc:
            logger.error("dropping %s failed: %s", self.namespace, type(exc).__name__)
            return {"status": "error", "message": str(exc)}
        return {"status": "success", "message": "data dropped"}


@dataclass
class PGSyncKVStorage(_TableStoreFacade, BaseKVStorage):
    """Key-value storage on LightRAG's LIGHTRAG_DOC_FULL / _DOC_CHUNKS / _LLM_CACHE / ... tables."""

    supports_strict_point_reads: ClassVar[bool] = True

    def make_store(self) -> KVStore:
        return KVStore(self.namespace, self.workspace)

    async def get_by_id(self, id: str) -> dict[str, Any] | None:
        """The record or None; reads of other ids asked meanwhile go with it in one
        ``get_by_ids`` (``coalesce.py``)."""
        if not isinstance(id, str):
            return await to_thread(self.store.get_by_id, id)  # its InvalidInput
        return await self.coalesced("get_by_id", self._records_by_id).read(id)

    def _records_by_id(self, ids: list[str]) -> dict[str, dict[str, Any] | None]:
        return dict(zip(ids, self.store.get_by_ids(ids), strict=True))

    get_by_id_strict = runs_in_thread("get_by_id_strict")
    get_by_ids = runs_in_thread("get_by_ids")
    filter_keys = runs_in_thread("filter_keys")
    upsert = runs_in_thread("upsert")
    delete = runs_in_thread("delete")
    is_empty = runs_in_thread("is_empty")


@dataclass
class _PendingVector:
    """An upsert waiting for ``index_done_callback``: LightRAG's fields, when it was
    buffered (epoch seconds, as 1.5.7's buffered reads report it), and its embedding once
    computed, kept across a failed flush so the next one does not embed it again."""

    item: dict[str, Any]
    created_at: int
    vector: np.ndarray | None = None


class _LoopLock:
    """An ``asyncio.Lock`` for the running event loop. A Celery task runs each call in a
    new loop (``asyncio.run``) and an asyncio.Lock stays bound to the first loop it waited
    on, so each loop gets its own; one storage is never used from two loops at once."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = asyncio.Lock()

    def __call__(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop, self._lock = loop, asyncio.Lock()
        return self._lock


_NOT_BUFFERED = object()  # an id the buffer says nothing about: ask the table


@dataclass
class PGSyncVectorStorage(_TableStoreFacade, BaseVectorStorage):
    """pgvector storage on LightRAG's LIGHTRAG_VDB_* tables (with the embedding-model suffix).

    LightRAG 1.5.7's ``PGVectorStorage`` contract: ``upsert`` and ``delete`` only buffer,
    in this instance (one per workspace in a process; the writer lease makes it the
    workspace's only writer). ``index_done_callback`` and ``finalize`` embed the buffered
    upserts in batches of ``embedding_batch_num`` (LightRAG's pipeline upserts entities and
    relations one at a time) and write them in one transaction, then the buffered deletes;
    a failed flush raises and keeps the buffer, embeddings included, for the next one.
    Reads by id see the buffer; ``query`` searches the table only, as 1.5.7's does.
    ``delete_entity`` and ``delete_entity_relation`` delete at once and prune the buffer.
    Other processes see nothing of the buffer before the flush.

    Embeddings are computed on the event loop with LightRAG's async ``embedding_func``;
    only the database work runs in a thread.
    """

    def __post_init__(self) -> None:
        self._validate_embedding_func()
        options = self.global_config.get("vector_db_storage_cls_kwargs", {})
        threshold = options.get("cosine_better_than_threshold")
        if threshold is None:
            raise ValueError(
                "cosine_better_than_threshold must be specified in vector_db_storage_cls_kwargs"
            )
        self.cosine_better_than_threshold = threshold
        self._embedding_batch = self.global_config.get("embedding_batch_num", 32)
        suffix = self._generate_collection_suffix()  # LightRAG's own rule for the table name
        base_table = table_for_namespace(self.namespace)
        self.table_name = f"{base_table}_{suffix}" if suffix else base_table
        self._pending: dict[str, _PendingVector] = {}
        self._pending_deletes: set[str] = set()
        self._lock = _LoopLock()
        self._finalized = False

    def make_store(self) -> VectorStore:
        return VectorStore(
            self.namespace,
            self.table_name,
            self.embedding_func.embedding_dim,
            self.cosine_better_than_threshold,
            self.workspace,
        )

    async def initialize(self) -> None:
        await super().initialize()
        self._finalized = False

    # -- the buffer ------------------------------------------------------------

    async def upsert(self, data: dict[str, dict[str, Any]]) -> None:
        """Check every row now, as the store would, and buffer them (a later upsert of an
        id replaces its buffered row and cancels its buffered delete)."""
        if not data:
            return
        if not isinstance(data, Mapping):
            raise InvalidInput(f"upsert expects a dict of id -> row, got {type(data).__name__}.")
        now = int(time.time())
        records = {
            key: _PendingVector({"__id__": key, **self._checked(key, item)}, now)
            for key, item in data.items()
        }
        async with self._lock():
            for key, record in records.items():
                self._pending_deletes.discard(key)
                self._pending[key] = record

    def _checked(self, key: Any, item: Any) -> Mapping[str, Any]:
        """``item`` if the store would write it: its id, fields and their columns checked
        by the store's own rules and messages (the embedding, computed at the flush, is
        checked by the store then)."""
        self.store.check_fields(key, item)
        return item

    async def delete(self, ids: list[str]) -> None:
        """Buffer deletes (written at the flush); a delete cancels a buffered upsert."""
        if not ids:
            return
        if isinstance(ids, str):
            raise InvalidInput(f"expected a list of vector ids, got the single string {ids!r:.80}.")
        keys = [check_key(key, "vector id") for key in ids]
        async with self._lock():
            for key in keys:
                self._pending.pop(key, None)
                self._pending_deletes.add(key)

    async def delete_entity(self, entity_name: str) -> None:
        entity_id = compute_mdhash_id(entity_name, prefix="ent-")

        def prune() -> None:
            self._pending.pop(entity_id, None)
            self._prune(lambda item: item.get("entity_name") == entity_name)
            self._pending_deletes.discard(entity_id)  # the delete covered it

        await self._delete_now("delete_entity", entity_name, prune)

    async def delete_entity_relation(self, entity_name: str) -> None:
        def prune() -> None:
            self._prune(lambda item: entity_name in (item.get("src_id"), item.get("tgt_id")))

        await self._delete_now("delete_entity_relation", entity_name, prune)

    async def _delete_now(self, method: str, entity_name: str, prune: Callable[[], None]) -> None:
        """1.5.7's predicate deletes: run at once, then prune the buffer, only if the delete
        succeeded (a failed one raises and leaves the buffer for a retry). After finalize
        the buffer is all there is."""
        async with self._lock():
            if self._store is not None or not self._finalized:
                await to_thread(getattr(self.store, method), entity_name)
            prune()

    def _prune(self, matches: Callable[[dict[str, Any]], bool]) -> None:
        for key in [key for key, record in self._pending.items() if matches(record.item)]:
            del self._pending[key]

    async def drop_pending_index_ops(self) -> None:
        """LightRAG's pipeline aborts a batch: its documents are redone, drop their rows."""
        async with self._lock():
            self._pending.clear()
            self._pending_deletes.clear()

    async def drop(self) -> dict[str, str]:
        async with self._lock():
            # Buffered rows of a workspace being emptied are void, whatever the delete does.
            self._pending.clear()
            self._pending_deletes.clear()
            return await super().drop()

    # -- the flush -------------------------------------------------------------

    async def index_done_callback(self) -> None:
        async with self._lock():
            await self._flush()

    async def finalize(self) -> None:
        """Flush, then let go of the store. A failed flush raises, naming what is still
        buffered, and keeps the store open so that a later flush can still write it."""
        if self._store is None:
            self._raise_if_buffered("finalize() after finalize() or before initialize()")
            return
        try:
            async with self._lock():
                await self._flush()
        except Exception as exc:
            raise RuntimeError(
                f"{type(self).__name__}({self.namespace}, workspace {self.workspace!r}): "
                f"writing the buffer failed ({type(exc).__name__}: {exc}); "
                f"{self._buffer_counts()} are still only in this process's memory. "
                "Fix the cause and call index_done_callback() or finalize() again."
            ) from exc
        await super().finalize()
        self._finalized = True

    async def _flush(self) -> None:
        """Embed what is not embedded yet, then upsert every buffered row in one
        transaction, then delete the buffered deletes. Called with the lock held."""
        if not self._pending and not self._pending_deletes:
            return
        if self._store is None:
            self._raise_if_buffered("a flush after finalize() or before initialize()")
        unembedded = [record for record in self._pending.values() if record.vector is None]
        if unembedded:
            vectors = await self._embed(unembedded)
            for record, vector in zip(unembedded, vectors, strict=True):
                record.vector = vector
        if self._pending:
            rows = {key: {**r.item, "__vector__": r.vector} for key, r in self._pending.items()}
            await to_thread(self.store.upsert, rows)
            self._pending.clear()
        if self._pending_deletes:
            await to_thread(self.store.delete, sorted(self._pending_deletes))
            self._pending_deletes.clear()

    async def _embed(self, records: list[_PendingVector]) -> np.ndarray:
        """The records' contents embedded in batches of ``embedding_batch_num``, as 1.5.7's
        flush sends them (``context="document"``, the batches concurrently)."""
        contents = [record.item["content"] for record in records]
        batches = [
            contents[i : i + self._embedding_batch]
            for i in range(0, len(contents), self._embedding_batch)
        ]
        embedded = await asyncio.gather(
            *(self.embedding_func(batch, context="document") for batch in batches)
        )
        vectors = np.concatenate(embedded)
        if len(vectors) != len(records):  # zip would silently pair the wrong vectors
            raise RuntimeError(
                f"embedding_func returned {len(vectors)} vectors for {len(records)} texts"
            )
        return vectors

    def _buffer_counts(self) -> str:
        return f"{len(self._pending)} buffered upserts and {len(self._pending_deletes)} deletes"

    def _raise_if_buffered(self, what: str) -> None:
        if self._pending or self._pending_deletes:
            raise RuntimeError(
                f"{type(self).__name__}({self.namespace}): {what} cannot write "
                f"{self._buffer_counts()}: await initialize() first, and flush "
                "(index_done_callback) before finalize()."
            )

    # -- reads -----------------------------------------------------------------

    async def query(
        self, query: str, top_k: int, query_embedding: list[float] | None = None
    ) -> list[dict[str, Any]]:
        # The table only, as 1.5.7's query: buffered rows are found after the flush.
        if query_embedding is None:
            embedded = await self.embedding_func(
                [query], context="query", _priority=DEFAULT_QUERY_PRIORITY
            )
            query_embedding = embedded[0]
        return await to_thread(self.store.query, query_embedding, top_k)

    async def get_by_id(self, id: str) -> dict[str, Any] | None:
        return (await self.get_by_ids([id]))[0]

    async def get_by_ids(self, ids: list[str]) -> list[dict[str, Any] | None]:
        """Rows in the order of ``ids``: buffered ones as 1.5.7 shows them (LightRAG's
        fields, ``id`` and ``created_at``, no vector), None for a buffered delete."""
        if not ids:
            return []
        async with self._lock():
            # Not a string: not buffered; the store says what is wrong with it.
            seen = {key: self._buffered_row(key) for key in ids if isinstance(key, str)}
        buffered = {key: row for key, row in seen.items() if row is not _NOT_BUFFERED}
        remaining = [key for key in ids if not (isinstance(key, str) and key in buffered)]
        stored = await to_thread(self.store.get_by_ids, remaining) if remaining else []
        rows = dict(zip(remaining, stored, strict=True))
        return [buffered[key] if key in buffered else rows[key] for key in ids]

    def _buffered_row(self, key: str) -> Any:
        if key in self._pending_deletes:
            return None
        record = self._pending.get(key)
        if record is None:
            return _NOT_BUFFERED
        row = {k: v for k, v in record.item.items() if k not in ("__id__", "__vector__")}
        return {**row, "id": key, "created_at": record.created_at}

    async def get_vectors_by_ids(self, ids: list[str]) -> dict[str, list[float]]:
        """``{id: embedding}``: buffered rows embedded now if they were not yet (as 1.5.7
        does, the vector kept for the flush), buffered deletes left out."""
        if not ids:
            return {}
        result: dict[str, list[float]] = {}
        remaining: list[str] = []
        unembedded: list[tuple[str, _PendingVector]] = []
        async with self._lock():
            for key in ids:
                if not isinstance(key, str):
                    remaining.append(key)  # the store says what is wrong with it
                    continue
                record = self._pending.get(key)
                if record is None:
                    if key not in self._pending_deletes:
                        remaining.append(key)
                elif record.vector is None:
                    unembedded.append((key, record))
                else:
                    result[key] = record.vector.tolist()
        if unembedded:
            # Embedded outside the lock, as 1.5.7; a record replaced or dropped meanwhile
            # is left out rather than answered with a vector of what it no longer is.
            vectors = await self._embed([record for _, record in unembedded])
            async with self._lock():
                for (key, record), vector in zip(unembedded, vectors, strict=True):
                    if self._pending.get(key) is record:
                        record.vector = vector
                        result[key] = vector.tolist()
        if remaining:
            result.update(await to_thread(self.store.get_vectors_by_ids, remaining))
        return result


@dataclass
class PGSyncDocStatusStorage(_TableStoreFacade, DocStatusStorage):
    """Document-status storage on LightRAG's LIGHTRAG_DOC_STATUS table."""

    supports_strict_point_reads: ClassVar[bool] = True

    def make_store(self) -> DocStatusStore:
        return DocStatusStore(self.namespace, self.workspace)

    filter_keys = runs_in_thread("filter_keys")
    get_by_id = runs_in_thread("get_by_id")
    get_by_id_strict = runs_in_thread("get_by_id_strict")
    get_by_ids = runs_in_thread("get_by_ids")
    upsert = runs_in_thread("upsert")
    delete = runs_in_thread("delete")
    is_empty = runs_in_thread("is_empty")
    get_status_counts = runs_in_thread("get_status_counts")
    get_all_status_counts = runs_in_thread("get_all_status_counts")
    count_docs_by_statuses = runs_in_thread("count_docs_by_statuses")
    get_doc_by_file_path = runs_in_thread("get_doc_by_file_path")
    get_doc_by_file_basename = runs_in_thread("get_doc_by_file_basename")
    get_doc_by_content_hash = runs_in_thread("get_doc_by_content_hash")
    get_docs_by_statuses = runs_in_thread("get_docs_by_statuses", convert.status_map)
    get_docs_by_track_id = runs_in_thread("get_docs_by_track_id", convert.status_map)
    get_full_docs_by_ids = runs_in_thread("get_full_docs_by_ids", convert.status_map)
    get_docs_by_ids = runs_in_thread("get_docs_by_ids", convert.record_map)
    get_docs_paginated = runs_in_thread("get_docs_paginated", convert.status_page)
    resolve_doc_source_strict = runs_in_thread("resolve_doc_source_strict", convert.source)

    async def get_docs_by_statuses_page(
        self,
        statuses: list[DocStatus],
        *,
        limit: int,
        position: CursorPosition = CURSOR_START,
        strict: bool = False,
    ) -> DocStatusPage:
        if position is CURSOR_END:  # a finished sweep stays finished
            _check_limit(limit)
            return DocStatusPage({}, CURSOR_END)
        with _lightrag_errors():
            result = await to_thread(
                self.store.get_docs_by_statuses_page,
                statuses,
                limit=limit,
                position=convert.cursor_in(position),
                strict=strict,
            )
        return convert.scheduling_page(result)

    async def list_source_conflicts_page(
        self, *, limit: int, position: CursorPosition = CURSOR_START
    ) -> SourceConflictPage:
        if position is CURSOR_END:
            _check_limit(limit)
            return SourceConflictPage((), CURSOR_END)
        with _lightrag_errors():
            result = await to_thread(
                self.store.list_source_conflicts_page,
                limit=limit,
                position=convert.cursor_in(position),
            )
        return convert.conflict_page(result)

    async def update_doc_status_fields(
        self, doc_id: str, fields: dict[str, Any], *, missing_ok: bool = False
    ) -> None:
        with _lightrag_errors():
            await to_thread(
                self.store.update_doc_status_fields, doc_id, fields, missing_ok=missing_ok
            )

    async def repair_source_conflict(
        self,
        canonical_source_key: str,
        *,
        primary_doc_id: str,
        expected_candidate_count: int,
        expected_candidate_fingerprint: str,
        dry_run: bool = True,
    ) -> SourceConflictRepairResult:
        with _lightrag_errors():
            result = await to_thread(
                self.store.repair_source_conflict,
                canonical_source_key,
                primary_doc_id=primary_doc_id,
                expected_candidate_count=expected_candidate_count,
                expected_candidate_fingerprint=expected_candidate_fingerprint,
                dry_run=dry_run,
            )
        return convert.repair_result(result)


def _nothing(_value: Any) -> None:
    """LightRAG's write methods return None; the store's counts are for other callers."""
    return None


@dataclass
class PGSyncGraphStorage(_TableStoreFacade, BaseGraphStorage):
    """Knowledge-graph storage on PGTableGraphStorage's lightrag_graph_nodes / _edges tables,
    with NetworkXStorage's semantics (see ``aperag_pg.stores.graph``)."""

    def make_store(self) -> GraphStore:
        return GraphStore(self.namespace, self.workspace)

    has_node = runs_in_thread("has_node")
    node_degree = runs_in_thread("node_degree")
    edge_degree = runs_in_thread("edge_degree")

    async def get_node(self, node_id: str) -> dict[str, Any] | None:
        """The node's properties or None; reads of other nodes asked meanwhile go with it
        in one ``get_nodes_batch`` (``coalesce.py``)."""
        if not isinstance(node_id, str):
            return await to_thread(self.store.get_node, node_id)  # its InvalidInput
        return await self.coalesced("get_node", self._nodes).read(node_id)

    async def get_edge(self, source_node_id: str, target_node_id: str) -> dict[str, Any] | None:
        """The edge's properties (either direction) or None; reads of other edges asked
        meanwhile go with it in one ``get_edges_batch`` (``coalesce.py``)."""
        pair = (source_node_id, target_node_id)
        if not all(isinstance(node, str) for node in pair):
            return await to_thread(self.store.get_edge, *pair)  # its InvalidInput
        return await self.coalesced("get_edge", self._edges).read(pair)

    async def has_edge(self, source_node_id: str, target_node_id: str) -> bool:
        return await self.get_edge(source_node_id, target_node_id) is not None

    def _nodes(self, node_ids: list[str]) -> dict[str, dict[str, Any]]:
        return self.store.get_nodes_batch(node_ids)

    def _edges(self, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        return self.store.get_edges_batch(pairs)

    get_node_edges = runs_in_thread("get_node_edges")
    get_nodes_batch = runs_in_thread("get_nodes_batch")
    node_degrees_batch = runs_in_thread("node_degrees_batch")
    edge_degrees_batch = runs_in_thread("edge_degrees_batch")
    get_edges_batch = runs_in_thread("get_edges_batch")
    get_nodes_edges_batch = runs_in_thread("get_nodes_edges_batch")
    has_nodes_batch = runs_in_thread("has_nodes_batch")
    upsert_node = runs_in_thread("upsert_node", _nothing)
    upsert_nodes_batch = runs_in_thread("upsert_nodes_batch", _nothing)
    upsert_edge = runs_in_thread("upsert_edge", _nothing)
    upsert_edges_batch = runs_in_thread("upsert_edges_batch", _nothing)
    delete_node = runs_in_thread("delete_node")
    remove_nodes = runs_in_thread("remove_nodes")
    remove_edges = runs_in_thread("remove_edges")
    get_all_labels = runs_in_thread("get_all_labels")
    get_popular_labels = runs_in_thread("get_popular_labels")
    search_labels = runs_in_thread("search_labels")
    get_all_nodes = runs_in_thread("get_all_nodes")
    get_all_edges = runs_in_thread("get_all_edges")

    async def get_knowledge_graph(
        self, node_label: str, max_depth: int = 3, max_nodes: int | None = None
    ) -> KnowledgeGraph:
        """The subgraph around ``node_label`` ("*": the best-connected nodes), at most
        ``max_nodes`` nodes and never more than the global ``max_graph_nodes``."""
        cap = self.global_config.get("max_graph_nodes", 1000)
        budget = cap if max_nodes is None else min(max_nodes, cap)
        graph = await to_thread(self.store.knowledge_graph, node_label, max_depth, budget)
        return _knowledge_graph(graph)


def _knowledge_graph(graph: Subgraph) -> KnowledgeGraph:
    """LightRAG's result type, shaped as NetworkXStorage builds it."""
    return KnowledgeGraph(
        nodes=[
            KnowledgeGraphNode(id=node, labels=[node], properties=properties)
            for node, properties in graph.nodes
        ],
        edges=[
            KnowledgeGraphEdge(
                id=f"{src}-{tgt}", type="DIRECTED", source=src, target=tgt, properties=properties
            )
            for src, tgt, properties in graph.edges
        ],
        is_truncated=graph.is_truncated,
    )


def _check_limit(limit: int) -> None:
    if limit <= 0:
        raise ValueError(f"limit must be positive, got {limit}")


@contextmanager
def _lightrag_errors() -> Iterator[None]:
    """Raise the exceptions LightRAG's callers catch for the doc-status control plane."""
    try:
        yield
    except DocStatusNotFound as exc:
        raise StorageRecordNotFoundError(*exc.args) from exc
    except MalformedCursor as exc:
        raise StorageControlPlaneError(str(exc)) from exc
    except SourceConflictChanged as exc:
        raise SourceConflictRepairCASError(str(exc)) from exc
