"""Building LightRAG instances for the tests, offline, with any storages."""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path

from lightrag import LightRAG

from aperag_pg.lightrag import register
from aperag_pg.lightrag.standins import lightrag_standins
from aperag_pg.settings import PostgresSettings

DOCS = [
    "Alice Johnson founded Acme Robotics in Berlin. Acme Robotics builds warehouse robots "
    "together with Bob Smith, who designs their grippers.",
    "Bob Smith leads research at Acme Robotics. He previously worked at Globex Corporation in "
    "Paris, where Carol White ran the logistics division.",
    "Globex Corporation acquired Initech Systems. Initech Systems is based in Austin and "
    "partners with Acme Robotics on fleet software written by Carol White.",
    "Dana Lee audits Initech Systems every spring. Her reports reach Alice Johnson and the "
    "board of Globex Corporation.",
]
FILE_PATHS = [f"docs/report_{i}.txt" for i in range(len(DOCS))]

OURS = {
    "kv_storage": "PGSyncKVStorage",
    "vector_storage": "PGSyncVectorStorage",
    "doc_status_storage": "PGSyncDocStatusStorage",
    "graph_storage": "PGSyncGraphStorage",
}
LIGHTRAGS_PG = {
    "kv_storage": "PGKVStorage",
    "vector_storage": "PGVectorStorage",
    "doc_status_storage": "PGDocStatusStorage",
    "graph_storage": "PGTableGraphStorage",
}
LOCAL = {
    "kv_storage": "JsonKVStorage",
    "vector_storage": "NanoVectorDBStorage",
    "doc_status_storage": "JsonDocStatusStorage",
    "graph_storage": "NetworkXStorage",
}
# Properties LightRAG stamps with the wall clock: they differ between any two runs.
CLOCK_PROPERTIES = ("created_at",)


def without_clock(properties: dict) -> dict:
    """Properties that two runs over the same documents agree on: no clock stamps, and
    "<SEP>"-joined lists as sets (LightRAG merges documents in the order their
    extractions finish, which varies from run to run whatever the storage)."""
    return {
        k: frozenset(v.split("<SEP>")) if isinstance(v, str) and "<SEP>" in v else v
        for k, v in properties.items()
        if k not in CLOCK_PROPERTIES
    }


async def graph_snapshot(graph, labels: list[str]) -> dict:
    """What a graph storage answers, in a form that does not depend on the backend: every
    node and edge with its properties, the views around ``labels`` at depths 1-3 and "*",
    popular labels and label searches."""

    def view(kg) -> dict:
        return {
            "nodes": {n.id: without_clock(n.properties) for n in kg.nodes},
            "edges": {
                tuple(sorted((e.source, e.target))): without_clock(e.properties) for e in kg.edges
            },
            "is_truncated": kg.is_truncated,
        }

    nodes = await graph.get_all_nodes()
    edges = await graph.get_all_edges()
    snapshot = {
        "nodes": {n["id"]: without_clock(n) for n in nodes},
        "edges": {
            tuple(sorted((e["source"], e["target"]))): without_clock(
                {k: v for k, v in e.items() if k not in ("source", "target")}
            )
            for e in edges
        },
        "labels": await graph.get_all_labels(),
        "popular": await graph.get_popular_labels(limit=5),
        "search": {q: await graph.search_labels(q) for q in ("acme", "corp", "smith", "zzz")},
        "*": view(await graph.get_knowledge_graph("*", max_nodes=6)),
    }
    for label in labels:
        for depth in (1, 2, 3):
            for max_nodes in (4, 1000):
                kg = await graph.get_knowledge_graph(label, max_depth=depth, max_nodes=max_nodes)
                snapshot[(label, depth, max_nodes)] = view(kg)
    return snapshot


# Namespaces of a LightRAG instance, by attribute, that the storages above serve.
KV_ATTRIBUTES = (
    "full_docs",
    "text_chunks",
    "full_entities",
    "full_relations",
    "entity_chunks",
    "relation_chunks",
    "llm_response_cache",
)
VECTOR_ATTRIBUTES = ("chunks_vdb", "entities_vdb", "relationships_vdb")


def make_rag(
    working_dir: Path, workspace: str, storages: dict[str, str], models: dict | None = None
) -> LightRAG:
    register()
    return LightRAG(
        working_dir=str(working_dir),
        workspace=workspace,
        vector_db_storage_cls_kwargs={"cosine_better_than_threshold": 0.2},
        **storages,
        **(models or lightrag_standins()),
    )


def new_workspace(prefix: str = "ws") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@contextmanager
def postgres_env(settings: PostgresSettings):
    """POSTGRES_* for LightRAG's own PG storages (they read os.environ), restored after."""
    values = settings.to_env()
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def workspace_writers(admin_conn) -> list[int]:
    """The worker processes holding a LightRAG workspace's writer lease now."""
    from aperag_pg.lightrag.writer import WRITER_LEASE_PREFIX
    from aperag_pg.stores.leases import live_holders

    with admin_conn.cursor() as cur:
        return [pid for _, pid in live_holders(cur, WRITER_LEASE_PREFIX)]


def first_writer(admin_conn) -> int | None:
    """A worker process holding a workspace's writer lease now, or None."""
    writers = workspace_writers(admin_conn)
    return writers[0] if writers else None


def status_counts(admin_conn, workspace: str) -> dict[str, int]:
    """A workspace's documents by status, LightRAG's duplicate records ("dup-") apart."""
    with admin_conn.cursor() as cur:
        cur.execute(
            "SELECT CASE WHEN id LIKE 'dup-%%' THEN 'dup' ELSE status END, count(*) "
            "FROM lightrag_doc_status WHERE workspace = %s GROUP BY 1",
            (workspace,),
        )
        return dict(cur.fetchall())
