"""The sync graph store: LightRAG's knowledge graph in two plain tables, on the process pool.

Tables, columns, keys, indexes, foreign keys and row format are those of lightrag-hku
1.5.7's ``PGTableGraphStorage`` (``kg/pgtable_impl.py``), so LightRAG's API server or
WebUI running that storage shows the graph the workers build, and the other way round:

- ``lightrag_graph_nodes(workspace, namespace, id, properties jsonb, updated_at)``,
  primary key ``(workspace, namespace, id)``; ``properties["entity_id"]`` is the id;
- ``lightrag_graph_edges(workspace, namespace, src_id, tgt_id, properties, updated_at)``,
  primary key ``(workspace, namespace, src_id, tgt_id)``, one row per undirected edge in
  canonical order ``src_id = min(a, b)``, ``tgt_id = max(a, b)`` with Python's min/max
  (code points; SQL LEAST/GREATEST follow the collation and would disagree), and
  foreign keys to both endpoints with ON DELETE CASCADE.

Semantics are NetworkXStorage's (the reference LightRAG points at): upserts merge
properties (omitted keys survive; PGTableGraphStorage replaces an edge's properties
instead), an edge creates missing endpoints, a self-loop counts twice in a degree, and
``knowledge_graph`` is NetworkX's level-by-level BFS with its ``is_truncated`` rule.

Every public method is one transaction and one round trip for its data (a traversal:
one statement per level; a node delete: two). Batches are de-duplicated (later writes
win, key by key) and written in code-point order. Every write and delete locks the nodes
it needs first, then the edges, each in code-point order (``graph_sql``): calls of any
kind take turns and never deadlock, and an edge's endpoints cannot vanish under it.
Bad input raises ``InvalidInput`` naming the node or edge before anything is written.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg2.extensions

from ..batching import chunked
from ..cursors import Mode
from ..errors import InvalidInput
from ..manager import PostgreSQLSyncConnectionManager
from ..schema import table_exists
from ..values import check_storable, jsonb_text
from . import graph_sql as q
from .base import TableStore, check_key

_JSON_DECODER = json.JSONDecoder()
# The server's jsonb text has no surrounding white space: raw_decode skips json.loads'
# white-space scans, half the time of a property dict (and a batch reads thousands).


def _decode_jsonb(value: Any, _cur: Any) -> Any:
    """psycopg2 hands a typecaster the column's text (None for NULL)."""
    return None if value is None else _JSON_DECODER.raw_decode(value)[0]


_JSONB = psycopg2.extensions.new_type((3802,), "JSONB_RAW_DECODE", _decode_jsonb)  # jsonb

GRAPH_NAMESPACE = "chunk_entity_relation"  # LightRAG's one graph namespace
# An id is part of two primary keys; a B-tree entry holds at most 2,704 bytes (8 kB
# pages), and the widest key, the edges' (workspace, namespace, src_id, tgt_id), holds
# the workspace and two ids. Ids are at most 1,024 bytes, fewer in a workspace or
# namespace so long that two such ids would not fit (``max_id_bytes``). Checked before
# the server sees them.
MAX_NODE_ID_BYTES = 1024
BTREE_MAX_ENTRY_BYTES = 2704
WIDEST_KEY = ("workspace", "namespace", "src_id", "tgt_id")  # graph_sql.DDL's edges key
# A batch is one transaction, sent in statements of at most this many rows or bytes.
CHUNK_ROWS = 1000
CHUNK_BYTES = 8 * 1024 * 1024
# LightRAG's ingest never runs ANALYZE, and autovacuum runs after a minute at best: until
# then the planner takes a freshly filled graph for an empty one and traverses a hub of
# N neighbours in N x N steps (6,000: 4 s, not 20 ms). So a store analyzes both tables
# itself once it has written this many rows, then again each time its writes double.
ANALYZE_AFTER_ROWS = 2000


@dataclass
class Subgraph:
    """A traversal's result: nodes as (id, properties), edges as (src, tgt, properties)
    in canonical order, and whether nodes were left out because of ``max_nodes``."""

    nodes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    edges: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    is_truncated: bool = False


