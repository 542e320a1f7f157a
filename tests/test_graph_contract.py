"""The LightRAG ``BaseGraphStorage`` contract, asserted with exact values on NetworkXStorage
(the reference) and on PGSyncGraphStorage alike.

Where the two legitimately differ, each backend's documented behaviour is asserted (see
``Backend.endpoint_props`` and the tests that say so); nothing is skipped. The PG store keeps
PGTableGraphStorage's row format: ``entity_id`` is required and forced to the node id, and
the endpoints an edge creates carry ``{"entity_id": id}``. Otherwise NetworkX is the
reference, including what PGTableGraphStorage does differently: edge upserts merge
properties, and a node or edge twice in one batch merges key by key.
"""

from __future__ import annotations

import asyncio
from itertools import pairwise

import pytest
from lightrag.types import KnowledgeGraph

from .graph_support import (
    BACKENDS,
    BFS_NODES,
    NAMESPACE,
    Backend,
    apply,
    build_bfs_graph,
    edge,
    induced,
    kg_summary,
    node,
    open_graph,
    pair,
    random_graph,
    without_entity_id,
)
from .lightrag_support import new_workspace


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path, monkeypatch) -> Backend:
    if request.param == "pg":
        request.getfixturevalue("manager")  # the process pool the store runs on
        monkeypatch.delenv("POSTGRES_WORKSPACE", raising=False)
    return Backend(request.param, tmp_path)


def test_empty_graph(backend):
    async def check(g):
        assert await g.has_node("A") is False
        assert await g.has_edge("A", "B") is False
        assert await g.get_node("A") is None
        assert await g.get_edge("A", "B") is None
        assert await g.get_node_edges("A") is None
        assert await g.node_degree("A") == 0
        assert await g.edge_degree("A", "B") == 0
        assert await g.get_all_labels() == []
        assert await g.get_popular_labels() == []
        assert await g.search_labels("a") == []
        assert await g.get_all_nodes() == []
        assert await g.get_all_edges() == []
        for label in ("*", "A"):
            kg = await g.get_knowledge_graph(label, max_depth=3, max_nodes=10)
            assert (kg.nodes, kg.edges, kg.is_truncated) == ([], [], False)
        assert await g.get_nodes_batch([]) == {}
        assert await g.node_degrees_batch([]) == {}
        assert await g.edge_degrees_batch([]) == {}
        assert await g.get_edges_batch([]) == {}
        assert await g.get_nodes_edges_batch([]) == {}
        assert await g.has_nodes_batch([]) == set()
        await g.upsert_nodes_batch([])
        await g.upsert_edges_batch([])
        await g.remove_nodes([])
        await g.remove_edges([])
        await g.delete_node("A")  # absent: no error
        assert await g.get_all_labels() == []

    backend.run(check)


def test_nodes_edges_and_degrees(backend):
    async def check(g):
        for n in ("A", "B", "C", "L"):
            await g.upsert_node(n, node(n))
        await g.upsert_edge("A", "B", edge("A", "B", keywords="k"))
        await g.upsert_edge("L", "L", edge("L", "L"))  # a self-loop
        assert await g.has_node("A") and await g.has_node("C")
        assert await g.has_node("a") is False  # ids are case-sensitive
        assert await g.has_edge("A", "B") and await g.has_edge("B", "A")
        assert await g.has_edge("L", "L")
        assert await g.has_edge("A", "C") is False
        assert await g.has_edge("A", "missing") is False
        assert await g.get_node("A") == node("A")
        assert await g.get_edge("A", "B") == edge("A", "B", keywords="k")
        assert await g.get_edge("B", "A") == edge("A", "B", keywords="k")
        assert await g.get_edge("A", "C") is None
        assert await g.get_node_edges("A") == [("A", "B")]  # the queried node first
        assert await g.get_node_edges("B") == [("B", "A")]
        assert await g.get_node_edges("L") == [("L", "L")]  # a self-loop once
        assert await g.get_node_edges("C") == []  # exists, isolated
        assert await g.get_node_edges("missing") is None
        degrees = {n: await g.node_degree(n) for n in ("A", "B", "C", "L", "missing")}
        assert degrees == {"A": 1, "B": 1, "C": 0, "L": 2, "missing": 0}  # a self-loop counts 2
        assert await g.edge_degree("A", "B") == 2
        assert await g.edge_degree("B", "A") == 2
        assert await g.edge_degree("L", "L") == 4
        assert await g.edge_degree("A", "L") == 3  # no such edge: still the sum of degrees
        assert await g.edge_degree("A", "missing") == 1
        assert await g.edge_degree("x", "y") == 0

    backend.run(check)


