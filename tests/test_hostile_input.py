"""Hostile input, generated: every place an outside string reaches SQL (workspace names,
ids, metadata keys and values, graph labels and properties, ``search_labels`` queries,
checkpoint namespaces, thread ids and metadata filters). Each case either round-trips
exactly or gets the package's ``InvalidInput``: never a driver error, never SQL run from
data (a canary table survives every case), never half a batch written.
(``test_bad_input.py`` covers the values of the stores' columns.)"""

from __future__ import annotations

import uuid

import psycopg2
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aperag_pg.errors import InvalidInput
from aperag_pg.stores.doc_status import DocStatusStore
from aperag_pg.stores.graph import GraphStore
from aperag_pg.stores.kv import KVStore

from .checkpoint_support import Chain, config

PROPERTY = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Any text Python can hold (NUL, lone surrogates, quotes, backslashes, RTL marks, ...).
ANY_TEXT = st.text(st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF), max_size=30)
SAFE = st.characters(codec="utf-8", blacklist_characters="\x00")
# Text that has been dangerous in SQL built by string formatting.
INJECTIONS = (
    "'; DROP TABLE hostile_canary; --",
    '"; DROP TABLE hostile_canary; --',
    "x') OR 1=1 --",
    "%s",
    "%(ws)s",
    "{table}",
    "$1",
    "\\",
    "E'\\x00'",
    'ws"name',
)


def storable(text: str) -> bool:
    return "\x00" not in text and not any(0xD800 <= ord(c) <= 0xDFFF for c in text)


@pytest.fixture(autouse=True)
def canary(admin_conn):
    """A table no input may drop."""
    with admin_conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS hostile_canary (x int)")
    yield
    with admin_conn.cursor() as cur:
        cur.execute("SELECT to_regclass('hostile_canary') IS NOT NULL")
        assert cur.fetchone()[0], "SQL from data dropped the canary table"


def _rows(admin_conn, table: str, workspace: str) -> int:
    with admin_conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {table} WHERE workspace = %s", (workspace,))
        return cur.fetchone()[0]


def _refused_or_raise(call):
    """Run ``call``; True when it was refused with InvalidInput. Any other error (a raw
    driver error above all) fails the test."""
    try:
        call()
    except InvalidInput:
        return True
    except psycopg2.Error as exc:  # pragma: no cover - the point of the test
        pytest.fail(f"a driver error reached the caller: {type(exc).__name__}: {exc}")
    return False


@PROPERTY
@given(workspace=ANY_TEXT, record_id=ANY_TEXT.filter(bool))
@example(workspace=INJECTIONS[0], record_id=INJECTIONS[1])
@example(workspace=INJECTIONS[3], record_id=INJECTIONS[4])
def test_kv_workspaces_and_ids(manager, admin_conn, workspace, record_id):
    workspace += f"/{uuid.uuid4().hex[:6]}"  # its own rows, whatever was generated before
    store = None

    def build_and_write():
        nonlocal store
        store = KVStore("full_docs", workspace=workspace)
        store.ensure_tables()
        store.upsert({record_id: {"content": "text"}})

    if _refused_or_raise(build_and_write):
        assert not (storable(workspace) and storable(record_id))
        return
    assert store.get_by_id(record_id)["content"] == "text"
    assert _rows(admin_conn, "lightrag_doc_full", store.workspace) == 1


