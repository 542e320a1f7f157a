"""VectorStore on a real PostgreSQL with pgvector: LightRAG's tables, rows and query rules."""

from __future__ import annotations

import math
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import psycopg2
import psycopg2.extras
import pytest
from lightrag.kg.postgres_impl import TABLES as LIGHTRAG_TABLES
from lightrag.kg.postgres_impl import _safe_index_name as lightrag_safe_index_name
from lightrag.utils import compute_mdhash_id as lightrag_mdhash_id
from psycopg2 import sql

from aperag_pg.errors import ExtensionMissing, InvalidInput, VectorDimensionMismatch
from aperag_pg.stores import vector as vector_module
from aperag_pg.stores.vector import VectorStore, compute_mdhash_id
from aperag_pg.stores.vector_tables import safe_index_name
from devtools.services import create_database, drop_database

from .polling import lock_waiters, wait_until

DIM = 4
BASES = {
    "chunks": "LIGHTRAG_VDB_CHUNKS",
    "entities": "LIGHTRAG_VDB_ENTITY",
    "relationships": "LIGHTRAG_VDB_RELATION",
}
# What query() returns per namespace, exactly LightRAG's select lists.
QUERY_FIELDS = {
    "chunks": {"id", "content", "file_path", "created_at"},
    "entities": {"entity_name", "created_at"},
    "relationships": {"src_id", "tgt_id", "created_at"},
}
# What get_by_id returns: every column but content_vector, plus created_at.
STORED_FIELDS = {
    "chunks": {
        "id",
        "workspace",
        "full_doc_id",
        "chunk_order_index",
        "tokens",
        "content",
        "file_path",
        "create_time",
        "update_time",
        "created_at",
    },
    "entities": {
        "id",
        "workspace",
        "entity_name",
        "content",
        "create_time",
        "update_time",
        "chunk_ids",
        "file_path",
        "created_at",
    },
    "relationships": {
        "id",
        "workspace",
        "source_id",
        "target_id",
        "content",
        "create_time",
        "update_time",
        "chunk_ids",
        "file_path",
        "created_at",
    },
}


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def table_for(namespace: str, dim: int = DIM) -> str:
    """A LightRAG-style table name with a model suffix, unique to the test."""
    return f"{BASES[namespace]}_{unique('model_')}_{dim}d"


def open_store(
    namespace: str,
    dim: int = DIM,
    threshold: float = 0.2,
    workspace: str | None = None,
    table: str | None = None,
) -> VectorStore:
    store = VectorStore(
        namespace, table or table_for(namespace, dim), dim, threshold, workspace or unique("ws_")
    )
    store.ensure_tables()
    return store


def row(namespace: str, vector, i: int = 0, **fields) -> dict:
    """A row as LightRAG's vector storages receive it, with its embedding added."""
    base = {
        "chunks": {
            "tokens": 10 + i,
            "chunk_order_index": i,
            "full_doc_id": f"doc-{i}",
            "content": f"chunk text {i}",
            "file_path": f"docs/{i}.txt",
        },
        "entities": {
            "entity_name": f"Entity {i}",
            "content": f"Entity {i}\ndescription",
            "source_id": f"chunk-{i}<SEP>chunk-shared",
            "file_path": "docs/e.txt",
        },
        "relationships": {
            "src_id": f"Entity {i}",
            "tgt_id": f"Other {i}",
            "content": f"Entity {i} knows Other {i}",
            "source_id": f"chunk-{i}",
            "file_path": "docs/r.txt",
        },
    }[namespace]
    return {**base, **fields, "__vector__": vector}


def count_rows(conn, store: VectorStore) -> int:
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT count(*) FROM {}.{} WHERE workspace = %s").format(
                sql.Identifier(store.schema), sql.Identifier(store.table_name)
            ),
            (store.workspace,),
        )
        return cur.fetchone()[0]


def indexes(conn, table: str, schema: str = "public") -> dict[str, str]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = %s",
            (schema, table),
        )
        return dict(cur.fetchall())


# Unit vectors with known cosine similarity to QUERY = e1.
QUERY = [1.0, 0.0, 0.0, 0.0]
SIMILAR = {
    "same": [1.0, 0.0, 0.0, 0.0],  # similarity 1
    "close": [1.0, 1.0, 0.0, 0.0],  # 0.707
    "half": [1.0, 1.0, 1.0, 1.0],  # exactly 0.5 (distance 0.5)
    "orthogonal": [0.0, 1.0, 0.0, 0.0],  # 0
    "opposite": [-1.0, 0.0, 0.0, 0.0],  # -1
}


# -- query --------------------------------------------------------------------------


@pytest.mark.parametrize("namespace", list(BASES))
def test_query_orders_by_cosine_and_applies_lightrags_threshold(manager, namespace):
    store = open_store(namespace, threshold=0.2)
    names = list(SIMILAR)
    store.upsert({name: row(namespace, SIMILAR[name], i) for i, name in enumerate(names)})
    before = int(time.time())

    def found(results):
        key = {"chunks": "id", "entities": "entity_name", "relationships": "src_id"}[namespace]
        by_key = {
            "chunks": {name: name for name in names},
            "entities": {f"Entity {i}": name for i, name in enumerate(names)},
            "relationships": {f"Entity {i}": name for i, name in enumerate(names)},
        }[namespace]
        return [by_key[r[key]] for r in results]

    results = store.query(QUERY, top_k=10)
    # similarity must be > 0.2, i.e. distance < 0.8: orthogonal (1.0) and opposite (2.0) fail
    assert found(results) == ["same", "close", "half"]
    for result in results:
        assert set(result) == QUERY_FIELDS[namespace]
        assert isinstance(result["created_at"], int)
        assert abs(result["created_at"] - before) <= 5
    assert found(store.query(QUERY, top_k=2)) == ["same", "close"]
    assert found(store.query(QUERY, top_k=10, cosine_better_than_threshold=0.6)) == [
        "same",
        "close",
    ]
    # LightRAG's comparison is strict: a similarity of exactly the threshold is excluded
    assert found(store.query(QUERY, top_k=10, cosine_better_than_threshold=0.5)) == [
        "same",
        "close",
    ]
    assert found(store.query(QUERY, top_k=10, cosine_better_than_threshold=-1.5)) == names
    assert store.query(np.array(QUERY, dtype=np.float64), top_k=0) == []