def test_upsert_node_merges_and_forces_entity_id(backend):
    async def check(g):
        await g.upsert_node("A", node("A", extra="kept", n=1, f=0.5, b=True))
        await g.upsert_node("A", {"entity_id": "A", "description": "new", "n": 2})
        merged = {**node("A", extra="kept", f=0.5, b=True), "description": "new", "n": 2}
        assert await g.get_node("A") == merged  # and the JSON types round-trip
        await g.upsert_node("W", {"entity_id": "other", "description": "w"})
        expected_id = "W" if backend.pg else "other"  # PGTable-style: entity_id = node id
        assert await g.get_node("W") == {"entity_id": expected_id, "description": "w"}
        bad = [("ok", node("ok")), ("bad", {"description": "no entity_id"})]
        if backend.pg:  # required, as in PGTableGraphStorage; a batch is all or nothing
            with pytest.raises(ValueError, match="entity_id"):
                await g.upsert_nodes_batch(bad)
            with pytest.raises(ValueError, match="entity_id"):
                await g.upsert_node(*bad[1])
            assert await g.get_all_labels() == ["A", "W"]
        else:  # NetworkX stores whatever it is given
            await g.upsert_nodes_batch(bad)
            assert await g.get_node("bad") == {"description": "no entity_id"}
            assert await g.get_all_labels() == ["A", "W", "bad", "ok"]

    backend.run(check)


def test_upsert_edge_creates_missing_endpoints(backend):
    async def check(g):
        await g.upsert_node("A", node("A"))
        await g.upsert_edge("A", "Y", edge("A", "Y"))
        await g.upsert_edge("X", "Z", edge("X", "Z"))
        assert await g.has_nodes_batch(["A", "X", "Y", "Z"]) == {"A", "X", "Y", "Z"}
        assert await g.get_node("A") == node("A")  # an existing endpoint is untouched
        for n in ("X", "Y", "Z"):
            assert await g.get_node(n) == backend.endpoint_props(n)
        assert await g.get_node_edges("Z") == [("Z", "X")]
        await g.upsert_node("Y", node("Y"))  # enriching a bare endpoint
        assert await g.get_node("Y") == node("Y")
        assert await g.get_all_labels() == ["A", "X", "Y", "Z"]
        assert await g.node_degrees_batch(["A", "X", "Y", "Z"]) == dict.fromkeys("AXYZ", 1)

    backend.run(check)


def test_reverse_upsert_is_the_same_edge(backend):
    async def check(g):
        await g.upsert_edge("A", "B", edge("A", "B", weight=1.0, extra="first"))
        await g.upsert_edge("B", "A", {"weight": 2.0, "description": "again"})
        # One undirected edge, its attributes merged as NetworkX add_edge does
        # (PGTableGraphStorage would replace them; aperag_pg.stores.graph follows NetworkX).
        expected = {"weight": 2.0, "description": "again", "extra": "first"}
        assert await g.get_edge("A", "B") == expected
        assert await g.get_edge("B", "A") == expected
        assert len(await g.get_all_edges()) == 1
        assert await g.node_degree("A") == 1
        assert await g.get_node_edges("B") == [("B", "A")]

    backend.run(check)


