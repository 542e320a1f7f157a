"""Bad input to PGSyncStore: a clear error naming the problem, and nothing written; hostile
names and odd filter operands are data, never SQL."""

from __future__ import annotations

import math
import os

import psycopg2
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from langgraph.store.base import InvalidNamespaceError, PutOp

from aperag_pg.errors import InvalidInput, VectorDimensionMismatch
from aperag_pg.memory import PGSyncStore

from .memory_support import count_rows

HOSTILE = [
    "'; DROP TABLE store; --",
    'double "quotes" and \\ backslashes',
    "100% _under_scores_",
    "tab\tnew\nline",
    "ünïcødé ✓ 🦜",
    "$1 %s %(x)s {schema}",
    "x" * 5000,
]


@pytest.fixture
def store(schema) -> PGSyncStore:
    store = PGSyncStore(schema=schema)
    store.setup()
    return store


def test_nul_characters_are_refused_and_the_batch_writes_nothing(store, schema, admin_conn):
    good = PutOp(("docs",), "good", {"text": "fine"})
    for bad, message in (
        (PutOp(("docs",), "bad", {"text": "a\x00b"}), "NUL"),
        (PutOp(("docs",), "b\x00ad", {"text": "x"}), "NUL"),
        (PutOp(("docs",), "bad", {"k\x00": "x"}), "NUL"),
        (PutOp(("docs",), "bad", {"n": math.nan}), "NaN"),
        (PutOp(("docs",), "bad", {"x": object()}), "JSON"),
    ):
        with pytest.raises(InvalidInput, match=message):
            store.batch([good, bad])
    with pytest.raises(InvalidNamespaceError, match="NUL"):
        store.batch([good, PutOp(("do\x00cs",), "bad", {"text": "x"})])
    assert count_rows(admin_conn, schema, "store") == 0


@pytest.mark.parametrize(
    "put,message",
    [
        (PutOp(("docs",), "k", ["not", "a", "dict"]), "is a list"),
        (PutOp(("docs",), 7, {"v": 1}), "use a string"),
        (PutOp(("docs",), "k", {"v": 1}, ttl=-1), "positive number of minutes"),
        (PutOp(("docs",), "k", {"v": 1}, ttl=math.inf), "positive number of minutes"),
        (PutOp(("docs",), "k", {"v": 1}, ttl="5"), "positive number of minutes"),
        (PutOp(("docs",), "k", {"v": 1}, index="text"), "list of field paths"),
    ],
)
def test_malformed_puts_name_the_fix(store, put, message):
    with pytest.raises(InvalidInput, match=message):
        store.batch([put])


@pytest.mark.parametrize(
    "filter,message",
    [
        ({"n": {"$gt": None}}, "finite number, a string or a boolean"),
        ({"n": {"$gt": [1]}}, "finite number, a string or a boolean"),
        ({"n": {"$lt": math.nan}}, "finite number, a string or a boolean"),
        ({"n": {"$regex": "x"}}, "use one of"),
        ({"": 1}, "non-empty string"),
        ({"n": math.inf}, "NaN or infinity|JSON"),
        (["n", 1], "must be a dict"),
    ],
)
def test_filters_with_odd_operands_name_the_fix(store, filter, message):
    with pytest.raises(InvalidInput, match=message):
        store.search(("docs",), filter=filter)


def test_comparisons_only_match_values_of_their_json_type(store):
    values = {"num": 5, "text": "5", "flag": True, "none": None, "list": [5]}
    for key, value in values.items():
        store.put(("docs",), key, {"v": value})
    assert {i.key for i in store.search(("docs",), filter={"v": {"$gte": 1}})} == {"num"}
    assert {i.key for i in store.search(("docs",), filter={"v": {"$gte": "1"}})} == {"text"}
    assert {i.key for i in store.search(("docs",), filter={"v": {"$gt": False}})} == {"flag"}
    assert {i.key for i in store.search(("docs",), filter={"v": {"$ne": 5}})} == {
        "text",
        "flag",
        "none",
        "list",
    }


@pytest.mark.parametrize("page", [{"limit": -1}, {"offset": -5}, {"limit": 2.5}])
def test_bad_pages_are_refused(store, page):
    with pytest.raises(InvalidInput, match="use an integer from 0 to"):
        store.search(("docs",), **page)
    with pytest.raises(InvalidInput, match="use an integer from 0 to"):
        store.list_namespaces(**page)


def test_hostile_names_and_keys_are_stored_as_given(store):
    for n, text in enumerate(HOSTILE):
        store.put(("hostile", text[:200]), text, {"text": text, "n": n})
    for text in HOSTILE:
        assert store.get(("hostile", text[:200]), text).value["text"] == text
        found = store.search(("hostile", text[:200]))
        assert [item.key for item in found] == [text]
    listed = store.list_namespaces(prefix=("hostile",))
    assert sorted(listed) == sorted(("hostile", text[:200]) for text in HOSTILE)
    assert store.search(("hostile", "100_ _under_scores_")) == []  # "_" is no wildcard


