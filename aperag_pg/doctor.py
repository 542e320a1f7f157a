"""``python -m aperag_pg doctor``: is this database ready for aperag_pg workers?

Each check prints one line with a verdict (OK, WARN, FAIL) and, when something is
wrong, what to do about it. The command exits non-zero when a check fails.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.util import find_spec
from typing import Any

import psycopg2

from .connect_errors import cannot_connect
from .errors import first_line
from .leases import TABLE as LEASES_TABLE
from .settings import PostgresSettings

OK, WARN, FAIL = "OK", "WARN", "FAIL"
MIN_SERVER_VERSION = 130000  # PostgreSQL 13: what pgvector 0.8 and the SQL here need

LIGHTRAG_TABLES = (
    "lightrag_doc_full",
    "lightrag_doc_chunks",
    "lightrag_llm_cache",
    "lightrag_full_entities",
    "lightrag_full_relations",
    "lightrag_entity_chunks",
    "lightrag_relation_chunks",
    "lightrag_doc_status",
    "lightrag_graph_nodes",
    "lightrag_graph_edges",
)
CHECKPOINT_TABLES = (
    "checkpoint_migrations",
    "checkpoints",
    "checkpoint_blobs",
    "checkpoint_writes",
)


@dataclass(frozen=True)
class Finding:
    check: str
    verdict: str
    detail: str

    def line(self) -> str:
        return f"[{self.verdict:<4}] {self.check:<14} {self.detail}"


def run_checks(settings: PostgresSettings) -> list[Finding]:
    """All checks, in order; later checks are skipped when the server cannot be reached."""
    try:
        conn = psycopg2.connect(**settings.connect_kwargs(application_name="aperag_pg_doctor"))
    except psycopg2.OperationalError as exc:
        return [Finding("connection", FAIL, str(cannot_connect(settings.connection, exc)))]
    conn.autocommit = True
    try:
        findings = [Finding("connection", OK, f"connected to {settings.describe()}")]
        findings.append(check_encryption(conn, settings))
        with conn.cursor() as cur:
            for check in CHECKS:
                findings.extend(check(cur, settings))
        return findings
    finally:
        conn.close()


def check_encryption(conn: Any, settings: PostgresSettings) -> Finding:
    """Whether this client's connection is encrypted (TLS ends at PgBouncer when there is
    one: the server cannot tell), and whether the server's identity was checked."""
    info = conn.info
    if not info.ssl_in_use:
        verdict = WARN if settings.host not in LOCAL_HOSTS else OK
        return Finding(
            "encryption",
            verdict,
            f"not encrypted (POSTGRES_SSL_MODE={settings.ssl_mode}); over a network set "
            "POSTGRES_SSL_MODE=verify-full and POSTGRES_SSL_ROOT_CERT to the server's CA.",
        )
    detail = f"TLS ({info.ssl_attribute('protocol')}, {info.ssl_attribute('cipher')})"
    if settings.ssl_mode in ("verify-ca", "verify-full"):
        return Finding("encryption", OK, f"{detail}, server verified ({settings.ssl_mode})")
    return Finding(
        "encryption",
        WARN,
        f"{detail}, but the server's certificate is not checked (POSTGRES_SSL_MODE="
        f"{settings.ssl_mode}): set verify-full and POSTGRES_SSL_ROOT_CERT.",
    )


def _one(cur: Any, query: str, params: tuple = ()) -> Any:
    cur.execute(query, params)
    return cur.fetchone()


def check_server(cur: Any, _settings: PostgresSettings) -> Iterator[Finding]:
    version, number = _one(
        cur, "SELECT current_setting('server_version'), current_setting('server_version_num')::int"
    )
    if number < MIN_SERVER_VERSION:
        yield Finding("server", FAIL, f"PostgreSQL {version}: upgrade to 13 or later.")
    else:
        yield Finding("server", OK, f"PostgreSQL {version}")


