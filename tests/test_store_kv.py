"""KVStore against a real PostgreSQL: LightRAG 1.5.7's KV tables, row shapes and rules."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg2
import psycopg2.extras
import pytest

import aperag_pg.batching
from aperag_pg.errors import InvalidInput
from aperag_pg.manager import PostgreSQLSyncConnectionManager
from aperag_pg.stores.kv import KV_NAMESPACES, KVStore
from devtools.services import create_database, drop_database

NAMESPACES = KV_NAMESPACES
TABLES = {
    "full_docs": "lightrag_doc_full",
    "text_chunks": "lightrag_doc_chunks",
    "llm_response_cache": "lightrag_llm_cache",
    "full_entities": "lightrag_full_entities",
    "full_relations": "lightrag_full_relations",
    "entity_chunks": "lightrag_entity_chunks",
    "relation_chunks": "lightrag_relation_chunks",
}
# Tables whose create_time/update_time LightRAG sets from the client's naive UTC clock.
CLIENT_STAMPED = (
    "text_chunks",
    "full_entities",
    "full_relations",
    "entity_chunks",
    "relation_chunks",
)
NASTY = "a'b\"; DROP TABLE x; -- \\ 工作区🚀"


def new_workspace() -> str:
    return f"ws-{uuid.uuid4().hex[:12]}"


def record(namespace: str, n: int) -> dict[str, Any]:
    """A complete record of the namespace, as LightRAG's pipeline writes it."""
    return {
        "full_docs": {
            "content": f"document {n}",
            "file_path": f"docs/{n}.pdf",
            "sidecar_location": f"s3://bucket/{n}.json",
            "parse_format": "markdown",
            "content_hash": f"hash-{n}",
            "process_options": "Fi",
            "chunk_options": {"chunk_size": 1200 + n},
            "parse_engine": "mineru(page_range=1-3)",
        },
        "text_chunks": {
            "tokens": 10 + n,
            "chunk_order_index": n,
            "full_doc_id": "doc-1",
            "content": f"chunk {n}",
            "file_path": "docs/1.pdf",
            "llm_cache_list": [f"cache-{n}"],
            "heading": {"h1": f"Title {n}"},
            "sidecar": {"page": n},
        },
        "llm_response_cache": {
            "original_prompt": f"prompt {n}",
            "return": f"answer {n}",
            "chunk_id": f"chunk-{n}",
            "cache_type": "extract",
            "queryparam": {"mode": "local", "top_k": n},
        },
        "full_entities": {"entity_names": [f"E{n}", "Other"], "count": 2},
        "full_relations": {"relation_pairs": [[f"E{n}", "Other"]], "count": 1},
        "entity_chunks": {"chunk_ids": [f"chunk-{n}"], "count": 1},
        "relation_chunks": {"chunk_ids": [f"chunk-{n}", "chunk-x"], "count": 2},
    }[namespace]


def expected(namespace: str, id_: str, rec: dict[str, Any]) -> dict[str, Any]:
    """What LightRAG's PGKVStorage returns for ``rec``, without the timestamps."""
    if namespace == "llm_response_cache":  # the column is return_value; "return" is added
        return {"id": id_, **rec, "return_value": rec["return"]}
    return {"id": id_, **rec}