def test_delete_node_removes_its_edges(backend):
    async def check(g):
        await g.upsert_edges_batch([(a, b, edge(a, b)) for a, b in ("AB", "AC", "BC", "AA")])
        await g.delete_node("A")
        await g.delete_node("missing")
        assert await g.has_node("A") is False
        assert await g.get_node("A") is None
        assert await g.has_edge("A", "B") is False and await g.has_edge("C", "A") is False
        assert await g.has_edge("A", "A") is False
        assert await g.get_node_edges("B") == [("B", "C")]
        assert await g.node_degrees_batch(["A", "B", "C"]) == {"A": 0, "B": 1, "C": 1}
        assert await g.get_all_labels() == ["B", "C"]
        assert [pair(e["source"], e["target"]) for e in await g.get_all_edges()] == [("B", "C")]

    backend.run(check)


def test_remove_nodes_and_edges(backend):
    async def check(g):
        edges = [(a, b, edge(a, b)) for a, b in ("AB", "BC", "CD", "DA", "AC")]
        await g.upsert_edges_batch(edges + [("E", "E", edge("E", "E"))])
        await g.upsert_node("F", node("F"))
        await g.remove_edges([("B", "A"), ("C", "D"), ("B", "D"), ("x", "y"), ("E", "E")])
        assert await g.has_edge("A", "B") is False and await g.has_edge("D", "C") is False
        assert await g.get_all_labels() == list("ABCDEF")  # removing edges keeps the nodes
        assert await g.get_node_edges("E") == []
        pairs = sorted(pair(e["source"], e["target"]) for e in await g.get_all_edges())
        assert pairs == [("A", "C"), ("A", "D"), ("B", "C")]
        await g.remove_nodes(["A", "E", "missing", "A"])
        assert await g.get_all_labels() == ["B", "C", "D", "F"]
        assert [pair(e["source"], e["target"]) for e in await g.get_all_edges()] == [("B", "C")]
        assert await g.node_degrees_batch(["B", "C", "D"]) == {"B": 1, "C": 1, "D": 0}

    backend.run(check)


def test_batch_reads(backend):
    async def check(g):
        await g.upsert_nodes_batch([(n, node(n)) for n in "ABC"])
        await g.upsert_edges_batch([("A", "B", edge("A", "B")), ("L", "L", edge("L", "L"))])
        ask = ["A", "B", "C", "L", "missing", "A"]
        assert await g.get_nodes_batch(ask) == {
            "A": node("A"),
            "B": node("B"),
            "C": node("C"),
            "L": backend.endpoint_props("L"),
        }
        assert await g.node_degrees_batch(ask) == {"A": 1, "B": 1, "C": 0, "L": 2, "missing": 0}
        pairs = [("A", "B"), ("B", "A"), ("A", "C"), ("L", "L"), ("A", "missing"), ("A", "B")]
        assert await g.edge_degrees_batch(pairs) == {
            ("A", "B"): 2,
            ("B", "A"): 2,
            ("A", "C"): 1,
            ("L", "L"): 4,
            ("A", "missing"): 1,
        }
        got = await g.get_edges_batch([{"src": s, "tgt": t} for s, t in pairs])
        # Keyed by the pair as asked, in both directions; absent edges left out.
        assert got == {
            ("A", "B"): edge("A", "B"),
            ("B", "A"): edge("A", "B"),
            ("L", "L"): edge("L", "L"),
        }
        by_node = await g.get_nodes_edges_batch(ask)
        assert {k: sorted(v) for k, v in by_node.items()} == {
            "A": [("A", "B")],
            "B": [("B", "A")],
            "C": [],
            "L": [("L", "L")],
            "missing": [],  # the batch form flattens "absent" to []
        }
        assert await g.has_nodes_batch(ask) == {"A", "B", "C", "L"}

    backend.run(check)


