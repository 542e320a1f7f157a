"""Numbers PostgreSQL cannot hold are refused before the server sees them, with
InvalidInput naming the bound; the largest allowed ones work."""

from __future__ import annotations

import re

import psycopg2
import pytest
from langgraph.store.base import ListNamespacesOp, PutOp
from psycopg2 import sql

from aperag_pg.errors import InvalidInput
from aperag_pg.memory import PGSyncStore
from aperag_pg.memory.store import BIGINT_MAX, MAX_DEPTH, MAX_TTL_MINUTES

from .memory_support import LetterEmbeddings, index_config, row_ttl, store_in


@pytest.fixture
def store(schema) -> PGSyncStore:
    return store_in(
        schema,
        index=index_config(LetterEmbeddings(), fields=["text"]),
        ttl={"refresh_on_read": True},
    )


def test_the_longest_ttl_is_kept_and_refreshed(store, schema, admin_conn):
    """About 190,000 years: now() plus that is still a timestamp PostgreSQL can hold."""
    store.put(("ttl",), "long", {"text": "x"}, ttl=MAX_TTL_MINUTES)
    assert expiry_year(admin_conn, schema) > 150_000
    assert store.get(("ttl",), "long").value == {"text": "x"}  # refreshed
    assert expiry_year(admin_conn, schema) > 150_000
    assert [i.key for i in store.search(("ttl",), query="x")] == ["long"]
    assert store.put(("ttl",), "long", {"text": "y"}, ttl=MAX_TTL_MINUTES) is None


def expiry_year(admin_conn, schema: str) -> int:
    """The year the item expires in (past Python's datetime, which ends in 9999)."""
    with admin_conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT extract(year FROM expires_at), ttl_minutes FROM {}").format(
                sql.Identifier(schema, "store")
            )
        )
        year, minutes = cur.fetchone()
    assert minutes == MAX_TTL_MINUTES
    return year


@pytest.mark.parametrize(
    "ttl",
    [MAX_TTL_MINUTES * (1 + 1e-9), 1e12, 1e300, 10**400, 2**63],
    ids=["just-above", "1e12", "1e300", "10**400", "2**63"],
)
def test_a_ttl_beyond_the_timestamp_range_names_the_bound(store, schema, admin_conn, ttl):
    """It was a raw DatetimeFieldOverflow (or an OverflowError for a huge int)."""
    with pytest.raises(InvalidInput, match=re.escape(f"at most {MAX_TTL_MINUTES:g}")):
        store.batch([PutOp(("ttl",), "ok", {"text": "x"}), PutOp(("ttl",), "k", {"v": 1}, ttl=ttl)])
    assert row_ttl(admin_conn, schema, ("ttl",), "ok") is None  # nothing written


def test_a_default_ttl_beyond_the_range_names_the_bound(schema):
    store = store_in(schema, ttl={"default_ttl": 1e12})
    with pytest.raises(InvalidInput, match="at most"):
        store.put(("ttl",), "k", {"v": 1})


@pytest.mark.parametrize("query", [None, "x"], ids=["plain", "vector"])
def test_the_largest_pages_work(store, query):
    store.put(("p",), "k", {"text": "x"})
    assert store.search(("p",), query=query, offset=BIGINT_MAX) == []
    assert [i.key for i in store.search(("p",), query=query, limit=BIGINT_MAX)] == ["k"]
    assert store.search(("p",), query=query, limit=BIGINT_MAX, offset=BIGINT_MAX) == []
    assert store.list_namespaces(limit=BIGINT_MAX) == [("p",)]
    assert store.list_namespaces(limit=BIGINT_MAX, offset=BIGINT_MAX) == []
    assert store.list_namespaces(max_depth=MAX_DEPTH) == [("p",)]


@pytest.mark.parametrize("name", ["limit", "offset"])
@pytest.mark.parametrize("query", [None, "x"], ids=["plain", "vector"])
def test_a_page_beyond_bigint_names_the_bound(store, name, query):
    """offset=2**63 was a raw NumericValueOutOfRange."""
    with pytest.raises(InvalidInput, match=f"search {name} is {2**63}; use an integer from 0 to"):
        store.search(("p",), query=query, **{name: 2**63})
    with pytest.raises(InvalidInput, match=f"list_namespaces {name} is {2**63}; use an integer"):
        store.list_namespaces(**{name: 2**63})


def test_a_max_depth_beyond_integer_names_the_bound(store):
    with pytest.raises(InvalidInput, match=f"max_depth is {MAX_DEPTH + 1}; use a positive"):
        store.batch(
            [ListNamespacesOp(match_conditions=(), max_depth=MAX_DEPTH + 1, limit=10, offset=0)]
        )


def test_the_bounds_are_postgresqls(admin_conn):
    """BIGINT_MAX is bigint's largest, MAX_DEPTH integer's, and a TTL of MAX_TTL_MINUTES
    from now fits an interval and a timestamp; one step further does not."""
    expiry = "now() + make_interval(secs => %s::float8 * 60)"
    with admin_conn.cursor() as cur:
        cur.execute(
            f"SELECT %s::bigint, %s::integer, {expiry} > now()",
            (BIGINT_MAX, MAX_DEPTH, MAX_TTL_MINUTES),
        )
        assert cur.fetchone() == (BIGINT_MAX, MAX_DEPTH, True)
        for beyond, value in (
            ("%s::bigint", BIGINT_MAX + 1),
            ("%s::integer", MAX_DEPTH + 1),
            (expiry, 2 * MAX_TTL_MINUTES),
        ):
            with pytest.raises(psycopg2.DataError):
                cur.execute(f"SELECT {beyond}", (value,))
