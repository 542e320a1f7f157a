"""Command line: ``python -m aperag_pg doctor | init-schema | stats | webui | graph import |
graph export``.

Settings come from POSTGRES_* (or POSTGRES_DSN / DATABASE_URL) and ``.env``, as for
the workers.
"""

from __future__ import annotations

import argparse
import sys
from importlib.util import find_spec
from typing import TYPE_CHECKING

from .errors import AperagPGError, ConfigError, GraphMLError
from .settings import PostgresSettings, redact_urls

if TYPE_CHECKING:
    from .stores.graph import GraphStore


_STATS = """
SELECT application_name, state, count(*)
FROM pg_stat_activity
WHERE application_name ~ %s
GROUP BY 1, 2 ORDER BY 1, 2
"""
_TABLE_ROWS = """
SELECT c.relname, c.reltuples::bigint, pg_total_relation_size(c.oid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relkind = 'r'
  AND (c.relname LIKE 'lightrag%%' OR c.relname LIKE 'checkpoint%%' OR c.relname LIKE 'aperag%%'
       OR c.relname LIKE 'store%%' OR c.relname = 'vector_migrations')
ORDER BY c.relname
"""


def doctor(settings: PostgresSettings, _args: argparse.Namespace) -> int:
    from .doctor import FAIL, run_checks

    findings = run_checks(settings)
    for finding in findings:
        print(finding.line())
    failed = sum(f.verdict == FAIL for f in findings)
    print(f"{failed} check(s) failed" if failed else "all checks passed (warnings aside)")
    return 1 if failed else 0


def init_schema(settings: PostgresSettings, args: argparse.Namespace) -> int:
    """Create every table the workers would create on first use, now."""
    from .manager import PostgreSQLSyncConnectionManager
    from .schema import ensure_schema
    from .stores.doc_status import DocStatusStore
    from .stores.graph import GraphStore
    from .stores.kv import KV_NAMESPACES, KVStore
    from .stores.leases import ensure_lease_table
    from .stores.vector import VectorStore
    from .stores.vector_tables import VECTOR_NAMESPACES, vector_table_name

    PostgreSQLSyncConnectionManager.initialize(settings.replace(min_connections=0))
    try:
        ensure_schema()
        ensure_lease_table()
        print(f"schema {settings.schema!r}: ready, with the lease table")
        for namespace in KV_NAMESPACES:
            KVStore(namespace).ensure_tables()
        DocStatusStore().ensure_tables()
        GraphStore().ensure_tables()
        print("LightRAG key-value, doc-status and graph tables: ready")
        if args.embedding_dim:
            for namespace in VECTOR_NAMESPACES:
                table = vector_table_name(namespace, args.embedding_model, args.embedding_dim)
                VectorStore(namespace, table, args.embedding_dim, 0.2).ensure_tables()
                print(f"vector table {table}: ready")
        if find_spec("langgraph") is not None:
            from .checkpoint import PGSyncCheckpointSaver
            from .memory import PGSyncStore

            PGSyncCheckpointSaver().setup()
            print("LangGraph checkpoint tables: ready")
            index = {"dims": args.memory_dims} if args.memory_dims else None
            PGSyncStore(index=index).setup()
            vectors = f", with {args.memory_dims}-dimensional vectors" if index else ""
            print(f"LangGraph memory store tables: ready{vectors}")
    finally:
        PostgreSQLSyncConnectionManager.close()
    return 0


def stats(settings: PostgresSettings, _args: argparse.Namespace) -> int:
    """Connections held by aperag_pg worker processes, and the size of the package's tables."""
    import psycopg2

    from .connect_errors import cannot_connect

    try:
        conn = psycopg2.connect(**settings.connect_kwargs(application_name="aperag_pg_stats"))
    except psycopg2.OperationalError as exc:
        raise cannot_connect(settings.connection, exc) from None
    try:
        with conn.cursor() as cur:
            cur.execute(_STATS, (settings.pool_application_pattern(),))
            rows = cur.fetchall()
            print(f"connections of aperag_pg worker processes ({len({r[0] for r in rows})}):")
            for name, state, count in rows:
                print(f"  pid {name.rsplit(':', 1)[1]:>8}  {state or 'unknown':<20} {count}")
            cur.execute(_TABLE_ROWS, (settings.schema,))
            print(f"tables in schema {settings.schema!r}:")
            for table, estimate, size in cur.fetchall():
                print(f"  {table:<40} ~{max(estimate, 0):>10} rows {size / 1024:>10.0f} KiB")
    finally:
        conn.close()
    return 0


