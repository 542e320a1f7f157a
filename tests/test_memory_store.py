"""PGSyncStore, the LangGraph long-term memory store on the worker pool, against what
users of langgraph-checkpoint-postgres' PostgresStore rely on.

Most tests run on both stores (``make_store`` is parametrised), so a failure on
PGSyncStore alone is a drop-in difference; the tests marked "ours" assert what PGSyncStore
does on purpose better: numeric and boolean range filters, dotted filter keys, deep
vector pages, fractional TTLs, byte-ordered namespace listings. Each test has a schema of
its own. TTL tests never sleep: they use TTLs of milliseconds and wait for the server's
clock to pass the row's expires_at.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from langgraph.store.base import (
    GetOp,
    InvalidNamespaceError,
    Item,
    ListNamespacesOp,
    MatchCondition,
    PutOp,
    SearchOp,
)
from psycopg2 import sql

from .memory_support import (
    IMPLS,
    OURS,
    VECTOR_CONFIGS,
    LetterEmbeddings,
    StoreFactory,
    count_rows,
    index_config,
    row_ttl,
    server_now,
    similarity,
    upstream_store_in,
    wait_for_clock_tick,
    wait_until_expired,
)

MS_TTL = 0.001  # minutes: 60 ms, expired as soon as the server's clock passes it


@pytest.fixture(params=IMPLS)
def make_store(request, schema, base_settings):
    """Builds stores of one implementation on the test's schema: ``make_store(index=...,
    ttl=...)``."""
    factory = StoreFactory(request.param, schema, base_settings)
    yield factory
    factory.close()


@pytest.fixture
def make_ours(schema, base_settings):
    factory = StoreFactory(OURS, schema, base_settings)
    yield factory
    factory.close()


@pytest.fixture
def emb() -> LetterEmbeddings:
    return LetterEmbeddings()


def keys(items) -> list[str]:
    return [i.key for i in items]


def key_set(items) -> set[str]:
    return {i.key for i in items}


# -- items and batches -------------------------------------------------------------------


def test_put_get_update_delete(make_store, admin_conn):
    """An item reads back as written; a put replaces the whole value and moves
    updated_at, not created_at; a delete removes it, and deleting twice is harmless."""
    store = make_store()
    ns = ("users", "u1", "notes")
    value = {"text": "hello", "n": 1, "f": 1.5, "ok": True, "none": None, "l": [1, "a"]}
    store.put(ns, "n1", value)
    item = store.get(ns, "n1")
    assert isinstance(item, Item)
    assert (item.namespace, item.key, item.value) == (ns, "n1", value)
    assert item.created_at == item.updated_at

    wait_for_clock_tick(admin_conn, item.updated_at)
    store.put(ns, "n1", {"text": "changed"})
    changed = store.get(ns, "n1")
    assert changed.value == {"text": "changed"}
    assert changed.created_at == item.created_at
    assert changed.updated_at > item.updated_at

    assert store.get(("users", "u1"), "n1") is None  # the parent namespace is another one
    assert store.get(ns + ("deeper",), "n1") is None
    assert store.get(ns, "n2") is None
    store.delete(ns, "n1")
    assert store.get(ns, "n1") is None
    store.delete(ns, "n1")
    assert store.search(("users",)) == []


def test_batch_results_follow_the_ops_order(make_store):
    """batch() answers each op at its own position, whatever the mix of op types: an
    Item or None for a get, None for a put or delete, a list for a search or listing."""
    store = make_store()
    store.put(("test", "foo"), "k1", {"data": "v1"})
    store.put(("test", "bar"), "k2", {"data": "v2"})
    store.put(("test", "bar"), "gone", {"data": "x"})

    results = store.batch(
        [
            GetOp(("test", "foo"), "k1"),
            PutOp(("test", "baz"), "k3", {"data": "v3"}),
            SearchOp(("test",), filter={"data": "v1"}),
            ListNamespacesOp(match_conditions=(MatchCondition("prefix", ("test",)),)),
            GetOp(("test",), "k9"),
            PutOp(("test", "bar"), "gone", None),
            GetOp(("test", "bar"), "k2"),
        ]
    )
    assert len(results) == 7
    assert results[0].value == {"data": "v1"} and results[0].key == "k1"
    assert results[1] is None
    assert keys(results[2]) == ["k1"]
    assert {("test", "foo"), ("test", "bar")} <= set(results[3])
    assert results[4] is None
    assert results[5] is None
    assert results[6].value == {"data": "v2"}
    assert store.get(("test", "baz"), "k3").value == {"data": "v3"}
    assert store.get(("test", "bar"), "gone") is None

    again = store.batch(
        [
            SearchOp(("test",), limit=10),
            GetOp(("test", "baz"), "k3"),
            ListNamespacesOp(max_depth=1),
            PutOp(("test",), "k4", {"data": "v4"}),
            GetOp(("test", "foo"), "k1"),
        ]
    )
    assert key_set(again[0]) == {"k1", "k2", "k3"}
    assert again[1].value == {"data": "v3"}
    assert again[2] == [("test",)]
    assert again[3] is None
    assert again[4].key == "k1"
    assert store.get(("test",), "k4").value == {"data": "v4"}


# -- namespaces --------------------------------------------------------------------------


def test_list_namespaces_prefix_suffix_depth_and_pages(make_store):
    """list_namespaces filters by prefix and suffix, truncates to max_depth (each
    truncated namespace once), and its limit/offset pages add up to the whole list."""
    store = make_store()
    namespaces = [
        ("test", "documents", "public"),
        ("test", "documents", "private"),
        ("test", "images", "public"),
        ("test", "images", "private"),
        ("prod", "documents", "public"),
        ("prod", "documents", "private"),
    ]
    for ns in namespaces:
        store.put(ns, "k", {"v": 1})
    store.put(namespaces[0], "k2", {"v": 2})  # a second item doesn't list the namespace twice

    everything = store.list_namespaces()
    assert sorted(everything) == sorted(namespaces)
    assert set(store.list_namespaces(prefix=("test",))) == set(namespaces[:4])
    assert set(store.list_namespaces(suffix=("public",))) == {
        ns for ns in namespaces if ns[-1] == "public"
    }
    assert store.list_namespaces(prefix=("test",), suffix=("private",)) == sorted(
        [("test", "documents", "private"), ("test", "images", "private")]
    )
    assert sorted(store.list_namespaces(max_depth=2)) == [
        ("prod", "documents"),
        ("test", "documents"),
        ("test", "images"),
    ]
    assert store.list_namespaces(prefix=("prod",), max_depth=1) == [("prod",)]
    assert store.list_namespaces(max_depth=5) == everything

    pages = [store.list_namespaces(limit=4, offset=o) for o in (0, 4, 8)]
    assert [len(p) for p in pages] == [4, 2, 0]
    assert pages[0] + pages[1] == everything
    assert store.list_namespaces(prefix=("nothing",)) == []


def test_namespace_matching_stops_at_segment_boundaries(make_store):
    """A prefix or suffix matches whole labels: ("foo",) is not a prefix of ("foobar",),
    ("alice",) not a suffix of ("malice",); "*" stands for exactly one label; a search
    with the empty prefix sees everything."""
    store = make_store()
    for ns in [
        ("foo",),
        ("foo", "child"),
        ("foo", "child", "deep"),
        ("foobar",),
        ("foobar", "baz"),
        ("foo2",),
        ("uid", "users", "alice"),
        ("uid", "users", "malice"),
        ("uid", "a", "b", "alice"),
    ]:
        store.put(ns, "k", {"v": 1})

    def searched(prefix):
        return {i.namespace for i in store.search(prefix, limit=100)}

    assert searched(("foo",)) == {("foo",), ("foo", "child"), ("foo", "child", "deep")}
    assert searched(("foobar",)) == {("foobar",), ("foobar", "baz")}
    assert searched(("foo", "child")) == {("foo", "child"), ("foo", "child", "deep")}
    assert searched(("fo",)) == set()
    assert len(searched(())) == 9

    def listed(**kw):
        return set(store.list_namespaces(limit=100, **kw))

    assert listed(prefix=("foo",)) == {("foo",), ("foo", "child"), ("foo", "child", "deep")}
    assert listed(suffix=("alice",)) == {("uid", "users", "alice"), ("uid", "a", "b", "alice")}
    assert listed(prefix=("uid", "*", "alice")) == {("uid", "users", "alice")}
    assert listed(suffix=("*", "alice")) == {("uid", "users", "alice"), ("uid", "a", "b", "alice")}
    assert listed(prefix=("uid", "*", "*", "alice")) == {("uid", "a", "b", "alice")}
    assert listed(prefix=("uid",)) == {
        ("uid", "users", "alice"),
        ("uid", "users", "malice"),
        ("uid", "a", "b", "alice"),
    }


def test_labels_with_pattern_characters_match_only_themselves(make_store):
    """Labels holding LIKE or regex metacharacters (_ % \\ + ( [ ^ $) or a trailing
    newline match only themselves, in search and in list_namespaces."""
    store = make_store()
    labels = ["user_1", "userX1", "a%b", "axxb", "back\\slash", "backXslash", "a+b", "aab"]
    labels += ["(x)", "[y]", "^z$", "alice", "alice\n"]
    for label in labels:
        store.put(("t", label), "k", {"label": label})
        store.put(("t", label, "child"), "k", {"label": label})

    for label in labels:
        found = {i.namespace for i in store.search(("t", label), limit=100)}
        assert found == {("t", label), ("t", label, "child")}, label
        assert set(store.list_namespaces(prefix=("t", label), limit=100)) == found, label
        assert store.list_namespaces(prefix=("t",), suffix=(label,), limit=100) == [("t", label)], (
            label
        )


def test_invalid_namespaces_are_refused_and_nothing_is_written(make_store):
    """Empty namespaces, empty labels, labels with '.' or NUL, and the reserved root
    'langgraph' raise InvalidNamespaceError, through put and through batch()."""
    store = make_store()
    bad = [(), ("",), ("a.b",), ("a", "b\x00c"), ("langgraph", "x")]
    for ns in bad:
        with pytest.raises(InvalidNamespaceError):
            store.put(ns, "k", {"v": 1})
    for ns in bad[1:4]:
        with pytest.raises(InvalidNamespaceError):
            store.get(ns, "k")
        with pytest.raises(InvalidNamespaceError):
            store.search(ns)
        with pytest.raises(InvalidNamespaceError):
            store.list_namespaces(prefix=ns)
        with pytest.raises(InvalidNamespaceError):
            store.batch([PutOp(("ok",), "k", {"v": 1}), PutOp(ns, "k", {"v": 1})])
    assert store.list_namespaces() == []
    assert store.search(()) == []


def test_non_ascii_round_trips_and_is_searchable(make_store, emb):
    """Non-ASCII namespaces, keys and values round-trip, and vector search finds texts
    in any script."""
    store = make_store(index=index_config(emb, fields=["text"]))
    texts = ["这是中文", "これは日本語です", "이건 한국어야", "Это русский", "यह रूसी है"]
    ns = ("用户_123", "mémoires")
    for i, text in enumerate(texts):
        store.put(ns, f"ключ-{i}", {"text": text, "emoji": "🙂", "i": i})

    assert store.get(ns, "ключ-0").value == {"text": "这是中文", "emoji": "🙂", "i": 0}
    assert store.list_namespaces(prefix=("用户_123",)) == [ns]
    assert key_set(store.search(ns, filter={"text": "Это русский"})) == {"ключ-3"}
    for i, text in enumerate(texts):
        assert store.search(ns, query=text)[0].key == f"ключ-{i}", text


# -- filters -----------------------------------------------------------------------------


def test_search_filters_and_pages(make_store):
    """Filters match by JSON equality ($eq, $ne, a bare value, lists, booleans, 2 ==
    2.0), several filters must all hold, results come newest first, and limit/offset
    pages add up to the whole result; an unknown operator is a ValueError."""
    store = make_store()
    docs = {
        "d1": {"author": "alice", "tags": ["x"], "n": 1},
        "d2": {"author": "bob", "tags": ["y"], "n": 2},
        "d3": {"author": "alice", "tags": ["y"], "n": 3, "draft": True},
        "d4": {"author": "carol", "tags": ["x", "y"], "n": 4, "draft": False},
    }
    for key, value in docs.items():
        store.put(("docs", key[-1]), key, value)
    store.put(("other",), "d5", {"author": "alice"})

    def found(filter):
        return key_set(store.search(("docs",), filter=filter))

    assert found({"author": "alice"}) == {"d1", "d3"}
    assert found({"author": {"$eq": "bob"}}) == {"d2"}
    assert found({"author": {"$ne": "alice"}}) == {"d2", "d4"}
    assert found({"author": "alice", "tags": ["y"]}) == {"d3"}
    assert found({"tags": ["x", "y"]}) == {"d4"}
    assert found({"draft": True}) == {"d3"}
    assert found({"draft": False}) == {"d4"}
    assert found({"n": 2.0}) == {"d2"}
    assert found({"missing": "x"}) == set()
    with pytest.raises(ValueError):
        store.search(("docs",), filter={"n": {"$regex": "1"}})

    everything = store.search(("docs",))
    assert keys(everything) == ["d4", "d3", "d2", "d1"]  # newest first
    assert keys(store.search(("docs",), limit=3)) == ["d4", "d3", "d2"]
    assert keys(store.search(("docs",), limit=3, offset=3)) == ["d1"]
    assert store.search(("docs",), offset=4) == []


@pytest.fixture
def typed_values(make_ours):
    """Our store holding one item per value of ``n``, of every JSON type."""
    store = make_ours()
    values = {"i8": 8, "i9": 9, "f9_5": 9.5, "i10": 10, "i100": 100, "s10": "10", "s9a": "9a"}
    values.update({"true": True, "false": False, "null": None, "list": [10], "obj": {"x": 10}})
    values["sb"], values["sc"] = "b", "c"
    for key, n in values.items():
        store.put(("typed",), key, {"n": n})
    store.put(("typed",), "absent", {"other": 1})
    return store


def test_ours_range_filters_compare_numbers_as_numbers(typed_values):
    """Ours: $gt/$gte/$lt/$lte on a number compare numerically (10 > 9) and match only
    numbers; on a string they match only strings."""

    def found(filter):
        return key_set(typed_values.search(("typed",), filter={"n": filter}, limit=50))

    assert found({"$gt": 9}) == {"f9_5", "i10", "i100"}
    assert found({"$gte": 9}) == {"i9", "f9_5", "i10", "i100"}
    assert found({"$lt": 10}) == {"i8", "i9", "f9_5"}
    assert found({"$lte": 9.5}) == {"i8", "i9", "f9_5"}
    assert found({"$gte": 9, "$lt": 100}) == {"i9", "f9_5", "i10"}
    assert found({"$gt": 1000}) == set()
    assert found({"$gt": "b"}) == {"sc"}
    assert found({"$gte": "b"}) == {"sb", "sc"}
    assert found({"$lt": "b"}) == {"s10", "s9a"}


def test_ours_booleans_compare_as_booleans(typed_values):
    """Ours: a boolean filter matches only booleans, true above false; 1 and "true" are
    not true."""

    def found(filter):
        return key_set(typed_values.search(("typed",), filter={"n": filter}, limit=50))

    assert found(True) == {"true"}
    assert found({"$eq": False}) == {"false"}
    assert found({"$gt": False}) == {"true"}
    assert found({"$lt": True}) == {"false"}
    assert found({"$gte": False}) == {"true", "false"}
    assert found({"$lte": True}) == {"true", "false"}


def test_ours_dotted_filter_keys_are_nested_paths(make_ours):
    """Ours: a filter key "a.b" looks inside {"a": {"b": ...}}, for equality and
    ranges; a dict without operators matches key by key; $ne counts a missing key as not
    equal, as InMemoryStore does."""
    store = make_ours()
    store.put(("n",), "one", {"meta": {"score": 1, "lang": "en"}})
    store.put(("n",), "two", {"meta": {"score": 2, "lang": "fr"}})
    store.put(("n",), "deep", {"meta": {"inner": {"score": 3}}})
    store.put(("n",), "flat", {"score": 1})

    def found(filter):
        return key_set(store.search(("n",), filter=filter))

    assert found({"meta.lang": "en"}) == {"one"}
    assert found({"meta.score": {"$gt": 1}}) == {"two"}
    assert found({"meta.score": {"$gte": 1}, "meta.lang": {"$ne": "en"}}) == {"two"}
    assert found({"meta.inner.score": 3}) == {"deep"}
    assert found({"meta": {"lang": "fr"}}) == {"two"}  # a dict without operators, key by key
    assert found({"meta.lang": {"$ne": "en"}}) == {"two", "deep", "flat"}  # missing: not equal
    assert found({"score": 1}) == {"flat"}


def test_ours_namespaces_are_listed_in_byte_order(make_ours):
    """Ours: list_namespaces comes in byte (C collation) order, so pages are stable
    whatever the database's collation."""
    store = make_ours()
    labels = ["b", "B", "a", "_x", "é", "Z", "a1", "a", "10", "9"]
    for label in labels:
        store.put((label, "n"), "k", {"v": 1})
    expected = sorted({(label, "n") for label in labels}, key=lambda ns: ns[0].encode())
    assert store.list_namespaces() == expected
    assert store.list_namespaces(limit=3, offset=3) == expected[3:6]


# -- setup and tables --------------------------------------------------------------------


def test_setup_creates_the_tables_and_is_idempotent(make_store, schema, admin_conn, emb):
    """setup() creates PostgresStore's four tables with its migration versions, and
    running it again (or from a second instance) changes nothing."""
    from langgraph.store.postgres import PostgresStore

    store = make_store(index=index_config(emb))
    store.put(("a",), "k", {"v": 1})
    store.setup()
    make_store(index=index_config(emb)).setup()
    assert store.get(("a",), "k").value == {"v": 1}
    with admin_conn.cursor() as cur:
        cur.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (schema,),
        )
        assert {r[0] for r in cur.fetchall()} == {
            "store",
            "store_vectors",
            "store_migrations",
            "vector_migrations",
        }
        cur.execute(
            sql.SQL("SELECT array_agg(v ORDER BY v) FROM {}").format(
                sql.Identifier(schema, "store_migrations")
            )
        )
        assert cur.fetchone()[0] == list(range(len(PostgresStore.MIGRATIONS)))
        cur.execute(
            sql.SQL("SELECT array_agg(v ORDER BY v) FROM {}").format(
                sql.Identifier(schema, "vector_migrations")
            )
        )
        assert cur.fetchone()[0] == list(range(len(PostgresStore.VECTOR_MIGRATIONS)))


def test_ours_and_postgres_store_share_the_tables(make_ours, schema, base_settings, emb):
    """Ours: what PGSyncStore writes, PostgresStore reads on the same schema, vectors
    included, and the other way round."""
    config = index_config(emb, fields=["text"])
    ours = make_ours(index=config)
    ours.put(("shared", "a"), "from-ours", {"text": "apples and pears", "n": 1})
    with upstream_store_in(base_settings, schema, index=config) as theirs:
        theirs.put(("shared", "b"), "from-theirs", {"text": "zebra crossing", "n": 2})
        for store in (ours, theirs):
            assert store.get(("shared", "a"), "from-ours").value["n"] == 1
            assert store.get(("shared", "b"), "from-theirs").value["n"] == 2
            assert store.list_namespaces(prefix=("shared",)) == [("shared", "a"), ("shared", "b")]
            assert store.search(("shared",), query="apples and pears")[0].key == "from-ours"
            assert store.search(("shared",), query="zebra crossing")[0].key == "from-theirs"
        ours.delete(("shared", "b"), "from-theirs")
        assert theirs.get(("shared", "b"), "from-theirs") is None


# -- vector search -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "vector_type,distance_type,kind", VECTOR_CONFIGS, ids=["-".join(c) for c in VECTOR_CONFIGS]
)
def test_each_index_config_builds_its_index_and_scores_by_its_distance(
    make_store, schema, admin_conn, emb, vector_type, distance_type, kind
):
    """The embedding column has the configured type, the ANN index its kind and operator
    class (none for 'flat'), and search scores are the configured similarity (cosine,
    inner product, negative L2 distance), best first."""
    store = make_store(index=index_config(emb, vector_type, distance_type, kind, ["text"]))
    with admin_conn.cursor() as cur:
        cur.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attname = 'embedding'",
            (f'"{schema}".store_vectors',),
        )
        assert cur.fetchone()[0] == f"{vector_type}(64)"
        cur.execute(
            "SELECT am.amname, opc.opcname FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam "
            "JOIN pg_opclass opc ON opc.oid = i.indclass[0] "
            "WHERE i.indrelid = %s::regclass AND NOT i.indisprimary",
            (f'"{schema}".store_vectors',),
        )
        indexes = cur.fetchall()
    ops = {"cosine": "cosine_ops", "l2": "l2_ops", "inner_product": "ip_ops"}[distance_type]
    assert indexes == ([] if kind == "flat" else [(kind, f"{vector_type}_{ops}")])

    texts = {"same": "abcabc", "close": "abcabd", "far": "xyzxyz", "other": "qqqqrr"}
    for key, text in texts.items():
        store.put(("s",), key, {"text": text})
    for query in ("abcabc", "xyz", "poisson"):
        results = store.search(("s",), query=query)
        assert len(results) == 4
        scores = [r.score for r in results]
        assert scores == sorted(scores, reverse=True)
        q = emb.embed_query(query)
        tol = 1e-4 if vector_type == "vector" else 5e-3
        for r in results:
            expected = similarity(distance_type, q, emb.embed_query(texts[r.key]))
            assert r.score == pytest.approx(expected, abs=tol), (query, r.key)
    assert store.search(("s",), query="abcabc")[0].key == "same"


