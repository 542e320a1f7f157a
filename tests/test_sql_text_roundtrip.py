"""Values that look like SQL text, or like the placeholders SQL templates are filled with
(``{table}``, ``%s``, ``%(x)s``, ``$$``, quotes, backslashes), are data: each store keeps
them exactly and touches no other row. Every value is a driver parameter and every
statement is filled once, so none of them can change a statement."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aperag_pg.stores.doc_status import DocStatusStore
from aperag_pg.stores.graph import GraphStore
from aperag_pg.stores.kv import KVStore
from aperag_pg.stores.vector import VectorStore

from .checkpoint_support import Chain, config
from .sql_text import HOSTILE_PIECES
from .test_store_doc_status import _row as doc_status_row

PIECES = HOSTILE_PIECES
EVERYTHING = "".join(PIECES)  # always tried: each piece at once, next to each other
# Hostile pieces between bits of ordinary text, never NUL or a lone surrogate.
_plain = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=4
)
hostile = st.lists(st.one_of(st.sampled_from(PIECES), _plain), min_size=1, max_size=6).map("".join)
# A name (workspace, id, thread) must not be empty or all blanks: the stores refuse those.
hostile_name = hostile.filter(lambda text: text.strip() != "")

ROUND_TRIP = settings(
    max_examples=60,
    deadline=None,
    # the stores live for the whole test; each example writes rows of its own
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


class Untouched:
    """A plain row in the example's workspace and one in another; both must read back
    unchanged after the example's writes."""

    def __init__(self, write, read, workspaces):
        self.read = read
        self.before = {}
        for workspace in workspaces:
            write(workspace)
            self.before[workspace] = read(workspace)
            assert self.before[workspace] is not None

    def check(self) -> None:
        for workspace, row in self.before.items():
            assert self.read(workspace) == row, workspace


def _plain_workspace() -> str:
    return unique("plain-")


def _own(workspace: str) -> str:
    """The example's hostile workspace, made its own: rows left in it must not meet another
    test's workspace of the same name (another file's "$1", say)."""
    return f"{workspace}-{uuid.uuid4().hex[:8]}"


# -- LightRAG's stores ---------------------------------------------------------------


@ROUND_TRIP
@given(workspace=hostile_name, key=hostile_name, text=hostile, meta_key=hostile, value=hostile)
@example(EVERYTHING, EVERYTHING, EVERYTHING, EVERYTHING, EVERYTHING)
def test_kv_store(manager, workspace, key, text, meta_key, value):
    workspace = _own(workspace)
    record = {
        "tokens": 3,
        "chunk_order_index": 0,
        "full_doc_id": value,
        "content": text,
        "file_path": value,
        "llm_cache_list": [text, value],
        "heading": {meta_key: value, "nested": {meta_key: [text]}},
        "sidecar": {"note": text},
    }
    plain = {**record, "content": "plain", "heading": {}, "sidecar": {}}
    stores = {}

    def store(ws: str) -> KVStore:
        if ws not in stores:
            stores[ws] = KVStore("text_chunks", ws)
            stores[ws].ensure_tables()
        return stores[ws]

    untouched = Untouched(
        lambda ws: store(ws).upsert({"plain": plain}),
        lambda ws: store(ws).get_by_id("plain"),
        [workspace, _plain_workspace()],
    )
    store(workspace).upsert({key: record})
    got = store(workspace).get_by_id(key)
    assert {k: got[k] for k in record} == record
    assert store(workspace).filter_keys({key, "absent"}) == {"absent"}
    untouched.check()
    store(workspace).delete([key])
    assert store(workspace).get_by_id(key) is None
    untouched.check()


@ROUND_TRIP
@given(
    workspace=hostile_name, doc_id=hostile_name, path=hostile_name, meta_key=hostile, value=hostile
)
@example(EVERYTHING, EVERYTHING, EVERYTHING, EVERYTHING, EVERYTHING)
def test_doc_status_store(manager, workspace, doc_id, path, meta_key, value):
    workspace = _own(workspace)
    row = doc_status_row(
        file_path=path, summary=value, track_id=value, metadata={meta_key: value, "v": [value]}
    )
    stores = {}

    def store(ws: str) -> DocStatusStore:
        if ws not in stores:
            stores[ws] = DocStatusStore(workspace=ws, manager=manager)
            stores[ws].ensure_tables()
        return stores[ws]

    untouched = Untouched(
        lambda ws: store(ws).upsert({"plain": doc_status_row(file_path="plain.md")}),
        lambda ws: store(ws).get_by_id("plain"),
        [workspace, _plain_workspace()],
    )
    store(workspace).upsert({doc_id: row})
    got = store(workspace).get_by_id(doc_id)
    for field in ("file_path", "content_summary", "track_id", "metadata", "status"):
        assert got[field] == row[field], field
    assert doc_id in store(workspace).get_docs_by_track_id(value)
    assert store(workspace).get_doc_by_file_path(path)["file_path"] == path
    untouched.check()
    store(workspace).delete([doc_id])
    assert store(workspace).get_by_id(doc_id) is None
    untouched.check()


@pytest.fixture
def chunks_table() -> str:
    return f"LIGHTRAG_VDB_CHUNKS_{unique('roundtrip_')}_4d"


