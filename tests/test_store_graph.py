"""The sync graph store on a real PostgreSQL: LightRAG's interface and tables, bad input,
one transaction per call, and several processes writing the same graph at once."""

from __future__ import annotations

import asyncio
import inspect
import multiprocessing
import threading
import uuid

import psycopg2
import psycopg2.errors
import pytest
from lightrag.base import BaseGraphStorage
from lightrag.kg import pgtable_impl

from aperag_pg.errors import InvalidInput
from aperag_pg.lightrag.storages import PGSyncGraphStorage
from aperag_pg.manager import PostgreSQLSyncConnectionManager
from aperag_pg.stores import graph
from aperag_pg.stores.graph import GraphStore

from .lightrag_support import new_workspace


@pytest.fixture
def store(manager) -> GraphStore:
    store = GraphStore(workspace=new_workspace("graph"))
    store.ensure_tables()
    return store


def node(name: str, **properties) -> tuple[str, dict]:
    return name, {"entity_id": name, **properties}


def rows(admin_conn, store: GraphStore, table: str) -> int:
    with admin_conn.cursor() as cur:
        cur.execute(
            f'SELECT count(*) FROM "{store.schema}".{table} WHERE workspace = %s',
            (store.workspace,),
        )
        return cur.fetchone()[0]


# -- LightRAG's interface ----------------------------------------------------------------


def test_every_graph_method_of_lightrag_is_served_with_its_parameter_names():
    """LightRAG calls with keywords (upsert_node(node_id, node_data=...)): every method of
    BaseGraphStorage exists on the facade, and the store takes the same parameter names."""
    assert not PGSyncGraphStorage.__abstractmethods__
    graph_methods = {
        name: method
        for name, method in vars(BaseGraphStorage).items()
        if inspect.iscoroutinefunction(method)
    }
    assert len(graph_methods) == 26
    for name, method in graph_methods.items():
        ours = getattr(PGSyncGraphStorage, name)
        assert ours is not method, f"{name} is LightRAG's one-by-one fallback"
        if name == "get_knowledge_graph":
            continue  # the facade's, on the store's knowledge_graph
        wanted = list(inspect.signature(method).parameters)[1:]
        taken = list(inspect.signature(getattr(GraphStore, name)).parameters)[1:]
        assert taken == wanted, name


def _catalog(admin_conn, schema: str) -> dict:
    """Columns, constraints and indexes of the two graph tables in ``schema``."""
    with admin_conn.cursor() as cur:
        cur.execute(
            """SELECT table_name, column_name, data_type, is_nullable, column_default
               FROM information_schema.columns
               WHERE table_schema = %s AND table_name LIKE 'lightrag_graph_%%'
               ORDER BY 1, ordinal_position""",
            (schema,),
        )
        columns = cur.fetchall()
        cur.execute(
            """SELECT conrelid::regclass::text, conname, pg_get_constraintdef(c.oid)
               FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
               WHERE n.nspname = %s ORDER BY 2""",
            (schema,),
        )
        constraints = [(t.split(".")[-1], n, d.replace(f"{schema}.", "")) for t, n, d in cur]
        cur.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s ORDER BY 1",
            (schema,),
        )
        indexes = [(name, d.replace(f"{schema}.", "")) for name, d in cur.fetchall()]
    return {"columns": columns, "constraints": constraints, "indexes": indexes}


def test_tables_are_pgtablegraphstorages_own(manager, base_settings, admin_conn):
    """Our DDL and LightRAG 1.5.7's make the same tables, keys, foreign keys and indexes."""
    ours, theirs = f"g_ours_{uuid.uuid4().hex[:6]}", f"g_theirs_{uuid.uuid4().hex[:6]}"
    PostgreSQLSyncConnectionManager.initialize(base_settings.replace(schema=ours))
    GraphStore(workspace="w").ensure_tables()
    try:
        with admin_conn.cursor() as cur:
            cur.execute(f'CREATE SCHEMA "{theirs}"')
            cur.execute(f'SET search_path TO "{theirs}"')
            cur.execute(pgtable_impl._DDL)  # LightRAG's DDL names no schema
            cur.execute("RESET search_path")
        assert _catalog(admin_conn, ours) == _catalog(admin_conn, theirs)
        assert len(_catalog(admin_conn, ours)["indexes"]) == 4
    finally:
        with admin_conn.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{ours}", "{theirs}" CASCADE')