def without_times(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {k: v for k, v in row.items() if k not in ("create_time", "update_time")}


def make_store(namespace: str, workspace: str) -> KVStore:
    store = KVStore(namespace, workspace)
    store.ensure_tables()
    return store


def count_rows(admin_conn, namespace: str, workspace: str) -> int:
    with admin_conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {TABLES[namespace]} WHERE workspace = %s", (workspace,))
        return cur.fetchone()[0]


# -- every namespace: write, read, filter, delete, drop -------------------------


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_roundtrip(manager, admin_conn, namespace):
    ws = new_workspace()
    store = make_store(namespace, ws)
    assert store.is_empty()
    data = {f"id-{n}": record(namespace, n) for n in range(3)}
    before = time.time()
    store.upsert(data)

    row = store.get_by_id("id-1")
    assert without_times(row) == expected(namespace, "id-1", data["id-1"])
    assert store.get_by_id_strict("id-1") == row
    if namespace == "full_docs":
        assert "create_time" not in row  # LightRAG's full_docs reads carry no timestamps
    else:
        assert isinstance(row["create_time"], int) and row["update_time"] == row["create_time"]
    if namespace in CLIENT_STAMPED:  # naive UTC, read back as a Unix time
        assert before - 2 <= row["create_time"] <= time.time() + 2

    rows = store.get_by_ids(["id-2", "missing", "id-0"])
    assert [without_times(r) for r in rows] == [
        expected(namespace, "id-2", data["id-2"]),
        None,
        expected(namespace, "id-0", data["id-0"]),
    ]
    assert store.get_by_ids(["id-1", "id-1"]) == [row, row]
    assert store.get_by_id("missing") is None
    assert store.filter_keys({"id-0", "id-1", "new-1", "new-2"}) == {"new-1", "new-2"}
    assert not store.is_empty()

    store.delete(["id-0", "never-there"])
    assert store.get_by_ids(["id-0", "id-1"])[0] is None
    assert count_rows(admin_conn, namespace, ws) == 2

    store.drop()
    assert store.is_empty()
    assert count_rows(admin_conn, namespace, ws) == 0


@pytest.mark.parametrize("namespace", CLIENT_STAMPED)
def test_update_keeps_create_time_and_moves_update_time(manager, admin_conn, namespace):
    ws = new_workspace()
    store = make_store(namespace, ws)
    store.upsert({"k": record(namespace, 1)})
    with admin_conn.cursor() as cur:  # age the row so a new update_time is visible
        cur.execute(
            f"UPDATE {TABLES[namespace]} SET create_time = create_time - interval '1 hour', "
            "update_time = update_time - interval '1 hour' WHERE workspace = %s",
            (ws,),
        )
    old = store.get_by_id("k")
    store.upsert({"k": record(namespace, 2)})
    new = store.get_by_id("k")
    assert without_times(new) == expected(namespace, "k", record(namespace, 2))
    assert new["create_time"] == old["create_time"]
    assert new["update_time"] >= old["update_time"] + 3500


def test_zero_update_time_reads_as_create_time(manager, admin_conn):
    ws = new_workspace()
    store = make_store("entity_chunks", ws)
    store.upsert({"k": record("entity_chunks", 1)})
    with admin_conn.cursor() as cur:
        cur.execute(
            "UPDATE lightrag_entity_chunks SET update_time = 'epoch' WHERE workspace = %s", (ws,)
        )
    row = store.get_by_id("k")
    assert row["update_time"] == row["create_time"] > 0


# -- LightRAG's per-namespace rules ---------------------------------------------


def test_full_docs_partial_upsert_keeps_pipeline_fields(manager):
    store = make_store("full_docs", new_workspace())
    store.upsert({"doc": record("full_docs", 1)})
    # A caller writing only content (LightRAG's insert path) must not erase parse metadata.
    store.upsert(
        {
            "doc": {
                "content": "new text",
                "file_path": "renamed.pdf",
                "content_hash": "",
                "chunk_options": {},
                "parse_engine": None,
            }
        }
    )
    assert store.get_by_id("doc") == {
        "id": "doc",
        "content": "new text",
        "file_path": "renamed.pdf",
        "sidecar_location": "s3://bucket/1.json",
        "parse_format": "markdown",
        "content_hash": "hash-1",
        "process_options": "Fi",
        "chunk_options": {"chunk_size": 1201},
        "parse_engine": "mineru(page_range=1-3)",
    }
    store.upsert({"doc": {"content": "new text", "chunk_options": None, "parse_format": ""}})
    assert store.get_by_id("doc")["chunk_options"] == {"chunk_size": 1201}
    assert store.get_by_id("doc")["parse_format"] == "markdown"
    # Real new values do replace the stored ones; doc_name defaults to "" when omitted.
    store.upsert({"doc": {"content": "v3", "content_hash": "h3", "chunk_options": {"a": 1}}})
    row = store.get_by_id("doc")
    assert (row["content"], row["file_path"], row["content_hash"]) == ("v3", "", "h3")
    assert row["chunk_options"] == {"a": 1} and row["parse_format"] == "markdown"


def test_full_docs_minimal_record_defaults(manager, admin_conn):
    ws = new_workspace()
    store = make_store("full_docs", ws)
    store.upsert({"doc": {"content": "only content"}})
    assert store.get_by_id("doc") == {
        "id": "doc",
        "content": "only content",
        "file_path": "",
        "sidecar_location": None,
        "parse_format": None,  # LightRAG inserts NULL explicitly, so the 'raw' default is unused
        "content_hash": None,
        "process_options": None,
        "chunk_options": {},
        "parse_engine": None,
    }
    with admin_conn.cursor() as cur:
        cur.execute(
            "UPDATE lightrag_doc_full SET content = NULL, doc_name = NULL, chunk_options = NULL "
            "WHERE workspace = %s",
            (ws,),
        )
    row = store.get_by_id("doc")
    assert (row["content"], row["file_path"], row["chunk_options"]) == ("", "", {})


def test_llm_cache_mapping(manager, admin_conn):
    ws = new_workspace()
    store = make_store("llm_response_cache", ws)
    store.upsert(
        {
            "full": record("llm_response_cache", 1),
            "bare": {"original_prompt": "p", "return": "r", "queryparam": {}},
        }
    )
    full = store.get_by_id("full")
    assert full["return"] == full["return_value"] == "answer 1"
    assert full["queryparam"] == {"mode": "local", "top_k": 1}
    assert set(full) == {
        "id",
        "original_prompt",
        "return_value",
        "return",
        "chunk_id",
        "cache_type",
        "queryparam",
        "create_time",
        "update_time",
    }
    bare = store.get_by_ids(["bare"])[0]
    # cache_type defaults to "extract"; an empty queryparam is stored as SQL NULL.
    assert without_times(bare) == {
        "id": "bare",
        "original_prompt": "p",
        "return_value": "r",
        "return": "r",
        "chunk_id": None,
        "cache_type": "extract",
        "queryparam": None,
    }
    with admin_conn.cursor() as cur:
        cur.execute(
            "SELECT queryparam IS NULL FROM lightrag_llm_cache WHERE workspace = %s AND id = %s",
            (ws, "bare"),
        )
        assert cur.fetchone()[0] is True


def test_text_chunk_json_defaults(manager, admin_conn):
    ws = new_workspace()
    store = make_store("text_chunks", ws)
    rec = {k: v for k, v in record("text_chunks", 1).items() if k not in ("heading", "sidecar")}
    rec["llm_cache_list"] = None  # LightRAG stores JSON null here, and reads it back as None
    store.upsert({"c": rec, "d": {**record("text_chunks", 2), "heading": None, "sidecar": ""}})
    c, d = store.get_by_ids(["c", "d"])
    assert (c["heading"], c["sidecar"], c["llm_cache_list"]) == ({}, {}, None)
    assert (d["heading"], d["sidecar"]) == ({}, {})
    with admin_conn.cursor() as cur:  # stored as LightRAG stores them: '{}' objects, JSON null
        cur.execute(
            "SELECT id, heading::text, sidecar::text, llm_cache_list::text "
            "FROM lightrag_doc_chunks WHERE workspace = %s ORDER BY id",
            (ws,),
        )
        assert cur.fetchall() == [("c", "{}", "{}", "null"), ("d", "{}", "{}", '["cache-2"]')]
    with admin_conn.cursor() as cur:  # non-object JSON reads as {} for heading / sidecar
        cur.execute(
            "UPDATE lightrag_doc_chunks SET heading = '[1]', sidecar = '\"s\"', "
            "llm_cache_list = NULL WHERE workspace = %s AND id = 'c'",
            (ws,),
        )
    c = store.get_by_id("c")
    assert (c["heading"], c["sidecar"], c["llm_cache_list"]) == ({}, {}, [])


# -- bad input: rejected before anything is written ------------------------------


@pytest.mark.parametrize(
    "namespace, bad",
    [
        ("full_docs", {"content": "abc\x00def"}),
        ("full_docs", {"content": "ok", "chunk_options": {"sep": "\x00"}}),
        ("full_docs", {"content": "ok", "chunk_options": {"k\x00": 1}}),
        ("text_chunks", {**record("text_chunks", 1), "heading": {"h": ["x\x00"]}}),
        ("llm_response_cache", {"original_prompt": "p", "return": "r\x00"}),
        ("full_entities", {"entity_names": ["a", "b\x00"], "count": 2}),
    ],
)
def test_nul_in_value_rejects_whole_batch(manager, admin_conn, namespace, bad):
    ws = new_workspace()
    store = make_store(namespace, ws)
    data = {f"good-{n}": record(namespace, n) for n in range(5)}
    data["bad"] = bad
    with pytest.raises(InvalidInput, match=r"NUL.*'bad'|'bad'.*NUL"):
        store.upsert(data)
    assert count_rows(admin_conn, namespace, ws) == 0


def test_nul_in_id_rejects_whole_batch(manager, admin_conn):
    ws = new_workspace()
    store = make_store("full_entities", ws)
    data = {"good": record("full_entities", 1), "b\x00d": record("full_entities", 2)}
    with pytest.raises(InvalidInput, match="NUL"):
        store.upsert(data)
    assert count_rows(admin_conn, "full_entities", ws) == 0
    with pytest.raises(InvalidInput, match="NUL"):
        store.get_by_id("b\x00d")


def test_long_ids(manager, admin_conn):
    ws = new_workspace()
    store = make_store("full_docs", ws)
    with pytest.raises(InvalidInput, match="256 characters long.*at most 255"):
        store.upsert({"ok": {"content": "x"}, "x" * 256: {"content": "y"}})
    assert count_rows(admin_conn, "full_docs", ws) == 0
    store.upsert({"x" * 255: {"content": "y"}})
    assert store.get_by_id("x" * 255)["content"] == "y"
    assert store.get_by_id("x" * 256) is None  # too long to exist: simply absent

    # LightRAG's entity_chunks / relation_chunks ids are VARCHAR(512), not 255.
    chunks = make_store("relation_chunks", ws)
    chunks.upsert({"r" * 512: record("relation_chunks", 1)})
    assert chunks.get_by_id("r" * 512)["chunk_ids"] == ["chunk-1", "chunk-x"]
    with pytest.raises(InvalidInput, match="513 characters long.*at most 512"):
        chunks.upsert({"r" * 513: record("relation_chunks", 1)})


@pytest.mark.parametrize(
    "namespace, rec, message",
    [
        ("text_chunks", {"content": "c"}, r"'k', field 'tokens' is missing"),
        ("text_chunks", {**record("text_chunks", 1), "tokens": "12"}, r"'tokens' must be an int"),
        ("text_chunks", {**record("text_chunks", 1), "tokens": True}, r"'tokens' must be an int"),
        ("text_chunks", {**record("text_chunks", 1), "tokens": 2**31}, "INTEGER"),
        ("full_docs", {"content": 42}, r"'k', field 'content' must be a string, got int"),
        ("full_docs", {"content": "c", "chunk_options": {"x": object()}}, "cannot be stored"),
        ("full_docs", {"content": "c", "chunk_options": {"x": float("nan")}}, "as JSON"),
        ("full_docs", {"content": "c", "parse_format": "p" * 33}, "at most 32"),
        ("full_entities", {"count": 1}, r"field 'entity_names' is missing"),
        ("llm_response_cache", {"return": "r"}, r"field 'original_prompt' is missing"),
        ("entity_chunks", ["not", "a", "dict"], r"'k' must be a dict, got list"),
    ],
)
def test_wrong_types_name_the_id_and_field(manager, admin_conn, namespace, rec, message):
    ws = new_workspace()
    store = make_store(namespace, ws)
    with pytest.raises(InvalidInput, match=message):
        store.upsert({"first": record(namespace, 1), "k": rec})
    assert count_rows(admin_conn, namespace, ws) == 0


def test_non_string_ids_are_rejected(manager):
    store = make_store("full_docs", new_workspace())
    with pytest.raises(InvalidInput, match="id must be a string"):
        store.upsert({1: {"content": "x"}})
    with pytest.raises(InvalidInput, match="must be strings"):
        store.get_by_ids(["a", 2])
    with pytest.raises(InvalidInput, match="must be strings"):
        store.delete([None])


def test_unknown_or_non_kv_namespace(manager):
    for namespace in ("chunks", "entities", "relationships", "doc_status"):
        with pytest.raises(InvalidInput, match="not a key-value table.*full_docs"):
            KVStore(namespace, "ws")
    with pytest.raises(InvalidInput, match="unknown LightRAG namespace"):
        KVStore("whatever", "ws")
    # LightRAG matches namespaces by suffix, so a prefixed namespace works.
    assert KVStore("prefix_text_chunks", "ws").table_name == "LIGHTRAG_DOC_CHUNKS"


# -- size, empties, hostile names, isolation --------------------------------------


def _count_chunks(monkeypatch) -> list[int]:
    """Record the size of every chunk the batch helper sends as one statement."""
    sizes: list[int] = []
    real = aperag_pg.batching.chunked

    def counting(rows, size):
        for chunk in real(rows, size):
            sizes.append(len(chunk))
            yield chunk

    monkeypatch.setattr(aperag_pg.batching, "chunked", counting)
    return sizes


def test_twenty_thousand_records_in_one_call_are_chunked(manager, admin_conn, monkeypatch):
    statements = _count_chunks(monkeypatch)
    ws = new_workspace()
    store = make_store("text_chunks", ws)
    data = {f"chunk-{n:05d}": record("text_chunks", n) for n in range(20_000)}
    store.upsert(data)

    assert sum(statements) == 20_000
    assert len(statements) == 40 and max(statements) == 500
    assert count_rows(admin_conn, "text_chunks", ws) == 20_000
    assert store.get_by_id("chunk-19999")["content"] == "chunk 19999"
    assert store.filter_keys(set(data) | {"chunk-20000"}) == {"chunk-20000"}
    store.delete(list(data)[:15_000])
    assert count_rows(admin_conn, "text_chunks", ws) == 5_000


def test_a_failing_chunk_rolls_back_earlier_chunks(manager, admin_conn, monkeypatch):
    ws = new_workspace()
    store = make_store("full_entities", ws)
    store.chunk_size = 10
    real = aperag_pg.batching.chunked

    def fail_third(rows, size):
        for number, chunk in enumerate(real(rows, size), 1):
            if number == 3:  # two chunks are already written in this transaction
                raise psycopg2.OperationalError("connection lost")
            yield chunk

    monkeypatch.setattr(aperag_pg.batching, "chunked", fail_third)
    with pytest.raises(psycopg2.OperationalError):
        store.upsert({f"e{n}": record("full_entities", n) for n in range(50)})
    assert count_rows(admin_conn, "full_entities", ws) == 0


def test_empty_inputs_run_no_query(manager, monkeypatch):
    store = make_store("full_docs", new_workspace())

    def no_connection():
        raise AssertionError("an empty input must not touch the database")

    monkeypatch.setattr(PostgreSQLSyncConnectionManager, "get_connection", no_connection)
    assert store.upsert({}) is None
    assert store.get_by_ids([]) == []
    assert store.delete([]) is None
    assert store.filter_keys(set()) == set()


def test_hostile_workspace_and_ids_round_trip(manager, admin_conn):
    ws = NASTY + uuid.uuid4().hex[:6]
    ids = [NASTY, "工作区🚀", "back\\slash", "semi;colon", "quote'\"", "%s %(x)s"]
    for namespace in ("full_docs", "llm_response_cache", "entity_chunks"):
        store = make_store(namespace, ws)
        data = {id_: record(namespace, n) for n, id_ in enumerate(ids)}
        store.upsert(data)
        assert [r["id"] for r in store.get_by_ids(ids)] == ids
        assert store.get_by_id(NASTY)["id"] == NASTY
        assert store.filter_keys(set(ids)) == set()
        assert count_rows(admin_conn, namespace, ws) == len(ids)
    with admin_conn.cursor() as cur:
        cur.execute("SELECT DISTINCT workspace FROM lightrag_doc_full WHERE workspace = %s", (ws,))
        assert cur.fetchone()[0] == ws
    docs = KVStore("full_docs", ws)
    docs.upsert({"t": {"content": NASTY, "file_path": "工作区🚀/\\x;'"}})
    assert docs.get_by_id("t")["content"] == NASTY
    assert docs.get_by_id("t")["file_path"] == "工作区🚀/\\x;'"


def test_workspace_isolation(manager, admin_conn):
    ws_a, ws_b = new_workspace(), new_workspace()
    for namespace in NAMESPACES:
        a, b = make_store(namespace, ws_a), make_store(namespace, ws_b)
        a.upsert({"same": record(namespace, 1), "only-a": record(namespace, 2)})
        b.upsert({"same": record(namespace, 3)})
        assert without_times(a.get_by_id("same")) == expected(
            namespace, "same", record(namespace, 1)
        )
        assert without_times(b.get_by_id("same")) == expected(
            namespace, "same", record(namespace, 3)
        )
        assert b.get_by_ids(["only-a"]) == [None]
        assert b.filter_keys({"same", "only-a"}) == {"only-a"}
        b.delete(["only-a"])
        assert a.get_by_id("only-a") is not None

        a.drop()
        assert a.is_empty() and not b.is_empty()
        assert without_times(b.get_by_id("same")) == expected(
            namespace, "same", record(namespace, 3)
        )


def test_drop_raises_database_errors(manager, admin_conn):
    schema = f"kv_{uuid.uuid4().hex[:8]}"
    PostgreSQLSyncConnectionManager.initialize(
        PostgreSQLSyncConnectionManager.settings().replace(schema=schema)
    )
    store = KVStore("full_docs", new_workspace())  # table never created in this schema
    with pytest.raises(psycopg2.errors.UndefinedTable):
        store.drop()


def test_ensure_tables_is_idempotent_and_uses_the_schema(manager, admin_conn):
    schema = f"kv_{uuid.uuid4().hex[:8]}"
    with admin_conn.cursor() as cur:
        cur.execute(f'CREATE SCHEMA "{schema}"')
    PostgreSQLSyncConnectionManager.initialize(
        PostgreSQLSyncConnectionManager.settings().replace(schema=schema)
    )
    for namespace in NAMESPACES:
        store = KVStore(namespace, new_workspace())
        store.ensure_tables()
        store.ensure_tables()
        store.upsert({"k": record(namespace, 1)})
    with admin_conn.cursor() as cur:
        cur.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY tablename", (schema,)
        )
        assert [r[0] for r in cur.fetchall()] == sorted(TABLES.values())
        cur.execute("SELECT count(*) FROM pg_indexes WHERE schemaname = %s", (schema,))
        assert cur.fetchone()[0] == 3 * len(TABLES)  # primary key + LightRAG's two indexes
        cur.execute(f'DROP SCHEMA "{schema}" CASCADE')


