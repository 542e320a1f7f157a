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
from .settings import PostgresSettings, redact_urls
from .stores.leases import FENCE_SIGNATURE
from .stores.leases import TABLE as LEASES_TABLE

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
# LangGraph's memory store (PGSyncStore); the vector tables exist only with an index.
MEMORY_TABLES = ("store", "store_migrations")
MEMORY_VECTOR_TABLES = ("store_vectors", "vector_migrations")


@dataclass(frozen=True)
class Finding:
    check: str
    verdict: str
    detail: str

    def line(self) -> str:
        # Any URL a detail quotes (a model endpoint, an error) loses its credentials here.
        return f"[{self.verdict:<4}] {self.check:<14} {redact_urls(self.detail)}"


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


@dataclass(frozen=True)
class TableGroup:
    """Tables the workers of one feature use: those that must be there (or be creatable:
    the workers create them on first use), and those that are the group's when present
    (tables named after an embedding model, the memory store's vector tables)."""

    label: str
    required: tuple[str, ...]
    needed_by: str  # what fails without them: the end of "so ... fail(s)"
    made_by: str  # who creates a missing one
    optional: tuple[str, ...] = ()
    prefix: str | None = None

    def owns(self, table: str) -> bool:
        return (
            table in self.required
            or table in self.optional
            or (self.prefix is not None and table.startswith(self.prefix))
        )


LIGHTRAG = TableGroup(
    "LightRAG",
    LIGHTRAG_TABLES,
    "the LightRAG tasks fail",
    "the workers (on first use)",
    prefix="lightrag_",  # and the vector tables, named after the embedding model
)
CHECKPOINT = TableGroup(
    "checkpoint", CHECKPOINT_TABLES, "every checkpoint put fails", "PGSyncCheckpointSaver.setup()"
)
MEMORY = TableGroup(
    "memory store",
    MEMORY_TABLES,
    "every PGSyncStore put and search fails",
    "PGSyncStore.setup()",
    optional=MEMORY_VECTOR_TABLES,  # only with an index
)
LEASES = TableGroup(
    "lease",
    (LEASES_TABLE,),
    "every LightRAG writer task fails (it holds its workspace's lease)",
    "the workers (on first use)",
)
RUN_TIME_GROUPS = (LIGHTRAG, CHECKPOINT, MEMORY)  # the lease group has its own check


@dataclass(frozen=True)
class Access:
    """What the connected role may do in the schema, and which DML it lacks on each table
    there."""

    role: str
    schema: str
    exists: bool
    usage: bool
    create: bool
    db_create: bool
    tables: dict[str, tuple[str, ...]]  # each table in the schema -> the DML the role lacks

    @property
    def usable(self) -> bool:
        """Whether the schema is there with USAGE (if not, check_privileges says why)."""
        return self.exists and self.usage


def role_access(cur: Any, schema: str) -> Access:
    role, exists, usage, create, db_create = _one(
        cur,
        "SELECT current_user, n.oid IS NOT NULL, "
        "n.oid IS NOT NULL AND has_schema_privilege(n.oid, 'USAGE'), "
        "n.oid IS NOT NULL AND has_schema_privilege(n.oid, 'CREATE'), "
        "has_database_privilege(current_database(), 'CREATE') "
        "FROM (SELECT 1) one LEFT JOIN pg_namespace n ON n.nspname = %s",
        (schema,),
    )
    cur.execute(
        "SELECT c.relname, ARRAY(SELECT p FROM unnest(%s::text[]) AS p "
        "WHERE NOT has_table_privilege(c.oid, p)) "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind IN ('r', 'p')",
        (list(DML), schema),
    )
    tables = {name: tuple(privileges) for name, privileges in cur.fetchall()}
    return Access(role, schema, exists, usage, create, db_create, tables)


def table_problems(access: Access, group: TableGroup) -> list[str]:
    """Why the workers cannot use ``group``'s tables, each with its fix: a table present
    without DML for the role, or one missing that the role may not create. Empty: fine."""
    role, schema = access.role, access.schema
    without_dml = {t: lacks for t, lacks in access.tables.items() if lacks and group.owns(t)}
    problems = []
    if without_dml:
        missing = sorted({p for lacks in without_dml.values() for p in lacks})
        problems.append(
            f"role {role!r} lacks {'/'.join(missing)} on {len(without_dml)} {group.label} "
            f"table(s) in schema {schema!r} ({_some(sorted(without_dml))}), so "
            f"{group.needed_by}: GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN "
            f'SCHEMA "{schema}" TO "{role}" (as the tables\' owner).'
        )
    absent = [t for t in group.required if t not in access.tables]
    if absent and not access.create:
        problems.append(
            f"role {role!r} lacks CREATE on schema {schema!r}, and {len(absent)} {group.label} "
            f"table(s) that {group.made_by} would create are missing ({_some(absent)}), so "
            f'{group.needed_by}: GRANT CREATE ON SCHEMA "{schema}" TO "{role}", or have the '
            "owner run `python -m aperag_pg init-schema` once (then GRANT SELECT, INSERT, "
            f'UPDATE, DELETE ON ALL TABLES IN SCHEMA "{schema}" TO "{role}").'
        )
    return problems


