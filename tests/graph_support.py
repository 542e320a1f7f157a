"""Graph stores for the contract tests: NetworkXStorage (the reference) and ours, opened alike."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from lightrag.base import BaseGraphStorage
from lightrag.kg.networkx_impl import NetworkXStorage
from lightrag.kg.shared_storage import initialize_share_data
from lightrag.types import KnowledgeGraph

from aperag_pg.lightrag.storages import PGSyncGraphStorage

from .lightrag_support import new_workspace

NAMESPACE = "chunk_entity_relation"
BACKENDS = ["networkx", "pg"]


def storage_class(name: str) -> type[BaseGraphStorage]:
    return NetworkXStorage if name == "networkx" else PGSyncGraphStorage


@asynccontextmanager
async def open_graph(
    name: str, tmp: Path, workspace: str | None = None, max_graph_nodes: int = 1000
) -> AsyncIterator[BaseGraphStorage]:
    """An initialized graph storage on a fresh workspace; PG data is dropped afterwards."""
    initialize_share_data()  # NetworkXStorage's locks and update flags; idempotent
    workspace = workspace or new_workspace("graph")
    store = storage_class(name)(
        namespace=NAMESPACE,
        workspace=workspace,
        global_config={"working_dir": str(tmp), "max_graph_nodes": max_graph_nodes},
        embedding_func=None,
    )
    await store.initialize()
    assert store.workspace == workspace
    try:
        yield store
    finally:
        if name == "pg":
            await store.drop()
        await store.finalize()


@dataclass
class Backend:
    name: str
    tmp: Path

    @property
    def pg(self) -> bool:
        return self.name == "pg"

    def run(self, check: Callable[[BaseGraphStorage], Awaitable[None]], **kwargs) -> None:
        async def main() -> None:
            async with open_graph(self.name, self.tmp, **kwargs) as store:
                await check(store)

        asyncio.run(main())

    def endpoint_props(self, node_id: str) -> dict:
        """A node created only as an edge endpoint: NetworkX add_edge gives it no attributes,
        a PGTable-style store writes the minimal ``{"entity_id": id}`` payload.
        """
        return {"entity_id": node_id} if self.pg else {}


def node(node_id: str, **extra) -> dict:
    return {"entity_id": node_id, "description": f"about {node_id}", "entity_type": "T", **extra}


def edge(a: str, b: str, **extra) -> dict:
    return {"weight": 1.0, "description": f"{min(a, b)}~{max(a, b)}", **extra}


def pair(a: str, b: str) -> tuple[str, str]:
    return (min(a, b), max(a, b))


def without_entity_id(props: dict) -> dict:
    return {k: v for k, v in props.items() if k != "entity_id"}


def kg_summary(kg: KnowledgeGraph) -> tuple[set[str], set[tuple[str, str]], bool]:
    """Node ids, edges and is_truncated; checks the shape both stores promise on the way."""
    ids = [n.id for n in kg.nodes]
    assert len(ids) == len(set(ids)), ids
    edges = set()
    for n in kg.nodes:
        assert n.labels == [n.id]
    for e in kg.edges:
        assert e.source <= e.target and e.id == f"{e.source}-{e.target}" and e.type == "DIRECTED"
        assert e.source in ids and e.target in ids
        edges.add((e.source, e.target))
    assert len(edges) == len(kg.edges)
    return set(ids), edges, kg.is_truncated


# The traversal graph. Component of S by BFS level, with degrees:
#   L0 S(4) | L1 a(4) B(3) d(3, self-loop) c(2) | L2 f(4) e(3) i(2) g(1) h(1)
#   L3 j(2) k(1) l(1) m(1) n(1) | L4 o(1)
# plus a triangle T1-T2-T3, a pair X-Y and an isolated Z.
BFS_EDGES = [
    ("S", "a"), ("S", "B"), ("S", "c"), ("S", "d"), ("a", "e"), ("a", "f"), ("a", "g"),
    ("B", "e"), ("B", "h"), ("c", "i"), ("d", "d"), ("e", "j"), ("f", "k"), ("f", "l"),
    ("f", "m"), ("i", "n"), ("j", "o"), ("T1", "T2"), ("T2", "T3"), ("T3", "T1"), ("X", "Y"),
]  # fmt: skip
BFS_NODES = sorted({x for e in BFS_EDGES for x in e} | {"Z"})


async def build_bfs_graph(g: BaseGraphStorage) -> None:
    await g.upsert_nodes_batch([(n, node(n)) for n in BFS_NODES])
    await g.upsert_edges_batch([(a, b, edge(a, b)) for a, b in BFS_EDGES])


def induced(ids: set[str]) -> set[tuple[str, str]]:
    return {pair(a, b) for a, b in BFS_EDGES if a in ids and b in ids}


def random_graph(seed: int) -> tuple[list[tuple], list[str], list[str]]:
    """~200 nodes, ~600 edge upserts with hubs, reversed duplicates, self-loops and isolates.

    Returns the write operations (applied in order to every store), five seed labels and
    a few search queries.
    """
    rng = random.Random(seed)
    stems = ["Node", "node", "Alpha ", "beta_", "Gamma", "omega node "]
    names = sorted({f"{rng.choice(stems)}{rng.randrange(400)}" for _ in range(230)})[:200]
    hubs = rng.sample(names, 5)
    loose = [n for n in names if n not in hubs]
    isolated = loose[:8]
    linked = loose[8:]
    pairs: list[tuple[str, str]] = []
    for hub in hubs:
        pairs += [(hub, rng.choice(linked)) for _ in range(rng.randrange(30, 60))]
    while len(pairs) < 600:
        pairs.append((rng.choice(linked), rng.choice(linked)))
    pairs += [(b, a) for a, b in rng.sample(pairs, 40)]  # same edge, reversed
    pairs += [(n, n) for n in rng.sample(linked, 3)]  # self-loops
    rng.shuffle(pairs)
    ops: list[tuple] = []
    written = rng.sample(names, 150)  # the rest exist only as edge endpoints (or not at all)
    ops.append(("nodes", [(n, node(n, rank=rng.randrange(9))) for n in written[:100]]))
    ops += [("node", n, node(n, extra="x")) for n in written[100:]]
    for start in range(0, len(pairs), 100):
        chunk = pairs[start : start + 100]
        if start % 200:
            ops += [("edge", a, b, edge(a, b)) for a, b in chunk]
        else:
            ops.append(("edges", [(a, b, edge(a, b)) for a, b in chunk]))
    ops.append(("nodes", [(n, node(n)) for n in isolated]))
    labels = hubs[:2] + rng.sample(linked, 2) + [isolated[0]]
    return ops, labels, ["node", "Node 1", "a 1", "_", "omega", "1", "beta_3"]


async def apply(g: BaseGraphStorage, ops: list[tuple]) -> None:
    for op, *args in ops:
        method = {"nodes": g.upsert_nodes_batch, "node": g.upsert_node}.get(op)
        method = method or {"edges": g.upsert_edges_batch, "edge": g.upsert_edge}[op]
        await method(*args)
