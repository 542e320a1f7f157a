"""Concurrent single-key reads through the facades go to the store as batched reads
(``aperag_pg.lightrag.coalesce``), and every caller still gets exactly its own answer."""

from __future__ import annotations

import asyncio

import pytest
from psycopg2.errors import UndefinedTable

from aperag_pg.errors import InvalidInput
from aperag_pg.lightrag.storages import PGSyncGraphStorage, PGSyncKVStorage
from aperag_pg.stores.base import TableStore

from .lightrag_support import new_workspace


def _storage(cls, namespace: str, workspace: str):
    return cls(namespace=namespace, workspace=workspace, global_config={}, embedding_func=None)


@pytest.fixture
def batches(monkeypatch):
    """The keys of each batched read the stores receive (the real reads still run)."""
    seen: list[tuple[str, list]] = []

    def spy(cls, name):
        real = getattr(cls, name)

        def read(self, keys):
            seen.append((name, list(keys)))
            return real(self, keys)

        monkeypatch.setattr(cls, name, read)

    from aperag_pg.stores.graph import GraphStore
    from aperag_pg.stores.kv import KVStore

    spy(KVStore, "get_by_ids")
    spy(GraphStore, "get_nodes_batch")
    spy(GraphStore, "get_edges_batch")
    return seen


async def _kv(workspace: str) -> PGSyncKVStorage:
    kv = _storage(PGSyncKVStorage, "entity_chunks", workspace)
    await kv.initialize()
    await kv.upsert({f"e{i}": {"chunk_ids": [f"c{i}"], "count": 1} for i in range(20)})
    return kv


def test_concurrent_gets_are_one_batched_read_each_with_its_own_record(manager, batches):
    async def main():
        kv = await _kv(new_workspace())
        batches.clear()
        keys = [f"e{i}" for i in range(20)] + ["missing", "e3"]
        got = await asyncio.gather(*(kv.get_by_id(key) for key in keys))
        return kv, keys, got

    kv, keys, got = asyncio.run(main())
    assert [None if r is None else r["chunk_ids"] for r in got] == (
        [[f"c{i}"] for i in range(20)] + [None, ["c3"]]
    )
    sizes = [len(keys) for name, keys in batches if name == "get_by_ids"]
    assert sum(sizes) == 21 and len(sizes) < 21  # e3 asked twice, read once
    # the two callers of e3 got equal records, not one shared dict
    assert got[3] == got[21] and got[3] is not got[21]
    got[3]["chunk_ids"].append("edited")
    assert got[21]["chunk_ids"] == ["c3"]


def test_a_bad_key_fails_only_its_caller(manager, batches):
    async def main():
        kv = await _kv(new_workspace())
        return await asyncio.gather(
            kv.get_by_id("e1"),
            kv.get_by_id("bad\x00id"),
            kv.get_by_id("e2"),
            return_exceptions=True,
        )

    first, bad, second = asyncio.run(main())
    assert first["chunk_ids"] == ["c1"] and second["chunk_ids"] == ["c2"]
    assert isinstance(bad, InvalidInput) and "NUL" in str(bad)


def test_a_database_error_reaches_every_caller_of_the_batch(manager, admin_conn):
    async def main():
        kv = await _kv(new_workspace())
        with admin_conn.cursor() as cur:  # the table goes away under the storage
            cur.execute("ALTER TABLE lightrag_entity_chunks RENAME TO lightrag_entity_chunks_x")
        try:
            return await asyncio.gather(
                *(kv.get_by_id(f"e{i}") for i in range(5)), return_exceptions=True
            )
        finally:
            with admin_conn.cursor() as cur:
                cur.execute("ALTER TABLE lightrag_entity_chunks_x RENAME TO lightrag_entity_chunks")

    results = asyncio.run(main())
    assert all(isinstance(result, UndefinedTable) for result in results), results


def test_a_read_sees_the_writes_that_returned_before_it(manager):
    async def main():
        kv = await _kv(new_workspace())
        for n in range(5):
            await kv.upsert({"e1": {"chunk_ids": [f"v{n}"], "count": 1}})
            # reads of other keys keep batches in flight around the one that matters
            others = [kv.get_by_id(f"e{i}") for i in range(2, 12)]
            mine, *_ = await asyncio.gather(kv.get_by_id("e1"), *others)
            assert mine["chunk_ids"] == [f"v{n}"]

    asyncio.run(main())


def test_graph_nodes_and_edges_batched_either_direction(manager, batches):
    workspace = new_workspace()

    async def main():
        graph = _storage(PGSyncGraphStorage, "chunk_entity_relation", workspace)
        await graph.initialize()
        for i in range(10):
            await graph.upsert_node(f"N{i}", {"entity_id": f"N{i}", "description": f"d{i}"})
        for i in range(9):
            await graph.upsert_edge(f"N{i}", f"N{i + 1}", {"weight": str(i)})
        batches.clear()
        nodes = await asyncio.gather(*(graph.get_node(f"N{i}") for i in range(11)))
        edges = await asyncio.gather(
            *(graph.get_edge(f"N{i + 1}", f"N{i}") for i in range(9)),  # reversed
            graph.get_edge("N0", "N5"),
            graph.has_edge("N3", "N4"),
            graph.has_edge("N0", "N9"),
        )
        return nodes, edges

    nodes, edges = asyncio.run(main())
    assert [n and n["description"] for n in nodes] == [f"d{i}" for i in range(10)] + [None]
    assert [e["weight"] for e in edges[:9]] == [str(i) for i in range(9)]
    assert edges[9:] == [None, True, False]
    node_reads = [keys for name, keys in batches if name == "get_nodes_batch"]
    edge_reads = [keys for name, keys in batches if name == "get_edges_batch"]
    assert sum(map(len, node_reads)) == 11 and len(node_reads) < 11
    assert sum(map(len, edge_reads)) == 12 and len(edge_reads) < 12


def test_one_storage_serves_successive_event_loops(manager):
    """A Celery task may run asyncio.run each time: the facade's queues belong to a loop."""
    workspace = new_workspace()
    kv = asyncio.run(_kv(workspace))

    async def four():
        return await asyncio.gather(*(kv.get_by_id(f"e{i}") for i in range(4)))

    for _ in range(3):
        got = asyncio.run(asyncio.wait_for(four(), 30))
        assert [r["chunk_ids"] for r in got] == [[f"c{i}"] for i in range(4)]


def test_a_cancelled_caller_leaves_the_others_their_answers(manager):
    async def main():
        kv = await _kv(new_workspace())
        first = asyncio.ensure_future(kv.get_by_id("e1"))
        queued = [asyncio.ensure_future(kv.get_by_id(f"e{i}")) for i in (2, 3, 4)]
        queued[0].cancel()
        got = await asyncio.gather(first, *queued[1:])
        with pytest.raises(asyncio.CancelledError):
            await queued[0]
        return got

    got = asyncio.run(main())
    assert [r["chunk_ids"] for r in got] == [["c1"], ["c3"], ["c4"]]


def test_the_store_module_is_not_a_dependency_of_coalescing():
    """coalesce.py knows nothing of SQL or stores: the facade hands it the batched read."""
    import aperag_pg.lightrag.coalesce as coalesce

    assert not any(
        isinstance(v, type) and issubclass(v, TableStore) for v in vars(coalesce).values()
    )
