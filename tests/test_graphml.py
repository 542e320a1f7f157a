"""Moving NetworkXStorage's GraphML files into the graph tables and back.

The files are written by a real ``NetworkXStorage`` (``upsert_node``/``upsert_edge`` and
``index_done_callback``, as a worker process did), imported and exported through the real
command line, and checked row by row and value by value, Python types included.
"""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import networkx as nx
import pytest
from lightrag.kg.networkx_impl import NetworkXStorage
from lightrag.kg.shared_storage import initialize_share_data
from psycopg2 import sql

from aperag_pg.errors import GraphMLError, InvalidInput
from aperag_pg.stores.graph import GraphStore
from aperag_pg.stores.graphml import graph_of, import_graph

from .conftest import REPO_ROOT

NAMESPACE = "chunk_entity_relation"
FILE_NAME = f"graph_{NAMESPACE}.graphml"
GRAPHML_NS = "{http://graphml.graphdrawing.org/xmlns}"


def entity(name: str, **extra) -> dict:
    """A node as LightRAG's extraction writes it."""
    return {
        "entity_id": name,
        "entity_type": "person",
        "description": f"About {name}.",
        "source_id": "chunk-1<SEP>chunk-2",
        "file_path": "docs/a.txt",
        "created_at": 1751000000,
        **extra,
    }


def relation(description: str, **extra) -> dict:
    """An edge as LightRAG's extraction writes it."""
    return {
        "weight": 1.0,
        "description": description,
        "keywords": "works with, knows",
        "source_id": "chunk-1",
        "file_path": "docs/a.txt",
        "created_at": 1751000001,
        **extra,
    }


ODD_IDS = ['Zoë "Q" O\'Brien', "C:\\path\\to\\x", "東京 😀", "a<b>&c;", "tab\there", "two\nlines"]
NODES = [
    # One name with different types on different nodes: GraphML keeps a key per type.
    ("Alice", entity("Alice", rank=3, score=0.75, verified=True, huge=2**70, note="", pad="  ")),
    ("Bob", entity("Bob", rank="high", score=2, verified=False, description="one\nand two")),
    *[(name, entity(name, description=f"\\ {name} \\")) for name in ODD_IDS],
]
EDGES = [
    ("Bob", "Alice", relation("reversed on purpose", weight=2.5)),  # stored as Alice~Bob
    ("Alice", "Alice", relation("a self-loop")),
    # Names LightRAG's get_all_edges/get_all_nodes would overwrite with the endpoints.
    ("Alice", ODD_IDS[0], relation("named keys", source="s", target="t", id="e-1")),
    (ODD_IDS[1], ODD_IDS[2], relation("unicode and backslashes")),
    (ODD_IDS[4], ODD_IDS[3], relation("markup and tabs")),
    (ODD_IDS[5], "Bob", relation("newline id")),
    ("Bob", "Carol", relation("Carol exists only as this edge's endpoint")),
]


def write_networkx_graph(working_dir: Path, nodes, edges, workspace: str = "ws") -> Path:
    """The GraphML file a LightRAG process on NetworkXStorage leaves behind."""

    async def main() -> None:
        initialize_share_data()  # NetworkXStorage's locks and update flags; idempotent
        storage = NetworkXStorage(
            namespace=NAMESPACE,
            workspace=workspace,
            global_config={"working_dir": str(working_dir), "max_graph_nodes": 1000},
            embedding_func=None,
        )
        await storage.initialize()
        for node_id, data in nodes:
            await storage.upsert_node(node_id, dict(data))
        for source, target, data in edges:
            await storage.upsert_edge(source, target, dict(data))
        assert await storage.index_done_callback() is not False
        await storage.finalize()

    asyncio.run(main())
    path = working_dir / workspace / FILE_NAME
    assert path.is_file()
    return path