def test_puts_embed_their_text_and_updates_reembed(make_store, schema, admin_conn, emb):
    """With the default fields the whole value is embedded; an update replaces the
    vector; index=False stores the item unembedded (found by filters, not by a query);
    a delete removes its vectors."""
    store = make_store(index=index_config(emb))
    store.put(("t",), "doc1", {"text": "zany zebra Xerxes"})
    store.put(("t",), "doc2", {"text": "something about dogs"})
    store.put(("t",), "doc3", {"text": "text about birds"})
    first = store.search(("t",), query="zany zebra Xerxes")
    assert first[0].key == "doc1"

    store.put(("t",), "doc1", {"text": "new text about dogs"})
    after = {r.key: r.score for r in store.search(("t",), query="zany zebra Xerxes")}
    assert after["doc1"] < first[0].score
    assert store.search(("t",), query='{"text": "new text about dogs"}')[0].key == "doc1"

    calls = len(emb.calls)
    store.put(("t",), "doc4", {"text": "new text about dogs"}, index=False)
    assert len(emb.calls) == calls  # nothing was sent to the model
    assert "doc4" not in keys(store.search(("t",), query="new text about dogs", limit=10))
    assert keys(store.search(("t",), filter={"text": "new text about dogs"})) == ["doc4", "doc1"]
    unranked = store.search(("t",))
    assert len(unranked) == 4 and all(r.score is None for r in unranked)

    assert count_rows(admin_conn, schema, "store_vectors") == 3
    store.delete(("t",), "doc1")
    assert count_rows(admin_conn, schema, "store_vectors") == 2
    assert "doc1" not in keys(store.search(("t",), query="new text about dogs"))