def test_batch_upserts_with_duplicates(backend):
    async def check(g):
        await g.upsert_node("E1", node("E1", old="survives"))
        await g.upsert_nodes_batch(
            [
                ("E1", node("E1", description="first")),
                ("E2", node("E2", only_in_first="yes")),
                ("E3", node("E3")),
                ("E1", node("E1", description="first-updated")),
                ("E2", node("E2", description="second")),
            ]
        )
        assert await g.get_node("E1") == node("E1", description="first-updated", old="survives")
        # A node twice in one batch: both payloads apply in order, a merge (PGTableGraphStorage
        # would keep the last payload only).
        second = node("E2", description="second", only_in_first="yes")
        assert await g.get_node("E2") == second
        await g.upsert_edges_batch(
            [
                ("E1", "E2", edge("E1", "E2", weight=1.0)),
                ("E2", "E3", edge("E2", "E3")),
                ("E3", "E4", edge("E3", "E4")),  # E4 does not exist yet
                ("E2", "E1", edge("E1", "E2", weight=2.0)),  # reversed duplicate: last wins
                ("E5", "E5", edge("E5", "E5")),
                ("E3", "E2", {"weight": 3.0}),  # merged key by key, like the nodes
            ]
        )
        assert await g.get_edge("E1", "E2") == edge("E1", "E2", weight=2.0)
        assert await g.get_edge("E2", "E1") == edge("E1", "E2", weight=2.0)
        assert await g.get_edge("E2", "E3") == edge("E2", "E3", weight=3.0)
        assert await g.get_node("E4") == backend.endpoint_props("E4")
        assert await g.has_nodes_batch(["E1", "E4", "E5", "E6"]) == {"E1", "E4", "E5"}
        degrees = await g.node_degrees_batch(["E1", "E2", "E3", "E4", "E5"])
        assert degrees == {"E1": 1, "E2": 2, "E3": 2, "E4": 1, "E5": 2}
        assert len(await g.get_all_edges()) == 4

    backend.run(check)


def test_all_labels_sort_by_code_point(backend):
    ids = ["b", "B", "a", "Ä", "_x", "10", "9", "é", "Z", "a b", "ab", "A"]

    async def check(g):
        await g.upsert_nodes_batch([(n, node(n)) for n in ids])
        assert await g.get_all_labels() == sorted(ids)
        assert sorted(ids) == ["10", "9", "A", "B", "Z", "_x", "a", "a b", "ab", "b", "Ä", "é"]

    backend.run(check)


def test_popular_labels(backend):
    async def check(g):
        await g.upsert_nodes_batch([(n, node(n)) for n in ["orphan", "Orphan", "_o"]])
        spokes = ["Beta", "alpha", "Zeta", "_u"]
        await g.upsert_edges_batch([("hub", s, edge("hub", s)) for s in spokes])
        await g.upsert_edges_batch([("Two", "Beta", edge("Two", "Beta")), ("Two", "Two", {})])
        # hub 4, Two 3 (a self-loop counts 2), Beta 2, then degree 1, then the isolated
        # nodes: ties by label in code-point order.
        full = ["hub", "Two", "Beta", "Zeta", "_u", "alpha", "Orphan", "_o", "orphan"]
        assert await g.get_popular_labels() == full
        assert await g.get_popular_labels(limit=4) == full[:4]
        assert await g.get_popular_labels(limit=7) == full[:7]
        assert await g.get_popular_labels(limit=100) == full
        assert await g.get_popular_labels(limit=0) == []

    backend.run(check)


SEARCH_CORPUS = [
    "foo", "FOO", "Foo Bar", "foobar", "foo foo", "xx_foo", "bar foo", "barfoo",
    "prefix_foo_suffix", "x" * 120 + "foo", "_foo", "zzfoo", "yyfoo", "bar", "Bar_baz",
    "baz", "café foo",
]  # fmt: skip