LABEL = st.text(
    st.characters(blacklist_characters=".\x00", blacklist_categories=("Cs",)), min_size=1
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(namespace=st.lists(LABEL, min_size=1, max_size=4), key=LABEL.filter(lambda k: True))
def test_any_valid_namespace_and_key_round_trip(store, namespace, key):
    namespace = ("prop", *namespace)
    store.put(namespace, key, {"key": key})
    assert store.get(namespace, key).value == {"key": key}
    assert namespace in store.list_namespaces(prefix=namespace)
    assert [item.key for item in store.search(namespace)] == [key]
    store.delete(namespace, key)


def test_an_embedding_of_the_wrong_size_writes_nothing(schema, admin_conn):
    def short(texts):
        return [[0.5] * 3 for _ in texts]

    store = PGSyncStore(schema=schema, index={"dims": 4, "embed": short})
    store.setup()
    with pytest.raises(VectorDimensionMismatch, match="index dims is 4"):
        store.put(("docs",), "k", {"text": "x"})
    assert count_rows(admin_conn, schema, "store") == 0


def test_an_embedding_function_that_drops_texts_writes_nothing(schema, admin_conn):
    store = PGSyncStore(schema=schema, index={"dims": 2, "embed": lambda texts: [[1.0, 0.5]]})
    store.setup()
    with pytest.raises(InvalidInput, match="returned 1 vectors for 2 texts"):
        store.batch([PutOp(("docs",), "a", {"text": "x"}), PutOp(("docs",), "b", {"text": "y"})])
    assert count_rows(admin_conn, schema, "store") == 0


def test_an_embedding_with_nan_writes_nothing(schema, admin_conn):
    store = PGSyncStore(
        schema=schema, index={"dims": 2, "embed": lambda t: [[math.nan, 1]] * len(t)}
    )
    store.setup()
    with pytest.raises(InvalidInput, match="NaN or infinity"):
        store.put(("docs",), "k", {"text": "x"})
    assert count_rows(admin_conn, schema, "store") == 0


def test_a_huge_batch_is_written_whole(schema, admin_conn):
    def embed(texts):
        return [[float(len(t)), 1.0, 0.5, 0.25] for t in texts]

    index = {"dims": 4, "embed": embed, "ann_index_config": {"kind": "flat"}}
    store = PGSyncStore(schema=schema, index=index)
    store.setup()
    store.batch(
        PutOp(("bulk", f"g{i % 50}"), f"k{i}", {"text": f"item {i}", "n": i}) for i in range(20_000)
    )
    assert count_rows(admin_conn, schema, "store") == 20_000
    assert count_rows(admin_conn, schema, "store_vectors") == 20_000
    assert store.get(("bulk", "g7"), "k19957").value == {"text": "item 19957", "n": 19957}


def test_a_key_too_large_for_the_index_names_the_limit(store, schema, admin_conn):
    """A key past what a btree entry holds (about 2.7 kB, incompressible) is refused by the
    server, named as too large, and nothing of the batch is written."""
    huge_key = os.urandom(8_000).hex()
    with pytest.raises(InvalidInput, match="too large for PostgreSQL.*index row"):
        store.batch([PutOp(("docs",), "small", {"v": 1}), PutOp(("docs",), huge_key, {"v": 2})])
    assert count_rows(admin_conn, schema, "store") == 0


def test_sessions_killed_between_calls_cost_at_most_one_retriable_error(store, schema, admin_conn):
    """The server ends every pooled session (a restart, a failover): the next call fails
    with an OperationalError, which DatabaseTask retries, or succeeds; the one after
    succeeds, and a failed batch wrote nothing."""
    store.put(("docs",), "before", {"v": 0})
    with admin_conn.cursor() as cur:
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (store.manager.settings().pool_application_name(os.getpid()),),
        )
        assert cur.fetchall(), "the pool had no session to end"
    try:
        store.batch([PutOp(("docs",), "a", {"v": 1}), PutOp(("docs",), "b", {"v": 2})])
        first_failed = False
    except psycopg2.OperationalError:
        first_failed = True
    written = count_rows(admin_conn, schema, "store")
    assert written == (1 if first_failed else 3)
    store.batch([PutOp(("docs",), "a", {"v": 1}), PutOp(("docs",), "b", {"v": 2})])
    assert store.get(("docs",), "b").value == {"v": 2}


NAMESPACE_LABEL = st.sampled_from(["a", "a-b", "a b", "ab", "a!", "b", "users", "u1", "u1-x"])


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    namespaces=st.lists(
        st.lists(NAMESPACE_LABEL, min_size=1, max_size=4).map(tuple), min_size=1, max_size=12
    ),
    max_depth=st.one_of(st.none(), st.integers(1, 4)),
    prefix=st.lists(st.sampled_from(["a", "u1", "*"]), max_size=2).map(tuple),
    suffix=st.lists(st.sampled_from(["a", "b", "*"]), max_size=2).map(tuple),
    limit=st.integers(1, 6),
    offset=st.integers(0, 4),
)
@example(  # a walk stopped early meets ("a-b",) before ("a", "a"): it reads on
    namespaces=[("a", "a"), ("a-b",)], max_depth=1, prefix=(), suffix=(), limit=1, offset=0
)
def test_list_namespaces_equals_the_definition(
    store, namespaces, max_depth, prefix, suffix, limit, offset
):
    """Against InMemoryStore's definition, on labels that are prefixes of each other
    followed by characters sorting before the separator ("a", "a-b", "a b"): the index
    walk's subtree skips never drop or repeat a namespace."""
    store.batch([PutOp(ns, "k", None) for ns in store.list_namespaces(limit=1000)])
    store.batch([PutOp(ns, "k", {"v": 1}) for ns in namespaces])

    def matches(ns: tuple, pattern: tuple, from_end: bool) -> bool:
        if len(ns) < len(pattern):
            return False
        part = ns[len(ns) - len(pattern) :] if from_end else ns[: len(pattern)]
        return all(p in ("*", n) for n, p in zip(part, pattern, strict=True))

    kept = {
        ns[:max_depth] if max_depth else ns
        for ns in set(namespaces)
        if matches(ns, prefix, False) and matches(ns, suffix, True)
    }
    expected = sorted(kept, key=".".join)[offset : offset + limit]
    listed = store.list_namespaces(
        prefix=prefix or None,
        suffix=suffix or None,
        max_depth=max_depth,
        limit=limit,
        offset=offset,
    )
    assert listed == expected