def test_vector_search_with_filters(make_store, emb):
    """A query ranks only the items the filter and namespace let through, refreshing
    their TTL or not."""
    store = make_store(index=index_config(emb, fields=["text"]), ttl={"default_ttl": 5})
    docs = {
        "doc1": {"text": "red apple", "color": "red", "score": 4.5},
        "doc2": {"text": "red car", "color": "red", "score": 3.0},
        "doc3": {"text": "green apple", "color": "green", "score": 4.0},
        "doc4": {"text": "blue car", "color": "blue", "score": 3.5},
    }
    for key, value in docs.items():
        store.put(("test",), key, value)
    store.put(("elsewhere",), "doc5", {"text": "red apple", "color": "red", "score": 4.5})

    for refresh_ttl in (True, False):

        def search(query, filter, refresh_ttl=refresh_ttl):
            return keys(
                store.search(("test",), query=query, filter=filter, refresh_ttl=refresh_ttl)
            )

        assert search("red apple", {"color": "red"}) == ["doc1", "doc2"]
        assert search("red car", {"color": "red"}) == ["doc2", "doc1"]
        over = search("blue car", {"score": {"$gt": 3.2}})
        assert over[0] == "doc4" and sorted(over) == ["doc1", "doc3", "doc4"]
        assert search("green apple", {"score": {"$gte": 4.0}, "color": "green"}) == ["doc3"]
        assert search("red apple", {"color": "purple"}) == []