def run_cli(settings, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTGRES_")}
    env.update(settings.to_env(), **extra_env)
    return subprocess.run(
        [sys.executable, "-m", "aperag_pg", *map(str, args)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def ok(result: subprocess.CompletedProcess) -> str:
    """The one-line summary of a command that must have succeeded."""
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    return lines[0]


def failed(result: subprocess.CompletedProcess) -> str:
    """The error of a command that must have failed the way every command fails."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith("error: "), result.stderr
    return result.stderr


def new_workspace() -> str:
    return f"gml_{uuid.uuid4().hex[:8]}"


def rows(admin_conn, schema: str, workspace: str) -> tuple[dict, dict]:
    """(id -> properties, (src, tgt) -> properties) as stored; empty without tables."""
    with admin_conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}".lightrag_graph_nodes',))
        if not cur.fetchone()[0]:
            return {}, {}
        scope = (workspace, NAMESPACE)
        cur.execute(
            sql.SQL(
                "SELECT id, properties FROM {}.lightrag_graph_nodes "
                "WHERE workspace = %s AND namespace = %s"
            ).format(sql.Identifier(schema)),
            scope,
        )
        nodes = dict(cur.fetchall())
        cur.execute(
            sql.SQL(
                "SELECT src_id, tgt_id, properties FROM {}.lightrag_graph_edges "
                "WHERE workspace = %s AND namespace = %s"
            ).format(sql.Identifier(schema)),
            scope,
        )
        edges = {(src, tgt): props for src, tgt, props in cur.fetchall()}
    return nodes, edges


def typed(properties: dict) -> dict:
    """Properties with each value's exact type, so 1 == 1.0 == True cannot pass for equal."""
    return {key: (type(value).__name__, value) for key, value in properties.items()}


def canonical(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


def expected_rows(nodes, edges) -> tuple[dict, dict]:
    """What NetworkX holds after these upserts, in the tables' shape."""
    graph = nx.Graph()
    for node_id, data in nodes:
        graph.add_node(node_id, **data)
    for a, b, data in edges:
        graph.add_edge(a, b, **data)
    return (
        {node: {**data, "entity_id": node} for node, data in graph.nodes(data=True)},
        {canonical(a, b): dict(data) for a, b, data in graph.edges(data=True)},
    )


def typed_graph(graph: nx.Graph) -> tuple[dict, dict]:
    return (
        {node: typed(data) for node, data in graph.nodes(data=True)},
        {canonical(a, b): typed(data) for a, b, data in graph.edges(data=True)},
    )


def test_import_writes_networkx_graph_rows_and_a_second_import_changes_nothing(
    tmp_path, base_settings, admin_conn
):
    ws, schema = new_workspace(), base_settings.schema
    source = write_networkx_graph(tmp_path / "proc-1", NODES, EDGES)
    want_nodes, want_edges = expected_rows(NODES, EDGES)
    assert len(want_nodes) == 9 and len(want_edges) == 7

    first = run_cli(
        base_settings, "graph", "import", "--graphml", source, "--workspace", ws,
        "--batch-size", "4",
    )  # fmt: skip
    assert ok(first) == (
        f"imported {source} into workspace '{ws}': 9 nodes (9 new, 0 merged), "
        "7 edges (7 new, 0 merged); entity_id set on nodes without one: 1"
    )
    progress = first.stderr.splitlines()
    assert progress == ["nodes 4/9", "nodes 8/9", "nodes 9/9", "edges 4/7", "edges 7/7"]

    nodes, edges = rows(admin_conn, schema, ws)
    assert {n: typed(p) for n, p in nodes.items()} == {n: typed(p) for n, p in want_nodes.items()}
    assert nodes["Carol"] == {"entity_id": "Carol"}  # an endpoint NetworkX left bare
    assert {e: typed(p) for e, p in edges.items()} == {e: typed(p) for e, p in want_edges.items()}
    assert all(src <= tgt for src, tgt in edges)  # canonical order, Python's code points
    assert ("Alice", "Bob") in edges and ("two\nlines", "Bob") not in edges

    # Again, with the workspace from POSTGRES_WORKSPACE: every row merged, none changed.
    second = run_cli(base_settings, "graph", "import", "--graphml", source, POSTGRES_WORKSPACE=ws)
    assert ok(second) == (
        f"imported {source} into workspace '{ws}': 9 nodes (0 new, 9 merged), "
        "7 edges (0 new, 7 merged); entity_id set on nodes without one: 1"
    )
    again_nodes, again_edges = rows(admin_conn, schema, ws)
    assert {n: typed(p) for n, p in again_nodes.items()} == {n: typed(p) for n, p in nodes.items()}
    assert {e: typed(p) for e, p in again_edges.items()} == {e: typed(p) for e, p in edges.items()}


def test_a_second_process_file_merges_key_by_key(tmp_path, base_settings, admin_conn):
    ws, schema = new_workspace(), base_settings.schema
    first = write_networkx_graph(tmp_path / "proc-1", NODES, EDGES)
    # Another worker process saw Alice again and met Dave; Bob is only an endpoint there.
    other_nodes = [
        ("Alice", entity("Alice", description="Alice, revised.", rank=4, seen_by="proc-2")),
        ("Dave", entity("Dave")),
    ]
    other_edges = [
        ("Alice", "Bob", relation("revised", weight=9.0)),
        ("Dave", "Alice", relation("new")),
    ]
    second = write_networkx_graph(tmp_path / "proc-2", other_nodes, other_edges)

    ok(run_cli(base_settings, "graph", "import", "--graphml", first, "--workspace", ws))
    before, before_edges = rows(admin_conn, schema, ws)
    # The flag wins over POSTGRES_WORKSPACE.
    result = run_cli(
        base_settings, "graph", "import", "--graphml", second, "--workspace", ws,
        POSTGRES_WORKSPACE="somewhere-else",
    )  # fmt: skip
    assert ok(result) == (
        f"imported {second} into workspace '{ws}': 3 nodes (1 new, 2 merged), "
        "2 edges (1 new, 1 merged); entity_id set on nodes without one: 1"
    )
    nodes, edges = rows(admin_conn, schema, ws)
    assert set(nodes) == set(before) | {"Dave"}
    assert nodes["Alice"] == {**before["Alice"], **other_nodes[0][1]}  # last import wins a key
    assert nodes["Alice"]["huge"] == 2**70 and nodes["Alice"]["rank"] == 4
    assert nodes["Bob"] == before["Bob"]  # a bare endpoint in the second file changes nothing
    assert nodes["Dave"] == other_nodes[1][1]
    assert edges[("Alice", "Bob")] == {**before_edges[("Alice", "Bob")], **other_edges[0][2]}
    assert edges[("Alice", "Dave")] == other_edges[1][2]
    assert len(edges) == len(before_edges) + 1
    assert rows(admin_conn, schema, "somewhere-else") == ({}, {})


def test_export_gives_back_the_networkx_file_losslessly(tmp_path, base_settings, admin_conn):
    ws = new_workspace()
    source = write_networkx_graph(tmp_path / "proc-1", NODES, EDGES)
    ok(run_cli(base_settings, "graph", "import", "--graphml", source, "--workspace", ws))

    out_dir = tmp_path / "exported" / "ws"
    out_dir.mkdir(parents=True)
    target = out_dir / FILE_NAME
    target.write_text("an older export")
    for _ in range(2):  # replaces the file in place, twice alike
        result = run_cli(base_settings, "graph", "export", "--graphml", target, "--workspace", ws)
        assert ok(result) == f"exported workspace '{ws}' to {target}: 9 nodes, 7 edges"
    assert [p.name for p in out_dir.iterdir()] == [FILE_NAME]  # no temporary file left

    original_nodes, original_edges = typed_graph(nx.read_graphml(source))
    exported_nodes, exported_edges = typed_graph(nx.read_graphml(target))
    # The one difference: the bare endpoint now carries entity_id, as in the tables.
    assert original_nodes.pop("Carol") == {}
    assert exported_nodes.pop("Carol") == typed({"entity_id": "Carol"})
    assert exported_nodes == original_nodes
    assert exported_edges == original_edges
    assert exported_nodes["Alice"]["huge"] == ("int", 2**70)
    assert exported_nodes["Alice"]["note"] == ("str", "")
    assert exported_nodes["Alice"]["pad"] == ("str", "  ")
    assert exported_nodes["Bob"]["score"] == ("int", 2)
    assert exported_edges[("Alice", "Bob")]["weight"] == ("float", 2.5)
    assert exported_edges[("Alice", "Alice")]["weight"] == ("float", 1.0)

    # GraphML's own record of the types: one key per name and type, as networkx wrote them.
    keys = {
        (k.get("for"), k.get("attr.name"), k.get("attr.type"))
        for k in ET.parse(target).getroot().iter(f"{GRAPHML_NS}key")
    }
    assert {
        ("node", "rank", "long"),
        ("node", "rank", "string"),
        ("node", "score", "double"),
        ("node", "score", "long"),
        ("node", "verified", "boolean"),
        ("node", "huge", "long"),
        ("edge", "weight", "double"),
        ("edge", "created_at", "long"),
    } <= keys

    # NetworkXStorage opens the exported file as its own.
    async def read_back() -> None:
        initialize_share_data()
        storage = NetworkXStorage(
            namespace=NAMESPACE,
            workspace="ws",
            global_config={"working_dir": str(tmp_path / "exported"), "max_graph_nodes": 1000},
            embedding_func=None,
        )
        await storage.initialize()
        assert typed(await storage.get_node(ODD_IDS[0])) == typed(dict(NODES)[ODD_IDS[0]])
        assert typed(await storage.get_edge("Alice", "Bob")) == typed(EDGES[0][2])
        assert sorted(await storage.get_all_labels()) == sorted([*original_nodes, "Carol"])
        await storage.finalize()

    asyncio.run(read_back())


def test_tables_to_graphml_to_tables_is_lossless(tmp_path, base_settings, admin_conn):
    first, second = new_workspace(), new_workspace()
    source = write_networkx_graph(tmp_path / "proc-1", NODES, EDGES)
    exported = tmp_path / "exported.graphml"
    ok(run_cli(base_settings, "graph", "import", "--graphml", source, "--workspace", first))
    ok(run_cli(base_settings, "graph", "export", "--graphml", exported, "--workspace", first))
    result = run_cli(base_settings, "graph", "import", "--graphml", exported, "--workspace", second)
    assert ok(result).endswith("9 nodes (9 new, 0 merged), 7 edges (7 new, 0 merged)")

    def typed_rows(workspace):
        nodes, edges = rows(admin_conn, base_settings.schema, workspace)
        return {n: typed(p) for n, p in nodes.items()}, {e: typed(p) for e, p in edges.items()}

    assert typed_rows(second) == typed_rows(first)


NOT_GRAPHML = {
    "not-xml": ("graph.graphml", "this is not XML", "is not a valid GraphML file (ParseError"),
    "empty": ("graph.graphml", "", "is not a valid GraphML file (ParseError: no element found"),
    "other-xml": (
        "graph.graphml",
        "<?xml version='1.0'?><root><item/></root>",
        "not successfully read as graphml",
    ),
    "nul-reference": (
        "graph.graphml",
        '<graphml xmlns="http://graphml.graphdrawing.org/xmlns"><graph edgedefault="undirected">'
        '<node id="a&#0;b"/></graph></graphml>',
        "reference to invalid character number",
    ),
    "bad-typed-value": (
        "graph.graphml",
        '<graphml xmlns="http://graphml.graphdrawing.org/xmlns">'
        '<key id="d0" for="node" attr.name="rank" attr.type="long"/>'
        '<graph edgedefault="undirected"><node id="a"><data key="d0">high</data></node>'
        "</graph></graphml>",
        "(ValueError: invalid literal for int()",
    ),
    "missing": ("missing.graphml", None, "missing.graphml: no such file"),
    "directory": ("a-directory", "dir", "a-directory is not a file"),
}


@pytest.mark.parametrize("case", NOT_GRAPHML)
def test_unreadable_files_fail_clearly_and_write_nothing(case, tmp_path, base_settings, admin_conn):
    ws = new_workspace()
    name, content, message = NOT_GRAPHML[case]
    path = tmp_path / name
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
    error = failed(run_cli(base_settings, "graph", "import", "--graphml", path, "--workspace", ws))
    assert message in error and str(path) in error
    assert rows(admin_conn, base_settings.schema, ws) == ({}, {})


@pytest.mark.parametrize(
    ("bad_nodes", "bad_edges", "message"),
    [
        (
            # Zed sorts last: with one row per batch, per-batch checks would write Alice.
            [("Alice", entity("Alice", rank=99)), ("Zed", entity("Zed", score=math.nan))],
            [],
            "node 'Zed': property 'score' cannot be stored as JSON",
        ),
        (
            # Nodes are fine and written first; the bad edge must stop them too.
            [("Alice", entity("Alice", rank=99))],
            [("Bob", "Alice", relation("infinite", weight=math.inf))],
            "edge 'Alice'~'Bob': property 'weight' cannot be stored as JSON",
        ),
    ],
    ids=["nan-node", "inf-edge"],
)
def test_values_the_tables_cannot_hold_fail_before_anything_is_written(
    bad_nodes, bad_edges, message, tmp_path, base_settings, admin_conn
):
    ws, schema = new_workspace(), base_settings.schema
    good = write_networkx_graph(tmp_path / "proc-1", NODES, EDGES)
    bad = write_networkx_graph(tmp_path / "proc-2", bad_nodes, bad_edges)
    ok(run_cli(base_settings, "graph", "import", "--graphml", good, "--workspace", ws))
    before = rows(admin_conn, schema, ws)

    result = run_cli(
        base_settings, "graph", "import", "--graphml", bad, "--workspace", ws,
        "--batch-size", "1",
    )  # fmt: skip
    error = failed(result)
    assert message in error and "nothing was written" in error
    assert "nodes 1/" not in error  # no batch was sent
    assert rows(admin_conn, schema, ws) == before


def test_nul_characters_and_odd_names_are_refused_before_anything_is_written(manager):
    # XML cannot carry NUL at all (see the nul-reference file above); a graph built in
    # Python can, and import_graph refuses it the same way.
    store = GraphStore(workspace=new_workspace())
    graph = nx.Graph()
    graph.add_node("A", entity_id="A", description="fine")
    graph.add_node("B", entity_id="B", description="a\x00b")
    with pytest.raises(InvalidInput, match=r"node 'B'.*\['description'\] contains a NUL"):
        import_graph(store, graph, batch_size=1)
    graph = nx.Graph()
    graph.add_edge("A", "B", keywords="x\x00")
    with pytest.raises(InvalidInput, match=r"edge 'A'~'B'.*\['keywords'\] contains a NUL"):
        import_graph(store, graph, batch_size=1)
    graph = nx.Graph()
    graph.add_node("A", entity_id="A")
    graph.add_node("B", entity_id="B")
    graph.nodes["B"][7] = "a name JSON would quietly turn into '7'"
    with pytest.raises(InvalidInput, match=r"node 'B': property names must be strings"):
        import_graph(store, graph, batch_size=1)
    store.ensure_tables()
    assert store.counts() == (0, 0)


@pytest.mark.parametrize(
    ("properties", "message"),
    [
        ({"tags": ["a", "b"]}, "node 'A': property 'tags' is a list, which GraphML cannot hold"),
        ({"extra": None}, "node 'A': property 'extra' is a null, which GraphML cannot hold"),
        ({"description": "bell\x07"}, "node 'A': property 'description' contains the char"),
        ({"bad\x01name": "x"}, "node 'A': property name 'bad\\x01name' contains the character"),
    ],
    ids=["list", "null", "control-character", "control-character-in-name"],
)
def test_export_refuses_what_graphml_cannot_hold(properties, message, manager, tmp_path):
    from aperag_pg.stores.graphml import export_graphml

    store = GraphStore(workspace=new_workspace())
    store.ensure_tables()
    store.upsert_node("A", {"entity_id": "A", **properties})  # other writers may store these
    target = tmp_path / FILE_NAME
    target.write_text("the previous file")
    with pytest.raises(GraphMLError) as raised:
        export_graphml(store, target)
    assert message in str(raised.value) and "nothing was written" in str(raised.value)
    assert target.read_text() == "the previous file"
    assert [p.name for p in tmp_path.iterdir()] == [FILE_NAME]


def test_export_without_graph_tables_says_so(tmp_path, base_settings):
    schema = f"nographs_{uuid.uuid4().hex[:6]}"
    target = tmp_path / FILE_NAME
    result = run_cli(base_settings, "graph", "export", "--graphml", target, POSTGRES_SCHEMA=schema)
    assert "table lightrag_graph_nodes does not exist in schema" in failed(result)
    assert not target.exists()


def test_a_float_of_1e16_stays_a_float(manager):
    store = GraphStore(workspace=new_workspace())
    graph = nx.Graph()
    graph.add_node("A", entity_id="A", weight=1e16)
    import_graph(store, graph)
    assert typed(graph_of(store).nodes["A"]) == typed({"entity_id": "A", "weight": 1e16})