def test_search_labels(backend):
    foo = [
        "FOO", "foo",  # exact, 1000
        "Foo Bar", "foo foo", "foobar",  # prefix, 500 (no boundary bonus)
        "_foo",  # 100 - 4 + 50
        "xx_foo",  # 100 - 6 + 50
        "bar foo",  # 100 - 7 + 50
        "café foo",  # 100 - 8 + 50: characters, not bytes
        "prefix_foo_suffix",  # 100 - 17 + 50
        "yyfoo", "zzfoo",  # 95
        "barfoo",  # 94
        "x" * 120 + "foo",  # 100 - 123
    ]  # fmt: skip

    async def check(g):
        await g.upsert_nodes_batch([(n, node(n)) for n in SEARCH_CORPUS])
        assert await g.search_labels("foo") == foo
        assert await g.search_labels("  FOO ") == foo
        assert await g.search_labels("foo", limit=3) == foo[:3]
        assert await g.search_labels("foo", limit=9) == foo[:9]
        assert await g.search_labels("foo", limit=0) == []
        assert await g.search_labels("bar") == [
            "bar", "Bar_baz", "bar foo", "barfoo", "Foo Bar", "foobar"
        ]  # fmt: skip
        assert await g.search_labels("o_s") == ["prefix_foo_suffix"]
        assert await g.search_labels("ba") == [
            "Bar_baz",
            "bar",
            "bar foo",
            "barfoo",
            "baz",
            "Foo Bar",
            "foobar",
        ]
        for query in ("", "   ", "nothing-like-it"):
            assert await g.search_labels(query) == []

    backend.run(check)


def test_like_metacharacters_match_literally(backend):
    ids = ["100%", "100 percent", "1000", "a_b", "axb", "a\\b", "ab", "it's", "its"]
    ids += ['say "hi"', "say hi", "50%_off", "50x_off"]

    async def check(g):
        await g.upsert_nodes_batch([(n, node(n)) for n in ids])
        assert await g.search_labels("%") == ["100%", "50%_off"]
        assert await g.search_labels("0%") == ["100%", "50%_off"]
        assert await g.search_labels("%_") == ["50%_off"]
        assert await g.search_labels("_") == ["a_b", "50%_off", "50x_off"]
        assert await g.search_labels("a_") == ["a_b"]
        assert await g.search_labels("\\") == ["a\\b"]
        assert await g.search_labels("a\\") == ["a\\b"]
        assert await g.search_labels("'") == ["it's"]
        assert await g.search_labels('"') == ['say "hi"']  # 100 - 8 + 50 for ' "'
        assert await g.search_labels("100%") == ["100%"]
        for n in ids:
            assert await g.get_node(n) == node(n)
            assert (await g.search_labels(n))[0] == n
        # The same ids through the edge paths (ANY() arrays, unnest pairs, deletes).
        chain = [(a, b, edge(a, b)) for a, b in pairwise(ids)]
        await g.upsert_edges_batch(chain)
        assert sorted(await g.get_node_edges("a\\b")) == [("a\\b", "ab"), ("a\\b", "axb")]
        asked = [{"src": b, "tgt": a} for a, b, _ in chain]
        assert await g.get_edges_batch(asked) == {(b, a): p for a, b, p in chain}
        await g.remove_edges([("it's", "ab"), ('say "hi"', "its")])
        await g.remove_nodes(["100%", "a_b"])
        left = sorted(pair(e["source"], e["target"]) for e in await g.get_all_edges())
        gone = {pair("it's", "ab"), pair('say "hi"', "its")}
        gone |= {pair(a, b) for a, b, _ in chain if {a, b} & {"100%", "a_b"}}
        assert left == sorted({pair(a, b) for a, b, _ in chain} - gone)

    backend.run(check)


def test_all_nodes_and_all_edges(backend):
    async def check(g):
        await g.upsert_nodes_batch([(n, node(n)) for n in "ABC"])
        await g.upsert_edge("A", "B", edge("A", "B", source="prop", target="prop"))
        await g.upsert_edge("D", "B", edge("B", "D"))
        nodes = sorted(await g.get_all_nodes(), key=lambda n: n["id"])
        assert nodes == [{**node(n), "id": n} for n in "ABC"] + [
            {**backend.endpoint_props("D"), "id": "D"}
        ]
        edges = await g.get_all_edges()
        # The endpoints override "source"/"target" properties; their order is the
        # store's own (canonical in PG, adjacency order in NetworkX).
        got = sorted((pair(e.pop("source"), e.pop("target")), e) for e in edges)
        assert got == [(("A", "B"), edge("A", "B")), (("B", "D"), edge("B", "D"))]

    backend.run(check)