def test_chunk_query_returns_lightrags_fields(manager):
    store = open_store("chunks")
    store.upsert({"chunk-1": row("chunks", QUERY, 1)})
    [result] = store.query(QUERY, top_k=5)
    assert {k: v for k, v in result.items() if k != "created_at"} == {
        "id": "chunk-1",
        "content": "chunk text 1",
        "file_path": "docs/1.txt",
    }


def test_relationship_query_returns_source_and_target(manager):
    store = open_store("relationships")
    store.upsert({"rel-1": row("relationships", QUERY, 1)})
    [result] = store.query(QUERY, top_k=5)
    assert (result["src_id"], result["tgt_id"]) == ("Entity 1", "Other 1")


# -- reads ---------------------------------------------------------------------------


@pytest.mark.parametrize("namespace", list(BASES))
def test_get_by_id_and_ids_return_rows_without_vector_in_input_order(manager, namespace):
    store = open_store(namespace)
    store.upsert({"a": row(namespace, QUERY, 1), "b": row(namespace, SIMILAR["close"], 2)})

    a = store.get_by_id("a")
    assert set(a) == STORED_FIELDS[namespace]
    assert a["id"] == "a" and a["workspace"] == store.workspace
    assert isinstance(a["created_at"], int)
    assert store.get_by_id("missing") is None

    rows = store.get_by_ids(["b", "missing", "a", "b"])
    assert [r and r["id"] for r in rows] == ["b", None, "a", "b"]
    assert store.get_by_ids([]) == []


def test_chunk_row_round_trip(manager):
    store = open_store("chunks")
    store.upsert({"c": row("chunks", QUERY, 3)})
    got = store.get_by_id("c")
    assert (got["tokens"], got["chunk_order_index"], got["full_doc_id"]) == (13, 3, "doc-3")
    assert (got["content"], got["file_path"]) == ("chunk text 3", "docs/3.txt")


def test_entity_source_id_is_split_into_chunk_ids(manager):
    store = open_store("entities")
    store.upsert(
        {
            "e1": row("entities", QUERY, 1, source_id="c1<SEP>c2<SEP>c3"),
            "e2": row("entities", QUERY, 2, source_id="only-one"),
            "e3": {k: v for k, v in row("entities", QUERY, 3).items() if k != "file_path"},
        }
    )
    e1, e2, e3 = store.get_by_ids(["e1", "e2", "e3"])
    assert e1["chunk_ids"] == ["c1", "c2", "c3"]
    assert e1["entity_name"] == "Entity 1" and e1["file_path"] == "docs/e.txt"
    assert e2["chunk_ids"] == ["only-one"]
    assert e3["file_path"] is None  # optional for entities, as in LightRAG


def test_relationship_row_round_trip(manager):
    store = open_store("relationships")
    store.upsert({"r": row("relationships", QUERY, 1, source_id="x<SEP>y")})
    got = store.get_by_id("r")
    assert (got["source_id"], got["target_id"]) == ("Entity 1", "Other 1")
    assert got["chunk_ids"] == ["x", "y"]


def test_vectors_round_trip_at_float32_precision(manager):
    store = open_store("chunks")
    first = [0.1, 1 / 3, -2.5e-7, 12345.678]
    second = np.array([math.pi, -math.e, 1e-30, 3e38], dtype=np.float64)
    store.upsert({"a": row("chunks", first), "b": row("chunks", second)})

    vectors = store.get_vectors_by_ids(["a", "b", "missing"])
    assert set(vectors) == {"a", "b"}
    assert vectors["a"] == np.array(first, dtype=np.float32).tolist()
    assert vectors["b"] == second.astype(np.float32).tolist()
    assert all(isinstance(x, float) for x in vectors["a"])
    assert store.get_vectors_by_ids([]) == {}


def test_stored_vectors_read_back_bit_for_bit(manager, admin_conn):
    """Read in pgvector's binary form: every float4 as stored, sign of zero, subnormals and
    the largest finite value included, equal to the server's own text of the vector."""
    store = open_store("chunks")
    edge = np.array([-0.0, np.float32(1e-45), np.finfo(np.float32).max, -1 / 3], np.float32)
    rng = np.random.default_rng(7)
    stored = {
        "edge": edge,
        **{f"r{i}": rng.standard_normal(DIM).astype(np.float32) for i in range(50)},
    }
    store.upsert({key: row("chunks", vector) for key, vector in stored.items()})
    got = store.get_vectors_by_ids(list(stored))
    for key, vector in stored.items():
        assert np.array(got[key], np.float32).tobytes() == vector.tobytes(), key
    with admin_conn.cursor() as cur:  # and what the server itself prints for it
        cur.execute(
            f"SELECT content_vector::text FROM {store.table_name.lower()} "
            "WHERE workspace = %s AND id = 'edge'",
            (store.workspace,),
        )
        text = cur.fetchone()[0]
    assert np.array(text.strip("[]").split(","), np.float32).tobytes() == edge.tobytes()


def test_upsert_updates_existing_rows_and_keeps_create_time(manager):
    store = open_store("chunks")
    store.upsert({"a": row("chunks", QUERY, 1)})
    created = store.get_by_id("a")
    store.upsert({"a": row("chunks", SIMILAR["orthogonal"], 2, content="new text")})
    updated = store.get_by_id("a")
    assert updated["content"] == "new text" and updated["tokens"] == 12
    assert updated["create_time"] == created["create_time"]
    assert updated["update_time"] >= created["update_time"]
    assert store.get_vectors_by_ids(["a"])["a"] == SIMILAR["orthogonal"]


