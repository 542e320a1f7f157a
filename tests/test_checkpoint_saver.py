"""PGSyncCheckpointSaver's own behaviour: threads and event loops, no instance lock,
concurrency on one thread, bad input, large state, paging, and what it leaves on a
connection (nothing, so PgBouncer in transaction mode is safe)."""

from __future__ import annotations

import asyncio
import copy
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg2
import pytest
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.types import Command

from aperag_pg.checkpoint import PGSyncCheckpointSaver, functions, sql
from aperag_pg.errors import InvalidInput, SchemaError
from devtools.example_graph import build_review_graph

from .checkpoint_support import (
    Chain,
    config,
    drop_schema,
    new_schema,
    new_thread,
    saver_in,
    table_counts,
)
from .polling import lock_waiters, wait_until

# -- threads, event loops, copies ------------------------------------------------------


def test_one_saver_serves_invoke_and_ainvoke_from_any_thread_or_loop(saver):
    graph = build_review_graph(saver)

    def run_in_new_loop(i: int) -> dict:
        cfg = {"configurable": {"thread_id": new_thread(f"loop{i}")}}
        first = asyncio.run(graph.ainvoke({"topic": f"t{i}"}, cfg))  # a fresh loop each time
        assert first["__interrupt__"]
        if i % 2:
            return graph.invoke(Command(resume="yes"), cfg)  # sync, same saver and graph
        return asyncio.run(graph.ainvoke(Command(resume="yes"), cfg))

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run_in_new_loop, range(8)))
    for result in results:
        assert result["draft"].endswith("(published)")
        assert [e.split("@")[0] for e in result["log"]] == ["draft", "review", "publish"]


def test_async_methods_match_sync_ones(saver):
    chain = Chain(saver, new_thread())
    for _ in range(3):
        chain.put()

    async def read_all():
        listed = [t async for t in saver.alist(config(chain.thread_id))]
        latest = await saver.aget_tuple(config(chain.thread_id))
        await saver.aput_writes(chain.configs[-1], [("messages", "w")], "task")
        after = await saver.aget_tuple(config(chain.thread_id))
        return listed, latest, after

    listed, latest, after = asyncio.run(read_all())
    assert [t.config for t in listed] == [t.config for t in saver.list(config(chain.thread_id))]
    assert latest.config == chain.configs[-1] and latest.pending_writes == []
    assert after.pending_writes == [("task", "messages", "w")]
    asyncio.run(saver.adelete_thread(chain.thread_id))
    assert saver.get_tuple(config(chain.thread_id)) is None


def test_copies_share_nothing_that_breaks(schema):
    """with_allowlist() makes a copy.copy() clone with its own serde; every copy works."""
    strict = JsonPlusSerializer(allowed_msgpack_modules=[("datetime", "date")])
    saver = saver_in(schema, serde=strict)
    clone = copy.copy(saver)
    allowed = saver.with_allowlist([("tests.checkpoint_support", "Chain")])
    assert allowed is not saver and allowed.serde is not saver.serde
    assert allowed.manager is saver.manager and allowed.schema == schema
    for each in (clone, allowed, copy.deepcopy(saver), saver):
        chain = Chain(each, new_thread("copy"))
        chain.put()
        assert saver.get_tuple(config(chain.thread_id)).checkpoint["channel_values"] == (
            chain.values(0)
        )


def test_calls_are_not_serialized_by_an_instance_lock(saver, schema, admin_conn, base_settings):
    """While one put waits on a row lock, another call on the same saver completes."""
    chain = Chain(saver, new_thread("locked"))
    saved = chain.put()
    other = Chain(saver, new_thread("free"))
    other.put()
    holder = psycopg2.connect(**base_settings.connect_kwargs())
    try:
        with holder.cursor() as cur:  # a transaction holding the checkpoint row
            cur.execute(
                f'SELECT 1 FROM "{schema}".checkpoints WHERE thread_id = %s FOR UPDATE',
                (chain.thread_id,),
            )
        blocked_done = threading.Event()
        checkpoint = saver.get_tuple(saved).checkpoint

        def blocked_put() -> None:
            parent = {"configurable": {"thread_id": chain.thread_id, "checkpoint_ns": ""}}
            saver.put(parent, checkpoint, {"step": 0}, {})  # same id: waits for the row lock
            blocked_done.set()

        worker = threading.Thread(target=blocked_put)
        worker.start()
        wait_until(lambda: lock_waiters(holder), "the put waits for the row lock")
        assert not blocked_done.is_set()
        started = time.monotonic()
        assert saver.get_tuple(config(other.thread_id)) is not None
        other.put()
        assert time.monotonic() - started < 2
        assert not blocked_done.is_set()
    finally:
        holder.rollback()
        holder.close()
    worker.join(10)
    assert blocked_done.is_set()


