"""Moving a LightRAG graph between NetworkXStorage's GraphML files and the graph tables.

NetworkXStorage keeps each workspace's graph in one file,
``<working_dir>/<workspace>/graph_chunk_entity_relation.graphml``, an undirected
``nx.Graph`` written by ``networkx.write_graphml``. ``import_graphml`` reads such a file
into ``lightrag_graph_nodes`` / ``_edges`` with ``GraphStore``'s batch upserts, checked as
a whole first (``NodeRows.of`` / ``EdgeRows.of``), then written nodes first, a few thousand
per transaction (``write_nodes`` / ``write_edges``); ``export_graphml`` writes a workspace back as
NetworkXStorage would. Imports merge: a node or edge already stored keeps the properties
the file lacks and takes the file's value for every other key, so importing several
processes' files into one workspace is safe, and importing a file twice changes nothing.

Types: networkx writes one GraphML ``<key>`` per attribute name and Python type (str as
``string``, int as ``long``, float as ``double``, bool as ``boolean``) and reads each
value back with its key's type, so str, int (any size), float and bool survive a round
trip GraphML -> tables -> GraphML, even when one name has different types on different
nodes. What does not survive, and why:

- NaN and infinity: GraphML holds them, JSON (the tables' ``jsonb``) does not. The import
  fails with ``InvalidInput`` naming the node or edge and the property, before writing.
- ``"\\r"`` in a string value: XML readers turn ``"\\r\\n"`` and ``"\\r"`` into ``"\\n"``,
  so NetworkXStorage's own reload loses it just the same.
- A node without ``entity_id`` (NetworkX creates edge endpoints without attributes) gets
  ``entity_id`` = its id, LightRAG's rule for the tables; the import counts those nodes.
- ``-0.0`` comes back as ``0.0`` (``jsonb`` numbers have no negative zero).

Export refuses, naming the node or edge and the property, what a GraphML file cannot
hold (lists, dicts and nulls other writers may have stored; characters XML cannot
encode) instead of writing a file that networkx cannot read back.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx

from ..errors import GraphMLError, InvalidInput, first_line
from .graph import GRAPH_NAMESPACE, EdgeRows, GraphStore, NodeRows, WriteCounts

DEFAULT_BATCH_SIZE = 5000
GRAPHML_TYPES = (str, int, float, bool)  # exactly these: networkx looks types up by identity

Progress = Callable[[str], None]

# Characters XML 1.0 cannot carry, even as character references.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True)
class ImportSummary:
    """What an import read and did. ``nodes``/``edges``: rows new to the tables and rows
    merged into existing ones; ``entity_ids_added``: nodes that had no ``entity_id``;
    ``entity_ids_replaced``: nodes whose ``entity_id`` was not their id."""

    path: str
    workspace: str
    namespace: str
    nodes_read: int
    edges_read: int
    nodes: WriteCounts
    edges: WriteCounts
    entity_ids_added: int = 0
    entity_ids_replaced: int = 0

    def line(self) -> str:
        where = f"workspace {self.workspace!r}"
        if self.namespace != GRAPH_NAMESPACE:
            where += f" (namespace {self.namespace!r})"
        text = (
            f"imported {self.path} into {where}: "
            f"{self.nodes_read} nodes ({self.nodes.inserted} new, {self.nodes.merged} merged), "
            f"{self.edges_read} edges ({self.edges.inserted} new, {self.edges.merged} merged)"
        )
        if self.entity_ids_added:
            text += f"; entity_id set on nodes without one: {self.entity_ids_added}"
        if self.entity_ids_replaced:
            text += f"; entity_id replaced by the node id: {self.entity_ids_replaced}"
        return text


@dataclass(frozen=True)
class ExportSummary:
    path: str
    workspace: str
    namespace: str
    nodes: int
    edges: int

    def line(self) -> str:
        where = f"workspace {self.workspace!r}"
        if self.namespace != GRAPH_NAMESPACE:
            where += f" (namespace {self.namespace!r})"
        return f"exported {where} to {self.path}: {self.nodes} nodes, {self.edges} edges"


# -- import ----------------------------------------------------------------------------


def read_graphml(path: str | os.PathLike[str]) -> nx.Graph:
    """The file's graph, or ``GraphMLError`` saying why it cannot be read."""
    path = Path(path)
    if not path.exists():
        raise GraphMLError(f"{path}: no such file")
    if not path.is_file():
        raise GraphMLError(f"{path} is not a file")
    try:
        return nx.read_graphml(path)
    except OSError as exc:
        raise GraphMLError(f"cannot read {path}: {exc.strerror or first_line(exc)}") from None
    except (SyntaxError, nx.NetworkXError, KeyError, ValueError, TypeError) as exc:
        # SyntaxError: xml.etree's ParseError; the others: GraphML that networkx cannot
        # decode (unknown key or type, a value that does not parse as its type).
        raise GraphMLError(
            f"{path} is not a valid GraphML file ({type(exc).__name__}: {first_line(exc)})"
        ) from None