def test_batches_are_one_round_trip(store, monkeypatch):
    """A batch read or write sends one statement however many items it has."""
    store.upsert_nodes_batch([node(f"n{i}") for i in range(50)])
    store.upsert_edges_batch([(f"n{i}", f"n{i + 1}", {"w": i}) for i in range(49)])
    ids = [f"n{i}" for i in range(40)]
    pairs = [(f"n{i}", f"n{i + 1}") for i in range(39)]
    statements = []
    original = GraphStore._execute  # every statement of the store goes through it

    def counting(self, cur, template, **params):
        statements.append(template)
        return original(self, cur, template, **params)

    monkeypatch.setattr(GraphStore, "_execute", counting)
    calls = {
        "get_nodes_batch": lambda: store.get_nodes_batch(ids),
        "node_degrees_batch": lambda: store.node_degrees_batch(ids),
        "has_nodes_batch": lambda: store.has_nodes_batch(ids),
        "get_nodes_edges_batch": lambda: store.get_nodes_edges_batch(ids),
        "get_edges_batch": lambda: store.get_edges_batch([{"src": s, "tgt": t} for s, t in pairs]),
        "edge_degrees_batch": lambda: store.edge_degrees_batch(pairs),
        "upsert_nodes_batch": lambda: store.upsert_nodes_batch([node(i, x=1) for i in ids]),
        "upsert_edges_batch": lambda: store.upsert_edges_batch([(s, t, {}) for s, t in pairs]),
    }
    for name, call in calls.items():
        statements.clear()
        call()
        assert len(statements) == 1, name


# -- writes: merging, order, atomicity -----------------------------------------------------


def test_batches_merge_duplicates_key_by_key_and_edges_are_undirected(store):
    store.upsert_nodes_batch([node("A", a=1, shared="first"), node("A", b=2, shared="last")])
    store.upsert_node("A", {"entity_id": "ignored: the id wins", "c": 3})
    assert store.get_node("A") == {"entity_id": "A", "a": 1, "b": 2, "c": 3, "shared": "last"}
    counts = store.upsert_edges_batch([("B", "A", {"x": 1}), ("A", "B", {"y": 2})])
    assert (counts.inserted, counts.merged) == (1, 0)
    store.upsert_edge("B", "A", {"x": 9})
    assert store.get_edge("A", "B") == store.get_edge("B", "A") == {"x": 9, "y": 2}
    assert store.get_node("B") == {"entity_id": "B"}  # created as an endpoint
    assert store.counts() == (2, 1)


def test_a_big_batch_is_one_transaction(store, admin_conn, monkeypatch):
    """Sent in several statements, committed together: every row has the same xmin."""
    monkeypatch.setattr(graph, "CHUNK_ROWS", 700)
    store.upsert_edges_batch([(f"a{i:05}", f"b{i:05}", {"i": i}) for i in range(3000)])
    with admin_conn.cursor() as cur:
        for table, expected in (("lightrag_graph_nodes", 6000), ("lightrag_graph_edges", 3000)):
            cur.execute(
                f"SELECT count(*), count(DISTINCT xmin::text) FROM {table} WHERE workspace = %s",
                (store.workspace,),
            )
            assert cur.fetchone() == (expected, 1), table


def test_a_batch_that_fails_on_the_server_writes_nothing(store, admin_conn, monkeypatch):
    """The last statement of a batch fails (a trigger raises): the earlier ones are undone."""
    monkeypatch.setattr(graph, "CHUNK_ROWS", 10)
    with admin_conn.cursor() as cur:
        cur.execute(
            "CREATE FUNCTION refuse_z() RETURNS trigger LANGUAGE plpgsql AS "
            "$$BEGIN IF NEW.id = 'z' THEN RAISE EXCEPTION 'no z'; END IF; RETURN NEW; END$$"
        )
        cur.execute(
            "CREATE TRIGGER refuse_z BEFORE INSERT ON lightrag_graph_nodes "
            "FOR EACH ROW EXECUTE FUNCTION refuse_z()"
        )
    try:
        batch = [node(f"n{i:02}") for i in range(30)] + [node("z")]
        with pytest.raises(psycopg2.Error, match="no z"):
            store.upsert_nodes_batch(batch)
        assert rows(admin_conn, store, "lightrag_graph_nodes") == 0
    finally:
        with admin_conn.cursor() as cur:
            cur.execute("DROP TRIGGER refuse_z ON lightrag_graph_nodes")
            cur.execute("DROP FUNCTION refuse_z()")


