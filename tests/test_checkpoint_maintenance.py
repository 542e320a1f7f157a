"""prune, delete_for_runs, copy_thread and age-based retention: what they delete, what
they keep, and that no blob is left behind that nothing references (or removed while
something still does)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from langgraph.types import Command

from aperag_pg.checkpoint import sql
from aperag_pg.checkpoint.retention import apply_retention
from aperag_pg.errors import InvalidInput
from devtools.example_graph import build_review_graph

from .checkpoint_support import (
    Chain,
    config,
    drop_schema,
    new_schema,
    new_thread,
    saver_in,
    table_counts,
    unreferenced_blobs,
)

NOW = datetime.now(timezone.utc)
EMPTY = {"checkpoints": 0, "checkpoint_blobs": 0, "checkpoint_writes": 0}


def ids(saver, thread_id: str, checkpoint_ns: str | None = "") -> list[str]:
    cfg = {"configurable": {"thread_id": thread_id}}
    if checkpoint_ns is not None:
        cfg["configurable"]["checkpoint_ns"] = checkpoint_ns
    return [t.config["configurable"]["checkpoint_id"] for t in saver.list(cfg)]


def with_writes(chain: Chain, n: int, **kwargs) -> Chain:
    for _ in range(n):
        saved = chain.put(**kwargs)
        chain.saver.put_writes(saved, [("messages", f"w{chain.step}")], "task")
    return chain


# -- prune --------------------------------------------------------------------------------


def test_keep_latest_keeps_each_namespace_head_and_what_it_needs(saver, schema, admin_conn):
    thread = new_thread("prune")
    root = with_writes(Chain(saver, thread), 6)
    inner = with_writes(Chain(saver, thread, "inner"), 3)  # a checkpointer=True subgraph
    old_root = root.configs[1]["configurable"]["checkpoint_id"]
    head_root = root.configs[-1]["configurable"]["checkpoint_id"]
    stale_call = with_writes(Chain(saver, thread, "call:old"), 2, parents={"": old_root})
    live_call = with_writes(Chain(saver, thread, "call:live"), 2, parents={"": head_root})
    other = with_writes(Chain(saver, new_thread("other")), 3)

    saver.prune([thread], strategy="keep_latest")

    for chain in (root, inner, live_call):
        listed = list(saver.list(config(thread, chain.checkpoint_ns)))
        assert [t.config for t in listed] == [chain.configs[-1]]
        assert listed[0].parent_config is None  # its parent was deleted
        assert listed[0].checkpoint["channel_values"] == chain.values(chain.step - 1)
        assert listed[0].pending_writes == [("task", "messages", f"w{chain.step}")]
    assert ids(saver, thread, stale_call.checkpoint_ns) == []
    assert unreferenced_blobs(admin_conn, schema, thread) == 0
    counts = table_counts(admin_conn, schema, thread)
    assert counts == {"checkpoints": 3, "checkpoint_blobs": 3 * 2, "checkpoint_writes": 3}
    assert len(ids(saver, other.thread_id)) == 3  # untouched


def test_keep_latest_refuses_delta_channel_threads(saver):
    plain = with_writes(Chain(saver, new_thread("plain")), 3)
    delta = Chain(saver, new_thread("delta"))
    for _ in range(3):
        delta.put(counters_since_delta_snapshot={"messages": [1, 1]})
    with pytest.raises(NotImplementedError, match="DeltaChannel"):
        saver.prune([plain.thread_id, delta.thread_id])
    assert len(ids(saver, plain.thread_id)) == 3  # nothing pruned, not even the plain one
    saver.prune([delta.thread_id], strategy="delete")  # deleting whole threads is fine
    assert ids(saver, delta.thread_id) == []


def test_prune_delete_and_argument_checks(saver, schema, admin_conn):
    gone = with_writes(Chain(saver, new_thread("gone")), 3)
    kept = with_writes(Chain(saver, new_thread("kept")), 3)
    saver.prune([gone.thread_id], strategy="delete")
    assert table_counts(admin_conn, schema, gone.thread_id) == EMPTY
    assert len(ids(saver, kept.thread_id)) == 3
    with pytest.raises(TypeError):
        saver.prune(kept.thread_id)
    with pytest.raises(ValueError, match="strategy"):
        saver.prune([kept.thread_id], strategy="oldest")
    with pytest.raises(TypeError):
        saver.delete_for_runs("run-1")


# -- delete_for_runs ---------------------------------------------------------------------


def test_delete_for_runs_keeps_blobs_later_runs_still_use(saver, schema, admin_conn):
    thread = new_thread("runs")
    chain = with_writes(Chain(saver, thread, context_every=10, run_id="run-a"), 3)
    chain.run_id = "run-b"
    with_writes(chain, 3)  # run b's checkpoints still use run a's context blob
    elsewhere = with_writes(Chain(saver, new_thread("runs2"), "ns", run_id="run-a"), 2)

    saver.delete_for_runs(["run-a", "unknown-run"])

    listed = list(saver.list(config(thread)))
    assert [t.config for t in listed] == list(reversed(chain.configs[3:]))
    assert all(t.metadata["run_id"] == "run-b" for t in listed)
    assert listed[-1].parent_config is None  # its parent belonged to run a
    for t, step in zip(reversed(listed), range(3, 6), strict=True):
        assert t.checkpoint["channel_values"] == chain.values(step)
        assert t.pending_writes == [("task", "messages", f"w{step + 1}")]
    assert unreferenced_blobs(admin_conn, schema, thread) == 0
    assert table_counts(admin_conn, schema, thread)["checkpoint_writes"] == 3
    assert table_counts(admin_conn, schema, elsewhere.thread_id) == EMPTY


# -- copy_thread -------------------------------------------------------------------------


def test_copied_thread_resumes_independently(saver, schema, admin_conn):
    graph = build_review_graph(saver)
    source, target = new_thread("src"), new_thread("dst")
    graph.invoke({"topic": "copies"}, {"configurable": {"thread_id": source}})
    saver.copy_thread(source, target)
    assert table_counts(admin_conn, schema, target) == table_counts(admin_conn, schema, source)
    assert ids(saver, target, None) == ids(saver, source, None)

    before = ids(saver, source)
    published = graph.invoke(Command(resume="yes"), {"configurable": {"thread_id": target}})
    revised = graph.invoke(Command(resume="no"), {"configurable": {"thread_id": source}})
    assert published["draft"].endswith("(published)")
    assert revised["draft"].endswith("(needs work)")
    assert ids(saver, target)[-len(before) :] == before

    with pytest.raises(InvalidInput, match="already has checkpoints"):
        saver.copy_thread(source, target)
    assert graph.get_state({"configurable": {"thread_id": target}}).values["verdict"] == "yes"


# -- retention ---------------------------------------------------------------------------


def test_stale_threads_are_deleted_whole(saver, schema, admin_conn):
    old = with_writes(Chain(saver, new_thread("old")), 3, ts=NOW - timedelta(days=40))
    active = with_writes(Chain(saver, new_thread("active")), 2, ts=NOW - timedelta(days=40))
    with_writes(active, 1, ts=NOW - timedelta(hours=1))
    undated = Chain(saver, new_thread("undated"))
    saved = undated.put(ts=NOW - timedelta(days=40))
    checkpoint = saver.get_tuple(saved).checkpoint
    checkpoint["ts"] = "some day"  # not a timestamp: never counted as old
    saver.put(config(undated.thread_id), checkpoint, {"source": "update"}, {})

    report = apply_retention(thread_ttl=timedelta(days=30), schema=schema)

    assert report.threads_deleted == 1 and report.checkpoints_deleted_with_threads == 3
    assert table_counts(admin_conn, schema, old.thread_id) == EMPTY
    assert len(ids(saver, active.thread_id)) == 3
    assert len(ids(saver, undated.thread_id)) == 1


def test_stale_thread_batches_recheck_and_are_bounded(saver, schema, admin_conn, manager):
    stale = [
        with_writes(Chain(saver, new_thread("stale")), 1, ts=NOW - timedelta(days=9))
        for _ in range(3)
    ]
    fresh = with_writes(Chain(saver, new_thread("fresh")), 1)
    with manager.get_connection() as conn, conn.cursor() as cur:  # a batch gone fresh
        cur.execute(
            sql.rendered(conn, schema, sql.DELETE_STALE_THREADS),
            ([fresh.thread_id], NOW - timedelta(days=1)),
        )
        assert cur.fetchone() == (0, 0)
    first = apply_retention(thread_ttl=timedelta(days=1), schema=schema, max_threads=2)
    second = apply_retention(thread_ttl=timedelta(days=1), schema=schema, max_threads=2)
    assert (first.threads_deleted, second.threads_deleted) == (2, 1)
    for chain in stale:
        assert table_counts(admin_conn, schema, chain.thread_id) == EMPTY
    assert len(ids(saver, fresh.thread_id)) == 1


def test_old_history_is_pruned_keeping_heads(saver, schema, admin_conn):
    thread = new_thread("history")
    root = with_writes(Chain(saver, thread, context_every=4), 5, ts=NOW - timedelta(days=20))
    with_writes(root, 3, ts=NOW - timedelta(days=1))
    sub = with_writes(Chain(saver, thread, "sub"), 3, ts=NOW - timedelta(days=20))
    delta = Chain(saver, new_thread("delta"))
    for _ in range(3):
        delta.put(ts=NOW - timedelta(days=20), counters_since_delta_snapshot={"m": [1, 1]})
    delta.put()

    report = apply_retention(history_ttl=timedelta(days=7), schema=schema)

    assert report.threads_pruned == 1 and report.checkpoints_pruned == 5 + 2
    assert report.delta_threads_skipped == 1
    listed = list(saver.list(config(thread)))
    assert [t.config for t in listed] == list(reversed(root.configs[5:]))
    assert listed[-1].parent_config is None
    for t, step in zip(reversed(listed), range(5, 8), strict=True):
        assert t.checkpoint["channel_values"] == root.values(step)  # step 5 still has its
        assert t.pending_writes == [("task", "messages", f"w{step + 1}")]  # context blob
    assert [t.config for t in saver.list(config(thread, "sub"))] == [sub.configs[-1]]
    assert unreferenced_blobs(admin_conn, schema, thread) == 0
    assert len(ids(saver, delta.thread_id)) == 4
    again = apply_retention(history_ttl=timedelta(days=7), schema=schema)
    assert again.checkpoints_pruned == 0


def test_retention_without_tables_or_rules(manager, admin_conn):
    schema = new_schema("empty")
    try:
        report = apply_retention(
            thread_ttl=timedelta(days=1), history_ttl=timedelta(days=1), schema=schema
        )
        assert report.as_dict() == dict.fromkeys(report.as_dict(), 0)
        saver_in(schema)
        assert apply_retention(schema=schema).as_dict() == report.as_dict()
        with pytest.raises(ValueError, match="positive"):
            apply_retention(thread_ttl=timedelta(0), schema=schema)
    finally:
        drop_schema(admin_conn, schema)