def import_graphml(
    store: GraphStore,
    path: str | os.PathLike[str],
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Progress | None = None,
) -> ImportSummary:
    """Read a GraphML file into ``store``'s workspace; see ``import_graph``."""
    graph = read_graphml(path)
    return import_graph(store, graph, str(path), batch_size=batch_size, progress=progress)


def import_graph(
    store: GraphStore,
    graph: nx.Graph,
    source: str = "graph",
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Progress | None = None,
) -> ImportSummary:
    """Upsert every node, then every edge, of ``graph`` in batches of ``batch_size``.

    Everything is checked before the first batch: a value the tables cannot hold raises
    ``InvalidInput`` naming the node or edge and the property, and nothing is written.
    A directed graph or a multigraph is read as NetworkX's ``nx.Graph(graph)`` would be:
    parallel and opposite edges become one edge, their properties merged in file order.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInput(f"batch_size must be a positive integer, got {batch_size!r:.40}")
    report = progress or (lambda _line: None)
    if graph.is_directed() or graph.is_multigraph():
        graph = nx.Graph(graph)
    entity_ids = {"added": 0, "replaced": 0}
    # The store's own checks, on the whole graph at once: a bad value anywhere stops the
    # import before its first batch. Rows come back sorted (ids, canonical pairs).
    nodes = NodeRows.of(_with_entity_ids(graph, entity_ids))
    edges = EdgeRows.of(graph.edges(data=True))
    store.ensure_tables()
    node_batches = _batches(nodes, nodes.ids, batch_size)
    edge_batches = _batches(edges, edges.pairs, batch_size)
    node_counts = _write_batches(store.write_nodes, node_batches, len(nodes.ids), "nodes", report)
    edge_counts = _write_batches(store.write_edges, edge_batches, len(edges.pairs), "edges", report)
    store.analyze()  # the planner's statistics, before autovacuum would get to it
    return ImportSummary(
        path=source,
        workspace=store.workspace,
        namespace=store.namespace,
        nodes_read=len(nodes.ids),
        edges_read=len(edges.pairs),
        nodes=node_counts,
        edges=edge_counts,
        entity_ids_added=entity_ids["added"],
        entity_ids_replaced=entity_ids["replaced"],
    )


def _with_entity_ids(
    graph: nx.Graph, counts: dict[str, int]
) -> Iterator[tuple[Any, dict[str, Any]]]:
    """Each node with ``entity_id`` = its id (LightRAG's rule for the tables), counting the
    nodes that had none and those whose ``entity_id`` was something else."""
    for node, data in graph.nodes(data=True):
        properties = dict(data)
        if "entity_id" not in properties:
            counts["added"] += 1
        elif properties["entity_id"] != node:
            counts["replaced"] += 1
        properties["entity_id"] = node
        yield node, properties


def _batches(rows: NodeRows | EdgeRows, keys: Sequence[Any], size: int) -> list[Any]:
    """``rows`` split into consecutive parts of ``size``, of the same type."""
    return [
        type(rows)(tuple(keys[i : i + size]), rows.json[i : i + size])
        for i in range(0, len(keys), size)
    ]


def _write_batches(
    write: Callable[[Any], WriteCounts],
    batches: Sequence[NodeRows | EdgeRows],
    total: int,
    what: str,
    report: Progress,
) -> WriteCounts:
    """Each batch in its own transaction, reporting ``"<what> done/total"`` after each."""
    counts, done = WriteCounts(), 0
    if not batches:
        report(f"{what} 0/0")
    for batch in batches:
        counts += write(batch)
        done += len(batch.json)
        report(f"{what} {done}/{total}")
    return counts


# -- export ----------------------------------------------------------------------------


def export_graphml(store: GraphStore, path: str | os.PathLike[str]) -> ExportSummary:
    """Write ``store``'s graph to ``path`` as NetworkXStorage would: an ``nx.Graph`` whose
    node and edge attributes are the stored properties (``entity_id`` = the node id),
    read from one snapshot and written to a temporary file renamed into place."""
    path = Path(path)
    graph = graph_of(store)
    _write_atomically(graph, path)
    return ExportSummary(
        path=str(path),
        workspace=store.workspace,
        namespace=store.namespace,
        nodes=graph.number_of_nodes(),
        edges=graph.number_of_edges(),
    )


def graph_of(store: GraphStore) -> nx.Graph:
    """The stored graph as an ``nx.Graph``; ``GraphMLError`` for what GraphML cannot hold."""
    if not store.tables_exist():
        raise GraphMLError(
            "there is no graph to export: the table lightrag_graph_nodes does not exist in "
            f"schema {store.schema!r} (check POSTGRES_SCHEMA and the connection settings)"
        )
    # Properties as stored: get_all_nodes/get_all_edges overwrite ones named id, source
    # and target with LightRAG's own keys.
    nodes, edges = store.read_all()
    graph = nx.Graph()
    for node, properties in nodes:
        _check_graphml(f"node {node!r}", [node], properties)
        graph.add_node(node)
        graph.nodes[node].update(properties)
    for src, tgt, properties in edges:
        _check_graphml(f"edge {src!r}~{tgt!r}", [src, tgt], properties)
        graph.add_edge(src, tgt)
        graph.edges[src, tgt].update(properties)
    return graph


def _check_graphml(what: str, ids: list[str], properties: dict[str, Any]) -> None:
    for node in ids:
        _check_xml_text(node, f"{what}: the id")
    for key, value in properties.items():
        _check_xml_text(key, f"{what}: property name {key!r}")
        if type(value) not in GRAPHML_TYPES:
            kind = "null" if value is None else type(value).__name__
            raise GraphMLError(
                f"{what}: property {key!r} is a {kind}, which GraphML cannot hold (only "
                "strings, numbers and booleans); nothing was written. Store it as a string "
                "(e.g. JSON text) first."
            )
        if isinstance(value, str):
            _check_xml_text(value, f"{what}: property {key!r}")


def _check_xml_text(text: str, what: str) -> None:
    found = _NOT_XML.search(text)
    if found:
        raise GraphMLError(
            f"{what} contains the character U+{ord(found.group()):04X} at offset "
            f"{found.start()}, which XML cannot encode; nothing was written."
        )


def _write_atomically(graph: nx.Graph, path: Path) -> None:
    """``nx.write_graphml`` into a temporary file beside ``path``, then rename it into
    place: readers see the old file or the new one, never a torn write."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        try:
            with open(tmp, "wb") as stream:
                nx.write_graphml(graph, stream)
                stream.flush()
                os.fsync(stream.fileno())
            if path.exists():
                shutil.copymode(path, tmp)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise GraphMLError(f"cannot write {path}: {exc.strerror or first_line(exc)}") from None