# -- deletes -------------------------------------------------------------------------


def test_delete_removes_only_the_given_ids(manager, admin_conn):
    store = open_store("chunks")
    store.upsert({f"c{i}": row("chunks", QUERY, i) for i in range(5)})
    store.delete(["c1", "c3", "never-existed"])
    assert [r and r["id"] for r in store.get_by_ids([f"c{i}" for i in range(5)])] == [
        "c0",
        None,
        "c2",
        None,
        "c4",
    ]
    store.delete({"c0"})  # LightRAG passes sets too
    store.delete([])
    assert count_rows(admin_conn, store) == 2


def test_delete_entity_by_name_and_lightrags_id(manager):
    assert compute_mdhash_id("Alice", prefix="ent-") == lightrag_mdhash_id("Alice", prefix="ent-")
    assert compute_mdhash_id("Zoë 🙂") == lightrag_mdhash_id("Zoë 🙂")
    assert compute_mdhash_id("bad \ud800") == lightrag_mdhash_id("bad \ud800")

    store = open_store("entities")
    alice_id = compute_mdhash_id("Alice", prefix="ent-")
    store.upsert(
        {
            alice_id: row("entities", QUERY, entity_name="Alice"),
            "legacy-alice": row("entities", QUERY, entity_name="Alice"),
            "bob": row("entities", QUERY, entity_name="Bob"),
        }
    )
    store.delete_entity("Alice")
    assert [r and r["id"] for r in store.get_by_ids([alice_id, "legacy-alice", "bob"])] == [
        None,
        None,
        "bob",
    ]
    store.delete_entity("Nobody")  # no error
    with pytest.raises(InvalidInput, match="delete_entity"):
        open_store("chunks").delete_entity("Alice")


def test_delete_entity_relation_removes_relations_with_entity_at_either_end(manager):
    store = open_store("relationships")
    store.upsert(
        {
            "a-b": row("relationships", QUERY, src_id="A", tgt_id="B"),
            "c-a": row("relationships", QUERY, src_id="C", tgt_id="A"),
            "b-c": row("relationships", QUERY, src_id="B", tgt_id="C"),
        }
    )
    store.delete_entity_relation("A")
    assert [r and r["id"] for r in store.get_by_ids(["a-b", "c-a", "b-c"])] == [None, None, "b-c"]
    with pytest.raises(InvalidInput, match="delete_entity_relation"):
        open_store("entities").delete_entity_relation("A")


def test_drop_clears_this_workspace_only(manager, admin_conn):
    table = table_for("chunks")
    mine = open_store("chunks", table=table)
    other = open_store("chunks", table=table)
    mine.upsert({"a": row("chunks", QUERY), "b": row("chunks", QUERY)})
    other.upsert({"a": row("chunks", QUERY)})
    mine.drop()
    assert count_rows(admin_conn, mine) == 0
    assert other.get_by_id("a") is not None
    mine.drop()  # nothing left: still no error


def test_drop_also_clears_the_workspace_in_lightrags_legacy_table(
    manager, base_settings, admin_conn
):
    # A schema of its own, so the un-suffixed legacy table is this test's alone.
    schema = unique("vec_")
    with admin_conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    manager.initialize(base_settings.replace(schema=schema))
    legacy = open_store("chunks", table="LIGHTRAG_VDB_CHUNKS", workspace="ws")
    legacy_other = open_store("chunks", table="LIGHTRAG_VDB_CHUNKS", workspace="other")
    current = open_store("chunks", workspace="ws")
    legacy.upsert({"old": row("chunks", QUERY)})
    legacy_other.upsert({"old": row("chunks", QUERY)})
    current.upsert({"new": row("chunks", QUERY)})

    current.drop()
    assert current.get_by_id("new") is None
    assert legacy.get_by_id("old") is None
    assert legacy_other.get_by_id("old") is not None
    with admin_conn.cursor() as cur:
        cur.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def test_drop_raises_a_database_error(manager, admin_conn):
    store = open_store("chunks")
    with admin_conn.cursor() as cur:
        cur.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(store.table_name)))
    with pytest.raises(psycopg2.errors.UndefinedTable, match=store.table_name):
        store.drop()


# -- tables and indexes --------------------------------------------------------------