@dataclass(frozen=True)
class WriteCounts:
    """What a batch upsert did: rows new to the table, and rows merged into existing ones."""

    inserted: int = 0
    merged: int = 0

    def __add__(self, other: WriteCounts) -> WriteCounts:
        return WriteCounts(self.inserted + other.inserted, self.merged + other.merged)


def canonical(a: str, b: str) -> tuple[str, str]:
    """An undirected edge's stored order: Python's min/max, as PGTableGraphStorage does."""
    return (a, b) if a <= b else (b, a)


@dataclass(frozen=True)
class NodeRows:
    """Nodes checked and ready to write: merged by id (later keys win), in code-point order
    (the order every writer locks them in), each one JSON row."""

    ids: tuple[str, ...]
    json: list[str]

    @classmethod
    def of(cls, nodes: Iterable[tuple[str, Mapping[str, Any]]]) -> NodeRows:
        """Check every node, or raise InvalidInput naming the first bad one."""
        merged: dict[str, dict[str, Any]] = {}
        for node_id, properties in nodes:
            node_id = _node_id(node_id)
            properties = _properties(properties, f"node {node_id!r}")
            if "entity_id" not in properties:
                raise InvalidInput(
                    f"node {node_id!r} has no 'entity_id' property: LightRAG's graph storages "
                    "require it (set it to the node id); nothing was written."
                )
            merged.setdefault(node_id, {}).update(properties, entity_id=node_id)
        ids = tuple(sorted(merged))
        rows = [_json({"id": node, "properties": merged[node]}, f"node {node!r}") for node in ids]
        return cls(ids, rows)


@dataclass(frozen=True)
class EdgeRows:
    """Edges checked and ready to write: in canonical order, merged by pair (later keys
    win), sorted, each one JSON row."""

    pairs: tuple[tuple[str, str], ...]
    json: list[str]

    @classmethod
    def of(cls, edges: Iterable[tuple[str, str, Mapping[str, Any]]]) -> EdgeRows:
        """Check every edge, or raise InvalidInput naming the first bad one."""
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        for source_id, target_id, properties in edges:
            pair = canonical(_node_id(source_id), _node_id(target_id))
            properties = _properties(properties, f"edge {pair[0]!r}~{pair[1]!r}")
            merged.setdefault(pair, {}).update(properties)
        pairs = tuple(sorted(merged))
        rows = [
            _json({"src": src, "tgt": tgt, "properties": merged[src, tgt]}, f"edge {src!r}~{tgt!r}")
            for src, tgt in pairs
        ]
        return cls(pairs, rows)