# -- the same tables as LightRAG 1.5.7's PGKVStorage, read and written both ways ----


def _lightrag_config(settings) -> dict[str, Any]:
    return {
        "host": settings.host,
        "port": settings.port,
        "user": settings.user,
        "password": settings.password,
        "database": settings.database,
        "workspace": None,
        "max_connections": 2,
        "enable_vector": False,
        "connection_retry_attempts": 1,
        "connection_retry_backoff": 0.0,
        "connection_retry_backoff_max": 0.0,
        "pool_close_timeout": 5.0,
    }


async def _with_lightrag(settings, work):
    """Run ``work(make_storage)`` against LightRAG's own PGKVStorage on ``settings``' database."""
    from lightrag.kg.postgres_impl import PGKVStorage, PostgreSQLDB

    db = PostgreSQLDB(_lightrag_config(settings))
    await db.initdb()
    try:
        await db.check_tables()

        def make_storage(namespace: str, workspace: str) -> PGKVStorage:
            return PGKVStorage(
                namespace=namespace,
                workspace=workspace,
                global_config={},
                embedding_func=None,
                db=db,
            )

        return await work(make_storage)
    finally:
        await db.pool.close()


@pytest.fixture(scope="module")
def lightrag_database(pg_server) -> Iterator[Any]:
    """A fresh database whose KV tables were created by LightRAG 1.5.7 itself."""
    name = f"kv_lightrag_{uuid.uuid4().hex[:8]}"
    create_database(pg_server.admin, name)
    settings = pg_server.admin.replace(
        database=name, min_connections=1, max_connections=4, pool_timeout=5.0
    )

    async def nothing(_make):
        return None

    asyncio.run(_with_lightrag(settings, nothing))
    yield settings
    PostgreSQLSyncConnectionManager.close()
    drop_database(pg_server.admin, name)


