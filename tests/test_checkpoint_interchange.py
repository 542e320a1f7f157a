"""PGSyncCheckpointSaver and langgraph-checkpoint-postgres' PostgresSaver on the same tables.

PostgresSaver uses unqualified table names, so the interchange runs in the default
schema (public); the table-definition comparison puts PostgresSaver's tables in a
schema of their own through the connection's search_path.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from typing import Annotated, TypedDict

import psycopg
import pytest
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.checkpoint.serde.types import TASKS
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, Send
from psycopg.rows import dict_row

from aperag_pg.checkpoint import PGSyncCheckpointSaver
from devtools.example_graph import build_review_graph

from .checkpoint_support import (
    Chain,
    config,
    drop_schema,
    new_schema,
    new_thread,
    psycopg3_conninfo,
    saver_in,
)


@pytest.fixture
def theirs(base_settings) -> Iterator[PostgresSaver]:
    """PostgresSaver as its documentation sets it up: autocommit, prepare_threshold=0."""
    with psycopg.Connection.connect(
        psycopg3_conninfo(base_settings), autocommit=True, prepare_threshold=0, row_factory=dict_row
    ) as conn:
        saver = PostgresSaver(conn)
        saver.setup()
        yield saver


@pytest.fixture
def ours(manager, theirs) -> PGSyncCheckpointSaver:
    return saver_in("public")


def assert_same_tuples(a: list, b: list) -> None:
    assert [t.config for t in a] == [t.config for t in b]
    for x, y in zip(a, b, strict=True):
        assert nan_free(x.checkpoint) == nan_free(y.checkpoint)
        assert x.metadata == y.metadata
        assert x.parent_config == y.parent_config
        assert x.pending_writes == y.pending_writes


def nan_free(value):
    """``value`` with NaN replaced by a marker, so that equal checkpoints compare equal."""
    if isinstance(value, float) and math.isnan(value):
        return "<NaN>"
    if isinstance(value, dict):
        return {k: nan_free(v) for k, v in value.items()}
    if isinstance(value, list):
        return [nan_free(v) for v in value]
    return value


def test_tables_match_postgres_saver(manager, admin_conn, base_settings):
    ref, mine = new_schema("pgsaver_ref"), new_schema("ours_ref")
    try:
        with admin_conn.cursor() as cur:
            cur.execute(f'CREATE SCHEMA "{ref}"')
        conninfo = psycopg3_conninfo(base_settings, options=f"-c search_path={ref}")
        with psycopg.Connection.connect(conninfo, autocommit=True, row_factory=dict_row) as conn:
            PostgresSaver(conn).setup()
        saver_in(mine)

        assert describe(admin_conn, mine) == describe(admin_conn, ref)
        with admin_conn.cursor() as cur:
            for schema in (ref, mine):
                cur.execute(f'SELECT array_agg(v ORDER BY v) FROM "{schema}".checkpoint_migrations')
                assert cur.fetchone()[0] == list(range(len(PostgresSaver.MIGRATIONS)))
    finally:
        drop_schema(admin_conn, ref)
        drop_schema(admin_conn, mine)


def describe(admin_conn, schema: str) -> dict:
    """Columns, primary keys and indexes of the checkpoint tables, without the schema name."""
    with admin_conn.cursor() as cur:
        cur.execute(
            """
            SELECT table_name, column_name, data_type, is_nullable, column_default, ordinal_position
            FROM information_schema.columns WHERE table_schema = %s ORDER BY 1, 6
            """,
            (schema,),
        )
        columns = cur.fetchall()
        cur.execute(
            "SELECT tablename, indexname, replace(indexdef, %s, '') FROM pg_indexes "
            "WHERE schemaname = %s ORDER BY 1, 2",
            (f"{schema}.", schema),
        )
        indexes = cur.fetchall()
    assert {c[0] for c in columns} == {
        "checkpoint_migrations",
        "checkpoints",
        "checkpoint_blobs",
        "checkpoint_writes",
    }
    return {"columns": columns, "indexes": indexes}


def test_setup_of_either_saver_accepts_the_other(manager, theirs, admin_conn):
    """PostgresSaver.setup() ran first (fixture): ours applies no migration and adds no
    version; after ours, PostgresSaver.setup() again finds nothing to do."""
    with admin_conn.cursor() as cur:
        cur.execute("SELECT array_agg(v ORDER BY v) FROM checkpoint_migrations")
        before = cur.fetchone()[0]
        assert PGSyncCheckpointSaver(schema="public").setup() == []
        theirs.setup()
        cur.execute("SELECT array_agg(v ORDER BY v) FROM checkpoint_migrations")
        assert cur.fetchone()[0] == before == list(range(10))


@pytest.mark.parametrize("first", ["theirs", "ours"])
def test_graph_started_by_one_saver_is_resumed_by_the_other(first, theirs, ours):
    savers = {"theirs": theirs, "ours": ours}
    second = "ours" if first == "theirs" else "theirs"
    cfg = {"configurable": {"thread_id": new_thread("interchange")}}
    starter = build_review_graph(savers[first])
    finisher = build_review_graph(savers[second])

    result = starter.invoke({"topic": "interchange"}, cfg)
    assert result["__interrupt__"][0].value["question"] == "Publish this draft?"
    state = finisher.get_state(cfg)
    assert state.next == ("review",) and state.values["draft"].endswith("interchange.")

    final = finisher.invoke(Command(resume="yes"), cfg)
    assert final["verdict"] == "yes" and final["draft"].endswith("(published)")
    assert [entry.split("@")[0] for entry in final["log"]] == ["draft", "review", "publish"]

    history_theirs = list(theirs.list(cfg))
    history_ours = list(ours.list(cfg))
    assert len(history_ours) == 5
    assert_same_tuples(history_ours, history_theirs)
    for t in history_ours:  # and get_tuple of each checkpoint agrees too
        assert_same_tuples([ours.get_tuple(t.config)], [theirs.get_tuple(t.config)])


def test_values_and_writes_read_identically_both_ways(theirs, ours):
    """Blobs, inline values, the values jsonb cannot hold, and writes (special channels
    included) written by either saver read back the same through both."""
    values = {
        "text": "plain",
        "nul_text": "a\x00b",  # jsonb cannot hold it: ours stores it as a blob
        "nan": math.nan,  # nor this
        "inf": -math.inf,
        "big": 2**80,
        "flag": True,
        "none": None,
        "bytes": b"\x00\xffraw",
        "nested": {"list": [1, 2.5, "x"], "set": {1, 2}},
        "send": [Send("node", {"arg": 1})],
    }
    for writer in (ours, theirs):
        supported = dict(values)
        if writer is theirs:  # PostgresSaver itself cannot write these
            for key in ("nul_text", "nan", "inf"):
                supported.pop(key)
        thread = new_thread("values")
        versions = {k: writer.get_next_version(None, None) for k in supported}
        checkpoint = {
            "v": 4,
            "id": "1f000000-0000-6000-8000-000000000001",
            "ts": "2026-01-01T00:00:00+00:00",
            "channel_values": supported,
            "channel_versions": versions,
            "versions_seen": {"node": {"text": versions["text"]}},
            "updated_channels": None,
        }
        saved = writer.put(config(thread), checkpoint, {"source": "input", "step": -1}, versions)
        writer.put_writes(saved, [("a", {"x": 1}), ("b", b"bin"), ("__error__", "boom")], "task1")
        writer.put_writes(saved, [("__interrupt__", {"why": "review"})], "task2", "path:2")
        read_theirs, read_ours = theirs.get_tuple(saved), ours.get_tuple(saved)
        assert_same_tuples([read_ours], [read_theirs])
        got = read_ours.checkpoint["channel_values"]
        assert set(got) == set(supported)
        for key, value in supported.items():
            if isinstance(value, float) and math.isnan(value):
                assert math.isnan(got[key])
            else:
                assert got[key] == value, key
        assert [w[1] for w in read_ours.pending_writes] == ["__error__", "a", "b", "__interrupt__"]
        assert_same_tuples(list(ours.list(config(thread))), list(theirs.list(config(thread))))


def test_pending_sends_of_old_checkpoints_migrate_the_same(theirs, ours):
    """A checkpoint from before format v4 reads its pending sends from its parent's
    __pregel_tasks writes; both savers present them the same way."""
    for writer in (ours, theirs):
        thread = new_thread("v3")
        parent_cp = {
            "v": 3,
            "id": "1f000000-0000-6000-8000-00000000000a",
            "ts": "2024-01-01T00:00:00+00:00",
            "channel_values": {"x": [1]},
            "channel_versions": {"x": "00000000000000000000000000000001.1"},
            "versions_seen": {},
            "pending_sends": [],
        }
        parent = writer.put(config(thread), parent_cp, {"step": 0}, parent_cp["channel_versions"])
        writer.put_writes(parent, [(TASKS, Send("a", 1)), (TASKS, Send("b", 2))], "t1")
        child_cp = dict(parent_cp, id="1f000000-0000-6000-8000-00000000000b")
        child = writer.put(
            config(thread, checkpoint_id=parent["configurable"]["checkpoint_id"]),
            child_cp,
            {"step": 1},
            {},
        )
        ours_tuple, theirs_tuple = ours.get_tuple(child), theirs.get_tuple(child)
        assert ours_tuple.checkpoint["channel_values"][TASKS] == [Send("a", 1), Send("b", 2)]
        assert_same_tuples([ours_tuple], [theirs_tuple])
        assert_same_tuples(list(ours.list(config(thread))), list(theirs.list(config(thread))))


def test_prune_and_delete_by_either_saver_leave_the_other_consistent(theirs, ours):
    for pruner, reader in ((ours, theirs), (theirs, ours)):
        thread = new_thread("prune")
        chain = Chain(ours if pruner is theirs else theirs, thread)
        for _ in range(6):
            chain.put()
        chain.saver.put_writes(chain.configs[-1], [("messages", "pending")], "t")
        pruner.prune([thread], strategy="keep_latest")
        listed = list(reader.list(config(thread)))
        assert [t.config for t in listed] == [chain.configs[-1]]
        assert listed[0].checkpoint["channel_values"] == chain.values(5)
        assert listed[0].parent_config is None
        assert listed[0].pending_writes[0][2] == "pending"
        pruner.delete_thread(thread)
        assert reader.get_tuple(config(thread)) is None


class DeltaState(TypedDict):
    n: int
    items: Annotated[list, DeltaChannel(lambda state, writes: state + writes, snapshot_frequency=3)]


def _delta_graph(checkpointer):
    builder = StateGraph(DeltaState)
    builder.add_node("append", lambda state: {"items": state["n"]})
    builder.add_edge(START, "append")
    builder.add_edge("append", END)
    return builder.compile(checkpointer=checkpointer)


def test_delta_channel_state_rebuilds_the_same_through_both(theirs, ours):
    """A DeltaChannel keeps snapshots every few steps and writes in between; each saver
    rebuilds the value from what the other wrote, and their delta histories agree."""
    for writer, reader in ((ours, theirs), (theirs, ours)):
        cfg = {"configurable": {"thread_id": new_thread("delta")}}
        write_graph, read_graph = _delta_graph(writer), _delta_graph(reader)
        for i in range(8):
            (write_graph if i % 2 else read_graph).invoke({"n": i}, cfg)
        assert read_graph.get_state(cfg).values["items"] == list(range(8))
        assert write_graph.get_state(cfg).values["items"] == list(range(8))
        histories = []
        paged = PGSyncCheckpointSaver(schema="public")
        paged.delta_page_size = 2  # the walk crosses pages
        for t in ours.list(cfg, limit=12):
            channels = ["items", "n"]
            mine = ours.get_delta_channel_history(config=t.config, channels=channels)
            upstream = theirs.get_delta_channel_history(config=t.config, channels=channels)
            walked = BaseCheckpointSaver.get_delta_channel_history(
                ours, config=t.config, channels=channels
            )
            assert mine == upstream == walked
            assert paged.get_delta_channel_history(config=t.config, channels=channels) == mine
            assert (
                asyncio.run(ours.aget_delta_channel_history(config=t.config, channels=channels))
                == mine
            )
            histories.append(mine["items"])
        assert any(h["writes"] for h in histories) and any("seed" in h for h in histories)
        assert any(len(h["writes"]) > 1 for h in histories)  # walked more than one parent
        with pytest.raises(NotImplementedError, match="DeltaChannel"):
            writer.prune([cfg["configurable"]["thread_id"]])