def describe_table(conn, table: str) -> list[tuple]:
    """Columns (name, type, not null, default) in order, and the primary key's columns."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
            "pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a "
            "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
            "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped "
            "ORDER BY a.attnum",
            (f"public.{table}",),
        )
        columns = cur.fetchall()
        cur.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = %s::regclass AND contype = 'p'",
            (f"public.{table}",),
        )
        return [*columns, cur.fetchone()]


@pytest.mark.parametrize("namespace", list(BASES))
def test_table_is_the_one_lightrags_ddl_creates(manager, admin_conn, namespace):
    ours = open_store(namespace)
    theirs = table_for(namespace)
    ddl = LIGHTRAG_TABLES[BASES[namespace]]["ddl"]  # as PGVectorStorage._pg_create_table does
    ddl = ddl.replace("VECTOR(dimension)", f"VECTOR({DIM})").replace(BASES[namespace], theirs)
    with admin_conn.cursor() as cur:
        cur.execute(ddl)
    assert describe_table(admin_conn, ours.table_name) == describe_table(admin_conn, theirs.lower())
    # and a table LightRAG created is used as it is
    store = open_store(namespace, table=theirs)
    store.upsert({"x": row(namespace, QUERY)})
    assert store.get_vectors_by_ids(["x"]) == {"x": QUERY}


def test_table_has_lightrags_columns_and_key(manager, admin_conn):
    store = open_store("entities")
    with admin_conn.cursor() as cur:
        cur.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
            (store.table_name,),
        )
        columns = cur.fetchall()
        cur.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = %s::regclass AND contype = 'p'",
            (f"public.{store.table_name}",),
        )
        constraint = cur.fetchone()
    assert [name for name, _ in columns] == [
        "id",
        "workspace",
        "entity_name",
        "content",
        "content_vector",
        "create_time",
        "update_time",
        "chunk_ids",
        "file_path",
    ]
    assert constraint == (f"{store.table_name}_pk", "PRIMARY KEY (workspace, id)")
    assert store.table_name == store.table_name.lower()
    names = set(indexes(admin_conn, store.table_name))
    assert safe_index_name(store.table_name, "id") in names
    assert safe_index_name(store.table_name, "workspace_id") in names


@pytest.mark.parametrize(
    ("index_type", "expected"),
    [
        (
            "HNSW",
            "USING hnsw (content_vector vector_cosine_ops) WITH (m='8', ef_construction='32')",
        ),
        ("IVFFLAT", "USING ivfflat (content_vector vector_cosine_ops) WITH (lists='7')"),
        ("NONE", None),
    ],
)
def test_vector_index_follows_the_settings(
    manager, base_settings, admin_conn, index_type, expected
):
    manager.initialize(
        base_settings.replace(vector_index_type=index_type, hnsw_m=8, hnsw_ef=32, ivfflat_lists=7)
    )
    store = open_store("chunks")
    store.ensure_tables()  # again: finds everything in place
    found = indexes(admin_conn, store.table_name)
    vector_indexes = {name: d for name, d in found.items() if "content_vector" in d}
    if expected is None:
        assert vector_indexes == {}
    else:
        name = safe_index_name(store.table_name, f"{index_type.lower()}_cosine")
        assert list(vector_indexes) == [name]
        assert expected in vector_indexes[name]
    store.upsert({"a": row("chunks", QUERY)})
    assert [r["id"] for r in store.query(QUERY, top_k=1)] == ["a"]


def test_changing_the_index_type_replaces_the_index(manager, base_settings, admin_conn):
    table = table_for("chunks")
    open_store("chunks", table=table)
    manager.initialize(base_settings.replace(vector_index_type="IVFFLAT"))
    store = open_store("chunks", table=table)
    found = indexes(admin_conn, store.table_name)
    vector_indexes = [name for name, d in found.items() if "content_vector" in d]
    assert vector_indexes == [safe_index_name(store.table_name, "ivfflat_cosine")]


def test_long_table_names_use_lightrags_hashed_index_names(manager, admin_conn):
    table = ("LIGHTRAG_VDB_RELATION_" + unique("m") + "_" + "x" * 63)[:63]
    assert len(table) == 63
    store = open_store("relationships", table=table)
    for suffix in ("id", "workspace_id", "hnsw_cosine"):
        assert safe_index_name(table, suffix) == lightrag_safe_index_name(table, suffix)
        assert safe_index_name(table, suffix) in indexes(admin_conn, store.table_name)
    store.upsert({"r": row("relationships", QUERY)})
    assert store.get_by_id("r")["id"] == "r"


def test_dimensions_beyond_pgvectors_index_limit_work_without_an_index(manager, admin_conn):
    store = open_store("chunks", dim=2001)
    assert not [d for d in indexes(admin_conn, store.table_name).values() if "hnsw" in d]
    vector = np.zeros(2001)
    vector[0] = 1.0
    store.upsert({"big": row("chunks", vector)})
    assert [r["id"] for r in store.query(vector, top_k=3)] == ["big"]


def test_existing_table_with_another_dimension_is_refused(manager):
    table = table_for("chunks")
    open_store("chunks", dim=4, table=table)
    store = VectorStore("chunks", table, 8, 0.2, unique("ws_"))
    with pytest.raises(VectorDimensionMismatch) as info:
        store.ensure_tables()
    message = str(info.value)
    assert table.lower() in message and "4-dimensional" in message and "8" in message


@pytest.mark.parametrize(
    ("namespace", "table", "dim", "match"),
    [
        ("full_docs", "LIGHTRAG_DOC_FULL", 4, "vector namespaces"),
        ("nonsense", "LIGHTRAG_VDB_CHUNKS", 4, "unknown LightRAG namespace"),
        ("chunks", "LIGHTRAG_VDB_ENTITY_m_4d", 4, "must be LIGHTRAG_VDB_CHUNKS"),
        ("chunks", "LIGHTRAG_VDB_CHUNKSX", 4, "must be LIGHTRAG_VDB_CHUNKS"),
        ("chunks", "LIGHTRAG_VDB_CHUNKS_" + "m" * 44, 4, "64 characters"),
        ("chunks", 'LIGHTRAG_VDB_CHUNKS_a"; DROP TABLE x', 4, "letters, digits"),
        ("chunks", "LIGHTRAG_VDB_CHUNKS_m_4d", 0, "embedding_dim"),
        ("chunks", "LIGHTRAG_VDB_CHUNKS_m_4d", 16001, "embedding_dim"),
    ],
)
def test_constructor_refuses_bad_arguments(manager, namespace, table, dim, match):
    with pytest.raises(InvalidInput, match=match):
        VectorStore(namespace, table, dim, 0.2)


def test_lightrag_style_table_name_is_accepted_and_stored_in_lower_case(manager):
    store = VectorStore("chunks", "LIGHTRAG_VDB_CHUNKS_text_embedding_3_large_3072d", 3072, 0.2)
    assert store.table_name == "lightrag_vdb_chunks_text_embedding_3_large_3072d"
    with pytest.raises(InvalidInput, match="cosine_better_than_threshold"):
        VectorStore("chunks", "LIGHTRAG_VDB_CHUNKS_m_4d", 4, float("nan"))


# -- bad input: refused before anything is written ----------------------------------


def test_wrong_dimension_on_upsert_names_table_id_and_dimensions(manager, admin_conn):
    store = open_store("chunks")
    batch = {"good": row("chunks", QUERY), "short": row("chunks", [1.0, 2.0, 3.0])}
    with pytest.raises(VectorDimensionMismatch) as info:
        store.upsert(batch)
    message = str(info.value)
    assert store.table_name in message and "'short'" in message
    assert "3-dimensional" in message and "4-dimensional" in message
    assert count_rows(admin_conn, store) == 0


def test_wrong_dimension_on_query(manager):
    store = open_store("entities")
    with pytest.raises(VectorDimensionMismatch) as info:
        store.query([1.0] * 5, top_k=3)
    message = str(info.value)
    assert store.table_name in message and "5-dimensional" in message and "4" in message


@pytest.mark.parametrize(
    "bad", [float("nan"), float("inf"), float("-inf"), 1e39], ids=["nan", "inf", "-inf", "huge"]
)
def test_nan_and_infinity_are_refused(manager, admin_conn, bad):
    store = open_store("chunks")
    with pytest.raises(InvalidInput, match="'bad-one'.*NaN or an infinite value at position 2"):
        store.upsert({"ok": row("chunks", QUERY), "bad-one": row("chunks", [0.0, 1.0, bad, 0.0])})
    assert count_rows(admin_conn, store) == 0
    with pytest.raises(InvalidInput, match="the query"):
        store.query([bad, 0.0, 0.0, 1.0], top_k=1)


@pytest.mark.parametrize(
    ("namespace", "field"),
    [("chunks", "content"), ("chunks", "file_path"), ("entities", "source_id")],
)
def test_nul_characters_are_refused(manager, admin_conn, namespace, field):
    store = open_store(namespace)
    batch = {
        "ok": row(namespace, QUERY),
        "nul": row(namespace, QUERY, **{field: "before\x00after"}),
    }
    with pytest.raises(InvalidInput, match=f"{field}.*'nul'.*NUL"):
        store.upsert(batch)
    assert count_rows(admin_conn, store) == 0


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"id\x00": {"__vector__": QUERY}}, "NUL"),
        ({"x" * 256: {"__vector__": QUERY}}, "256 characters"),
        ({"no-vector": {"content": "c"}}, "__vector__"),
        ({"not-a-dict": "text"}, "must be a dict"),
        ({"missing": {"content": "c", "__vector__": QUERY}}, "'tokens'"),
        ({"words": {"__vector__": ["a", "b", "c", "d"]}}, "not a list of numbers"),
        ({"matrix": {"__vector__": [[1.0, 0.0], [0.0, 1.0]]}}, "must be flat"),
    ],
)
def test_malformed_rows_are_refused(manager, admin_conn, data, match):
    store = open_store("chunks")
    with pytest.raises(InvalidInput, match=match):
        store.upsert({"ok": row("chunks", QUERY), **data})
    assert count_rows(admin_conn, store) == 0


def test_a_row_its_column_cannot_hold_leaves_the_whole_batch_unwritten(manager, admin_conn):
    store = open_store("entities")
    batch = {f"e{i}": row("entities", QUERY, i) for i in range(600)}
    batch["e599"]["entity_name"] = "n" * 513  # entity_name is VARCHAR(512)
    with pytest.raises(InvalidInput, match="'entity_name' of vector row 'e599' is 513 char"):
        store.upsert(batch)
    assert count_rows(admin_conn, store) == 0


def test_bad_read_arguments_are_refused(manager):
    store = open_store("chunks")
    with pytest.raises(InvalidInput, match="top_k"):
        store.query(QUERY, top_k=-1)
    with pytest.raises(InvalidInput, match="single string"):
        store.delete("abc")
    with pytest.raises(InvalidInput, match="NUL"):
        store.get_by_id("a\x00b")


# -- volume, empty input, hostile names, isolation ----------------------------------


def test_large_batch_is_written_in_bounded_chunks(manager, admin_conn, monkeypatch):
    store = open_store("chunks", dim=8)
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(5000, 8)).astype(np.float32)
    ids = [f"c{i}" for i in range(5000)]
    pages: list[int] = []
    real = vector_module.table_rows

    def spy(encoders, rows, part):
        pages.append(len(rows))
        return real(encoders, rows, part)

    monkeypatch.setattr(vector_module, "table_rows", spy)
    store.upsert({key: row("chunks", vectors[i], i) for i, key in enumerate(ids)})
    store.upsert({key: row("chunks", -vectors[i], i) for i, key in enumerate(ids)})
    monkeypatch.undo()

    assert sum(pages) == 10_000 and len(pages) > 2 and max(pages) <= 1000
    assert count_rows(admin_conn, store) == 5000
    results = store.query(-vectors[1234], top_k=3, cosine_better_than_threshold=-2)
    assert results[0]["id"] == "c1234" and len(results) == 3
    assert np.allclose(store.get_vectors_by_ids(["c7"])["c7"], -vectors[7])
    assert len(store.get_vectors_by_ids(ids)) == 5000
    assert sum(r is not None for r in store.get_by_ids(ids)) == 5000
    store.delete(ids)
    assert count_rows(admin_conn, store) == 0


def test_a_batch_with_stored_ids_updates_them_and_keeps_their_create_time(manager, admin_conn):
    store = open_store("entities")
    store.upsert({"b": row("entities", QUERY, 1)})
    before = store.get_by_id("b")
    store.upsert({key: row("entities", SIMILAR["orthogonal"], i) for i, key in enumerate("abc")})
    a, b, c = store.get_by_ids(["a", "b", "c"])
    assert [r["entity_name"] for r in (a, b, c)] == ["Entity 0", "Entity 1", "Entity 2"]
    assert b["create_time"] == before["create_time"]  # updated in place, not re-created
    assert store.get_vectors_by_ids(["b"])["b"] == SIMILAR["orthogonal"]
    assert count_rows(admin_conn, store) == 3


def test_new_rows_get_lightrags_times_and_arrays(manager, admin_conn):
    store = open_store("entities")
    store.upsert(
        {
            "e1": row("entities", QUERY, 1, source_id='ü<SEP>中文 \\ "q"<SEP>'),
            "e2": row("entities", QUERY, 2, source_id=None),
        }
    )
    e1, e2 = store.get_by_ids(["e1", "e2"])
    assert e1["chunk_ids"] == ["ü", '中文 \\ "q"', ""] and e2["chunk_ids"] == [None]
    with admin_conn.cursor() as cur:
        cur.execute("SELECT (now() AT TIME ZONE 'utc')::timestamp(0)")
        server_now = cur.fetchone()[0]
    for got in (e1, e2):
        assert got["create_time"] == got["update_time"]
        assert got["create_time"].microsecond == 0  # TIMESTAMP(0), as LightRAG's DDL
        assert abs((server_now - got["create_time"]).total_seconds()) <= 2


def test_an_id_a_concurrent_writer_stores_first_is_replaced_not_an_error(manager, admin_conn):
    """The copy meets a row another transaction inserted after the stored ids were
    deleted: it waits for that transaction, then replaces its row instead of failing."""
    store = open_store("chunks")
    batch = {f"c{i}": row("chunks", QUERY, i) for i in range(10)}
    other = psycopg2.connect(**manager.settings().connect_kwargs(application_name="rival"))
    try:
        with other.cursor() as cur:  # an open transaction holding c5
            cur.execute(
                sql.SQL(
                    "INSERT INTO {} (workspace, id, content, content_vector) "
                    "VALUES (%s, 'c5', 'rival', '[1,1,1,1]')"
                ).format(sql.Identifier(store.table_name)),
                (store.workspace,),
            )
        with ThreadPoolExecutor(1) as pool:
            upsert = pool.submit(store.upsert, batch)
            wait_until(lambda: lock_waiters(admin_conn), "the upsert waits for the rival")
            other.commit()
            upsert.result(timeout=60)
    finally:
        other.close()
    assert count_rows(admin_conn, store) == 10
    assert store.get_by_id("c5")["content"] == "chunk text 5"
    assert store.get_vectors_by_ids(["c5"])["c5"] == QUERY


def test_a_batch_of_20k_rows_is_one_transaction_and_a_bad_last_row_writes_nothing(
    manager, admin_conn
):
    store = open_store("chunks", dim=8)
    vectors = np.random.default_rng(3).normal(size=(20_000, 8)).astype(np.float32)
    batch = {f"c{i:05d}": row("chunks", vectors[i], i) for i in range(20_000)}
    bad = dict(batch, c19999=row("chunks", [1.0] * 7 + [float("nan")], 19_999))
    with pytest.raises(InvalidInput, match="'c19999' has NaN"):
        store.upsert(bad)
    assert count_rows(admin_conn, store) == 0
    store.upsert(batch)
    with admin_conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                "SELECT count(*), count(DISTINCT xmin::text) FROM {} WHERE workspace = %s"
            ).format(sql.Identifier(store.table_name)),
            (store.workspace,),
        )
        assert cur.fetchone() == (20_000, 1)  # every row written by the same transaction


@pytest.mark.parametrize("dim", [1, 3, 2000, 2001, 16000])
def test_every_dimension_up_to_16000_round_trips_bit_for_bit(manager, dim):
    store = open_store("chunks", dim=dim)
    rng = np.random.default_rng(dim)
    vectors = rng.standard_normal((3, dim)).astype(np.float32)
    tiny, big = np.float32(1e-45), np.finfo(np.float32).max  # a subnormal, the largest
    vectors[0, : min(dim, 3)] = [tiny, -0.0, big][: min(dim, 3)]
    store.upsert({f"c{i}": row("chunks", vectors[i], i) for i in range(3)})
    stored = store.get_vectors_by_ids(["c0", "c1", "c2"])
    for i in range(3):
        got = np.asarray(stored[f"c{i}"], dtype=np.float32)
        assert got.view(np.uint32).tolist() == vectors[i].view(np.uint32).tolist()


def test_pgvector_is_registered_once_per_connection(manager, monkeypatch):
    store = open_store("chunks")
    calls = []
    real = vector_module.register_vector
    monkeypatch.setattr(
        vector_module, "register_vector", lambda conn: calls.append(conn) or real(conn)
    )
    for i in range(20):
        store.upsert({f"c{i}": row("chunks", QUERY, i)})
        assert store.query(QUERY, top_k=1)
    assert len(calls) == len({id(conn) for conn in calls})  # never twice for one connection
    assert len(calls) <= store.manager.settings().max_connections


def test_empty_inputs_are_no_ops(manager, admin_conn):
    store = open_store("relationships")
    store.upsert({})
    store.delete([])
    assert store.get_by_ids([]) == []
    assert store.get_vectors_by_ids([]) == {}
    assert store.query(QUERY, top_k=5) == []
    assert count_rows(admin_conn, store) == 0


def test_hostile_workspace_and_ids_are_stored_exactly(manager, admin_conn):
    workspace = "ws'; DROP TABLE x; --\"ü🙂\\"
    ids = ['it\'s "quoted"; DELETE FROM t --', "ünïcödé 🚀", "back\\slash%s%(x)s", "{table}"]
    store = open_store("chunks", workspace=workspace)
    store.upsert({key: row("chunks", QUERY, i) for i, key in enumerate(ids)})

    assert [r["id"] for r in store.get_by_ids(ids)] == ids
    assert {r["id"] for r in store.query(QUERY, top_k=10)} == set(ids)
    assert set(store.get_vectors_by_ids(ids)) == set(ids)
    with admin_conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT DISTINCT workspace FROM {}").format(sql.Identifier(store.table_name))
        )
        assert cur.fetchall() == [(workspace,)]
    store.delete(ids[:2])
    assert [r and r["id"] for r in store.get_by_ids(ids)] == [None, None, *ids[2:]]


# Pieces SQL text builders trip on: format fields, driver placeholders, dollar quotes,
# quotes, backslashes, comment and statement ends, array and COPY delimiters.
HOSTILE = "{table}}{{%s%(x)s%%$$$1$'\"\\\\x00\\N;--/*,\t\n"


def test_hostile_text_round_trips_through_every_kind_and_every_delete(manager, admin_conn):
    """Ids, names, contents, chunk ids and the workspace full of HOSTILE are stored and
    read back equal, and the deletes by name remove exactly their rows."""
    workspace = f"ws {HOSTILE}"
    table = table_for("entities")
    entities = open_store("entities", workspace=workspace, table=table)
    neighbour = open_store("entities", workspace=f"{workspace}x", table=table)
    names = [f"{HOSTILE} {i}" for i in range(3)]
    ids = [compute_mdhash_id(names[0], prefix="ent-"), *(f"{HOSTILE}#{i}" for i in (1, 2))]
    chunk_ids = [HOSTILE, "{a,b}", '"', "NULL", ""]
    data = {
        key: row(
            "entities",
            SIMILAR["close"] if i else QUERY,
            entity_name=name,
            content=f"{name}\n{HOSTILE}",
            source_id="<SEP>".join(chunk_ids),
            file_path=HOSTILE,
        )
        for i, (key, name) in enumerate(zip(ids, names, strict=True))
    }
    entities.upsert(data)
    neighbour.upsert({ids[0]: data[ids[0]]})
    for got, key, name in zip(entities.get_by_ids(ids), ids, names, strict=True):
        assert (got["id"], got["workspace"], got["entity_name"]) == (key, workspace, name)
        assert (got["content"], got["file_path"]) == (f"{name}\n{HOSTILE}", HOSTILE)
        assert got["chunk_ids"] == chunk_ids
    hits = entities.query(QUERY, top_k=10, cosine_better_than_threshold=-1)
    assert hits[0]["entity_name"] == names[0]  # QUERY itself, then a tie of the others
    assert sorted(h["entity_name"] for h in hits) == sorted(names)
    assert entities.get_vectors_by_ids(ids) == {key: data[key]["__vector__"] for key in ids}
    entities.delete_entity(names[0])  # by LightRAG's id for the name
    entities.delete_entity(names[1])  # by entity_name
    entities.delete([ids[2]])
    assert entities.get_by_ids(ids) == [None, None, None]
    assert neighbour.get_by_id(ids[0])["entity_name"] == names[0]

    relations = open_store("relationships", workspace=workspace)
    relations.upsert(
        {
            f"{HOSTILE}>{i}": row("relationships", QUERY, i, src_id=src, tgt_id=tgt)
            for i, (src, tgt) in enumerate([(names[0], names[1]), (names[1], names[2])])
        }
    )
    assert {(h["src_id"], h["tgt_id"]) for h in relations.query(QUERY, top_k=5)} == {
        (names[0], names[1]),
        (names[1], names[2]),
    }
    relations.delete_entity_relation(names[0])
    assert [
        r and r["target_id"] for r in relations.get_by_ids([f"{HOSTILE}>0", f"{HOSTILE}>1"])
    ] == [
        None,
        names[2],
    ]
    relations.drop()
    assert count_rows(admin_conn, relations) == 0


def test_workspaces_are_isolated(manager):
    table = table_for("entities")
    one = open_store("entities", table=table)
    two = open_store("entities", table=table)
    one.upsert({"shared-id": row("entities", QUERY, 1, entity_name="Alice")})
    two.upsert({"shared-id": row("entities", QUERY, 2, entity_name="Alice")})

    assert one.get_by_id("shared-id")["workspace"] == one.workspace
    assert [r["entity_name"] for r in two.query(QUERY, top_k=10)] == ["Alice"]
    one.delete_entity("Alice")
    assert one.get_by_id("shared-id") is None
    assert two.get_by_id("shared-id")["content"] == "Entity 2\ndescription"
    one.delete(["shared-id"])
    assert two.get_vectors_by_ids(["shared-id"]) == {"shared-id": QUERY}


# -- pgvector missing ------------------------------------------------------------------


@pytest.fixture
def fresh_database(pg_server, manager):
    """A database of the test's own, without pgvector, dropped afterwards."""
    name = unique("apg_vec_")
    create_database(pg_server.admin, name, extensions=())
    yield name
    manager.close()
    drop_database(pg_server.admin, name)