def index_entry_bytes(sizes: Sequence[int]) -> int:
    """Bytes of a B-tree entry of text values of these UTF-8 sizes, as PostgreSQL lays it
    out: an 8-byte header; a value of up to 126 bytes takes a 1-byte length and no
    alignment, a longer one a 4-byte length aligned to 4; the whole aligned to 8.
    (The server may compress a long value: never larger than this.)"""
    total = 8
    for size in sizes:
        total = total + 1 + size if size <= 126 else -(-total // 4) * 4 + 4 + size
    return -(-total // 8) * 8


def max_id_bytes(workspace: str, namespace: str) -> int:
    """The longest id (UTF-8 bytes) whose edges fit the widest key with two such ids."""
    fixed = [len(workspace.encode()), len(namespace.encode())]
    size = MAX_NODE_ID_BYTES
    while size > 0 and index_entry_bytes([*fixed, size, size]) > BTREE_MAX_ENTRY_BYTES:
        size -= 1
    return size


class GraphStore(TableStore):
    """One LightRAG graph (workspace + namespace) in ``lightrag_graph_nodes`` / ``_edges``."""

    def __init__(
        self,
        namespace: str = GRAPH_NAMESPACE,
        workspace: str | None = None,
        manager: type[PostgreSQLSyncConnectionManager] = PostgreSQLSyncConnectionManager,
    ) -> None:
        super().__init__(namespace, workspace, manager)
        check_key(namespace, "namespace")
        self._statements: dict[str, str] = {}
        self.max_id_bytes = max_id_bytes(self.workspace, namespace)
        self._written = 0  # rows this store wrote, and the count at which it analyzes next
        self._analyze_at = ANALYZE_AFTER_ROWS
        self._analyze_lock = threading.Lock()

    def ensure_tables(self) -> None:
        """Create both tables, their indexes and foreign keys, unless they exist."""
        self.ensure_table(q.EDGES, q.DDL, nodes=q.NODES, edges=q.EDGES)

    # -- reads -------------------------------------------------------------------------

    def has_node(self, node_id: str) -> bool:
        return bool(self.has_nodes_batch([node_id]))

    def has_nodes_batch(self, node_ids: Iterable[str]) -> set[str]:
        ids = _ids(node_ids)
        if not ids:
            return set()
        template, params = _one_or_many(q.NODE_ID, q.NODE_IDS, ids)
        return {row["id"] for row in self._read(template, **params)}

    def get_node(self, node_id: str) -> dict[str, Any] | None:
        return self.get_nodes_batch([node_id]).get(node_id)

    def get_nodes_batch(self, node_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Properties of the nodes that exist, by id (``entity_id`` is always the id)."""
        ids = _ids(node_ids)
        if not ids:
            return {}
        template, params = _one_or_many(q.GET_NODE, q.GET_NODES, ids)
        rows = self._read_tuples(template, **params)
        return {node: _node_properties(node, properties) for node, properties in rows}

    def node_degree(self, node_id: str) -> int:
        return self.node_degrees_batch([node_id])[node_id]

    def node_degrees_batch(self, node_ids: Iterable[str]) -> dict[str, int]:
        """Degree of each node (0 for an unknown one); a self-loop counts 2."""
        ids = _ids(node_ids)
        if not ids:
            return {}
        degrees = dict.fromkeys(ids, 0)
        degrees.update(self._read_tuples(q.DEGREES, ids=ids))
        return degrees

    def edge_degree(self, src_id: str, tgt_id: str) -> int:
        return self.edge_degrees_batch([(src_id, tgt_id)])[(src_id, tgt_id)]

    def edge_degrees_batch(
        self, edge_pairs: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], int]:
        """Sum of both endpoints' degrees, by the pair as given."""
        pairs = _pairs(edge_pairs)
        degrees = self.node_degrees_batch({node for pair in pairs for node in pair})
        return {(src, tgt): degrees[src] + degrees[tgt] for src, tgt in pairs}

    def has_edge(self, source_node_id: str, target_node_id: str) -> bool:
        return self.get_edge(source_node_id, target_node_id) is not None

    def get_edge(self, source_node_id: str, target_node_id: str) -> dict[str, Any] | None:
        pair = (source_node_id, target_node_id)
        return self.get_edges_batch([pair]).get(pair)

    def get_edges_batch(
        self, pairs: Iterable[tuple[str, str] | Mapping[str, str]]
    ) -> dict[tuple[str, str], dict[str, Any]]:
        """Properties of the edges that exist, keyed by the pair as given (either order)."""
        given = _pairs(pairs)
        if not given:
            return {}
        stored = [canonical(src, tgt) for src, tgt in given]
        wanted = set(stored)
        if len(wanted) == 1:
            ((src, tgt),) = wanted
            rows = self._read_tuples(q.GET_EDGE, src=src, tgt=tgt)
        else:
            rows = self._read_tuples(
                q.GET_EDGES, srcs=[src for src, _ in wanted], tgts=[tgt for _, tgt in wanted]
            )
        found = {(src, tgt): properties for src, tgt, properties in rows}
        return {pair: found[key] for pair, key in zip(given, stored, strict=True) if key in found}

    def get_node_edges(self, source_node_id: str) -> list[tuple[str, str]] | None:
        """``(node_id, neighbour)`` for each edge, sorted by neighbour; ``[]`` for a node
        without edges and None for a node that does not exist."""
        (node_id,) = _ids([source_node_id])
        (row,) = self._read(q.NODE_EDGES, id=node_id, ids=[node_id])
        if not row["found"]:
            return None
        return [(node_id, neighbour) for neighbour in sorted(row["neighbours"])]

    def get_nodes_edges_batch(self, node_ids: Iterable[str]) -> dict[str, list[tuple[str, str]]]:
        """``get_node_edges`` for each node; an unknown node gets ``[]`` (LightRAG's rule)."""
        ids = _ids(node_ids)
        if not ids:
            return {}
        edges: dict[str, list[tuple[str, str]]] = {node: [] for node in ids}
        for node, neighbour in self._read_tuples(q.NEIGHBOURS, ids=ids):
            edges[node].append((node, neighbour))
        for node_edges in edges.values():
            node_edges.sort(key=lambda edge: edge[1])
        return edges

    def get_all_labels(self) -> list[str]:
        """Every node id, in code-point order."""
        return [row["id"] for row in self._read(q.ALL_LABELS)]

    def get_popular_labels(self, limit: int = 300) -> list[str]:
        """Node ids by degree, highest first, ties by id; isolated nodes included."""
        limit = _non_negative(limit, "limit")
        rows = self._read(q.RANKED_IDS, limit=limit)
        return [row["id"] for row in rows]

    def search_labels(self, query: str, limit: int = 50) -> list[str]:
        """Ids containing ``query`` (case-insensitive), best first: NetworkXStorage's scores.
        Case folding is the server's ``lower()`` on both sides, as in LightRAG's PostgreSQL
        storages (Python's would fold "À" where a C-locale server does not: no match)."""
        if not isinstance(query, str):
            raise InvalidInput(f"search query must be a string, got {type(query).__name__}")
        check_storable(query, "search query")
        limit = _non_negative(limit, "limit")
        stripped = query.strip()
        if not stripped:
            return []
        like = _escape_like(stripped)
        rows = self._read(
            q.SEARCH_LABELS,
            query=stripped,
            prefix=f"{like}%",
            after_space=f"% {like}%",
            after_underscore=f"%!_{like}%",
            contains=f"%{like}%",
            limit=limit,
        )
        return [row["id"] for row in rows]

    def get_all_nodes(self) -> list[dict[str, Any]]:
        """Every node's properties plus ``id``, by id."""
        return [
            {**_node_properties(row["id"], row["properties"]), "id": row["id"]}
            for row in self._read(q.ALL_NODES)
        ]

    def get_all_edges(self) -> list[dict[str, Any]]:
        """Every edge's properties plus ``source`` and ``target`` (canonical order)."""
        return [
            {**row["properties"], "source": row["src_id"], "target": row["tgt_id"]}
            for row in self._read(q.ALL_EDGES)
        ]

    def analyze(self) -> None:
        """Refresh the planner's statistics of both tables, e.g. after a bulk import: until
        autovacuum does it, a traversal may be planned as if the tables were still small.
        A role that does not own the tables gets the server's warning, not an error."""
        with self.cursor(Mode.AUTOCOMMIT) as cur:
            self._execute(cur, q.ANALYZE)

    def tables_exist(self) -> bool:
        with self.cursor(Mode.AUTOCOMMIT, tuples=True) as cur:
            return table_exists(cur, self.schema, q.NODES.lower())

    def read_all(self) -> tuple[list[tuple[str, dict]], list[tuple[str, str, dict]]]:
        """Every node as (id, properties) and edge as (src, tgt, properties), properties as
        stored (``entity_id`` = the id), read from one snapshot: for a whole-graph export."""
        with self.cursor(Mode.READ_ONLY_SNAPSHOT) as cur:
            self._execute(cur, q.ALL_NODES)
            nodes = [(r["id"], _node_properties(r["id"], r["properties"])) for r in cur.fetchall()]
            self._execute(cur, q.ALL_EDGES)
            edges = [(r["src_id"], r["tgt_id"], dict(r["properties"])) for r in cur.fetchall()]
        return nodes, edges

    def counts(self) -> tuple[int, int]:
        """(nodes, edges) in this graph."""
        (row,) = self._read(q.COUNTS)
        return row["nodes"], row["edges"]

    def knowledge_graph(self, label: str, max_depth: int, max_nodes: int) -> Subgraph:
        """NetworkXStorage's ``get_knowledge_graph`` with ``max_nodes`` already capped.

        ``"*"``: the ``max_nodes`` nodes of highest degree (ties by id). Otherwise a BFS from
        ``label``, one statement per level: each level admits its unvisited neighbours by
        degree (ties by id) until ``max_nodes`` are in. ``is_truncated`` follows NetworkX:
        True only when ``max_nodes`` nodes were taken and more were within reach.
        Everything is read from one snapshot, so a concurrent delete cannot tear it.
        """
        if not isinstance(label, str):
            raise InvalidInput(f"node label must be a string, got {type(label).__name__}")
        check_storable(label, "node label")
        max_depth = _non_negative(max_depth, "max_depth")
        max_nodes = _non_negative(max_nodes, "max_nodes")
        with self.cursor(Mode.READ_ONLY_SNAPSHOT) as cur:
            if label == "*":
                graph = self._top_nodes(cur, max_nodes)
            else:
                graph = self._bfs(cur, label, max_depth, max_nodes)
            if graph.nodes:
                ids = [node for node, _ in graph.nodes]
                self._execute(cur, q.INDUCED_EDGES, ids=ids)
                graph.edges = [
                    (row["src_id"], row["tgt_id"], row["properties"]) for row in cur.fetchall()
                ]
        return graph

    def _top_nodes(self, cur: Any, max_nodes: int) -> Subgraph:
        self._execute(cur, q.RANKED_NODES, limit=max_nodes + 1)
        rows = cur.fetchall()
        return Subgraph(
            nodes=[(row["id"], _node_properties(row["id"], row["properties"])) for row in rows][
                :max_nodes
            ],
            is_truncated=len(rows) > max_nodes,
        )

    def _bfs(self, cur: Any, seed: str, max_depth: int, max_nodes: int) -> Subgraph:
        self._execute(cur, q.GET_NODE, id=seed)
        seed_row = cur.fetchone()
        if seed_row is None:
            return Subgraph()
        if max_nodes == 0:  # NetworkX: nothing taken, the seed left waiting in its queue
            return Subgraph(is_truncated=True)
        collected = {seed: seed_row["properties"]}
        level, depth, cut = [seed], 0, False
        while depth < max_depth and len(collected) < max_nodes:
            room = max_nodes - len(collected)
            self._execute(cur, q.BFS_LEVEL, frontier=level, visited=list(collected), limit=room + 1)
            rows = cur.fetchall()
            if not rows:
                break
            depth += 1
            cut = len(rows) > room
            level = [row["id"] for row in rows[:room]]
            collected.update((row["id"], row["properties"]) for row in rows[:room])
        truncated = cut or (
            len(collected) >= max_nodes
            and self._reach_beyond(cur, collected, level, depth, max_depth)
        )
        nodes = [(node, _node_properties(node, props)) for node, props in collected.items()]
        return Subgraph(nodes=nodes, is_truncated=truncated)

    def _reach_beyond(
        self, cur: Any, collected: Mapping[str, Any], level: list[str], depth: int, max_depth: int
    ) -> bool:
        """NetworkX's rule when the budget filled up exactly at the end of ``level``: below
        ``max_depth``, a neighbour outside the collected nodes was queued; at ``max_depth``,
        a neighbour outside the earlier levels (even one in the same level) was seen."""
        known = set(collected)
        if depth >= max_depth:
            known.difference_update(level)
        self._execute(cur, q.HAS_NEIGHBOUR_OUTSIDE, level=level, known=list(known))
        return cur.fetchone()["found"]

    # -- writes ------------------------------------------------------------------------

    def upsert_node(self, node_id: str, node_data: Mapping[str, Any]) -> WriteCounts:
        return self.upsert_nodes_batch([(node_id, node_data)])

    def upsert_nodes_batch(self, nodes: Iterable[tuple[str, Mapping[str, Any]]]) -> WriteCounts:
        """Insert or merge nodes; every node's properties must contain ``entity_id`` (it is
        stored as the node id). All or nothing: everything is checked before writing."""
        return self.write_nodes(NodeRows.of(nodes))

    def write_nodes(self, rows: NodeRows) -> WriteCounts:
        """Write nodes already checked by ``NodeRows.of``, in one transaction."""
        self._check_id_bytes(rows.ids)
        if len(rows.ids) == 1:
            return self._write_one(q.UPSERT_NODE, id=rows.ids[0], row=rows.json[0])
        return self._write(q.UPSERT_NODES, rows.json)

    def upsert_edge(
        self, source_node_id: str, target_node_id: str, edge_data: Mapping[str, Any]
    ) -> WriteCounts:
        return self.upsert_edges_batch([(source_node_id, target_node_id, edge_data)])

    def upsert_edges_batch(
        self, edges: Iterable[tuple[str, str, Mapping[str, Any]]]
    ) -> WriteCounts:
        """Insert or merge undirected edges, creating missing endpoints with only their
        ``entity_id``. All or nothing: everything is checked before writing."""
        return self.write_edges(EdgeRows.of(edges))

    def write_edges(self, rows: EdgeRows) -> WriteCounts:
        """Write edges already checked by ``EdgeRows.of``, in one transaction."""
        self._check_id_bytes(node for pair in rows.pairs for node in pair)
        if len(rows.pairs) == 1:
            ((src, tgt),) = rows.pairs
            endpoints = [src] if src == tgt else [src, tgt]
            return self._write_one(
                q.UPSERT_EDGE, src=src, tgt=tgt, row=rows.json[0], endpoints=endpoints
            )
        return self._write(q.UPSERT_EDGES, rows.json, endpoints_of=rows.pairs)

    def delete_node(self, node_id: str) -> None:
        self.remove_nodes([node_id])

    def remove_nodes(self, nodes: Iterable[str]) -> None:
        """Delete the nodes and every edge touching them; unknown ids are ignored."""
        ids = sorted(set(_ids(nodes)))
        if ids:  # not chunked: all their edges are locked in one sorted pass
            self._delete_nodes(q.LOCK_NODES, ids=ids)

    def remove_edges(self, edges: Iterable[tuple[str, str]]) -> None:
        """Delete the edges (either order); endpoints stay; unknown pairs are ignored."""
        wanted = sorted({canonical(*pair) for pair in _pairs(edges)})
        if not wanted:
            return
        with self.cursor(Mode.writes(one_statement=len(wanted) <= CHUNK_ROWS)) as cur:
            for chunk in chunked(wanted, CHUNK_ROWS):  # in order: the locks stay sorted
                self._execute(
                    cur, q.DELETE_EDGES, srcs=[s for s, _ in chunk], tgts=[t for _, t in chunk]
                )

    def drop(self) -> None:
        """Delete this graph: every node there when the drop locked them, and their edges
        (a node a racing writer creates meanwhile may stay)."""
        self._delete_nodes(q.LOCK_ALL_NODES)

    def _delete_nodes(self, lock: str, **params: Any) -> None:
        """Lock the nodes ``lock`` selects (in key order), then delete their edges and them."""
        with self.cursor(Mode.TRANSACTION) as cur:
            self._execute(cur, lock, **params)
            ids = [row["id"] for row in cur.fetchall()]
            if ids:
                self._execute(cur, q.DELETE_LOCKED_NODES, ids=ids)

    def _check_id_bytes(self, ids: Iterable[str]) -> None:
        """Ids within this workspace's budget (``NodeRows.of`` checked MAX_NODE_ID_BYTES)."""
        limit = self.max_id_bytes
        if limit >= MAX_NODE_ID_BYTES:
            return
        for node in ids:
            if len(node) * 4 > limit and len(size := node.encode()) > limit:
                raise InvalidInput(
                    f"node id {node[:40]!r}... is {len(size)} bytes in UTF-8; with workspace "
                    f"{self.workspace[:40]!r}... ({len(self.workspace.encode())} bytes) and "
                    f"namespace {self.namespace[:40]!r}, an edge's key (workspace, namespace "
                    f"and two ids) fits PostgreSQL's index entry of {BTREE_MAX_ENTRY_BYTES} "
                    f"bytes only with ids of at most {limit} bytes: use shorter ids (e.g. a "
                    "hash of the name) or a shorter workspace name; nothing was written."
                )

    # -- helpers -----------------------------------------------------------------------

    def _execute(self, cur: Any, template: str, **params: Any) -> None:
        psycopg2.extensions.register_type(_JSONB, cur)
        statement = self._statements.get(template)
        if statement is None:  # rendered once per store: the schema does not change
            rendered = self.render(template, nodes=q.NODES, edges=q.EDGES)
            statement = self._statements[template] = rendered.as_string(cur)
        lists = {k: _text_array(v) for k, v in params.items() if isinstance(v, (list, tuple))}
        cur.execute(statement, {"ws": self.workspace, "ns": self.namespace, **params, **lists})

    def _read(self, template: str, **params: Any) -> list[dict[str, Any]]:
        with self.cursor(Mode.AUTOCOMMIT) as cur:
            self._execute(cur, template, **params)
            return cur.fetchall()

    def _read_tuples(self, template: str, **params: Any) -> list[tuple]:
        """``_read`` for the batch lookups, whose thousands of rows are cheaper as tuples."""
        with self.cursor(Mode.AUTOCOMMIT, tuples=True) as cur:
            self._execute(cur, template, **params)
            return cur.fetchall()

    def _write_one(self, template: str, **params: Any) -> WriteCounts:
        """One node or edge: one statement, in autocommit."""
        with self.cursor(Mode.WRITE) as cur:
            self._execute(cur, template, **params)
            inserted = cur.fetchone()["inserted"]
        return self._wrote(WriteCounts(int(inserted), int(not inserted)))

    def _write(
        self,
        template: str,
        rows: list[str],
        endpoints_of: Sequence[tuple[str, str]] | None = None,
    ) -> WriteCounts:
        """Send JSON ``rows`` in bounded statements, one transaction for all of them."""
        total = WriteCounts()
        if not rows:
            return total
        # Every endpoint goes with the first statement, in one sorted pass, so the node
        # locks of the whole batch are taken in one order before any edge is written.
        endpoints = sorted({node for pair in endpoints_of or () for node in pair})
        chunks = list(_byte_chunks(rows))
        with self.cursor(Mode.writes(one_statement=len(chunks) == 1)) as cur:
            for chunk in chunks:
                params: dict[str, Any] = {"rows": f"[{','.join(chunk)}]"}
                if endpoints_of is not None:
                    params["endpoints"], endpoints = endpoints, []
                self._execute(cur, template, **params)
                row = cur.fetchone()
                total += WriteCounts(row["inserted"], row["written"] - row["inserted"])
        return self._wrote(total)

    def _wrote(self, counts: WriteCounts) -> WriteCounts:
        """Count rows written; analyze when they reach the next threshold (see
        ANALYZE_AFTER_ROWS). Doubling keeps the cost a small share of the writes."""
        with self._analyze_lock:
            self._written += counts.inserted + counts.merged
            due = self._written >= self._analyze_at
            if due:
                self._analyze_at = 2 * self._written
        if due:
            self.analyze()
        return counts


# -- input checks and small helpers ------------------------------------------------------


def _node_id(value: Any) -> str:
    check_key(value, "node id", max_length=MAX_NODE_ID_BYTES)
    size = len(_utf8(value, f"node id {value[:40]!r}"))
    if size > MAX_NODE_ID_BYTES:
        raise InvalidInput(
            f"node id {value[:40]!r}... is {size} bytes in UTF-8; the graph tables index "
            f"ids of at most {MAX_NODE_ID_BYTES} bytes: use a shorter name."
        )
    return value


def _utf8(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(
            f"{what} contains {text[exc.start : exc.end]!r} at offset {exc.start}, a lone "
            "surrogate that is not valid Unicode and cannot be stored: decode the source "
            "text with errors='replace'; nothing was written."
        ) from None


def _ids(values: Iterable[str]) -> list[str]:
    """Ids to look up or delete: strings PostgreSQL can take (no NUL, valid Unicode). An id
    longer than a write allows matches nothing, like any unknown id. Checked in one pass
    over all of them; only a failure looks for the culprit, to name it."""
    if isinstance(values, str):
        raise InvalidInput(f"expected a list of node ids, got the string {values!r:.80}")
    ids = list(values)
    try:
        joined = "".join(ids)  # TypeError: not all strings
        if "\x00" not in joined and joined.encode("utf-8"):
            return ids
    except (TypeError, UnicodeEncodeError):
        pass
    for value in ids:
        check_key(value, "node id", max_length=sys.maxsize)
        _utf8(value, f"node id {value[:40]!r}")
    return ids


def _pairs(values: Iterable[Any]) -> list[tuple[str, str]]:
    """Edges given as (src, tgt) or LightRAG's {"src": ..., "tgt": ...}, ids checked as
    ``_ids`` does."""
    pairs = []
    for pair in values:
        if type(pair) is tuple and len(pair) == 2:  # the common shapes first: thousands
            pairs.append(pair)
        elif type(pair) is dict:
            pairs.append((pair.get("src"), pair.get("tgt")))
        elif isinstance(pair, Mapping):
            pairs.append((pair.get("src"), pair.get("tgt")))
        elif isinstance(pair, (tuple, list)) and len(pair) == 2:
            pairs.append((pair[0], pair[1]))
        else:
            raise InvalidInput(f"an edge must be a (source, target) pair, got {pair!r:.80}")
    _ids([node for pair in pairs for node in pair])
    return pairs


def _properties(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidInput(f"{what}: properties must be a dict, got {type(value).__name__}")
    for key in value:
        if not isinstance(key, str):
            raise InvalidInput(
                f"{what}: property names must be strings, got {key!r:.40} "
                f"({type(key).__name__}); nothing was written."
            )
    return dict(value)


def _json(row: dict[str, Any], what: str) -> str:
    """One row as JSON, or InvalidInput naming the node or edge and the property."""
    try:
        return jsonb_text(row, what)
    except InvalidInput:
        for key, value in row["properties"].items():
            try:
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise InvalidInput(
                    f"{what}: property {key!r} cannot be stored as JSON ({exc}): use a string, "
                    "a finite number, a boolean, or a list or dict of those; nothing was written."
                ) from None
        raise


def _node_properties(node_id: str, properties: Any) -> dict[str, Any]:
    """Stored properties as LightRAG reads them: a dict whose ``entity_id`` is the id."""
    return {**(properties if isinstance(properties, dict) else {}), "entity_id": node_id}


def _non_negative(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(f"{what} must be a non-negative integer, got {value!r:.40}")
    return value


def _one_or_many(one: str, many: str, ids: list[str]) -> tuple[str, dict[str, Any]]:
    """The statement for one id when there is one (it plans faster), else the list one."""
    return (one, {"id": ids[0]}) if len(ids) == 1 else (many, {"ids": ids})


def _text_array(values: Sequence[str]) -> str:
    """``values`` as one PostgreSQL array literal (the statement casts it to text[]).

    psycopg2 sends a list as ``ARRAY['a', 'b', ...]``: an expression of one constant per
    item that the server parses and folds one by one, where one literal is parsed at once.
    """
    if not values:
        return "{}"
    text = "".join(values)
    if "\\" in text or '"' in text:  # rare: escape each value
        values = [v.replace("\\", "\\\\").replace('"', '\\"') for v in values]
    return '{"' + '","'.join(values) + '"}'


def _escape_like(text: str) -> str:
    """``text`` matched literally by LIKE ... ESCAPE '!'."""
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")


def _byte_chunks(rows: list[str]) -> Iterator[list[str]]:
    """Consecutive rows, at most CHUNK_ROWS of them and about CHUNK_BYTES (a single larger
    row travels alone)."""
    chunk: list[str] = []
    size = 0
    for row in rows:
        if chunk and (len(chunk) >= CHUNK_ROWS or size + len(row) > CHUNK_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(row)
        size += len(row)
    if chunk:
        yield chunk
