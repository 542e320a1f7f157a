"""Over 50,000 vectors, PGSyncStore's vector search reads the ANN index (shown by EXPLAIN),
still finds what filters, small namespaces and deep offsets ask for, and list_namespaces
walks the prefix index instead of scanning the table."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np
import psycopg2
import pytest
from langgraph.store.base import ListNamespacesOp, SearchOp
from psycopg2 import sql

from aperag_pg.manager import PostgreSQLSyncConnectionManager
from aperag_pg.memory import PGSyncStore
from aperag_pg.memory.config import vector_index
from aperag_pg.memory.namespaces import list_namespaces_sql
from aperag_pg.memory.search import nearest_statement, query_text

from .checkpoint_support import drop_schema, new_schema

DIMS = 16
ITEMS = 50_000
GROUPS = 100  # namespaces ("docs", "g<n>"), 500 items each


def text_vector(text: str) -> list[float]:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).uniform(-0.5, 0.5, DIMS).tolist()


def embed(texts: list[str]) -> list[list[float]]:
    return [text_vector(t) for t in texts]


INDEX = {"dims": DIMS, "embed": embed, "fields": ["text"]}


@pytest.fixture(scope="module")
def big_schema(base_settings) -> Iterator[str]:
    """50,000 items with random vectors, and a namespace of five, loaded in SQL (the ANN
    index is built after the load, as one would for a bulk import: 20x faster)."""
    schema = new_schema("ann")
    admin = psycopg2.connect(**base_settings.connect_kwargs(application_name="ann_setup"))
    admin.autocommit = True
    PostgreSQLSyncConnectionManager.initialize(base_settings)
    try:
        PGSyncStore(schema=schema, index=INDEX).setup()
        with admin.cursor() as cur:
            cur.execute(f'DROP INDEX "{schema}".store_vectors_embedding_idx')
            cur.execute(
                f"""
                INSERT INTO "{schema}".store (prefix, key, value)
                SELECT 'docs.g' || (i % {GROUPS}), 'k' || i,
                       jsonb_build_object('i', i, 'rank', i % 1000, 'even', i % 2 = 0)
                FROM generate_series(1, {ITEMS}) AS i
                UNION ALL
                SELECT 'docs.tiny', 't' || i, jsonb_build_object('i', i, 'rank', 0)
                FROM generate_series(1, 5) AS i;
                SELECT setseed(0.25);
                INSERT INTO "{schema}".store_vectors (prefix, key, field_name, embedding)
                SELECT prefix, key, 'text',
                       ARRAY(SELECT random() - 0.5 FROM generate_series(1, {DIMS})
                             WHERE s.key IS NOT NULL)::vector
                FROM "{schema}".store AS s;
                SET maintenance_work_mem = '256MB'; SET max_parallel_maintenance_workers = 2;
                CREATE INDEX store_vectors_embedding_idx ON "{schema}".store_vectors
                    USING hnsw (embedding vector_cosine_ops) WITH (m = 8, ef_construction = 32);
                ANALYZE "{schema}".store; ANALYZE "{schema}".store_vectors;
                """
            )
        yield schema
    finally:
        PostgreSQLSyncConnectionManager.close()
        drop_schema(admin, schema)
        admin.close()


@pytest.fixture
def store(big_schema, manager) -> PGSyncStore:
    store = PGSyncStore(schema=big_schema, index=INDEX)
    store.setup()
    return store


def plan_of(admin_conn, statement: sql.Composed, params) -> str:
    with admin_conn.cursor() as cur:
        cur.execute("BEGIN; SET LOCAL hnsw.iterative_scan = strict_order")
        cur.execute(sql.SQL("EXPLAIN (COSTS OFF) ") + statement, params)
        plan = "\n".join(row[0] for row in cur.fetchall())
        cur.execute("ROLLBACK")
    return plan


def exact_top(admin_conn, schema: str, query: str, prefix: str, where: str, k: int) -> list:
    """The true nearest items, by a sequential scan."""
    with admin_conn.cursor() as cur:
        cur.execute(
            f"""SELECT s.key FROM "{schema}".store_vectors sv
                JOIN "{schema}".store s USING (prefix, key)
                WHERE (sv.prefix = %s OR sv.prefix LIKE %s) AND {where}
                ORDER BY (sv.embedding <=> %s::vector) + 0, s.prefix, s.key LIMIT %s""",
            (prefix, prefix + ".%", str(text_vector(query)), k),
        )
        return [key for (key,) in cur.fetchall()]


@pytest.mark.parametrize("prefix", [(), ("docs",)])
def test_vector_search_reads_the_ann_index(big_schema, admin_conn, prefix):
    op = SearchOp(prefix, query="anything", limit=10)
    index = vector_index(INDEX)
    query = query_text(index, np.array(text_vector("x")))
    statement, params = nearest_statement(index, op, big_schema, query, 41, False)
    plan = plan_of(admin_conn, statement, params)
    assert "Index Scan using store_vectors_embedding_idx" in plan, plan
    assert "Seq Scan on store_vectors" not in plan, plan


def test_vector_search_finds_the_true_nearest(store, admin_conn, big_schema):
    for query in ("red", "green", "blue"):
        found = [item.key for item in store.search(("docs",), query=query, limit=10)]
        truth = exact_top(admin_conn, big_schema, query, "docs", "true", 10)
        assert found[0] == truth[0]
        assert len(set(found) & set(truth)) >= 8, (found, truth)


def test_a_filter_that_drops_most_candidates_still_fills_the_page(store, admin_conn, big_schema):
    """Only 1 item in 1,000 passes: the search widens its index read until the page is full."""
    found = store.search(("docs",), query="red", filter={"rank": 7}, limit=10)
    assert len(found) == 10
    assert all(item.value["rank"] == 7 for item in found)
    scores = [item.score for item in found]
    assert scores == sorted(scores, reverse=True)
    truth = exact_top(admin_conn, big_schema, "red", "docs", "s.value->'rank' = '7'", 10)
    assert len({item.key for item in found} & set(truth)) >= 8


def test_a_small_namespace_among_many_returns_all_its_items(store):
    found = store.search(("docs", "tiny"), query="red", limit=10)
    assert sorted(item.key for item in found) == [f"t{i}" for i in range(1, 6)]


def test_deep_offsets_return_the_following_pages(store):
    """Upstream reads limit * 2 + 1 candidates whatever the offset: page 21 was empty."""
    first = store.search(("docs", "g3"), query="red", limit=200)
    pages = [
        store.search(("docs", "g3"), query="red", limit=10, offset=o) for o in range(0, 200, 10)
    ]
    assert [item.key for page in pages for item in page] == [item.key for item in first]
    last = store.search(("docs", "g3"), query="red", limit=10, offset=495)
    assert len(last) == 5  # 500 items in the namespace


def test_list_namespaces_walks_the_prefix_index(big_schema, admin_conn, store):
    for op in (
        ListNamespacesOp(match_conditions=(), max_depth=None, limit=100, offset=0),
        ListNamespacesOp(match_conditions=(), max_depth=1, limit=100, offset=0),
    ):
        statement, params = list_namespaces_sql(op, big_schema, False, op.offset + op.limit)
        plan = plan_of(admin_conn, statement, params)
        assert "store_prefix_idx" in plan, plan
        assert "Seq Scan" not in plan, plan
    assert store.list_namespaces(max_depth=1) == [("docs",)]
    listed = store.list_namespaces(prefix=("docs",), limit=1000)
    assert len(listed) == GROUPS + 1
    assert listed == sorted(listed, key=".".join)