def test_vector_search_pages(make_store, emb):
    """limit/offset pages of a query add up to its full ranking."""
    store = make_store(index=index_config(emb, fields=["text"]))
    texts = ["test", "tests", "testing", "attest", "contest", "detest", "tempest", "jest"]
    for i, text in enumerate(texts):
        store.put(("p",), f"doc{i}", {"text": text})
    ranking = store.search(("p",), query="test", limit=20)
    assert len(ranking) == len(texts)
    scores = [r.score for r in ranking]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == len(scores)
    assert ranking[0].key == "doc0"
    assert keys(store.search(("p",), query="test", limit=3)) == keys(ranking[:3])
    assert keys(store.search(("p",), query="test", limit=3, offset=3)) == keys(ranking[3:6])


@pytest.mark.parametrize(
    "vector_type,distance_type,kind", VECTOR_CONFIGS, ids=["-".join(c) for c in VECTOR_CONFIGS]
)
def test_ours_deep_vector_pages_are_the_right_ones(
    make_ours, emb, vector_type, distance_type, kind
):
    """Ours: a page far past the first (offset well beyond limit) of a query ranking is
    that slice of the full ranking, and paging to the end finds every item once."""
    store = make_ours(index=index_config(emb, vector_type, distance_type, kind, ["text"]))
    n = 30
    letters = "abcdfghijklnpqrstuvwxyz0123456"
    for i in range(n):
        store.put(("deep", str(i % 3)), f"doc{i:02d}", {"text": "memo" + letters[i] * (1 + i % 4)})
    results = store.search(("deep",), query="memo", limit=n + 5)
    assert len({r.score for r in results}) == n  # no ties: the ranking is well defined
    ranking = keys(results)
    assert sorted(ranking) == [f"doc{i:02d}" for i in range(n)]
    assert keys(store.search(("deep",), query="memo", limit=2, offset=20)) == ranking[20:22]
    assert keys(store.search(("deep",), query="memo", limit=4, offset=28)) == ranking[28:]
    paged = []
    for offset in range(0, n, 4):
        paged += keys(store.search(("deep",), query="memo", limit=4, offset=offset))
    assert paged == ranking