@pytest.fixture
def plain_role(pg_server, admin_conn):
    """A login role that is not a superuser, dropped afterwards (request it before
    fresh_database, so the database and the role's tables in it go first)."""
    name = unique("apg_plain_")
    with admin_conn.cursor() as cur:
        cur.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'plain-pw'").format(sql.Identifier(name))
        )
    yield name
    with admin_conn.cursor() as cur:
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (name,)
        )
        cur.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def _admin_on(pg_server, database: str, statement: sql.Composable) -> None:
    conn = psycopg2.connect(**pg_server.admin.replace(database=database).connect_kwargs())
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


def test_pgvector_not_installed_on_the_server(manager, pg_server, fresh_database):
    # PostgreSQL 18 finds extensions through extension_control_path: pointing it at an
    # empty place makes pgvector unavailable to this database, as on a server without it.
    _admin_on(
        pg_server,
        "postgres",
        sql.SQL("ALTER DATABASE {} SET extension_control_path = '/nonexistent/apg'").format(
            sql.Identifier(fresh_database)
        ),
    )
    manager.initialize(pg_server.admin.replace(database=fresh_database))
    store = VectorStore("chunks", table_for("chunks"), DIM, 0.2, "ws")
    with pytest.raises(ExtensionMissing) as info:
        store.ensure_tables()
    message = str(info.value)
    assert "pgvector" in message and "not installed" in message
    assert "pgvector/pgvector" in message
    with pytest.raises(ExtensionMissing, match="ensure_tables"):
        store.upsert({"a": row("chunks", QUERY)})


