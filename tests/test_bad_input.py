"""Values PostgreSQL cannot take are refused with InvalidInput naming the record and field,
before anything is written, in every store and the checkpointer; and every value the
stores accept comes back exactly (property-based, with hypothesis)."""

from __future__ import annotations

import math
import uuid

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aperag_pg.errors import InvalidInput
from aperag_pg.stores.doc_status import DocStatusStore
from aperag_pg.stores.kv import KVStore
from aperag_pg.stores.vector import VectorStore
from aperag_pg.stores.vector_tables import vector_table_name

from .checkpoint_support import Chain, config

LONE = "a\ud800b"  # a lone surrogate: no UTF-8 form
DIM = 4
PROPERTY = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Any text Python can hold: NUL, lone surrogates, emoji, right-to-left marks, ...
ANY_TEXT = st.text(st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF), max_size=40)


def workspace() -> str:
    return f"bad_{uuid.uuid4().hex[:8]}"


def storable(text: str) -> bool:
    return "\x00" not in text and not any(0xD800 <= ord(c) <= 0xDFFF for c in text)


@pytest.fixture
def kv(manager):
    store = KVStore("full_docs", workspace())
    store.ensure_tables()
    return store


def vector_store(namespace: str) -> VectorStore:
    table = vector_table_name(namespace, "bad", DIM)
    store = VectorStore(namespace, table, DIM, 0.2, workspace())
    store.ensure_tables()
    return store


@pytest.fixture
def chunks(manager):
    return vector_store("chunks")


@pytest.fixture
def entities(manager):
    return vector_store("entities")


@pytest.fixture
def relations(manager):
    return vector_store("relationships")


@pytest.fixture
def docs(manager):
    store = DocStatusStore(workspace=workspace())
    store.ensure_tables()
    return store


def chunk(**fields) -> dict:
    return {
        "tokens": 3,
        "chunk_order_index": 0,
        "full_doc_id": "doc-1",
        "content": "text",
        "file_path": "a.txt",
        "__vector__": [0.5, 0.25, 1.0, 2.0],
        **fields,
    }


def doc(**fields) -> dict:
    return {
        "content_summary": "summary",
        "content_length": 7,
        "status": "processed",
        "file_path": "a.txt",
        **fields,
    }


# -- each case of the hostile pass: refused, named, nothing written ---------------------


@pytest.mark.parametrize(
    ("record_id", "content", "says"),
    [
        (LONE, "fine", "lone surrogate"),
        ("doc-1", LONE, "lone surrogate"),
        ("doc-1", "nul\x00", "NUL"),
    ],
)
def test_kv_refuses_text_postgresql_cannot_store(kv, record_id, content, says):
    batch = {"good": {"content": "kept out"}, record_id: {"content": content}}
    with pytest.raises(InvalidInput, match=says) as info:
        kv.upsert(batch)
    assert repr(record_id)[:20].strip("'") in str(info.value) or "content" in str(info.value)
    assert kv.get_by_id("good") is None  # nothing was written


@pytest.mark.parametrize(
    ("fields", "names"),
    [
        ({"content": LONE}, ("'content'", "lone surrogate")),
        ({"full_doc_id": "d" * 257}, ("'full_doc_id'", "257 characters", "at most 256")),
        ({"tokens": "abc"}, ("'tokens'", "whole number", "str")),
        ({"tokens": 2**40}, ("'tokens'", str(2**40), "INTEGER")),
        ({"chunk_order_index": 1.5}, ("'chunk_order_index'", "whole number")),
        ({"file_path": {}}, ("'file_path'", "must be a string", "dict")),
    ],
)
def test_vector_chunks_refuse_what_their_columns_cannot_hold(chunks, fields, names):
    with pytest.raises(InvalidInput) as info:
        chunks.upsert({"good": chunk(), "bad-row": chunk(**fields)})
    for name in ("'bad-row'", *names):
        assert name in str(info.value), str(info.value)
    assert chunks.get_by_id("good") is None


def test_vector_entities_and_relations_refuse_overlong_names(entities, relations):
    entity = {"entity_name": "n" * 513, "content": "c", "source_id": "chunk-1"}
    with pytest.raises(InvalidInput, match="'entity_name' of vector row 'ent-1' is 513"):
        entities.upsert({"ent-1": {**entity, "__vector__": [1.0] * DIM}})
    relation = {"src_id": "s" * 513, "tgt_id": "t", "content": "c", "source_id": "chunk-1"}
    with pytest.raises(InvalidInput, match="'src_id' of vector row 'rel-1' is 513"):
        relations.upsert({"rel-1": {**relation, "__vector__": [1.0] * DIM}})
    relation = {**relation, "src_id": "s", "source_id": "c" * 256}
    with pytest.raises(InvalidInput, match=r"'source_id' of vector row 'rel-1'\[0\] is 256"):
        relations.upsert({"rel-1": {**relation, "__vector__": [1.0] * DIM}})


