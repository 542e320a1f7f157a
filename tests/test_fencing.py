"""Fencing (``aperag_pg.stores.leases``, ``fence=``): store writes in a workspace whose writer
lease this process holds commit only while the lease is still this holder's. After a
takeover (the holder expired while paused, and another took the lease), every later write
rolls back with LeaseLost and the block ends in LeaseLost."""

from __future__ import annotations

import threading
import uuid

import pytest

from aperag_pg.errors import LeaseLost
from aperag_pg.stores.base import workspace_fence
from aperag_pg.stores.graph import GraphStore
from aperag_pg.stores.kv import KVStore
from aperag_pg.stores.leases import fence_for, hold_lease

from .polling import wait_until


def _workspace() -> str:
    return f"fence-{uuid.uuid4().hex[:8]}"


def _lease(workspace: str) -> str:
    # Not LightRAG's writer-lease prefix: other tests count the live writers of every
    # workspace, and a lease this file hands to a fake holder stays live for an hour.
    return f"test-fence:{workspace}"


def _fenced(manager, workspace: str, **kwargs):
    return hold_lease(
        _lease(workspace),
        fence=workspace_fence(manager.settings().schema, workspace),
        **kwargs,
    )


def _take_over(admin_conn, workspace: str) -> None:
    """What another holder does once this one's lease expired."""
    with admin_conn.cursor() as cur:
        cur.execute(
            "UPDATE aperag_pg_leases SET holder = 'elsewhere:1:b:1:n', "
            "expires_at = clock_timestamp() + interval '1 hour' WHERE name = %s",
            (_lease(workspace),),
        )


def _kv_ids(admin_conn, workspace: str) -> set[str]:
    with admin_conn.cursor() as cur:
        cur.execute("SELECT id FROM lightrag_doc_full WHERE workspace = %s", (workspace,))
        return {row[0] for row in cur.fetchall()}


def _graph_nodes(admin_conn, workspace: str) -> set[str]:
    with admin_conn.cursor() as cur:
        cur.execute(
            "SELECT to_regclass('lightrag_graph_nodes') IS NOT NULL",
        )
        if not cur.fetchone()[0]:
            return set()
        cur.execute("SELECT id FROM lightrag_graph_nodes WHERE workspace = %s", (workspace,))
        return {row[0] for row in cur.fetchall()}


def _stores(workspace: str) -> tuple[KVStore, GraphStore]:
    """A KV store (its upsert: a transaction) and a graph store (an upsert_node: one
    statement) of the workspace, their tables made."""
    kv = KVStore("full_docs", workspace)
    graph = GraphStore("chunk_entity_relation", workspace)
    for store in (kv, graph):
        store.ensure_tables()
    return kv, graph


def test_writes_under_a_held_lease_commit(manager, admin_conn):
    workspace = _workspace()
    kv, graph = _stores(workspace)
    with _fenced(manager, workspace):
        kv.upsert({"doc-1": {"content": "one", "file_path": "a.txt"}})  # a transaction
        graph.upsert_node("n1", {"entity_id": "n1"})  # one statement (Mode.WRITE)
        assert kv.get_by_id("doc-1")["content"] == "one"
    assert _kv_ids(admin_conn, workspace) == {"doc-1"}
    assert "n1" in _graph_nodes(admin_conn, workspace)
    assert fence_for(workspace_fence(manager.settings().schema, workspace)) is None


def test_after_a_takeover_no_write_commits_and_the_block_fails(manager, admin_conn):
    workspace = _workspace()
    kv, graph = _stores(workspace)
    other = KVStore("full_docs", _workspace())  # another workspace: not fenced by this lease
    with pytest.raises(LeaseLost):
        with _fenced(manager, workspace, ttl=600) as lease:
            kv.upsert({"before": {"content": "kept", "file_path": "a.txt"}})
            _take_over(admin_conn, workspace)
            with pytest.raises(LeaseLost, match="rolled back"):
                kv.upsert({"after": {"content": "fenced", "file_path": "b.txt"}})
            with pytest.raises(LeaseLost):
                graph.upsert_node("late", {"entity_id": "late"})
            with pytest.raises(LeaseLost):
                kv.delete(["before"])
            assert lease.lost
            other.upsert({"elsewhere": {"content": "free", "file_path": "c.txt"}})
            assert kv.get_by_id("before")["content"] == "kept"  # reads still work
    assert _kv_ids(admin_conn, workspace) == {"before"}
    assert "late" not in _graph_nodes(admin_conn, workspace)
    assert _kv_ids(admin_conn, other.workspace) == {"elsewhere"}


