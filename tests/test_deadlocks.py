"""Writers of overlapping batches, at once and in opposite orders, take turns: none of them
ever gets DeadlockDetected. Every batch write sorts its keys (``batching.in_lock_order``)."""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg2.errors
from langgraph.checkpoint.serde.types import ERROR, INTERRUPT, RESUME, SCHEDULED

from aperag_pg.stores.doc_status import DocStatusStore
from aperag_pg.stores.kv import KVStore
from aperag_pg.stores.vector import VectorStore
from aperag_pg.stores.vector_tables import vector_table_name

from .checkpoint_support import Chain, new_thread

ROUNDS = 25
IDS = [f"id-{i:04d}" for i in range(300)]


def race(write: Callable[[Any], None], batches: list[Any], rounds: int = ROUNDS) -> int:
    """``write(batch)`` for every batch at once (one thread each), ``rounds`` times over;
    the number of DeadlockDetected. Any other error fails the test."""
    barrier = threading.Barrier(len(batches), timeout=60)
    deadlocks = []

    def writer(batch: Any) -> None:
        for _ in range(rounds):
            barrier.wait()
            try:
                write(batch)
            except psycopg2.errors.DeadlockDetected:
                deadlocks.append(1)

    with ThreadPoolExecutor(len(batches)) as pool:
        list(pool.map(writer, batches))
    return len(deadlocks)


def both_ways(make: Callable[[str, int], Any]) -> list[dict[str, Any]]:
    """The same ids as two dicts, one in ascending and one in descending order."""
    forward = {key: make(key, i) for i, key in enumerate(IDS)}
    return [forward, dict(reversed(list(forward.items())))]


def test_kv_upserts_and_deletes(manager):
    store = KVStore("full_docs", f"dl_{uuid.uuid4().hex[:6]}")
    store.ensure_tables()
    batches = both_ways(lambda key, i: {"content": f"text {i}", "file_path": f"{key}.txt"})
    assert race(store.upsert, batches) == 0
    assert race(store.delete, [IDS, IDS[::-1]], rounds=5) == 0


def test_vector_upserts_and_deletes(manager):
    store = VectorStore(
        "chunks", vector_table_name("chunks", "dl", 4), 4, 0.2, f"dl_{uuid.uuid4().hex[:6]}"
    )
    store.ensure_tables()

    def chunk(key: str, i: int) -> dict[str, Any]:
        return {
            "tokens": 3,
            "chunk_order_index": i,
            "full_doc_id": "doc",
            "content": f"chunk {i}",
            "file_path": "f.txt",
            "__vector__": [1.0, float(i), 0.5, 0.25],
        }

    assert race(store.upsert, both_ways(chunk)) == 0
    assert race(store.delete, [IDS, IDS[::-1]], rounds=5) == 0


def test_doc_status_upserts_and_deletes(manager):
    store = DocStatusStore(workspace=f"dl_{uuid.uuid4().hex[:6]}")
    store.ensure_tables()

    def doc(key: str, i: int) -> dict[str, Any]:
        return {
            "content_summary": f"doc {i}",
            "content_length": i,
            "status": "processed",
            "file_path": f"{key}.txt",
        }

    assert race(store.upsert, both_ways(doc)) == 0
    assert race(store.delete, [IDS, IDS[::-1]], rounds=5) == 0


def test_put_writes_of_one_task_from_four_threads_in_different_orders(saver):
    saved = Chain(saver, new_thread("dl")).put()
    writes = [(ERROR, "e"), (INTERRUPT, "i"), (SCHEDULED, "s"), (RESUME, "r")]
    orders = [list(p) for p in itertools.islice(itertools.permutations(writes), 0, 24, 6)]

    def put(order: list) -> None:
        saver.put_writes(saved, order, "task-1")

    assert race(put, orders, rounds=60) == 0
    pending = saver.get_tuple(saved).pending_writes
    assert sorted(channel for _, channel, _ in pending) == sorted(c for c, _ in writes)


def test_memory_store_puts_and_deletes(manager, schema):
    """Two batches of the same items, one reversed, with vectors: items, stale vectors and
    new vectors are all written in key order."""
    from langgraph.store.base import PutOp

    from aperag_pg.memory import PGSyncStore

    def embed(texts: list[str]) -> list[list[float]]:
        return [[float(len(t)), 1.0, 0.5] for t in texts]

    store = PGSyncStore(schema=schema, index={"dims": 3, "embed": embed, "fields": ["a", "b"]})
    store.setup()
    puts = [PutOp(("dl", key[-1]), key, {"a": key, "b": f"{key}!"}) for key in IDS[:120]]
    assert race(store.batch, [puts, puts[::-1]]) == 0
    deletes = [PutOp(op.namespace, op.key, None) for op in puts]
    mixed = [op if i % 2 else deletes[i] for i, op in enumerate(puts)]
    assert race(store.batch, [mixed, deletes[::-1]], rounds=5) == 0