def test_pgvector_not_enabled_and_role_may_not_enable_it(
    manager, pg_server, plain_role, fresh_database
):
    manager.initialize(
        pg_server.admin.replace(database=fresh_database, user=plain_role, password="plain-pw")
    )
    store = VectorStore("chunks", table_for("chunks"), DIM, 0.2, "ws")
    with pytest.raises(ExtensionMissing) as info:
        store.ensure_tables()
    message = str(info.value)
    assert plain_role in message and fresh_database in message
    assert "CREATE EXTENSION vector" in message


def test_installed_pgvector_needs_no_privilege_to_create_it(
    manager, pg_server, plain_role, fresh_database
):
    _admin_on(pg_server, fresh_database, sql.SQL("CREATE EXTENSION vector"))
    _admin_on(
        pg_server,
        fresh_database,
        sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(plain_role)),
    )
    manager.initialize(
        pg_server.admin.replace(database=fresh_database, user=plain_role, password="plain-pw")
    )
    store = open_store("chunks", workspace="ws")
    store.upsert({"a": row("chunks", QUERY)})
    assert [r["id"] for r in store.query(QUERY, top_k=1)] == ["a"]


@pytest.fixture
def indexed(manager, admin_conn):
    """A chunks table of 5,000 rows, analyzed: large enough that the planner picks the
    HNSW index for a nearest-neighbour query, as on a real table."""
    store = open_store("chunks", dim=8)
    vectors = np.random.default_rng(5).normal(size=(5000, 8)).astype(np.float32)
    store.upsert({f"c{i}": row("chunks", vectors[i], i) for i in range(5000)})
    with admin_conn.cursor() as cur:
        cur.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(store.table_name)))
    return store, vectors