def _some(names: list[str], shown: int = 4) -> str:
    return ", ".join(names[:shown]) + (" ..." if len(names) > shown else "")


def check_privileges(cur: Any, settings: PostgresSettings) -> Iterator[Finding]:
    """What the workers need at run time: USAGE on the schema, SELECT/INSERT/UPDATE/DELETE
    on the package's tables that exist, and CREATE only while some table is missing (the
    workers create it on first use)."""
    access = role_access(cur, settings.schema)
    role, schema = access.role, access.schema
    if not access.exists:
        detail = (
            f"schema {schema!r} does not exist; role {role!r} may create it"
            if access.db_create
            else f"schema {schema!r} does not exist and role {role!r} lacks CREATE on the "
            f'database: run CREATE SCHEMA "{schema}" AUTHORIZATION "{role}" as an administrator.'
        )
        yield Finding("privileges", OK if access.db_create else FAIL, detail)
        return
    if not access.usage:
        yield Finding(
            "privileges",
            FAIL,
            f"role {role!r} lacks USAGE on schema {schema!r}: GRANT USAGE ON SCHEMA "
            f'"{schema}" TO "{role}", or set POSTGRES_SCHEMA to a schema the role owns.',
        )
        return
    problems = [p for group in RUN_TIME_GROUPS for p in table_problems(access, group)]
    for problem in problems:
        yield Finding("privileges", FAIL, problem)
    if not problems:
        absent = any(t not in access.tables for g in RUN_TIME_GROUPS for t in g.required)
        needs = "USAGE, and DML on every table" + (", and CREATE" if absent else "")
        yield Finding("privileges", OK, f"role {role!r} has what the workers need: {needs}")


def lease_problems(access: Access, fence: tuple[bool, bool]) -> list[str]:
    """Why a LightRAG writer could not hold its workspace's lease: the lease table's
    problems, and its fence function's (``fence``: whether it exists, and whether the role
    may EXECUTE it)."""
    problems = table_problems(access, LEASES)
    exists, executable = fence
    role, schema = access.role, access.schema
    if not exists and not access.create and LEASES_TABLE in access.tables:
        problems.append(
            f"the lease table's fence function {FENCE_SIGNATURE} is missing (a lease table "
            f"of an older aperag_pg) and role {role!r} lacks CREATE on schema {schema!r}, so "
            f"{LEASES.needed_by}: have the owner run `python -m aperag_pg init-schema` once, "
            f'or GRANT CREATE ON SCHEMA "{schema}" TO "{role}".'
        )
    if exists and not executable:
        problems.append(
            f"role {role!r} may not EXECUTE the lease fence function {FENCE_SIGNATURE}, so "
            f'{LEASES.needed_by}: GRANT EXECUTE ON FUNCTION "{schema}".{FENCE_SIGNATURE} '
            f'TO "{role}" (as its owner).'
        )
    return problems


def fence_access(cur: Any, schema: str) -> tuple[bool, bool]:
    """(the fence function exists, the role may EXECUTE it)."""
    return _one(
        cur,
        "SELECT f IS NOT NULL, f IS NOT NULL AND has_function_privilege(f, 'EXECUTE') "
        "FROM to_regprocedure(format('%%I.%%s', %s::text, %s::text)) AS f",
        (schema, FENCE_SIGNATURE),
    )


def check_leases(cur: Any, settings: PostgresSettings) -> Iterator[Finding]:
    access = role_access(cur, settings.schema)
    if not access.usable:  # check_privileges says what is wrong with the schema
        return
    problems = lease_problems(access, fence_access(cur, settings.schema))
    for problem in problems:
        yield Finding("leases", FAIL, problem)
    if not problems:
        state = "present" if LEASES_TABLE in access.tables else "missing; the workers create it"
        yield Finding(
            "leases", OK, f"lease table {LEASES_TABLE}: {state}, usable by {access.role!r}"
        )


DML = ("SELECT", "INSERT", "UPDATE", "DELETE")
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")  # no network to encrypt


def check_tables(cur: Any, settings: PostgresSettings) -> Iterator[Finding]:
    present = role_access(cur, settings.schema).tables
    for group in RUN_TIME_GROUPS:
        missing = [t for t in group.required if t not in present]
        if not missing:
            yield Finding(
                "tables", OK, f"{group.label} tables present in schema {settings.schema!r}"
            )
        else:
            yield Finding(
                "tables",
                WARN,
                f"{group.label} tables missing in schema {settings.schema!r}: "
                f"{', '.join(missing)}. Created by {group.made_by}, or now by "
                "`python -m aperag_pg init-schema`.",
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
    check_leases,
    check_tables,
    check_budget,
    check_models,
)