def test_an_expired_lease_fences_writes_even_before_anyone_takes_it(manager, admin_conn):
    workspace = _workspace()
    kv = KVStore("full_docs", workspace)
    kv.ensure_tables()
    with pytest.raises(LeaseLost):
        with _fenced(manager, workspace, ttl=600):
            with admin_conn.cursor() as cur:  # as if it was not renewed for ttl seconds
                cur.execute(
                    "UPDATE aperag_pg_leases SET expires_at = clock_timestamp() - "
                    "interval '1 second' WHERE name = %s",
                    (_lease(workspace),),
                )
            with pytest.raises(LeaseLost):
                kv.upsert({"late": {"content": "x", "file_path": "a.txt"}})
    assert _kv_ids(admin_conn, workspace) == set()


def test_a_takeover_waits_for_a_write_that_passed_the_fence(manager, admin_conn, base_settings):
    """The fence locks the lease row until COMMIT: a takeover blocked behind it proves a
    checked write and a takeover never interleave."""
    workspace = _workspace()
    name = _lease(workspace)
    with _fenced(manager, workspace, ttl=600) as lease:
        with manager.get_connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT aperag_pg_lease_fence_v1(%s, %s)", (name, lease.holder))
            taken = threading.Event()

            def take_over() -> None:
                _take_over_on_own_connection(base_settings, workspace)
                taken.set()

            thief = threading.Thread(target=take_over)
            thief.start()
            wait_until(
                lambda: _waiting_on_a_lock(admin_conn, "UPDATE aperag_pg_leases"),
                "the takeover waits for the fenced transaction",
                10,
            )
            assert not taken.is_set()
            conn.commit()
        thief.join(10)
        assert taken.is_set()
        lease.lost = False  # the block ends normally: this test took the lease over itself
        _restore(admin_conn, name, lease.holder)


def _take_over_on_own_connection(settings, workspace: str) -> None:
    import psycopg2

    conn = psycopg2.connect(**settings.connect_kwargs(application_name="fence-thief"))
    conn.autocommit = True
    try:
        _take_over(conn, workspace)
    finally:
        conn.close()


def _waiting_on_a_lock(admin_conn, query_start: str) -> bool:
    with admin_conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND starts_with(query, %s)",
            (query_start,),
        )
        return cur.fetchone()[0] > 0


def _restore(admin_conn, name: str, holder: str) -> None:
    with admin_conn.cursor() as cur:
        cur.execute("UPDATE aperag_pg_leases SET holder = %s WHERE name = %s", (holder, name))


def test_vector_upserts_and_deletes_are_fenced_too(manager, admin_conn):
    """The vector store's first statement carries its per-id locks and a savepoint, and a
    one-id delete is one statement (Mode.WRITE): both go through the fence."""
    from .test_store_vector import open_store, row

    workspace = _workspace()
    store = open_store("chunks", workspace=workspace)
    with pytest.raises(LeaseLost):
        with _fenced(manager, workspace, ttl=600):
            store.upsert({"kept": row("chunks", [1.0, 0.0, 0.0, 0.0])})
            assert store.get_by_ids(["kept"])[0]["id"] == "kept"
            _take_over(admin_conn, workspace)
            with pytest.raises(LeaseLost):
                store.upsert({"late": row("chunks", [0.0, 1.0, 0.0, 0.0])})
            with pytest.raises(LeaseLost):
                store.delete(["kept"])
    assert [r and r["id"] for r in store.get_by_ids(["kept", "late"])] == ["kept", None]
