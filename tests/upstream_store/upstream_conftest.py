"""The root conftest of a run of langgraph-checkpoint-postgres 3.2.0's store tests against
PGSyncStore. ``runner.py`` copies it as ``conftest.py`` next to the sdist's ``tests/``
folder (so it is never a conftest of our own suite) and runs pytest there in a
subprocess. The upstream files are not changed; this file only:

- points upstream's ``tests.conftest.DEFAULT_URI`` (a fixed port 5441 there) at the
  server in ``POSTGRES_*``: the tests create and drop a database per test through it;
- gives the test modules factories of PGSyncStore under the names ``PostgresStore`` and
  ``AsyncPostgresStore``: ``from_conn_string`` opens this process's pool on the test's
  database and yields our store, tables in ``public`` as upstream's are;
- runs async tests and fixtures on anyio's plugin (upstream uses pytest-asyncio's auto
  mode, which is not a dependency here);
- runs each ``store`` test in upstream's ``default`` connection mode only: its ``pipe``
  and ``pool`` modes choose PostgresStore's connection, and on ours all three are the same
  store on the same pool (two more runs of the same thing, a minute and more of them);
- writes each test's outcome to the JSON-lines file ``UPSTREAM_RESULTS``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row

from aperag_pg.manager import PostgreSQLSyncConnectionManager
from aperag_pg.memory import PGSyncStore
from aperag_pg.memory.sql import STORE_MIGRATIONS
from aperag_pg.settings import PostgresSettings

RESULTS = "UPSTREAM_RESULTS"
# The schema of upstream's tables: its SQL names them unqualified, on the default path.
SCHEMA = "public"


def _settings() -> PostgresSettings:
    return PostgresSettings.from_env(dotenv_path=os.devnull)


def _uri(settings: PostgresSettings) -> str:
    """A URI of upstream's form: its tests put their database's name in place of the
    last path segment, so nothing after the host may hold a '/'."""
    if settings.host.startswith("/") or settings.ports:
        raise RuntimeError(
            f"upstream's tests need a host:port URI; POSTGRES_HOST={settings.host!r} "
            f"POSTGRES_PORT={settings.ports or settings.port!r} cannot be written as one."
        )
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    login = quote(settings.user, safe="")
    if settings.password:
        login += ":" + quote(settings.password, safe="")
    return (
        f"postgresql://{login}@{host}:{settings.port}/{quote(settings.database, safe='')}"
        f"?sslmode={settings.ssl_mode}"
    )


def pytest_configure(config: pytest.Config) -> None:
    # Before the test modules run `from tests.conftest import DEFAULT_URI`.
    import tests.conftest as upstream

    upstream.DEFAULT_URI = _uri(_settings())
    upstream.DEFAULT_POSTGRES_URI = upstream.DEFAULT_URI.rsplit("/", 1)[0] + "/"


# -- PGSyncStore under upstream's names ---------------------------------------------------

_open: list[str] = []  # the database this process's pool is on, while a store is open


@contextlib.contextmanager
def _pool_on(conn_string: str) -> Iterator[None]:
    """This process's one pool, on the database ``conn_string`` names, for one store."""
    database = conninfo_to_dict(conn_string)["dbname"]
    if _open:
        raise RuntimeError(
            f"a store on {database} while one on {_open[0]} is open: this process has one pool"
        )
    PostgreSQLSyncConnectionManager.initialize(_settings().replace(database=database))
    _open.append(database)
    try:
        yield
    finally:
        _open.clear()
        PostgreSQLSyncConnectionManager.close()  # before the test drops the database