def test_knowledge_graph_whole_graph(backend):
    by_degree = ["S", "a", "f", "B", "d", "e", "T1", "T2", "T3", "c", "i", "j"]
    by_degree += ["X", "Y", "g", "h", "k", "l", "m", "n", "o", "Z"]

    async def check(g):
        await build_bfs_graph(g)
        assert await g.get_popular_labels() == by_degree
        for max_nodes in (0, 1, 3, 8, 21, 22, 1000):
            kg = await g.get_knowledge_graph("*", max_nodes=max_nodes)
            expected = set(by_degree[:max_nodes])
            assert kg_summary(kg) == (expected, induced(expected), max_nodes < 22), max_nodes
            for n in kg.nodes:
                assert n.properties == node(n.id)
            for e in kg.edges:
                assert e.properties == edge(e.source, e.target)
        kg = await g.get_knowledge_graph("*", max_depth=0, max_nodes=1000)  # depth ignored
        assert kg_summary(kg) == (set(BFS_NODES), induced(set(BFS_NODES)), False)

    backend.run(check)


# (label, max_depth, max_nodes) -> (nodes, is_truncated), as NetworkXStorage computes them:
# BFS level by level, a level in degree-desc/label-asc order, cut at max_nodes. is_truncated
# is set only when the budget is full AND something is left: an unvisited node in the
# queue or in the level being cut, or an unvisited neighbour of a node at max_depth (even a
# node of the same level not processed yet: T1 below). The depth limit alone never sets it.
BFS_CASES = [
    ("S", 2, 0, "", True),  # nothing taken, the seed left in the queue
    ("S", 0, 1000, "S", False),  # depth limit only
    ("S", 0, 1, "S", True),  # exactly full, neighbours beyond the depth
    ("S", 1, 1000, "S a B c d", False),
    ("S", 1, 5, "S a B c d", True),  # exactly full, e/f/g... beyond the depth
    ("S", 1, 4, "S a B d", True),  # level cut: degree desc (c has 2)
    ("S", 1, 3, "S a B", True),  # tie at 3 broken by code point: B < d
    ("S", 2, 1000, "S a B c d e f g h i", False),
    ("S", 2, 10, "S a B c d e f g h i", True),
    ("S", 2, 7, "S a B c d f e", True),
    ("S", 2, 9, "S a B c d f e i g", True),
    ("S", 3, 1000, "S a B c d e f g h i j k l m n", False),
    ("S", 3, 15, "S a B c d e f g h i j k l m n", True),  # o lies beyond the depth
    ("S", 3, 13, "S a B c d e f g h i j k l", True),
    ("S", 3, 16, "S a B c d e f g h i j k l m n", False),
    ("S", 4, 16, "S a B c d e f g h i j k l m n o", False),  # exactly full, nothing left
    ("d", 1, 1000, "d S", False),  # the self-loop is not a neighbour to visit
    ("d", 2, 3, "d S a", True),
    ("o", 3, 1000, "o j e a B", False),
    ("o", 2, 3, "o j e", True),
    ("T1", 1, 3, "T1 T2 T3", True),  # everything returned, yet truncated: T2-T3 edge
    ("T1", 1, 4, "T1 T2 T3", False),
    ("T1", 2, 3, "T1 T2 T3", False),
    ("T1", 3, 2, "T1 T2", True),
    ("Z", 3, 1, "Z", False),
    ("Z", 0, 1000, "Z", False),
    ("X", 2, 1, "X", True),
    ("X", 2, 2, "X Y", False),
]


