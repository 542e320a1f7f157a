"""PGSyncStore and langgraph-checkpoint-postgres 3.2.0's PostgresStore / AsyncPostgresStore
on the same tables: each reads what the other wrote, and vector scores agree.

Upstream names its tables without a schema, so it is pointed at the test's schema through
its connection's search_path."""

from __future__ import annotations

import asyncio

import pytest
from langgraph.store.postgres import AsyncPostgresStore

from aperag_pg.memory import PGSyncStore

from .checkpoint_support import psycopg3_conninfo
from .memory_support import upstream_store_in

WORDS = ["apple pie", "banana bread", "cherry tart", "apple crumble", "bread and butter"]


def letter_embed(texts: list[str]) -> list[list[float]]:
    """Deterministic 8-dimensional embeddings: letter counts in eight buckets."""
    vectors = []
    for text in texts:
        vector = [0.0] * 8
        for char in text.lower():
            if char.isalpha():
                vector[(ord(char) - ord("a")) % 8] += 1.0
        vector[0] += 0.5  # never the zero vector (cosine would be undefined)
        vectors.append(vector)
    return vectors


def index_config(distance: str = "cosine", vector_type: str = "vector", kind: str = "hnsw"):
    return {
        "dims": 8,
        "embed": letter_embed,
        "fields": ["text"],
        "distance_type": distance,
        "ann_index_config": {"kind": kind, "vector_type": vector_type},
    }


def upstream_conninfo(base_settings, schema: str) -> str:
    return psycopg3_conninfo(base_settings, options=f"-c search_path={schema},public")


def versions(admin_conn, schema: str, table: str) -> list[int]:
    with admin_conn.cursor() as cur:
        cur.execute(f'SELECT v FROM "{schema}".{table} ORDER BY v')
        return [v for (v,) in cur.fetchall()]


def column_type(admin_conn, schema: str, table: str, column: str) -> str:
    with admin_conn.cursor() as cur:
        cur.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = to_regclass(%s) AND attname = %s",
            (f'"{schema}".{table}', column),
        )
        return cur.fetchone()[0]


def test_upstream_finds_our_tables_up_to_date(schema, admin_conn, base_settings):
    """Our setup records upstream's versions: PostgresStore.setup() then has nothing to do."""
    PGSyncStore(schema=schema, index=index_config()).setup()
    assert versions(admin_conn, schema, "store_migrations") == [0, 1, 2, 3]
    assert versions(admin_conn, schema, "vector_migrations") == [0, 1, 2]
    with upstream_store_in(base_settings, schema, index=index_config()):
        pass
    assert versions(admin_conn, schema, "store_migrations") == [0, 1, 2, 3]
    assert versions(admin_conn, schema, "vector_migrations") == [0, 1, 2]


def test_tables_made_by_upstream_take_fractional_ttls(schema, admin_conn, base_settings):
    """On tables PostgresStore made, our setup widens ttl_minutes, adds no version, and
    PostgresStore keeps working on them (TTL refresh included)."""
    with upstream_store_in(base_settings, schema, ttl={"default_ttl": 2}) as theirs:
        theirs.put(("n",), "before", {"v": 1})
        assert column_type(admin_conn, schema, "store", "ttl_minutes") == "integer"
        ours = PGSyncStore(schema=schema, ttl={"default_ttl": 0.5})
        ours.setup()
        assert column_type(admin_conn, schema, "store", "ttl_minutes") == ("double precision")
        assert versions(admin_conn, schema, "store_migrations") == [0, 1, 2, 3]
        ours.put(("n",), "ours", {"v": 2})
        theirs.put(("n",), "theirs", {"v": 3}, ttl=1.5)
        assert theirs.get(("n",), "ours").value == {"v": 2}  # refreshes: ttl read back
        assert ours.get(("n",), "before").value == {"v": 1}
        with admin_conn.cursor() as cur:
            cur.execute(
                f"SELECT key, ttl_minutes, round(extract(epoch FROM expires_at - updated_at)) "
                f'FROM "{schema}".store ORDER BY key'
            )
            rows = {key: (ttl, seconds) for key, ttl, seconds in cur.fetchall()}
        assert rows["ours"] == (0.5, 30)
        assert rows["theirs"] == (1.5, 90)


@pytest.mark.parametrize(
    "distance,vector_type,kind",
    [
        ("cosine", "vector", "hnsw"),
        ("l2", "vector", "ivfflat"),
        ("inner_product", "vector", "flat"),
        ("cosine", "halfvec", "hnsw"),
    ],
)
def test_each_side_reads_the_others_items_and_scores_agree(
    schema, base_settings, distance, vector_type, kind
):
    config = index_config(distance, vector_type, kind)
    ours = PGSyncStore(schema=schema, index=config)
    with upstream_store_in(base_settings, schema, index=config) as theirs:
        ours.setup()
        for n, text in enumerate(WORDS):
            writer = ours if n % 2 else theirs
            writer.put(("docs", f"shelf{n % 2}"), f"d{n}", {"text": text, "n": n})
        for query in ("apple", "bread", "tart"):
            mine = ours.search(("docs",), query=query, limit=5)
            upstreams = theirs.search(("docs",), query=query, limit=5)
            assert [(i.namespace, i.key, i.value) for i in mine] == [
                (i.namespace, i.key, i.value) for i in upstreams
            ]
            assert [i.score for i in mine] == ([i.score for i in upstreams])
        for n in range(len(WORDS)):
            namespace = ("docs", f"shelf{n % 2}")
            assert ours.get(namespace, f"d{n}").value == theirs.get(namespace, f"d{n}").value
        assert ours.list_namespaces() == theirs.list_namespaces()


def test_async_upstream_reads_what_we_wrote(schema, base_settings):
    ours = PGSyncStore(schema=schema, index=index_config())
    ours.setup()
    ours.put(("users", "u1"), "fav", {"text": "apple pie", "rank": 2})
    ours.put(("users", "u1"), "other", {"text": "cherry tart", "rank": 10})

    async def read() -> tuple:
        async with AsyncPostgresStore.from_conn_string(
            upstream_conninfo(base_settings, schema), index=index_config()
        ) as theirs:
            item = await theirs.aget(("users", "u1"), "fav")
            found = await theirs.asearch(("users",), query="apple", limit=1)
            await theirs.aput(("users", "u2"), "fav", {"text": "banana bread", "rank": 1})
            return item, found

    item, found = asyncio.run(read())
    assert item.value == {"text": "apple pie", "rank": 2}
    assert [i.key for i in found] == ["fav"]
    assert ours.get(("users", "u2"), "fav").value == {"text": "banana bread", "rank": 1}
    assert [i.key for i in ours.search(("users",), query="banana", limit=1)] == ["fav"]
    assert ours.search(("users",), query="banana", limit=1)[0].namespace == ("users", "u2")