# -- concurrency on one thread -----------------------------------------------------------


def test_concurrent_writers_on_one_thread(saver, schema, admin_conn):
    thread = new_thread("shared")
    writers = [Chain(saver, thread, checkpoint_ns=ns) for ns in ("", "", "a", "a", "b", "")]

    def write(chain: Chain) -> None:
        for step in range(15):
            saved = chain.put()
            saver.put_writes(saved, [("messages", step), ("__error__", "e")], "task")
            saver.put_writes(saved, [("messages", -1), ("__error__", "e2")], "task")  # a retry
            saver.put_writes(saved, [("__error__", "e3")], "task")  # special channels only

    with ThreadPoolExecutor(len(writers)) as pool:
        list(pool.map(write, writers))

    listed = list(saver.list({"configurable": {"thread_id": thread}}))
    assert len(listed) == 6 * 15
    ids = [t.config["configurable"]["checkpoint_id"] for t in listed]
    assert len(set(ids)) == len(ids)
    by_config = {
        (t.config["configurable"]["checkpoint_ns"], t.config["configurable"]["checkpoint_id"]): t
        for t in listed
    }
    for chain in writers:
        for step, cfg in enumerate(chain.configs):
            got = by_config[(chain.checkpoint_ns, cfg["configurable"]["checkpoint_id"])]
            assert got.checkpoint["channel_values"] == chain.values(step)
            # as in PostgresSaver: a retried batch keeps the first attempt, and a batch of
            # special channels only (errors, interrupts) replaces
            assert got.pending_writes == [
                ("task", "__error__", "e3"),
                ("task", "messages", step),
            ]
    counts = table_counts(admin_conn, schema, thread)
    assert counts["checkpoints"] == 90 and counts["checkpoint_writes"] == 180


def test_concurrent_puts_of_the_same_checkpoint(saver):
    """Retries of one checkpoint from several threads: no error, one consistent row."""
    thread = new_thread("same")
    chain = Chain(saver, thread)
    chain.put()
    checkpoint = saver.get_tuple(chain.configs[0]).checkpoint
    versions = checkpoint["channel_versions"]

    def put(i: int) -> None:
        saver.put(config(thread), checkpoint, {"source": "loop", "attempt": i}, versions)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(32)))
    listed = list(saver.list(config(thread)))
    assert len(listed) == 1
    assert listed[0].checkpoint["channel_values"] == chain.values(0)
    assert 0 <= listed[0].metadata["attempt"] < 32


# -- bad input ----------------------------------------------------------------------------


def _checkpoint(values: dict, versions: dict | None = None) -> tuple[dict, dict]:
    versions = versions or {k: f"{i + 1:032}.5" for i, k in enumerate(values)}
    checkpoint = {
        "v": 4,
        "id": "1f000000-0000-6000-8000-0000000000aa",
        "ts": "2026-01-01T00:00:00+00:00",
        "channel_values": values,
        "channel_versions": versions,
        "versions_seen": {},
        "updated_channels": None,
    }
    return checkpoint, versions


@pytest.mark.parametrize(
    "metadata, where",
    [
        ({"note": "a\x00b"}, "$.note"),
        ({"nested": {"deep": ["ok", "x\x00"]}}, "$.nested.deep[1]"),
        ({"ke\x00y": 1}, "a key"),
    ],
)
def test_metadata_with_nul_is_refused_and_nothing_is_written(
    saver, schema, admin_conn, metadata, where
):
    thread = new_thread("nul")
    checkpoint, versions = _checkpoint({"messages": [1, 2, 3], "step": 1})
    with pytest.raises(InvalidInput, match="NUL") as info:
        saver.put(config(thread), checkpoint, metadata, versions)
    assert where in str(info.value)
    assert table_counts(admin_conn, schema, thread) == {
        "checkpoints": 0,
        "checkpoint_blobs": 0,
        "checkpoint_writes": 0,
    }


