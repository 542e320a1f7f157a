"""Writers and deleters of the same graph nodes at once: every call succeeds (no
ForeignKeyViolation, DeadlockDetected, UniqueViolation nor any other error), and the graph
ends consistent: every edge's endpoints exist.

Few node names, so every call overlaps others: edges created while their endpoints are
being deleted, deletes cascading through edges being written, batches in both orders."""

from __future__ import annotations

import random
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from aperag_pg.manager import PostgreSQLSyncConnectionManager as Manager
from aperag_pg.stores.graph import GraphStore

from .lightrag_support import new_workspace

SECONDS = 6.0  # each test's threads run this long
NAMES = [f"entity {i:02}" for i in range(12)]


@pytest.fixture
def graph(base_settings) -> Iterator[GraphStore]:
    """A fresh graph on a pool with a connection for each thread."""
    Manager.initialize(base_settings.replace(max_connections=8, pool_timeout=30.0))
    store = GraphStore(workspace=new_workspace("graph_race"))
    store.ensure_tables()
    try:
        yield store
    finally:
        store.drop()
        Manager.close()


def run_threads(workers: dict[str, Callable[[random.Random], None]]) -> Counter:
    """Each worker called in a loop on its own thread for SECONDS, all released together.
    Returns calls per worker; fails the test with every error raised."""
    gate = threading.Barrier(len(workers))
    calls: Counter = Counter()
    errors: list[tuple[str, str]] = []

    def loop(name: str, work: Callable[[random.Random], None], seed: int) -> None:
        rng = random.Random(seed)
        gate.wait(30)
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline:
            try:
                work(rng)
            except Exception as exc:  # every kind counts: the test expects none
                errors.append((type(exc).__name__, f"{name}: {traceback.format_exc(limit=3)}"))
                if len(errors) > 20:
                    return
            calls[name] += 1

    threads = [
        threading.Thread(target=loop, args=(name, work, seed))
        for seed, (name, work) in enumerate(workers.items())
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    kinds = Counter(kind for kind, _ in errors)
    assert not errors, f"{len(errors)} errors ({dict(kinds)}); first:\n{errors[0][1]}"
    return calls


def some(rng: random.Random, k: int) -> list[str]:
    return rng.sample(NAMES, k)


def assert_consistent(store: GraphStore) -> None:
    """Every edge's endpoints exist, each edge is stored once in canonical order."""
    nodes = set(store.get_all_labels())
    edges = [(e["source"], e["target"]) for e in store.get_all_edges()]
    assert all(src in nodes and tgt in nodes for src, tgt in edges)
    assert all(src <= tgt for src, tgt in edges) and len(set(edges)) == len(edges)
    for node in nodes:
        assert store.get_node(node)["entity_id"] == node


def test_edge_writers_and_node_deleters_never_fail(graph):
    """The reported mix: 3 edge writers, 2 node deleters, overlapping nodes."""

    def write_edge(rng: random.Random) -> None:
        a, b = some(rng, 2)
        graph.upsert_edge(a, b, {"w": rng.random()})

    def delete_nodes(rng: random.Random) -> None:
        graph.remove_nodes(some(rng, 3))

    calls = run_threads(
        {
            "edge writer 1": write_edge,
            "edge writer 2": write_edge,
            "edge writer 3": write_edge,
            "node deleter 1": delete_nodes,
            "node deleter 2": delete_nodes,
        }
    )
    assert all(calls[name] > 0 for name in calls), calls
    assert_consistent(graph)


def test_every_write_and_delete_at_once_never_fails(graph):
    """Single and batch upserts of nodes and edges (batches in both orders, self-loops),
    against remove_nodes, delete_node and remove_edges of overlapping nodes."""

    def write_edges(rng: random.Random) -> None:
        names = some(rng, 6)
        pairs = list(zip(names, names[1:], strict=False)) + [(names[0], names[0])]
        rng.shuffle(pairs)
        graph.upsert_edges_batch([(a, b, {"w": rng.random()}) for a, b in pairs])

    def write_nodes(rng: random.Random) -> None:
        names = some(rng, 5)
        graph.upsert_nodes_batch([(n, {"entity_id": n, "r": rng.random()}) for n in names])
        a, b = some(rng, 2)
        graph.upsert_node(a, {"entity_id": a, "one": True})
        graph.upsert_edge(a, b, {"one": True})

    def delete_nodes(rng: random.Random) -> None:
        graph.remove_nodes(some(rng, 2))
        graph.delete_node(rng.choice(NAMES))

    def delete_edges(rng: random.Random) -> None:
        names = some(rng, 6)
        graph.remove_edges(list(zip(names, names[::-1], strict=True)))

    calls = run_threads(
        {
            "edge batches 1": write_edges,
            "edge batches 2": write_edges,
            "node writer": write_nodes,
            "node deleter": delete_nodes,
            "edge deleter": delete_edges,
        }
    )
    assert all(calls[name] > 0 for name in calls), calls
    assert_consistent(graph)