def test_a_query_binds_its_vector_once_and_uses_the_hnsw_index(indexed, admin_conn):
    store, vectors = indexed
    statement = sql.SQL(vector_module._QUERY).format(
        select=sql.SQL("id"), table=sql.Identifier(store.schema, store.table_name)
    )
    assert statement.as_string(admin_conn).count("%s::vector") == 1
    with admin_conn.cursor() as cur:
        cur.execute(
            sql.SQL("EXPLAIN ") + statement, (str(vectors[7].tolist()), store.workspace, 2.0, 10)
        )
        plan = "\n".join(line for (line,) in cur.fetchall())
    assert "hnsw_cosine on" in plan, plan
    hits = store.query(vectors[7], top_k=10, cosine_better_than_threshold=-1)
    assert hits[0]["id"] == "c7" and len(hits) == 10


def test_top_k_above_pgvectors_40_gets_all_its_rows(indexed, admin_conn):
    """An HNSW scan returns at most hnsw.ef_search rows (pgvector's default 40): the query
    raises it to top_k with SET LOCAL, for itself only."""
    store, vectors = indexed
    with admin_conn.cursor() as cur:  # the same query without SET LOCAL: capped at 40
        cur.execute(
            sql.SQL(
                "SELECT count(*) FROM (SELECT id FROM {} WHERE workspace = %s "
                "ORDER BY content_vector <=> %s::vector LIMIT 100) t"
            ).format(sql.Identifier(store.table_name)),
            (store.workspace, str(vectors[0].tolist())),
        )
        assert cur.fetchone()[0] == 40
    assert len(store.query(vectors[0], top_k=100, cosine_better_than_threshold=-1)) == 100
    assert len(store.query(vectors[0], top_k=250, cosine_better_than_threshold=-1)) == 250
    with store.manager.get_connection() as conn, conn.cursor() as cur:
        cur.execute("SHOW hnsw.ef_search")
        assert cur.fetchone()[0] == "40"  # SET LOCAL ended with its query