@pytest.mark.parametrize(
    ("fields", "names"),
    [
        ({"metadata": {"score": math.nan}}, ("metadata", "NaN")),
        ({"chunks_list": [math.inf]}, ("chunks_list", "NaN")),
        ({"content_summary": "s" * 256}, ("content_summary", "256 characters", "at most 255")),
        ({"status": "s" * 65}, ("status", "65 characters", "at most 64")),
        ({"content_length": 2**40}, ("content_length", str(2**40), "int4")),
        ({"file_path": LONE}, ("file_path", "lone surrogate")),
        ({"error_msg": 42}, ("error_msg", "must be a string")),
    ],
)
def test_doc_status_refuses_what_its_columns_cannot_hold(docs, fields, names):
    with pytest.raises(InvalidInput) as info:
        docs.upsert({"good": doc(), "doc-bad": doc(**fields)})
    for name in ("'doc-bad'", *names):
        assert name in str(info.value), str(info.value)
    assert docs.get_by_id("good") is None


def test_checkpoint_ids_refuse_lone_surrogates(saver):
    with pytest.raises(InvalidInput, match="thread_id 'a\\\\ud800b' contains a lone surrogate"):
        Chain(saver, LONE).put()
    assert saver.get_tuple(config(LONE)) is None  # a key no row can hold: nothing found
    assert list(saver.list(config(LONE))) == []


# -- properties: whatever is accepted comes back exactly --------------------------------


@PROPERTY
@given(record_id=ANY_TEXT.filter(bool), content=ANY_TEXT)
def test_kv_round_trips_or_refuses(kv, record_id, content):
    try:
        kv.upsert({record_id: {"content": content}})
    except InvalidInput:
        assert not (storable(record_id) and storable(content)) or len(record_id) > 255
        return
    assert kv.get_by_id(record_id)["content"] == content


@PROPERTY
@given(
    content=ANY_TEXT,
    full_doc_id=st.text(max_size=300),
    tokens=st.integers(-(2**33), 2**33),
    vector=st.lists(st.floats(width=32), min_size=DIM, max_size=DIM),
)
def test_vector_rows_round_trip_or_refuse(chunks, content, full_doc_id, tokens, vector):
    fields = {"content": content, "full_doc_id": full_doc_id, "tokens": tokens}
    try:
        chunks.upsert({"row": chunk(**fields, __vector__=vector)})
    except InvalidInput:
        fits = storable(content) and storable(full_doc_id) and len(full_doc_id) <= 256
        assert not (fits and abs(tokens) < 2**31 and all(map(math.isfinite, vector)))
        return
    stored = chunks.get_by_id("row")
    assert (stored["content"], stored["full_doc_id"], stored["tokens"]) == (
        content,
        full_doc_id,
        tokens,
    )
    np.testing.assert_array_equal(
        np.asarray(chunks.get_vectors_by_ids(["row"])["row"], dtype=np.float32),
        np.asarray(vector, dtype=np.float32),
    )


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats() | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT, inner, max_size=3),
    max_leaves=6,
)


def json_storable(value) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, list):
        return all(map(json_storable, value))
    if isinstance(value, dict):
        return all(storable(k) and json_storable(v) for k, v in value.items())
    return True


@PROPERTY
@given(summary=st.text(max_size=300), length=st.integers(-(2**33), 2**33), metadata=JSON)
def test_doc_status_round_trips_or_refuses(docs, summary, length, metadata):
    metadata = {"m": metadata}
    try:
        docs.upsert({"d": doc(content_summary=summary, content_length=length, metadata=metadata)})
    except InvalidInput:
        fits = storable(summary) and len(summary) <= 255 and abs(length) < 2**31
        assert not (fits and json_storable(metadata))
        return
    stored = docs.get_by_id("d")
    assert (stored["content_summary"], stored["content_length"]) == (summary, length)
    assert stored["metadata"] == metadata


@PROPERTY
@given(thread_id=ANY_TEXT.filter(bool))
def test_checkpoint_thread_ids_round_trip_or_refuse(saver, thread_id):
    try:
        saved = Chain(saver, thread_id).put()
    except InvalidInput:
        assert not storable(thread_id)
        return
    assert saver.get_tuple(saved).config["configurable"]["thread_id"] == thread_id