def test_vector_search_edge_cases(make_store, emb):
    """An empty or missing query is a plain search (no scores); long queries and
    punctuation work; a query on an empty namespace finds nothing."""
    store = make_store(index=index_config(emb))
    store.put(("test",), "doc1", {"text": "test document"})
    store.put(("test",), "doc2", {"text": "another"})
    for query in ("", None):
        results = store.search(("test",), query=query)
        assert keys(results) == ["doc2", "doc1"] and results[0].score is None
    for query in ("test " * 200, "test!@#$%^&*()'\";--", "\n\t"):
        results = store.search(("test",), query=query)
        assert len(results) == 2 and all(r.score is not None for r in results)
    assert store.search(("nothing",), query="test") == []


def test_configured_fields_choose_what_is_embedded(make_store, schema, admin_conn, emb):
    """With fields set, only the texts at those paths are embedded, one vector each
    (array wildcards give one per element); an item missing every field is stored but
    has no vector; the best-matching field decides an item's score."""
    store = make_store(index=index_config(emb, fields=["title", "sections[*].text"]))
    store.put(("f",), "doc1", {"title": "kkk", "sections": [{"text": "mmm"}, {"text": "nnn"}]})
    store.put(("f",), "doc2", {"title": "zzz", "body": "mmm"})
    store.put(("f",), "doc3", {"body": "kkk"})
    embedded = sorted(t for call in emb.calls for t in call)
    assert embedded == ["kkk", "mmm", "nnn", "zzz"]
    with admin_conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT key, count(*) FROM {} GROUP BY key ORDER BY key").format(
                sql.Identifier(schema, "store_vectors")
            )
        )
        assert cur.fetchall() == [("doc1", 3), ("doc2", 1)]
    assert store.get(("f",), "doc3").value == {"body": "kkk"}

    for query, best in (("kkk", "doc1"), ("mmm", "doc1"), ("nnn", "doc1"), ("zzz", "doc2")):
        results = store.search(("f",), query=query)
        assert results[0].key == best, query
        assert results[0].score == pytest.approx(1.0, abs=1e-4)
        assert results[1].score < 0.9