def test_ef_search_is_raised_for_its_query_only_without_iterative_scans(indexed, admin_conn):
    """Before pgvector 0.8 a query raises hnsw.ef_search to top_k (a parameter of
    set_config, local to the query's implicit transaction)."""
    store, vectors = indexed
    store._iterative_scans = False  # as on pgvector 0.7
    assert len(store.query(vectors[0], top_k=100, cosine_better_than_threshold=-1)) == 100
    with store.manager.get_connection() as conn, conn.cursor() as cur:
        cur.execute("SHOW hnsw.ef_search")
        assert cur.fetchone()[0] == "40"


def test_a_workspace_sharing_its_table_gets_its_whole_top_k(manager, admin_conn):
    """LightRAG keeps every workspace in one table. An HNSW scan that stops after
    ef_search candidates (40) keeps only this workspace's share of them; the iterative scan
    (pgvector 0.8) goes on until top_k rows of this workspace are found, nearest first."""
    table = table_for("chunks", 8)
    ours, other = open_store("chunks", dim=8, table=table), open_store("chunks", dim=8, table=table)
    rng = np.random.default_rng(8)
    other.upsert({f"o{i}": row("chunks", v, i) for i, v in enumerate(rng.normal(size=(2500, 8)))})
    mine = rng.normal(size=(2500, 8)).astype(np.float32)
    ours.upsert({f"m{i}": row("chunks", v, i) for i, v in enumerate(mine)})
    with admin_conn.cursor() as cur:
        cur.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(ours.table_name)))
    assert ours._iterative_scans  # the embedded server has pgvector 0.8
    probe = rng.normal(size=8).astype(np.float32)
    distance = 1 - mine @ probe / np.linalg.norm(mine, axis=1) / np.linalg.norm(probe)
    nearest = [f"m{i}" for i in np.argsort(distance)]
    for top_k in (40, 100):
        hits = [h["id"] for h in ours.query(probe, top_k=top_k, cosine_better_than_threshold=-1)]
        assert len(hits) == top_k and all(h.startswith("m") for h in hits)
        # HNSW is approximate: most of the true nearest, in distance order
        assert len(set(hits) & set(nearest[:top_k])) >= 0.9 * top_k
        found = [float(distance[int(h[1:])]) for h in hits]
        assert found == sorted(found)