# -- bad input: a clear error, nothing written ----------------------------------------------

BAD_WRITES = [
    (
        "missing entity_id",
        lambda s: s.upsert_nodes_batch([node("ok"), ("bad", {"x": 1})]),
        "has no 'entity_id'",
    ),
    ("NUL in an id", lambda s: s.upsert_nodes_batch([node("ok"), node("a\x00b")]), "NUL"),
    (
        "NUL in a value",
        lambda s: s.upsert_nodes_batch([node("ok"), node("b", d="x\x00")]),
        "node 'b'",
    ),
    ("NUL in a key", lambda s: s.upsert_edges_batch([("a", "b", {"k\x00": 1})]), "NUL"),
    (
        "NaN",
        lambda s: s.upsert_nodes_batch([node("ok"), node("b", weight=float("nan"))]),
        "property 'weight'",
    ),
    (
        "infinity",
        lambda s: s.upsert_edges_batch([("a", "b", {"weight": float("inf")})]),
        "property 'weight'",
    ),
    (
        "not JSON",
        lambda s: s.upsert_node("b", {"entity_id": "b", "when": object()}),
        "property 'when'",
    ),
    ("id not a string", lambda s: s.upsert_edges_batch([("a", 7, {})]), "must be a string"),
    ("id None", lambda s: s.upsert_node(None, {"entity_id": "x"}), "must be a string"),
    ("id too long", lambda s: s.upsert_node("é" * 600, {"entity_id": "x"}), "bytes"),
    ("lone surrogate", lambda s: s.upsert_node("a\ud800", {"entity_id": "x"}), "surrogate"),
    (
        "surrogate in a value",
        lambda s: s.upsert_node("a", {"entity_id": "a", "d": "\udfff"}),
        "surrogate",
    ),
    ("properties not a dict", lambda s: s.upsert_edge("a", "b", ["w", 1]), "must be a dict"),
    (
        "non-string key",
        lambda s: s.upsert_node("a", {"entity_id": "a", 1: "x"}),
        "property names must be strings",
    ),
    ("ids given as a string", lambda s: s.remove_nodes("abc"), "list of node ids"),
]


@pytest.mark.parametrize(("case", "write", "says"), BAD_WRITES, ids=[c[0] for c in BAD_WRITES])
def test_bad_input_is_refused_before_anything_is_written(store, admin_conn, case, write, says):
    with pytest.raises(InvalidInput, match=says):
        write(store)
    assert rows(admin_conn, store, "lightrag_graph_nodes") == 0
    assert rows(admin_conn, store, "lightrag_graph_edges") == 0


HOSTILE_IDS = [
    'O\'Brien "quoted"',
    "back\\slash\\",
    "100% sure",
    "snake_case_name",
    " leading space",
    "trailing space ",
    "日本語のエンティティ",
    "emoji 🚀 rocket",
    "Ωmega ß straße",
    "semi; DROP TABLE lightrag_graph_nodes; --",
    "{braces} %(named)s %s",
    "",
]


def test_hostile_ids_round_trip_exactly(store):
    store.upsert_nodes_batch([node(i, description=f"about {i}") for i in HOSTILE_IDS])
    store.upsert_edges_batch(
        [(a, b, {"label": a + b}) for a, b in zip(HOSTILE_IDS, HOSTILE_IDS[1:], strict=False)]
    )
    assert store.get_all_labels() == sorted(HOSTILE_IDS)
    for name in HOSTILE_IDS:
        assert store.get_node(name) == {"entity_id": name, "description": f"about {name}"}
        assert store.has_node(name)
    for a, b in zip(HOSTILE_IDS, HOSTILE_IDS[1:], strict=False):
        assert store.get_edge(b, a) == {"label": a + b}
    kg = store.knowledge_graph(HOSTILE_IDS[0], 20, 100)
    assert {n for n, _ in kg.nodes} == set(HOSTILE_IDS) and not kg.is_truncated