def test_config_metadata_nul_is_stripped_as_langgraph_defines(saver):
    """Values LangGraph copies from the config into metadata lose NUL characters in
    LangGraph's own get_checkpoint_metadata, for every saver; ours keeps that rule."""
    thread = new_thread("cfgnul")
    checkpoint, versions = _checkpoint({"step": 1})
    cfg = dict(config(thread), metadata={"user": "a\x00b"})
    saver.put(cfg, checkpoint, {"source": "input"}, versions)
    assert saver.get_tuple(config(thread)).metadata["user"] == "ab"


def test_channel_values_jsonb_cannot_hold_round_trip_exactly(saver):
    thread = new_thread("exact")
    values = {"text": "a\x00b\x00", "inf": float("inf"), "plain": "ok", "n": 7}
    checkpoint, versions = _checkpoint(values)
    saved = saver.put(config(thread), checkpoint, {"source": "input"}, versions)
    assert saver.get_tuple(saved).checkpoint["channel_values"] == values
    assert next(saver.list(config(thread))).checkpoint["channel_values"] == values
    saver.put_writes(saved, [("text", "w\x00w")], "task")
    assert saver.get_tuple(saved).pending_writes == [("task", "text", "w\x00w")]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda cfg, cp, md: cfg["configurable"].update(thread_id="t\x00"), "thread_id"),
        (lambda cfg, cp, md: cp["channel_versions"].update({"ch\x00": "1"}), "NUL"),
        (lambda cfg, cp, md: md.update(score=float("nan")), "JSON"),
        (lambda cfg, cp, md: md.update(obj=object()), "JSON"),
        (lambda cfg, cp, md: md.update(text="\ud800 lone surrogate"), "rejected"),
    ],
)
def test_invalid_checkpoints_are_refused_whole(saver, schema, admin_conn, mutate, message):
    thread = new_thread("bad")
    cfg = config(thread)
    checkpoint, versions = _checkpoint({"messages": ["x" * 100], "step": 1})
    metadata = {"source": "loop"}
    mutate(cfg, checkpoint, metadata)
    with pytest.raises(InvalidInput, match=message):
        saver.put(cfg, checkpoint, metadata, versions)
    assert table_counts(admin_conn, schema, thread)["checkpoint_blobs"] == 0
    assert table_counts(admin_conn, schema, thread)["checkpoints"] == 0


def test_invalid_writes_are_refused(saver):
    saved = Chain(saver, new_thread()).put()
    with pytest.raises(InvalidInput, match="write channel"):
        saver.put_writes(saved, [("ok", 1), ("bad\x00", 2)], "task")
    with pytest.raises(InvalidInput, match="checkpoint_id"):
        saver.put_writes(config(saved["configurable"]["thread_id"]), [("ok", 1)], "task")
    assert saver.get_tuple(saved).pending_writes == []


def test_large_state_and_writes_round_trip(saver):
    thread = new_thread("large")
    big = os.urandom(12 * 1024 * 1024)
    rows = [{"id": i, "text": "x" * 100} for i in range(100_000)]  # ~13 MB once serialized
    checkpoint, versions = _checkpoint({"raw": big, "rows": rows, "step": 1})
    saved = saver.put(config(thread), checkpoint, {"source": "input"}, versions)
    saver.put_writes(saved, [("raw", big[: 11 * 1024 * 1024])], "task")
    got = saver.get_tuple(config(thread))
    assert got.checkpoint["channel_values"]["raw"] == big
    assert got.checkpoint["channel_values"]["rows"] == rows
    assert got.pending_writes[0][2] == big[: 11 * 1024 * 1024]
    listed = list(saver.list(config(thread)))
    assert listed[0].checkpoint["channel_values"]["raw"] == big


def test_unknown_threads_and_ids(saver):
    unknown = new_thread("unknown")
    assert saver.get_tuple(config(unknown)) is None
    assert saver.get_tuple(config(unknown, checkpoint_id="1f0-none")) is None
    assert list(saver.list(config(unknown))) == []
    assert list(saver.list(config(unknown), filter={"source": "input"}, limit=3)) == []
    assert saver.get_tuple(config("nul\x00thread")) is None
    assert list(saver.list(config("nul\x00thread"))) == []
    assert list(saver.list(config(unknown), filter={"k": "v\x00"})) == []
    saver.delete_thread(unknown)
    saver.prune([unknown])
    saver.prune([unknown], strategy="delete")
    saver.delete_for_runs(["no-such-run"])
    saver.copy_thread(unknown, new_thread("target"))
    known = Chain(saver, new_thread("known"))
    known.put()
    assert saver.get_tuple(config(known.thread_id, checkpoint_id="1f0-none")) is None
    assert saver.get_tuple(config(known.thread_id, checkpoint_ns="other")) is None