def _definition(conn, schema: str) -> tuple[list[tuple], list[tuple]]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT table_name, column_name, ordinal_position, data_type, "
            "character_maximum_length, datetime_precision, column_default, is_nullable "
            "FROM information_schema.columns WHERE table_schema = %s AND table_name = ANY(%s) "
            "ORDER BY table_name, ordinal_position",
            (schema, list(TABLES.values())),
        )
        columns = cur.fetchall()
        cur.execute(
            "SELECT tablename, indexname, replace(indexdef, %s, '') FROM pg_indexes "
            "WHERE schemaname = %s AND tablename = ANY(%s) ORDER BY indexname",
            (f" {schema}.", schema, list(TABLES.values())),
        )
        return columns, cur.fetchall()


def test_ddl_and_indexes_match_lightrag(lightrag_database):
    conn = psycopg2.connect(**lightrag_database.connect_kwargs())
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE SCHEMA ours")
        PostgreSQLSyncConnectionManager.initialize(lightrag_database.replace(schema="ours"))
        for namespace in NAMESPACES:
            KVStore(namespace, "w").ensure_tables()
        ours, theirs = _definition(conn, "ours"), _definition(conn, "public")
    finally:
        conn.close()
    assert len(theirs[0]) > 40 and len(theirs[1]) == 3 * len(TABLES)
    assert ours == theirs