def check_pgvector(cur: Any, _settings: PostgresSettings) -> Iterator[Finding]:
    available, installed = _one(
        cur,
        "SELECT (SELECT default_version FROM pg_available_extensions WHERE name = 'vector'), "
        "(SELECT extversion FROM pg_extension WHERE extname = 'vector')",
    )
    if installed:
        yield Finding("pgvector", OK, f"installed, version {installed}")
    elif available:
        yield Finding(
            "pgvector",
            WARN,
            f"available ({available}) but not installed in this database: run "
            "`python -m aperag_pg init-schema` or CREATE EXTENSION vector as a privileged role.",
        )
    else:
        yield Finding(
            "pgvector",
            FAIL,
            "not available on this server: install pgvector (e.g. the pgvector/pgvector image) "
            "before using the vector storage.",
        )


def check_privileges(cur: Any, settings: PostgresSettings) -> Iterator[Finding]:
    """What the workers need at run time: USAGE on the schema, SELECT/INSERT/UPDATE/DELETE
    on the package's tables that exist, and CREATE only while some table is missing (the
    workers create it on first use)."""
    schema = settings.schema
    role, exists, usage, create, db_create = _one(
        cur,
        "SELECT current_user, n.oid IS NOT NULL, "
        "n.oid IS NOT NULL AND has_schema_privilege(n.oid, 'USAGE'), "
        "n.oid IS NOT NULL AND has_schema_privilege(n.oid, 'CREATE'), "
        "has_database_privilege(current_database(), 'CREATE') "
        "FROM (SELECT 1) one LEFT JOIN pg_namespace n ON n.nspname = %s",
        (schema,),
    )
    if not exists:
        verdict = OK if db_create else FAIL
        detail = (
            f"schema {schema!r} does not exist; role {role!r} may create it"
            if db_create
            else f"schema {schema!r} does not exist and role {role!r} lacks CREATE on the "
            f'database: run CREATE SCHEMA "{schema}" AUTHORIZATION "{role}" as an administrator.'
        )
        yield Finding("privileges", verdict, detail)
        return
    if not usage:
        yield Finding(
            "privileges",
            FAIL,
            f"role {role!r} lacks USAGE on schema {schema!r}: GRANT USAGE ON SCHEMA "
            f'"{schema}" TO "{role}", or set POSTGRES_SCHEMA to a schema the role owns.',
        )
        return
    tables = _package_tables(cur, schema)
    without_dml = {
        name: [p for p, has in zip(DML, granted, strict=True) if not has]
        for name, granted in tables.items()
        if not all(granted)
    }
    if without_dml:
        missing = sorted({p for lacking in without_dml.values() for p in lacking})
        names = ", ".join(sorted(without_dml)[:6]) + (" ..." if len(without_dml) > 6 else "")
        yield Finding(
            "privileges",
            FAIL,
            f"role {role!r} lacks {'/'.join(missing)} on {len(without_dml)} table(s) in "
            f"schema {schema!r} ({names}), so the workers' reads or writes fail: GRANT "
            f'SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "{schema}" TO "{role}".',
        )
        return
    absent = [t for t in (*LIGHTRAG_TABLES, *CHECKPOINT_TABLES) if t not in tables]
    if absent and not create:
        yield Finding(
            "privileges",
            FAIL,
            f"role {role!r} lacks CREATE on schema {schema!r}, and {len(absent)} table(s) the "
            f"workers create on first use are missing ({', '.join(absent[:4])}"
            f'{" ..." if len(absent) > 4 else ""}): GRANT CREATE ON SCHEMA "{schema}" TO '
            f'"{role}", or have the owner run `python -m aperag_pg init-schema` once.',
        )
        return
    needs = "USAGE, and DML on every table" + ("" if not absent else ", and CREATE")
    yield Finding("privileges", OK, f"role {role!r} has what the workers need: {needs}")


DML = ("SELECT", "INSERT", "UPDATE", "DELETE")
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")  # no network to encrypt