def test_index_argument_of_put_overrides_the_fields(make_store, emb):
    """put(index=[...]) embeds those paths instead of the configured ones; the same
    text in two items scores the same; index=False embeds nothing."""
    store = make_store(index=index_config(emb, fields=["unused"]))
    store.put(("t",), "doc3", {"key0": "aaa", "key1": "bbb", "key2": "ccc"}, index=["key0", "key1"])
    store.put(("t",), "doc4", {"key0": "eee", "key1": "bbb", "key3": "ggg"}, index=["key1", "key3"])
    store.put(("t",), "doc5", {"key0": "hhh"}, index=False)
    store.put(("t",), "doc6", {"unused": "hhh"})

    assert store.search(("t",), query="aaa")[0].key == "doc3"
    assert store.search(("t",), query="ggg")[0].key == "doc4"
    both = store.search(("t",), query="bbb")
    assert {both[0].key, both[1].key} == {"doc3", "doc4"}
    assert both[0].score == pytest.approx(both[1].score, abs=1e-4)
    assert store.search(("t",), query="hhh")[0].key == "doc6"
    assert all(r.score < 0.9 for r in store.search(("t",), query="ccc"))
    assert len(store.search(("t",))) == 4


def test_the_best_match_ranks_first_among_many(make_store, emb):
    """One matching item among many poor ones, in sibling namespaces, ranks first."""
    store = make_store(index=index_config(emb, fields=["key1"]))
    store.put(("test", "M"), "M", {"key1": "mmm"})
    store.batch(
        [PutOp(("test", ns), f"{ns}{i}", {"key1": "no"}) for ns in ("A", "Z") for i in range(40)]
    )
    results = store.search(("test",), query="mmm", limit=10)
    assert len(results) == 10 and len(set(keys(results))) == 10
    assert results[0].key == "M" and results[0].score > results[1].score


