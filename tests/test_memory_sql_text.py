"""Keys, namespace labels and values that look like SQL, placeholders or template fields
are data to PGSyncStore: they round-trip through every call, and never change what a
statement does (another item's vectors, another table)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langgraph.store.base import MatchCondition, PutOp
from psycopg2 import sql

from aperag_pg.memory import PGSyncStore

from .memory_support import LetterEmbeddings, count_rows, index_config, store_in
from .sql_text import HOSTILE_PIECES

TRICKY = HOSTILE_PIECES


@pytest.fixture
def store(schema) -> PGSyncStore:
    return store_in(schema, index=index_config(LetterEmbeddings(), fields=["text"]))


def vectors_of(admin_conn, schema: str, namespace: tuple[str, ...], key: str) -> list[str]:
    with admin_conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT field_name FROM {} WHERE prefix = %s AND key = %s ORDER BY 1").format(
                sql.Identifier(schema, "store_vectors")
            ),
            (".".join(namespace), key),
        )
        return [row[0] for row in cur.fetchall()]


def test_a_key_naming_a_template_part_is_stored_as_given(store):
    """It was a raw SyntaxError: the key's quoted text was scanned for named parts."""
    store.put(("t1",), "note {keeping} 1", {"text": "hello"})
    assert store.get(("t1",), "note {keeping} 1").value == {"text": "hello"}


def test_a_put_leaves_the_vectors_of_other_items_alone(store, schema, admin_conn):
    """It deleted the vectors of ("t2", "ab"): "a{keeping}b" became "ab" in the DELETE."""
    store.put(("t2",), "ab", {"text": "kept"})
    store.put(("t2",), "a{keeping}b", {"other": 1})
    assert vectors_of(admin_conn, schema, ("t2",), "ab") == ["text"]
    assert [item.key for item in store.search(("t2",), query="kept", limit=1)] == ["ab"]


def test_a_crafted_label_cannot_run_a_statement(store, schema, admin_conn):
    """A label and key that, spliced into the statement, closed its literals and deleted
    the rows of another table. Now they are an item's namespace and key like any other."""
    canary = sql.Identifier(schema, "canary")
    with admin_conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE TABLE {} (x int)").format(canary))
        cur.execute(sql.SQL("INSERT INTO {} VALUES (1)").format(canary))
    label = "))), boom AS (DELETE FROM /*"
    key = f'*/ "{schema}"."canary" RETURNING 1), x AS (SELECT 1 --'
    store.batch(
        [
            PutOp((label,), key, {"text": "first"}),
            PutOp(("t",), "{keeping}", {"text": "second"}),
        ]
    )
    assert count_rows(admin_conn, schema, "canary") == 1
    assert store.get((label,), key).value == {"text": "first"}
    assert store.get(("t",), "{keeping}").value == {"text": "second"}
    assert vectors_of(admin_conn, schema, (label,), key) == ["text"]


@pytest.mark.parametrize("text", TRICKY)
def test_tricky_text_round_trips_through_every_call(store, schema, admin_conn, text):
    namespace = ("tricky", text)
    value = {"text": text, text: [text], "n": {text: 1}}
    neighbour = ("tricky", text, "n")
    store.batch(
        [
            PutOp(namespace, text, value),
            PutOp(namespace, "plain", {"text": "plain"}),
            PutOp(neighbour, text, {"text": "neighbour"}),
        ]
    )
    assert store.get(namespace, text).value == value
    assert [item.key for item in store.search(namespace, filter={"text": text})] == [text]
    assert [item.key for item in store.search(namespace, filter={text: [text]})] == [text]
    # a dotted key is a path: the label reaches the jsonpath of a comparison
    ranged = store.search(namespace, filter={f"n.{text}": {"$gte": 1}})
    assert [item.key for item in ranged] == [text]
    found = store.search(namespace, query=text, filter={"text": text})
    assert [(item.namespace, item.key) for item in found] == [(namespace, text)]
    assert store.list_namespaces(prefix=("tricky", text)) == [namespace, neighbour]
    suffix = MatchCondition(match_type="suffix", path=(text,))
    assert store.batch([_list(suffix)])[0] == [namespace]
    assert vectors_of(admin_conn, schema, namespace, text) == ["text"]

    store.batch([PutOp(namespace, text, None), PutOp(neighbour, text, {"text": "again"})])
    assert store.get(namespace, text) is None
    assert vectors_of(admin_conn, schema, namespace, text) == []
    assert store.get(neighbour, text).value == {"text": "again"}
    assert vectors_of(admin_conn, schema, neighbour, text) == ["text"]


def _list(condition: MatchCondition):
    from langgraph.store.base import ListNamespacesOp

    return ListNamespacesOp(match_conditions=(condition,), max_depth=None, limit=10, offset=0)


# -- a property over put, search and delete ----------------------------------------------

# Text made of the tricky pieces and a few plain characters, short, never a dot (a label
# separator) or NUL (refused).
PIECE = st.one_of(st.sampled_from(TRICKY), st.text("ab .\u00e9\U0001f99c", max_size=2))
TEXT = st.lists(PIECE, min_size=1, max_size=4).map("".join).filter(bool)
LABEL = TEXT.map(lambda t: t.replace(".", "_"))
ROUND = itertools.count()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    items=st.dictionaries(
        st.tuples(LABEL, TEXT), TEXT, min_size=1, max_size=4
    ),  # (label, key) -> text
    gone=st.integers(min_value=0, max_value=3),
)
def test_any_text_writes_exactly_its_own_items(store, schema, admin_conn, items, gone):
    """A batch of puts of any such text stores exactly those items, each with its one
    vector; searching finds exactly them; deleting one leaves the others whole."""
    root = f"prop{next(ROUND)}"
    puts = [PutOp((root, label), key, {"text": text}) for (label, key), text in items.items()]
    store.batch(puts)
    stored = {(op.namespace, op.key): op.value for op in puts}
    assert {(i.namespace, i.key): i.value for i in store.search((root,), limit=10)} == stored
    for (namespace, key), value in stored.items():
        assert store.get(namespace, key).value == value
        assert vectors_of(admin_conn, schema, namespace, key) == ["text"]
        found = store.search(namespace, query=value["text"], filter={"text": value["text"]})
        assert {(i.namespace, i.key) for i in found} == {
            (n, k) for (n, k), v in stored.items() if n == namespace and v == value
        }

    deleted = puts[gone % len(puts)]
    store.batch([PutOp(deleted.namespace, deleted.key, None)])
    del stored[(deleted.namespace, deleted.key)]
    assert {(i.namespace, i.key): i.value for i in store.search((root,), limit=10)} == stored
    assert vectors_of(admin_conn, schema, deleted.namespace, deleted.key) == []
    for namespace, key in stored:
        assert vectors_of(admin_conn, schema, namespace, key) == ["text"]
    assert count_rows(admin_conn, schema, "store_vectors") == count_rows(
        admin_conn, schema, "store"
    )