def _samples(namespace: str) -> dict[str, dict[str, Any]]:
    data = {f"id-{n}": record(namespace, n) for n in range(3)}
    data[NASTY] = record(namespace, 9)
    if namespace == "full_docs":
        data["bare"] = {"content": "x"}
    if namespace == "text_chunks":
        data["bare"] = {
            **{k: v for k, v in record(namespace, 4).items() if k not in ("heading", "sidecar")},
            "llm_cache_list": None,
        }
    if namespace == "llm_response_cache":
        data["bare"] = {"original_prompt": "p", "return": "r", "queryparam": {}}
    return data


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_same_rows_as_lightrag_both_ways(lightrag_database, namespace):
    PostgreSQLSyncConnectionManager.initialize(lightrag_database)
    ws_theirs, ws_ours = new_workspace(), new_workspace()
    data = _samples(namespace)
    ids = [*data, "missing"]
    ours_w_ours = KVStore(namespace, ws_ours)
    ours_w_ours.upsert(data)
    ours_w_theirs = KVStore(namespace, ws_theirs)

    async def work(make_storage):
        theirs = make_storage(namespace, ws_theirs)
        await theirs.upsert(data)
        theirs_w_ours = make_storage(namespace, ws_ours)
        return {
            "their rows": [await theirs.get_by_id(i) for i in ids],
            "their batch": await theirs.get_by_ids(ids),
            "their view of ours": await theirs_w_ours.get_by_ids(ids),
            "their filter": await theirs.filter_keys(set(ids)),
        }

    lightrag = asyncio.run(_with_lightrag(lightrag_database, work))
    # LightRAG's reader on our rows, and ours on LightRAG's rows, give identical dicts.
    assert [ours_w_theirs.get_by_id(i) for i in ids] == lightrag["their rows"]
    assert ours_w_theirs.get_by_ids(ids) == lightrag["their batch"]
    assert ours_w_ours.get_by_ids(ids) == lightrag["their view of ours"]
    assert ours_w_theirs.filter_keys(set(ids)) == lightrag["their filter"] == {"missing"}
    assert lightrag["their rows"][-1] is None and lightrag["their rows"][0] is not None