class _Store:
    """Our store as upstream's tests reach it: every attribute is PGSyncStore's, plus what
    the tests take from upstream's class itself: ``_cursor()`` (their helpers update rows
    with it) and ``MIGRATIONS``, our store migrations' text. The fixtures' rewrite of
    ``MIGRATIONS`` (an integer ttl_minutes made FLOAT) is set here and read by nothing:
    our setup() makes the column double precision itself."""

    MIGRATIONS = [getattr(m, "string", m) for m in STORE_MIGRATIONS]  # str or sql.SQL

    def __init__(self, store: PGSyncStore, conn_string: str) -> None:
        self.__dict__["_store"] = store
        self.__dict__["_conn_string"] = conn_string

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    @contextlib.contextmanager
    def _cursor(self) -> Iterator[psycopg.Cursor]:
        """A dict-row cursor on the test's database, in autocommit, as upstream's."""
        with psycopg.connect(self._conn_string, autocommit=True, row_factory=dict_row) as conn:
            with conn.cursor() as cur:
                yield cur


class _AsyncStore(_Store):
    """The same store, with AsyncPostgresStore's coroutine forms of setup and the sweeper
    calls (ours are sync methods; ``asetup`` is the coroutine)."""

    async def setup(self) -> None:
        await self._store.asetup()

    async def start_ttl_sweeper(self, sweep_interval_minutes: int | None = None) -> None:
        self._store.start_ttl_sweeper(sweep_interval_minutes)

    async def stop_ttl_sweeper(self, timeout: float | None = None) -> bool:
        return self._store.stop_ttl_sweeper(timeout)

    @contextlib.asynccontextmanager
    async def _cursor(self) -> AsyncIterator[psycopg.AsyncCursor]:
        conn = await psycopg.AsyncConnection.connect(
            self._conn_string, autocommit=True, row_factory=dict_row
        )
        async with conn, conn.cursor() as cur:
            yield cur


def _store(conn_string: str, index: Any, ttl: Any) -> PGSyncStore:
    return PGSyncStore(schema=SCHEMA, index=index, ttl=ttl)


class OursAsPostgresStore:
    """``PostgresStore`` in test_store.py. Upstream's connection modes (a connection, a
    pipeline, a psycopg pool) are one here: the worker process's pool."""

    MIGRATIONS = _Store.MIGRATIONS

    @staticmethod
    @contextlib.contextmanager
    def from_conn_string(
        conn_string: str,
        *,
        pipeline: bool = False,
        pool_config: Any = None,
        index: Any = None,
        ttl: Any = None,
    ) -> Iterator[_Store]:
        with _pool_on(conn_string):
            yield _Store(_store(conn_string, index, ttl), conn_string)


class OursAsAsyncPostgresStore:
    """``AsyncPostgresStore`` in test_async_store.py."""

    MIGRATIONS = _Store.MIGRATIONS

    @staticmethod
    @contextlib.asynccontextmanager
    async def from_conn_string(
        conn_string: str,
        *,
        pipeline: bool = False,
        pool_config: Any = None,
        index: Any = None,
        ttl: Any = None,
    ) -> AsyncIterator[_AsyncStore]:
        with _pool_on(conn_string):
            yield _AsyncStore(_store(conn_string, index, ttl), conn_string)


_FACTORIES = {"PostgresStore": OursAsPostgresStore, "AsyncPostgresStore": OursAsAsyncPostgresStore}


CONNECTION_MODES = ("default",)  # of upstream's default, pipe, pool


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        mode = callspec.params.get("store") if callspec else None
        (drop if mode is not None and mode not in CONNECTION_MODES else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(autouse=True)
def _ours_instead_of_upstream(request: pytest.FixtureRequest, monkeypatch, anyio_backend):
    """Autouse, so before the module's own fixtures build a store. Requesting
    anyio_backend makes anyio's plugin run upstream's async fixtures in sync tests too."""
    for name, factory in _FACTORIES.items():
        if hasattr(request.module, name):
            monkeypatch.setattr(request.module, name, factory)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # one backend, so the test ids stay upstream's


# -- outcomes for the parent run ------------------------------------------------------------


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    path = os.environ.get(RESULTS)
    if not path:
        return
    record = {
        "nodeid": report.nodeid,
        "when": report.when,
        "outcome": report.outcome,
        "duration": round(report.duration, 3),
        "text": report.longreprtext[-6000:] if report.failed or report.skipped else "",
    }
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(record) + "\n")