def _package_tables(cur: Any, schema: str) -> dict[str, tuple[bool, ...]]:
    """The package's tables in ``schema`` (LightRAG's, the checkpointer's, the leases)
    -> whether the role has each of DML on it."""
    cur.execute(
        "SELECT c.relname, "
        + ", ".join(f"has_table_privilege(c.oid, '{p}')" for p in DML)
        + " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND (starts_with(c.relname, "
        "'lightrag_') OR starts_with(c.relname, 'checkpoint') OR c.relname = %s)",
        (schema, LEASES_TABLE),
    )
    return {name: tuple(granted) for name, *granted in cur.fetchall()}


def check_tables(cur: Any, settings: PostgresSettings) -> Iterator[Finding]:
    cur.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind IN ('r', 'p')",
        (settings.schema,),
    )
    present = {row[0] for row in cur.fetchall()}
    for label, tables in (("LightRAG", LIGHTRAG_TABLES), ("checkpoint", CHECKPOINT_TABLES)):
        missing = [t for t in tables if t not in present]
        if not missing:
            yield Finding("tables", OK, f"{label} tables present in schema {settings.schema!r}")
        else:
            yield Finding(
                "tables",
                WARN,
                f"{label} tables missing in schema {settings.schema!r}: {', '.join(missing)}. "
                "Workers create them on first use; `python -m aperag_pg init-schema` does it now.",
            )


def check_budget(cur: Any, settings: PostgresSettings) -> Iterator[Finding]:
    max_conn, reserved, in_use = _one(
        cur,
        "SELECT current_setting('max_connections')::int, "
        "current_setting('superuser_reserved_connections')::int, "
        "(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')",
    )
    free = max_conn - reserved - in_use
    per_process = settings.max_connections
    room = free // per_process
    detail = (
        f"POSTGRES_MAX_CONNECTIONS={per_process} per worker process; server max_connections="
        f"{max_conn} ({reserved} reserved, {in_use} in use): room for {room} more worker "
        "process(es)"
    )
    if room < 1:
        yield Finding(
            "pool budget",
            FAIL,
            detail + ". Lower POSTGRES_MAX_CONNECTIONS or worker concurrency, raise "
            "max_connections, or put PgBouncer in front (docs/DEPLOYMENT.md).",
        )
    elif room < 4:
        yield Finding("pool budget", WARN, detail + ": little headroom for scaling.")
    else:
        yield Finding("pool budget", OK, detail)


def check_models(cur: Any, settings: PostgresSettings) -> Iterator[Finding]:
    """The LightRAG tasks' models: configured, stand-ins by name, or missing; and whether
    the embedding's dimension fits the vector tables (a worker would refuse to start)."""
    if find_spec("lightrag") is None:
        return
    from .errors import ConfigError
    from .lightrag.models import STANDIN, configured_models
    from .lightrag.preflight import check_vector_tables

    try:
        _kwargs, label = configured_models()
    except ConfigError as exc:  # nothing chosen, or a setting that is not valid
        yield Finding("models", FAIL, f"{exc} The LightRAG tasks refuse to run until then.")
        return
    if STANDIN in label or "stand-in" in label:
        yield Finding("models", WARN, f"{label}: fake answers and embeddings, not for production")
    else:
        yield Finding("models", OK, label)
    try:
        problems = check_vector_tables(cur.connection, settings.schema)
    except psycopg2.Error as exc:  # e.g. no SELECT on a table: the privileges check says so
        yield Finding("embeddings", WARN, f"vector tables not checked: {first_line(exc)}")
        return
    for problem in problems:
        yield Finding("embeddings", FAIL, f"{problem}; workers refuse to start until it is fixed.")
    if not problems:
        yield Finding("embeddings", OK, f"the vector tables in {settings.schema!r} fit the model")


CHECKS: tuple[Callable[[Any, PostgresSettings], Iterator[Finding]], ...] = (
    check_server,
    check_pgvector,
    check_privileges,
    check_tables,
    check_budget,
    check_models,
)