def test_like_metacharacters_in_searches_match_literally(store):
    names = ["100% sure", "100 percent", "a_b", "axb", "back\\slash", "backXslash", "bang!x"]
    store.upsert_nodes_batch([node(n) for n in names])
    assert store.search_labels("%") == ["100% sure"]
    assert store.search_labels("0%") == ["100% sure"]
    assert store.search_labels("_") == ["a_b"]
    assert store.search_labels("\\") == ["back\\slash"]
    assert store.search_labels("!") == ["bang!x"]
    assert store.search_labels("  AXB ") == ["axb"]  # trimmed, case-insensitive
    assert store.search_labels("") == [] and store.search_labels("   ") == []


def test_a_description_over_a_megabyte_round_trips(store):
    big = "knowledge " * 150_000  # 1.5 MB
    store.upsert_nodes_batch([node("big", description=big), node("small")])
    store.upsert_edge("big", "small", {"description": big + "edge"})
    assert store.get_node("big")["description"] == big
    assert store.get_edge("small", "big")["description"] == big + "edge"


def test_traversal_limits(store):
    # a chain a - b - c - d - e
    store.upsert_edges_batch([(x, y, {}) for x, y in zip("abcd", "bcde", strict=False)])
    ids = lambda kg: [n for n, _ in kg.nodes]  # noqa: E731
    assert ids(store.knowledge_graph("a", 0, 10)) == ["a"]
    assert ids(store.knowledge_graph("a", 1000, 10)) == list("abcde")
    assert not store.knowledge_graph("a", 1000, 10).is_truncated
    empty = store.knowledge_graph("a", 3, 0)
    assert empty.nodes == [] and empty.is_truncated  # NetworkX: the seed was left out
    unknown = store.knowledge_graph("nobody", 3, 10)
    assert unknown.nodes == [] and unknown.edges == [] and not unknown.is_truncated
    for bad in (dict(max_depth=-1), dict(max_nodes=-5), dict(max_depth=1.5)):
        args = {"label": "a", "max_depth": 3, "max_nodes": 10, **bad}
        with pytest.raises(InvalidInput, match="non-negative integer"):
            store.knowledge_graph(**args)


def test_workspaces_and_namespaces_do_not_see_each_other(manager):
    first, second = GraphStore(workspace=new_workspace()), GraphStore(workspace=new_workspace())
    other_namespace = GraphStore(namespace="other_graph", workspace=first.workspace)
    for store in (first, second, other_namespace):
        store.ensure_tables()
    first.upsert_edge("A", "B", {"in": "first"})
    second.upsert_edge("A", "C", {"in": "second"})
    assert first.get_all_labels() == ["A", "B"] and second.get_all_labels() == ["A", "C"]
    assert other_namespace.get_all_labels() == []
    assert first.node_degree("A") == 1 and first.get_edge("A", "C") is None
    first.drop()
    assert first.counts() == (0, 0) and second.counts() == (2, 1)


# -- several writers and readers at once ------------------------------------------------------

ROUNDS = 25
NAMES = [f"entity {i:02}" for i in range(40)]


def _write_in_child(settings, workspace, writer, barrier, results) -> None:
    """A worker process upserting every node and edge, in its own order, each round."""
    try:
        PostgreSQLSyncConnectionManager.initialize(settings)
        store = GraphStore(workspace=workspace)
        names = NAMES if writer == 0 else NAMES[::-1]
        pairs = list(zip(NAMES, NAMES[1:], strict=False)) + [(NAMES[0], NAMES[-1])]
        barrier.wait(30)
        for round_ in range(ROUNDS):
            store.upsert_nodes_batch([node(n, **{f"w{writer}": round_}) for n in names])
            edges = [(a, b) if writer == 0 else (b, a) for a, b in pairs]
            if writer == 1:
                edges.reverse()
            store.upsert_edges_batch([(a, b, {f"w{writer}": round_}) for a, b in edges])
            for a, b in edges[:5]:  # single calls too, as LightRAG's merge makes them
                store.upsert_edge(a, b, {f"w{writer}": round_})
        results.put(("ok", writer))
    except Exception as exc:  # reported to the parent, which fails the test
        results.put(("error", repr(exc)))
    finally:
        PostgreSQLSyncConnectionManager.close()