@ROUND_TRIP
@given(workspace=hostile_name, chunk_id=hostile_name, text=hostile, path=hostile)
@example(EVERYTHING, EVERYTHING, EVERYTHING, EVERYTHING)
def test_vector_store(manager, chunks_table, workspace, chunk_id, text, path):
    workspace = _own(workspace)

    def chunk(content: str, file_path: str) -> dict:
        return {
            "tokens": 3,
            "chunk_order_index": 0,
            "full_doc_id": file_path,
            "content": content,
            "file_path": file_path,
            "__vector__": [0.1, 0.2, 0.3, 0.4],
        }

    stores = {}

    def store(ws: str) -> VectorStore:
        if ws not in stores:
            stores[ws] = VectorStore("chunks", chunks_table, 4, 0.2, ws)
            stores[ws].ensure_tables()
        return stores[ws]

    untouched = Untouched(
        lambda ws: store(ws).upsert({"plain": chunk("plain", "plain.txt")}),
        lambda ws: _without_times(store(ws).get_by_id("plain")),
        [workspace, _plain_workspace()],
    )
    store(workspace).upsert({chunk_id: chunk(text, path)})
    got = store(workspace).get_by_id(chunk_id)
    assert (got["content"], got["file_path"], got["full_doc_id"]) == (text, path, path)
    assert chunk_id in {hit["id"] for hit in store(workspace).query([0.1, 0.2, 0.3, 0.4], 50)}
    # read by COPY, whose query the driver fills in (mogrify): the same id, the same floats
    vectors = store(workspace).get_vectors_by_ids([chunk_id, "missing"])
    assert vectors == {chunk_id: pytest.approx([0.1, 0.2, 0.3, 0.4])}
    untouched.check()
    store(workspace).delete([chunk_id])
    assert store(workspace).get_by_id(chunk_id) is None
    untouched.check()


@ROUND_TRIP
@given(workspace=hostile_name, a=hostile_name, b=hostile_name, key=hostile, value=hostile)
@example(EVERYTHING, EVERYTHING, EVERYTHING, EVERYTHING, EVERYTHING)
def test_graph_store(manager, workspace, a, b, key, value):
    workspace = _own(workspace)
    if a.strip() == b.strip():
        b = b + "-other"
    properties = {"entity_id": "", "description": value, "file_path": value}
    stores = {}

    def store(ws: str) -> GraphStore:
        if ws not in stores:
            stores[ws] = GraphStore(workspace=ws)
            stores[ws].ensure_tables()
        return stores[ws]

    untouched = Untouched(
        lambda ws: store(ws).upsert_node("plain", {"entity_id": "plain", "description": "p"}),
        lambda ws: store(ws).get_node("plain"),
        [workspace, _plain_workspace()],
    )
    graph = store(workspace)
    graph.upsert_nodes_batch(
        [(a, {**properties, "entity_id": a}), (b, {**properties, "entity_id": b})]
    )
    graph.upsert_edge(a, b, {"label": value, key or "k": value})
    assert graph.get_node(a) == {**properties, "entity_id": a}
    assert graph.get_edge(b, a) == {"label": value, key or "k": value}
    assert sorted(graph.get_node_edges(a)) == [(a, b)]
    untouched.check()
    graph.remove_nodes([a, b])
    assert graph.get_node(a) is None and graph.get_edge(a, b) is None
    untouched.check()


def test_a_filled_part_is_never_scanned_again(admin_conn):
    """The checkpointer fills ``{schema}`` and its named parts in one pass: a part's text
    holding ``{schema}`` (or a brace) stays as it is."""
    from aperag_pg.checkpoint import sql

    text = sql.rendered(admin_conn, "s", "SELECT {where} FROM {schema}.t", where="'{schema}{}'")
    assert text == """SELECT '{schema}{}' FROM "s".t"""


def _without_times(row: dict | None) -> dict | None:
    return None if row is None else {k: v for k, v in row.items() if "time" not in k}


# -- the checkpointer ------------------------------------------------------------------


@ROUND_TRIP
@given(thread_id=hostile_name, namespace=hostile, key=hostile, value=hostile)
@example(EVERYTHING, EVERYTHING, EVERYTHING, EVERYTHING)
def test_checkpointer(saver, thread_id, namespace, key, value):
    thread_id = f"{thread_id}-{uuid.uuid4().hex[:6]}"  # a fresh thread per example
    plain = Chain(saver, unique("plain-"))
    plain.put()
    plain_before = saver.get_tuple(plain.configs[-1])

    chain = Chain(saver, thread_id, namespace)
    first = chain.put(**{key: value, "note": value})
    chain.put(**{key: value, "note": "second"})
    saved = saver.get_tuple(first)
    assert saved.config["configurable"]["thread_id"] == thread_id
    assert saved.config["configurable"]["checkpoint_ns"] == namespace
    assert saved.metadata[key] == value and saved.metadata["note"] == value
    saver.put_writes(first, [(value, {key: value})], value)
    assert saver.get_tuple(first).pending_writes == [(value, value, {key: value})]

    # list() builds its WHERE from fragments: a thread, namespace, metadata filter, before
    listed = list(saver.list(config(thread_id, namespace), filter={"note": value}))
    assert [t.config for t in listed] == [first]
    assert len(list(saver.list(config(thread_id, namespace)))) == 2
    assert len(list(saver.list(None, filter={key: value}, limit=5))) >= 2
    assert list(saver.list(config(thread_id, namespace), before=chain.configs[-1], limit=1))

    assert saver.get_tuple(plain.configs[-1]) == plain_before
    saver.delete_thread(thread_id)
    assert saver.get_tuple(config(thread_id, namespace)) is None
    assert saver.get_tuple(plain.configs[-1]) == plain_before