def test_missing_functions_name_the_fix(manager, admin_conn):
    """Tables without this saver's functions (PostgresSaver.setup() alone): a clear error."""
    schema = new_schema("nofn")
    try:
        saver = saver_in(schema)
        with admin_conn.cursor() as cur:
            cur.execute(f'DROP FUNCTION "{schema}".{functions.GET_FUNCTION}')
        with pytest.raises(SchemaError, match=r"setup\(\)"):
            saver.get_tuple(config("x"))
        assert saver.setup() == []  # recreates the functions, no migration to apply
        assert saver.get_tuple(config("x")) is None
    finally:
        drop_schema(admin_conn, schema)


# -- listing ------------------------------------------------------------------------------


def test_list_pages_agree_with_one_big_page(saver):
    thread = new_thread("pages")
    chains = [Chain(saver, thread, ns, run_id=f"run-{ns}") for ns in ("", "sub", "")]
    for _ in range(17):
        for chain in chains:
            saved = chain.put()
            saver.put_writes(saved, [("messages", chain.step)], "t")
    paged = PGSyncCheckpointSaver(schema=saver.schema)
    paged.list_page_size = 4
    thread_only = {"configurable": {"thread_id": thread}}
    cases = [
        (config(thread), {}),
        (thread_only, {}),
        (thread_only, {"filter": {"run_id": "run-sub"}}),
        (config(thread), {"limit": 9}),
        (thread_only, {"limit": 10, "before": chains[0].configs[10]}),
        (None, {"filter": {"run_id": "run-sub"}, "limit": 6}),
        (config(thread, checkpoint_id=chains[1].configs[3]["configurable"]["checkpoint_id"]), {}),
    ]
    for cfg, kwargs in cases:
        expected = list(saver.list(cfg, **kwargs))
        got = list(paged.list(cfg, **kwargs))
        assert [t.config for t in got] == [t.config for t in expected], kwargs
        assert [t.pending_writes for t in got] == [t.pending_writes for t in expected]
        keys = [
            (c["checkpoint_id"], c["thread_id"], c["checkpoint_ns"])
            for c in (t.config["configurable"] for t in got)
        ]
        assert keys == sorted(keys, reverse=True)
    assert len(list(paged.list(thread_only))) == 51
    assert len(list(paged.list(config(thread, "sub")))) == 17
    with pytest.raises(ValueError, match="limit"):
        list(saver.list(config(thread), limit=-1))
    assert list(saver.list(config(thread), limit=0)) == []


_TUPLE_READS = (
    "SELECT relname, coalesce(idx_tup_fetch, 0) + coalesce(seq_tup_read, 0) "
    "FROM pg_stat_xact_user_tables WHERE schemaname = %s"
)


def _fetched(admin_conn, schema: str, statement: str, params: tuple) -> dict[str, int]:
    """Tuples read per table (by index or scan) by one statement: the backend's counters
    before and after it (they may still hold earlier transactions' unflushed reads)."""
    admin_conn.autocommit = False
    try:
        with admin_conn.cursor() as cur:
            cur.execute(_TUPLE_READS, (schema,))
            before = dict(cur.fetchall())
            cur.execute(sql.rendered(admin_conn, schema, statement), params)
            rows = cur.fetchall()
            cur.execute(_TUPLE_READS, (schema,))
            after = dict(cur.fetchall())
        reads = {table: after[table] - before.get(table, 0) for table in after}
        reads["rows"] = len(rows)
        return reads
    finally:
        admin_conn.rollback()
        admin_conn.autocommit = True