# -- TTL ---------------------------------------------------------------------------------


def test_ttl_sets_expiry_from_the_put(make_store, schema, admin_conn):
    """default_ttl applies to puts without ttl; ttl= overrides it; ttl=None and stores
    without TTL config never expire; a put again restarts or clears the clock."""
    store = make_store(ttl={"default_ttl": 5})
    ns = ("ttl",)

    def expiry_window(put):
        before = server_now(admin_conn)
        put()
        return before, server_now(admin_conn)

    lo, hi = expiry_window(lambda: store.put(ns, "default", {"v": 1}))
    expires, minutes = row_ttl(admin_conn, schema, ns, "default")
    assert lo + timedelta(minutes=5) <= expires <= hi + timedelta(minutes=5)
    assert minutes == 5

    lo, hi = expiry_window(lambda: store.put(ns, "custom", {"v": 1}, ttl=2))
    expires, minutes = row_ttl(admin_conn, schema, ns, "custom")
    assert lo + timedelta(minutes=2) <= expires <= hi + timedelta(minutes=2)
    assert minutes == 2

    store.put(ns, "forever", {"v": 1}, ttl=None)
    assert row_ttl(admin_conn, schema, ns, "forever") == (None, None)
    store.put(ns, "custom", {"v": 2}, ttl=None)
    assert row_ttl(admin_conn, schema, ns, "custom") == (None, None)

    plain = make_store()
    plain.put(ns, "plain", {"v": 1})
    assert row_ttl(admin_conn, schema, ns, "plain") == (None, None)


def test_reads_refresh_ttl_as_configured(make_store, schema, admin_conn):
    """With refresh_on_read, get and search push back the expiry of what they return
    (only that); refresh_ttl=False opts out; with refresh_on_read off, refresh_ttl=True
    opts in. Items without a TTL stay without one."""
    store = make_store(ttl={"default_ttl": 1, "refresh_on_read": True})
    ns = ("r",)
    for key in ("got", "kept", "found", "unfound", "batched"):
        store.put(ns, key, {"id": key})
    store.put(ns, "forever", {"id": "forever"}, ttl=None)

    def expires(key):
        return row_ttl(admin_conn, schema, ns, key)[0]

    before = {key: expires(key) for key in ("got", "kept", "found", "unfound", "batched")}
    wait_for_clock_tick(admin_conn, max(before.values()) - timedelta(minutes=1))

    assert store.get(ns, "got").value == {"id": "got"}
    assert store.get(ns, "kept", refresh_ttl=False) is not None
    assert keys(store.search(ns, filter={"id": "found"})) == ["found"]
    assert store.search(ns, filter={"id": "unfound"}, refresh_ttl=False)
    store.batch([GetOp(ns, "batched", refresh_ttl=True)])
    assert store.get(ns, "forever").value == {"id": "forever"}

    assert expires("got") > before["got"]
    assert expires("found") > before["found"]
    assert expires("batched") > before["batched"]
    assert expires("kept") == before["kept"]
    assert expires("unfound") == before["unfound"]
    assert row_ttl(admin_conn, schema, ns, "forever") == (None, None)

    lazy = make_store(ttl={"default_ttl": 1, "refresh_on_read": False})
    lazy.put(ns, "lazy", {"id": "lazy"})
    lazy_before = expires("lazy")
    wait_for_clock_tick(admin_conn, lazy_before - timedelta(minutes=1))
    lazy.get(ns, "lazy")
    lazy.search(ns, filter={"id": "lazy"})
    assert expires("lazy") == lazy_before
    lazy.get(ns, "lazy", refresh_ttl=True)
    assert expires("lazy") > lazy_before