def test_knowledge_graph_from_a_label(backend):
    async def check(g):
        await build_bfs_graph(g)
        for label, depth, max_nodes, names, truncated in BFS_CASES:
            kg = await g.get_knowledge_graph(label, max_depth=depth, max_nodes=max_nodes)
            expected = set(names.split())
            case = (label, depth, max_nodes)
            assert kg_summary(kg) == (expected, induced(expected), truncated), case
            for n in kg.nodes:
                assert n.properties == node(n.id)
        for label in ("missing", "s", "T"):  # exact ids only, case-sensitive
            kg = await g.get_knowledge_graph(label, max_depth=3, max_nodes=1000)
            assert (kg.nodes, kg.edges, kg.is_truncated) == ([], [], False)

    backend.run(check)


def test_knowledge_graph_budget_is_capped_by_max_graph_nodes(backend):
    async def check(g):
        await build_bfs_graph(g)
        for max_nodes in (None, 4, 100):
            kg = await g.get_knowledge_graph("*", max_nodes=max_nodes)
            assert kg_summary(kg) == ({"S", "a", "f", "B"}, induced({"S", "a", "f", "B"}), True)
            kg = await g.get_knowledge_graph("S", max_depth=1, max_nodes=max_nodes)
            assert kg_summary(kg) == ({"S", "a", "B", "d"}, induced({"S", "a", "B", "d"}), True)
        kg = await g.get_knowledge_graph("X", max_depth=1, max_nodes=None)
        assert kg_summary(kg) == ({"X", "Y"}, {("X", "Y")}, False)
        kg = await g.get_knowledge_graph("S", max_depth=1, max_nodes=2)
        assert kg_summary(kg) == ({"S", "a"}, {("S", "a")}, True)

    backend.run(check, max_graph_nodes=4)


def test_drop(backend):
    async def check(g):
        await build_bfs_graph(g)
        assert await g.drop() == {"status": "success", "message": "data dropped"}
        assert await g.get_all_labels() == []
        assert await g.get_all_nodes() == [] and await g.get_all_edges() == []
        assert await g.has_node("S") is False and await g.has_edge("S", "a") is False
        assert await g.node_degree("S") == 0
        kg = await g.get_knowledge_graph("*")
        assert (kg.nodes, kg.edges, kg.is_truncated) == ([], [], False)
        assert isinstance(kg, KnowledgeGraph)
        await g.upsert_edge("S", "a", edge("S", "a"))  # usable again after a drop
        assert await g.get_all_labels() == ["S", "a"]

    backend.run(check)


@pytest.fixture
def pg(manager, tmp_path, monkeypatch) -> Backend:
    monkeypatch.delenv("POSTGRES_WORKSPACE", raising=False)
    return Backend("pg", tmp_path)


def test_registered_with_lightrag():
    from lightrag import kg

    from aperag_pg.lightrag import register

    register()
    assert kg.STORAGES["PGSyncGraphStorage"] == "aperag_pg.lightrag.storages"
    assert "PGSyncGraphStorage" in kg.STORAGE_IMPLEMENTATIONS["GRAPH_STORAGE"]["implementations"]
    kg.verify_storage_implementation("GRAPH_STORAGE", "PGSyncGraphStorage")