@PROPERTY
@given(good=st.lists(st.text(SAFE, min_size=1, max_size=8), min_size=1, max_size=5), bad=ANY_TEXT)
@example(good=["a", "b"], bad="nul\x00")
def test_a_batch_with_one_bad_record_writes_nothing(manager, admin_conn, good, bad):
    workspace = f"batch_{uuid.uuid4().hex[:8]}"
    kv = KVStore("full_docs", workspace=workspace)
    docs = DocStatusStore(workspace=workspace)
    graph = GraphStore(workspace=workspace)
    for store in (kv, docs, graph):
        store.ensure_tables()
    ids = [f"{i}-{text}" for i, text in enumerate(good)]
    middle = len(ids) // 2
    kv_batch = {i: {"content": "fine"} for i in ids}
    kv_batch = dict(
        list(kv_batch.items())[:middle]
        + [("bad", {"content": bad})]
        + list(kv_batch.items())[middle:]
    )
    doc = {"content_summary": "s", "content_length": 1, "status": "processed"}
    doc_batch = {i: {**doc, "file_path": "f"} for i in ids} | {"bad": {**doc, "file_path": bad}}
    nodes = [(i, {"entity_id": i}) for i in ids] + [("bad", {"entity_id": "bad", bad: 1})]
    refused = [
        _refused_or_raise(lambda: kv.upsert(kv_batch)),
        _refused_or_raise(lambda: docs.upsert(doc_batch)),
        _refused_or_raise(lambda: graph.upsert_nodes_batch(nodes)),
    ]
    counts = [
        _rows(admin_conn, table, workspace)
        for table in ("lightrag_doc_full", "lightrag_doc_status", "lightrag_graph_nodes")
    ]
    for was_refused, count in zip(refused, counts, strict=True):
        assert count == (0 if was_refused else len(ids) + 1)  # all or nothing
    assert refused[0] == (not storable(bad))  # KV refuses exactly the unstorable content


@PROPERTY
@given(
    namespace=ANY_TEXT.filter(bool),
    node_id=ANY_TEXT.filter(bool),
    key=ANY_TEXT.filter(bool),
    value=ANY_TEXT,
    query=ANY_TEXT,
)
@example(namespace=INJECTIONS[9], node_id=INJECTIONS[0], key=INJECTIONS[5], value="v", query="%")
@example(namespace="ns", node_id="100%_sure", key="k", value="v", query="_")
@example(namespace="0", node_id="\x85", key="0", value="", query="")
def test_graph_namespaces_labels_properties_and_searches(
    manager, namespace, node_id, key, value, query
):
    graphs: list[GraphStore] = []
    if _refused_or_raise(
        lambda: graphs.append(GraphStore(namespace, workspace=f"g_{uuid.uuid4().hex[:8]}"))
    ):
        assert not storable(namespace)
        return
    graph = graphs[0]
    graph.ensure_tables()
    properties = {"entity_id": node_id, key: value}
    if _refused_or_raise(lambda: graph.upsert_node(node_id, properties)):
        assert not (storable(node_id) and storable(key) and storable(value))
    else:
        assert graph.get_node(node_id) == properties
        found = graph.search_labels(node_id)
        # A blank query finds nothing, as NetworkXStorage's (str.strip: "\x85" is blank).
        assert (node_id in found) == bool(node_id.strip())
    results: list[list[str]] = []
    if _refused_or_raise(lambda: results.append(graph.search_labels(query))):
        assert not storable(query)
    else:
        # LIKE's wildcards are matched literally: "%" finds only ids that contain "%".
        assert all(query.lower() in label.lower() for label in results[0])


@PROPERTY
@given(
    thread_id=ANY_TEXT.filter(bool),
    namespace=ANY_TEXT,
    key=ANY_TEXT.filter(bool),
    value=ANY_TEXT,
)
@example(thread_id=INJECTIONS[0], namespace=INJECTIONS[6], key=INJECTIONS[4], value=INJECTIONS[8])
def test_checkpoint_namespaces_threads_metadata_and_filters(
    saver, thread_id, namespace, key, value
):
    chain = Chain(saver, thread_id, checkpoint_ns=namespace)
    saved: list[dict] = []
    if _refused_or_raise(lambda: saved.append(chain.put(**{key: value}))):
        assert not all(map(storable, (thread_id, namespace, key, value)))
        return
    found = saver.get_tuple(saved[0])
    assert found.config["configurable"]["thread_id"] == thread_id
    assert found.config["configurable"]["checkpoint_ns"] == namespace
    assert found.metadata[key] == value
    listed: list = []
    flt = {key: value}
    if _refused_or_raise(
        lambda: listed.extend(saver.list(config(thread_id, namespace), filter=flt))
    ):
        pytest.fail(f"a stored metadata pair was refused as a filter: {flt!r}")
    assert [t.config["configurable"]["checkpoint_id"] for t in listed] == [
        saved[0]["configurable"]["checkpoint_id"]
    ]
