"""Traversals stay linear right after an ingest, before anyone ran ANALYZE.

LightRAG's ingest never runs ANALYZE, and autovacuum gets there a minute later at best;
until then the planner estimated the graph tables as empty and joined a hub's neighbours
to each other in a nested loop. A traversal from a hub of N neighbours must do work in
proportion to N: each statement of ``knowledge_graph`` is measured by
the rows its plan handles (EXPLAIN ANALYZE: a count, not a time), on hubs of 3,000
and 6,000 edges in tables that were never analyzed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from aperag_pg.manager import PostgreSQLSyncConnectionManager as Manager
from aperag_pg.stores.graph import GraphStore

SMALL, LARGE = 3_000, 6_000


@pytest.fixture
def fresh_schema(base_settings, admin_conn) -> Iterator[str]:
    """A schema of its own, so its graph tables have never been analyzed; autovacuum is
    off for them, so they stay that way while the test runs."""
    schema = f"g_plans_{uuid.uuid4().hex[:6]}"
    Manager.initialize(base_settings.replace(schema=schema))
    GraphStore(workspace="setup").ensure_tables()
    with admin_conn.cursor() as cur:
        for table in ("lightrag_graph_nodes", "lightrag_graph_edges"):
            cur.execute(f'ALTER TABLE "{schema}".{table} SET (autovacuum_enabled = false)')
    try:
        yield schema
    finally:
        Manager.close()
        with admin_conn.cursor() as cur:
            cur.execute(f'DROP SCHEMA "{schema}" CASCADE')


def hub(size: int) -> GraphStore:
    """A graph of one hub with ``size`` spokes, each spoke also linked to the next."""
    store = GraphStore(workspace=f"hub_{size}")
    spokes = [f"spoke {i:05}" for i in range(size)]
    store.upsert_nodes_batch([(s, {"entity_id": s, "d": "x" * 40}) for s in ["hub", *spokes]])
    edges = [("hub", s, {"w": 1.0}) for s in spokes]
    edges += [(a, b, {"w": 0.5}) for a, b in zip(spokes, spokes[1:], strict=False)]
    store.upsert_edges_batch(edges)
    return store


def row_work(plan: dict[str, Any]) -> int:
    """Rows a plan node and its children produced or threw away, over all their loops:
    a nested loop of candidates against candidates shows as N x N here."""
    loops = plan.get("Actual Loops", 1)
    own = loops * (
        plan.get("Actual Rows", 0)
        + plan.get("Rows Removed by Filter", 0)
        + plan.get("Rows Removed by Join Filter", 0)
        + plan.get("Rows Removed by Index Recheck", 0)
    )
    return round(own) + sum(row_work(child) for child in plan.get("Plans", ()))


def work_of_traversal(store: GraphStore, monkeypatch, **call: Any) -> dict[str, int]:
    """``row_work`` of each statement ``knowledge_graph(**call)`` runs, by statement, each
    measured by running it once more under EXPLAIN ANALYZE."""
    measured: dict[str, int] = {}
    original = GraphStore._execute

    def explaining(self, cur, template, **params):
        original(self, cur, "EXPLAIN (ANALYZE, FORMAT JSON) " + template, **params)
        (document,) = cur.fetchone().values()
        name = " ".join(template.split())[:50]
        measured[name] = measured.get(name, 0) + row_work(document[0]["Plan"])
        return original(self, cur, template, **params)

    monkeypatch.setattr(GraphStore, "_execute", explaining)
    try:
        store.knowledge_graph(**call)
    finally:
        monkeypatch.setattr(GraphStore, "_execute", original)
    return measured


@pytest.mark.parametrize("depth", [1, 2])
def test_a_traversal_from_a_hub_grows_linearly_before_analyze(fresh_schema, monkeypatch, depth):
    """Twice the hub, at most about twice the rows handled by each statement."""
    small, large = hub(SMALL), hub(LARGE)
    call = {"label": "hub", "max_depth": depth, "max_nodes": 1000}
    kg = large.knowledge_graph(**call)
    assert len(kg.nodes) == 1000 and kg.is_truncated
    before = work_of_traversal(small, monkeypatch, **call)
    after = work_of_traversal(large, monkeypatch, **call)
    assert before.keys() == after.keys()
    for statement, work in after.items():
        assert work <= 2.5 * before[statement] + 1000, (statement, before, after)
        assert work <= 40 * LARGE, (statement, before, after)  # no N x N anywhere