def test_reads_cost_the_checkpoint_not_the_thread(saver, schema, admin_conn):
    """On a thread with 300 checkpoints and ~400 blobs, get_tuple reads one checkpoint's
    blobs by key, and a list page reads each blob of its page once."""
    chain = Chain(saver, new_thread("long"), payload=400)  # ~2 KB message windows
    for _ in range(300):
        saved = chain.put()
        saver.put_writes(saved, [("messages", "w" * 500)], "t")
    with admin_conn.cursor() as cur:
        for table in ("checkpoints", "checkpoint_blobs", "checkpoint_writes"):
            cur.execute(f'ANALYZE "{schema}".{table}')
    assert table_counts(admin_conn, schema, chain.thread_id)["checkpoint_blobs"] > 350

    latest = _fetched(admin_conn, schema, functions.CALL_GET, (chain.thread_id, "", None))
    by_id = _fetched(
        admin_conn,
        schema,
        functions.CALL_GET,
        (chain.thread_id, "", chain.configs[150]["configurable"]["checkpoint_id"]),
    )
    for reads in (latest, by_id):
        assert reads["rows"] == 1 + 2 + 1  # checkpoint, two blob channels, one write
        assert reads.get("checkpoint_blobs", 0) <= 2
        assert reads.get("checkpoint_writes", 0) <= 1

    page = sql.LIST_PAGE.replace("{where}", "WHERE thread_id = %s AND checkpoint_ns = %s")
    one = _fetched(admin_conn, schema, page, (chain.thread_id, "", 1))
    assert one.get("checkpoint_blobs", 0) <= 2 and one.get("checkpoints", 0) <= 2
    ten = _fetched(admin_conn, schema, page, (chain.thread_id, "", 10))
    # 10 checkpoints: 10 message versions and at most 3 context versions, each read once
    assert ten.get("checkpoint_blobs", 0) <= 13
    assert ten.get("checkpoints", 0) <= 11


# -- connections stay clean (PgBouncer transaction mode) ---------------------------------


def test_no_session_state_is_left_on_connections(manager, base_settings, admin_conn):
    """No prepared statements, session settings, temp tables, held locks or open
    transactions after the saver used a connection."""
    manager.initialize(base_settings.replace(min_connections=1, max_connections=1))
    schema = new_schema("bouncer")
    try:
        saver = saver_in(schema)
        chain = Chain(saver, new_thread())
        for _ in range(6):
            saved = chain.put()
            saver.put_writes(saved, [("messages", "w"), ("__interrupt__", "i")], "t")
        saver.get_tuple(config(chain.thread_id))
        list(saver.list(config(chain.thread_id)))
        saver.copy_thread(chain.thread_id, new_thread("copy"))
        saver.delete_for_runs(["run-1"])
        Chain(saver, chain.thread_id).put()
        saver.prune([chain.thread_id])
        with manager.get_connection() as conn, conn.cursor() as cur:
            assert conn.autocommit is False  # the pool restored it
            cur.execute("SELECT count(*) FROM pg_prepared_statements")
            assert cur.fetchone()[0] == 0
            cur.execute("SELECT name FROM pg_settings WHERE source = 'session'")
            assert cur.fetchall() == []
            cur.execute("SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()")
            assert cur.fetchone()[0] == 0
            cur.execute(
                "SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() "
                "AND locktype = 'advisory'"
            )
            assert cur.fetchone()[0] == 0
        assert manager.stats()["pool_size"] == 1
    finally:
        drop_schema(admin_conn, schema)


def test_writes_beyond_one_statement_go_in_chunks_in_one_transaction(schema, admin_conn):
    chunky = saver_in(schema)
    chunky.write_chunk_size = 2
    thread = new_thread("chunks")
    values = {f"ch{i}": [i] * 3 for i in range(5)}
    checkpoint, versions = _checkpoint(values)
    saved = chunky.put(config(thread), checkpoint, {"source": "input"}, versions)
    chunky.put_writes(saved, [(f"w{i}", i) for i in range(5)], "task")
    got = chunky.get_tuple(saved)
    assert got.checkpoint["channel_values"] == values
    assert got.pending_writes == [("task", f"w{i}", i) for i in range(5)]
    bad = dict(values, ch4=object())  # fails while serializing: nothing written
    with pytest.raises(TypeError):
        chunky.put(config(new_thread()), _checkpoint(bad)[0], {}, _checkpoint(bad)[1])
    broken, bversions = _checkpoint(values)
    thread2 = new_thread("chunks-bad")
    with pytest.raises(InvalidInput):  # fails in the database after two blob chunks
        chunky.put(config(thread2), broken, {"text": "\ud800"}, bversions)
    assert chunky.get_tuple(config(thread2)) is None
    assert table_counts(admin_conn, schema, thread2)["checkpoint_blobs"] == 0