def webui(_settings: PostgresSettings, _args: argparse.Namespace) -> int:
    """LightRAG's API server and WebUI on the workers' tables, until interrupted."""
    if find_spec("lightrag.api") is None or find_spec("fastapi") is None:
        raise ConfigError(
            "the WebUI needs LightRAG's server: pip install 'aperag_pg[lightrag,webui]' "
            "(lightrag-hku[api])."
        )
    from .lightrag.server import serve

    return serve()


def graph_import(settings: PostgresSettings, args: argparse.Namespace) -> int:
    """Read a NetworkXStorage GraphML file into the graph tables, merging into what is there."""
    store = _graph_store(settings, args)
    try:
        from .stores.graphml import import_graphml

        summary = import_graphml(
            store, args.graphml, batch_size=args.batch_size, progress=_progress
        )
    finally:
        _close_pool()
    print(summary.line())
    return 0


def graph_export(settings: PostgresSettings, args: argparse.Namespace) -> int:
    """Write a workspace's graph as the GraphML file NetworkXStorage would keep."""
    store = _graph_store(settings, args)
    try:
        from .stores.graphml import export_graphml

        summary = export_graphml(store, args.graphml)
    finally:
        _close_pool()
    print(summary.line())
    return 0


def _graph_store(settings: PostgresSettings, args: argparse.Namespace) -> GraphStore:
    """The graph of ``--workspace`` (else POSTGRES_WORKSPACE, else "default") on a pool
    opened for this command; ``_close_pool()`` closes it."""
    from .manager import PostgreSQLSyncConnectionManager
    from .stores.graph import GraphStore

    if find_spec("networkx") is None:
        raise GraphMLError("GraphML needs networkx: pip install 'aperag_pg[lightrag]'")
    if args.workspace:  # the flag wins over POSTGRES_WORKSPACE, which the store reads
        settings = settings.replace(workspace=args.workspace)
    PostgreSQLSyncConnectionManager.initialize(settings.replace(min_connections=0))
    try:
        return GraphStore(args.namespace)
    except BaseException:
        _close_pool()
        raise


def _close_pool() -> None:
    from .manager import PostgreSQLSyncConnectionManager

    PostgreSQLSyncConnectionManager.close()


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return int(text)


COMMANDS = {
    "doctor": doctor,
    "init-schema": init_schema,
    "stats": stats,
    "webui": webui,
    "graph import": graph_import,
    "graph export": graph_export,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aperag_pg", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("doctor", help="check the connection, server, pgvector, privileges, tables")
    init = sub.add_parser("init-schema", help="create the tables and extensions now")
    init.add_argument(
        "--embedding-dim", type=_positive_int, help="also create the vector tables (1 to 16000)"
    )
    init.add_argument("--embedding-model", help="embedding model name (LightRAG table suffix)")
    init.add_argument(
        "--memory-dims",
        type=_positive_int,
        help="also create the LangGraph memory store's vector table (PGSyncStore index dims)",
    )
    sub.add_parser("stats", help="connections per worker process and table sizes")
    sub.add_parser(
        "webui",
        help="LightRAG's server and WebUI on the workers' tables (WEBUI_HOST, WEBUI_PORT, "
        "WORKSPACE; extra 'webui')",
    )
    graph = sub.add_parser("graph", help="move a LightRAG graph between GraphML and the tables")
    graph_sub = graph.add_subparsers(dest="graph_command", required=True)
    for name, help_text in (
        ("import", "read NetworkXStorage's GraphML file into the tables (merging)"),
        ("export", "write the tables' graph as NetworkXStorage's GraphML file"),
    ):
        command = graph_sub.add_parser(name, help=help_text)
        command.add_argument("--graphml", required=True, metavar="FILE", help="GraphML file")
        command.add_argument("--workspace", help="default: POSTGRES_WORKSPACE, else 'default'")
        command.add_argument(
            "--namespace", default="chunk_entity_relation", help="default: %(default)s"
        )
        if name == "import":
            command.add_argument(
                "--batch-size", type=_positive_int, default=5000, help="rows per transaction"
            )
    args = parser.parse_args(argv)
    name = f"graph {args.graph_command}" if args.command == "graph" else args.command
    try:
        settings = PostgresSettings.from_env()
        return COMMANDS[name](settings, args)
    except AperagPGError as exc:
        print(f"error: {redact_urls(str(exc))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