def test_sweep_ttl_deletes_only_expired_items(make_store, schema, admin_conn, emb):
    """sweep_ttl() deletes the items whose expiry has passed, with their vectors, and
    returns how many; live and never-expiring items stay."""
    store = make_store(index=index_config(emb, fields=["text"]), ttl={"default_ttl": 10})
    ns = ("sweep",)
    store.put(ns, "short1", {"text": "a"}, ttl=MS_TTL)
    store.put(ns, "short2", {"text": "b"}, ttl=MS_TTL)
    store.put(ns, "long", {"text": "c"})
    store.put(ns, "forever", {"text": "d"}, ttl=None)
    wait_until_expired(admin_conn, schema, ns, "short1")
    wait_until_expired(admin_conn, schema, ns, "short2")

    assert store.sweep_ttl() == 2
    assert store.sweep_ttl() == 0
    assert store.get(ns, "short1", refresh_ttl=False) is None
    assert key_set(store.search(ns)) == {"long", "forever"}
    assert count_rows(admin_conn, schema, "store") == 2
    assert count_rows(admin_conn, schema, "store_vectors") == 2


def test_expired_items_stay_readable_until_swept_without_omit_expired(
    make_store, schema, admin_conn
):
    """Without omit_expired an expired, unswept item is still returned by get, search
    and list_namespaces."""
    store = make_store(ttl={"refresh_on_read": False})
    ns = ("late",)
    store.put(ns, "k", {"v": 1}, ttl=MS_TTL)
    wait_until_expired(admin_conn, schema, ns, "k")
    assert store.get(ns, "k").value == {"v": 1}
    assert keys(store.search(ns)) == ["k"]
    assert store.list_namespaces(prefix=ns) == [ns]


def test_omit_expired_hides_unswept_items(make_store, schema, admin_conn):
    """With omit_expired, an expired item is gone for get, search (pages filled with live
    items) and list_namespaces before any sweep, and reading it with refresh_ttl=True
    does not bring it back."""
    store = make_store(ttl={"omit_expired": True, "refresh_on_read": True})
    store.put(("omit", "gone"), "e", {"v": 0}, ttl=MS_TTL)
    store.put(("omit", "kept"), "c", {"v": 1})
    page = ("omit", "page")
    for key in ("c", "b"):
        store.put(page, key, {"k": key})
    store.put(page, "x", {"k": "x"}, ttl=MS_TTL)
    store.put(page, "a", {"k": "a"})  # newest first: a, x, b, c
    wait_until_expired(admin_conn, schema, ("omit", "gone"), "e")
    wait_until_expired(admin_conn, schema, page, "x")
    gone_expiry = row_ttl(admin_conn, schema, ("omit", "gone"), "e")

    assert store.get(("omit", "gone"), "e") is None
    assert store.get(("omit", "gone"), "e", refresh_ttl=True) is None
    assert store.search(("omit", "gone")) == []
    assert store.get(("omit", "kept"), "c").value == {"v": 1}
    assert store.list_namespaces(prefix=("omit",)) == [("omit", "kept"), page]
    assert keys(store.search(page, limit=2)) == ["a", "b"]
    assert keys(store.search(page, limit=2, offset=2)) == ["c"]
    assert row_ttl(admin_conn, schema, ("omit", "gone"), "e") == gone_expiry
    assert store.sweep_ttl() == 2


def test_ours_fractional_ttl_minutes_are_kept(make_ours, schema, admin_conn):
    """Ours: a TTL of half a minute stays half a minute when a read refreshes it."""
    store = make_ours(ttl={"refresh_on_read": True})
    ns = ("frac",)
    store.put(ns, "half", {"v": 1}, ttl=0.5)
    put_expiry = row_ttl(admin_conn, schema, ns, "half")[0]
    wait_for_clock_tick(admin_conn, put_expiry - timedelta(seconds=30))
    lo = server_now(admin_conn)
    assert store.get(ns, "half") is not None
    hi = server_now(admin_conn)
    expires = row_ttl(admin_conn, schema, ns, "half")[0]
    assert expires > put_expiry
    assert lo + timedelta(seconds=30) <= expires <= hi + timedelta(seconds=30)


def test_ttl_config_is_read_on_every_call(make_store, schema, admin_conn):
    """Changing store.ttl_config after construction takes effect at once, as upstream's
    PostgresStore reads it on every call: omit_expired, refresh_on_read, default_ttl."""
    store = make_store(ttl={"refresh_on_read": False})
    ns = ("cfg",)
    store.put(ns, "gone", {"v": 0}, ttl=MS_TTL)
    store.put(ns, "live", {"v": 1}, ttl=1)
    wait_until_expired(admin_conn, schema, ns, "gone")
    live_expiry = row_ttl(admin_conn, schema, ns, "live")[0]
    assert keys(store.search(ns)) == ["live", "gone"]

    store.ttl_config = {"omit_expired": True, "refresh_on_read": True, "default_ttl": 2}
    assert store.get(ns, "gone") is None
    assert keys(store.search(ns)) == ["live"]
    assert store.list_namespaces(prefix=ns) == [ns]
    assert row_ttl(admin_conn, schema, ns, "live")[0] > live_expiry  # refreshed
    store.put(ns, "new", {"v": 2})
    assert row_ttl(admin_conn, schema, ns, "new")[1] == 2

    store.ttl_config = None
    assert store.get(ns, "gone").value == {"v": 0}
    store.put(ns, "plain", {"v": 3})
    assert row_ttl(admin_conn, schema, ns, "plain") == (None, None)
