"""Id limits of the graph tables: checked in bytes before the server sees them, the
workspace included, so the largest accepted id is stored and one byte more is refused
with InvalidInput (never the server's ProgramLimitExceeded)."""

from __future__ import annotations

import random
import string

import psycopg2.errors
import pytest

from aperag_pg.errors import InvalidInput
from aperag_pg.stores.graph import (
    BTREE_MAX_ENTRY_BYTES,
    WIDEST_KEY,
    GraphStore,
    index_entry_bytes,
)

CJK_WORKSPACE = "".join(chr(0x4E00 + i) for i in range(255))  # 255 characters, 765 bytes


def incompressible(size: int, seed: int) -> str:
    """ASCII of ``size`` bytes the server cannot compress in an index entry."""
    rng = random.Random(seed)
    return "".join(rng.choices(string.ascii_letters + string.digits + string.punctuation, k=size))


@pytest.fixture
def store(manager) -> GraphStore:
    store = GraphStore(workspace=CJK_WORKSPACE)
    store.ensure_tables()
    yield store
    store.drop()


def test_the_budget_is_the_widest_index_of_the_tables(manager, admin_conn):
    """Every index of the graph tables holds at most the workspace, the namespace and two
    ids: the edges' primary key, the one the budget is computed for."""
    GraphStore(workspace="w").ensure_tables()
    with admin_conn.cursor() as cur:
        cur.execute(
            """SELECT i.indexrelid::regclass::text,
                      array_agg(a.attname::text ORDER BY k.ord)
               FROM pg_index i
               CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
               WHERE i.indrelid IN ('lightrag_graph_nodes'::regclass,
                                    'lightrag_graph_edges'::regclass)
               GROUP BY 1"""
        )
        indexes = dict(cur.fetchall())
    assert indexes["lightrag_graph_edges_pkey"] == list(WIDEST_KEY)
    for columns in indexes.values():
        ids = [c for c in columns if c in ("id", "src_id", "tgt_id")]
        assert set(columns) - {"workspace", "namespace", *ids} == set() and len(ids) <= 2


def test_the_largest_accepted_id_is_stored_and_one_byte_more_is_refused(store, admin_conn):
    limit = store.max_id_bytes
    assert limit == 948  # 765 + 21 bytes of workspace and namespace leave 2 x 948
    ws, ns = len(CJK_WORKSPACE.encode()), len(store.namespace)
    assert index_entry_bytes([ws, ns, limit, limit]) <= BTREE_MAX_ENTRY_BYTES
    assert index_entry_bytes([ws, ns, limit + 1, limit + 1]) > BTREE_MAX_ENTRY_BYTES
    a, b = incompressible(limit, 1), incompressible(limit, 2)
    store.upsert_edge(a, b, {"w": 1})
    assert store.get_edge(b, a) == {"w": 1} and store.counts() == (2, 1)
    c, d = incompressible(limit + 1, 3), incompressible(limit + 1, 4)
    for write in (
        lambda: store.upsert_edge(c, d, {}),
        lambda: store.upsert_edges_batch([(a, b, {}), (c, a, {})]),
        lambda: store.upsert_node(c, {"entity_id": c}),
        lambda: store.upsert_nodes_batch([(a, {"entity_id": a}), (c, {"entity_id": c})]),
    ):
        with pytest.raises(InvalidInput, match=f"{limit + 1} bytes.*at most {limit} bytes"):
            write()
    assert store.counts() == (2, 1)
    # The budget is exact: the server itself refuses the edge one byte more would make.
    with admin_conn.cursor() as cur:
        cur.execute(
            "INSERT INTO lightrag_graph_nodes (workspace, namespace, id) VALUES (%s, %s, %s), "
            "(%s, %s, %s)",
            (store.workspace, store.namespace, c, store.workspace, store.namespace, d),
        )
        with pytest.raises(psycopg2.errors.ProgramLimitExceeded):
            cur.execute(
                "INSERT INTO lightrag_graph_edges (workspace, namespace, src_id, tgt_id) "
                "VALUES (%s, %s, %s, %s)",
                (store.workspace, store.namespace, min(c, d), max(c, d)),
            )


def test_the_reported_case_is_an_invalid_input(store):
    """Two 1,024-byte ids in a 765-byte workspace: the server said ProgramLimitExceeded."""
    a, b = incompressible(1024, 5), incompressible(1024, 6)
    with pytest.raises(InvalidInput, match="shorter ids"):
        store.upsert_edge(a, b, {})
    assert store.counts() == (0, 0)