def test_two_processes_write_the_same_graph_in_opposite_orders(manager, base_settings):
    """No deadlock, no duplicate edge, no lost property."""
    store = GraphStore(workspace=new_workspace("race"))
    store.ensure_tables()
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    children = [
        ctx.Process(
            target=_write_in_child, args=(base_settings, store.workspace, w, barrier, results)
        )
        for w in (0, 1)
    ]
    for child in children:
        child.start()
    outcomes = [results.get(timeout=120) for _ in children]
    for child in children:
        child.join(30)
    assert sorted(outcomes) == [("ok", 0), ("ok", 1)], outcomes
    last = ROUNDS - 1
    assert store.counts() == (len(NAMES), len(NAMES))
    for name, props in store.get_nodes_batch(NAMES).items():
        assert props == {"entity_id": name, "w0": last, "w1": last}, name
    for edge in store.get_all_edges():
        assert edge["source"] < edge["target"] and edge["w0"] == last and edge["w1"] == last


def test_deleting_nodes_during_traversals_raises_nothing(store):
    """Traversals read one snapshot: a node deleted meanwhile is either wholly there or gone."""
    hub_edges = [("hub", f"spoke {i:03}", {}) for i in range(150)]
    ring = [(f"spoke {i:03}", f"spoke {(i + 1) % 150:03}", {}) for i in range(150)]
    store.upsert_edges_batch(hub_edges + ring)
    errors, views = [], []

    def traverse() -> None:
        try:
            for _ in range(40):
                kg = store.knowledge_graph("hub", 3, 1000)
                ids = {n for n, _ in kg.nodes}
                assert all(s in ids and t in ids for s, t, _ in kg.edges)
                views.append(len(ids))
        except Exception as exc:
            errors.append(exc)

    reader = threading.Thread(target=traverse)
    reader.start()
    for i in range(0, 150, 2):
        store.delete_node(f"spoke {i:03}")
    reader.join(60)
    assert errors == [] and len(views) == 40
    assert store.counts() == (76, 75)  # the hub, 75 spokes, their edges to the hub


def test_values_come_back_with_their_type(store):
    """jsonb keeps numbers as numeric: a float must not come back as an int, nor the other
    way round, whatever its size (LightRAG writes weights as floats)."""
    values = {
        "entity_id": "n",
        "small": 1.0,
        "weight": 0.1,
        "big": 1e16,
        "huge": -2.5e300,
        "tiny": 1.5e-7,
        "int": 2**70,
        "flag": True,
        "text": "looks like 1e+16",
        "nested": [1e20, {"x": 3e25}],
    }
    store.upsert_node("n", values)
    back = store.get_node("n")
    assert back == values
    assert [type(back[k]) for k in values] == [type(v) for v in values.values()]
    assert type(back["nested"][0]) is float and type(back["nested"][1]["x"]) is float


def test_the_facade_resolves_the_workspace_as_lightrag_does(manager, base_settings):
    """POSTGRES_WORKSPACE, else the storage's own workspace, else "default"."""

    async def opened(workspace: str) -> tuple[str, str]:
        storage = PGSyncGraphStorage(
            namespace="chunk_entity_relation",
            workspace=workspace,
            global_config={"max_graph_nodes": 1000},
            embedding_func=None,
        )
        await storage.initialize()
        try:
            return storage.workspace, storage.store.workspace
        finally:
            await storage.finalize()

    assert asyncio.run(opened("")) == ("default", "default")
    assert asyncio.run(opened("mine")) == ("mine", "mine")
    PostgreSQLSyncConnectionManager.initialize(base_settings.replace(workspace="from_env"))
    assert asyncio.run(opened("mine")) == ("from_env", "from_env")


def test_analyze_gives_the_planner_the_tables_as_they_are(store, admin_conn):
    """After a bulk import the planner must not think the tables are still small."""
    store.upsert_edges_batch([(f"a{i}", f"b{i}", {}) for i in range(500)])
    store.analyze()
    with admin_conn.cursor() as cur:
        for table in ("lightrag_graph_nodes", "lightrag_graph_edges"):
            cur.execute(
                f'SELECT c.reltuples::bigint, (SELECT count(*) FROM "{store.schema}".{table}) '
                "FROM pg_class c WHERE c.oid = %s::regclass",
                (f'"{store.schema}".{table}',),
            )
            estimated, actual = cur.fetchone()
            assert estimated == actual, table