def test_workspaces_are_isolated(pg):
    async def main():
        one, two = new_workspace("iso"), new_workspace("iso")
        async with open_graph("pg", pg.tmp, one) as a, open_graph("pg", pg.tmp, two) as b:
            assert (a.namespace, b.namespace) == (NAMESPACE, NAMESPACE)
            await a.upsert_nodes_batch([(n, node(n, ws="one")) for n in "ABC"])
            await a.upsert_edge("A", "B", edge("A", "B", ws="one"))
            await b.upsert_node("B", node("B", ws="two"))
            await b.upsert_edges_batch([("B", "C", edge("B", "C", ws="two")), ("D", "D", {})])
            assert await a.get_all_labels() == ["A", "B", "C"]
            assert await b.get_all_labels() == ["B", "C", "D"]
            assert await a.get_node("B") == node("B", ws="one")
            assert await b.get_node("B") == node("B", ws="two")
            assert await b.get_node("A") is None and await a.get_node("D") is None
            assert await a.has_edge("B", "C") is False and await b.has_edge("A", "B") is False
            assert await a.get_node_edges("B") == [("B", "A")]
            assert await b.get_node_edges("B") == [("B", "C")]
            assert await a.node_degrees_batch(["B", "D"]) == {"B": 1, "D": 0}
            assert await b.get_popular_labels() == ["D", "B", "C"]
            assert await a.search_labels("d") == [] and await b.search_labels("a") == []
            assert await a.search_labels("b") == ["B"] == await b.search_labels("B")
            kg = await b.get_knowledge_graph("*")
            assert kg_summary(kg) == ({"B", "C", "D"}, {("B", "C"), ("D", "D")}, False)
            assert kg_summary(await b.get_knowledge_graph("A")) == (set(), set(), False)
            await a.delete_node("B")
            assert await b.get_edge("B", "C") == edge("B", "C", ws="two")
            await b.remove_nodes(["C"])
            await b.remove_edges([("D", "D")])
            assert await a.get_node("C") == node("C", ws="one")
            assert await a.drop() == {"status": "success", "message": "data dropped"}
            assert await b.get_all_labels() == ["B", "D"]
            assert await b.get_node("B") == node("B", ws="two")

    asyncio.run(main())


@pytest.mark.parametrize("seed", [7, 2024])
def test_agrees_with_networkx_on_a_random_graph(pg, seed):
    ops, labels, queries = random_graph(seed)

    async def main():
        async with open_graph("networkx", pg.tmp) as ref, open_graph("pg", pg.tmp) as ours:
            await apply(ref, ops)
            await apply(ours, ops)
            assert await ours.get_all_labels() == await ref.get_all_labels()
            assert await ours.get_popular_labels(10) == await ref.get_popular_labels(10)
            assert await ours.get_popular_labels() == await ref.get_popular_labels()
            for q in queries:
                assert await ours.search_labels(q) == await ref.search_labels(q), q
                assert await ours.search_labels(q, 5) == await ref.search_labels(q, 5), q
            cases = [("*", 3, m) for m in (5, 20, 199, 1000)]
            for label in labels:
                for depth in (1, 2, 3):
                    # Also the budgets the reachable set fills exactly, or all but one.
                    n = len((await ref.get_knowledge_graph(label, depth, 1000)).nodes)
                    cases += [(label, depth, m) for m in sorted({5, 20, 1000, n, n - 1} - {0})]
            for label, depth, max_nodes in cases:
                want = await ref.get_knowledge_graph(label, depth, max_nodes)
                got = await ours.get_knowledge_graph(label, depth, max_nodes)
                assert kg_summary(got) == kg_summary(want), (label, depth, max_nodes)
                # Properties equal but for entity_id: PG forces it to the id, NetworkX has
                # none on nodes that exist only as edge endpoints.
                assert all(n.properties["entity_id"] == n.id for n in got.nodes)
                props = {n.id: without_entity_id(n.properties) for n in want.nodes}
                assert {n.id: without_entity_id(n.properties) for n in got.nodes} == props
                props = {(e.source, e.target): e.properties for e in want.edges}
                assert {(e.source, e.target): e.properties for e in got.edges} == props
            ref_nodes = {n["id"]: without_entity_id(n) for n in await ref.get_all_nodes()}
            our_nodes = {n["id"]: without_entity_id(n) for n in await ours.get_all_nodes()}
            assert our_nodes == ref_nodes  # entity_id: as above
            ref_edges = sorted(pair(e["source"], e["target"]) for e in await ref.get_all_edges())
            our_edges = sorted(pair(e["source"], e["target"]) for e in await ours.get_all_edges())
            assert our_edges == ref_edges
            ids = sorted(ref_nodes)[::7] + ["missing"]
            assert await ours.node_degrees_batch(ids) == await ref.node_degrees_batch(ids)
            got = await ours.get_nodes_edges_batch(ids)
            want = await ref.get_nodes_edges_batch(ids)
            assert {k: sorted(v) for k, v in got.items()} == {k: sorted(v) for k, v in want.items()}

    asyncio.run(main())
