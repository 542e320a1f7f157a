"""Two first users of a fresh schema (or database) at once: every store, the checkpointer,
``ensure_schema`` and ``init-schema``, in every pair, in two processes released together.
All of the package's DDL runs under one advisory lock, so none of them fails."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import uuid
from collections.abc import Callable

import pytest

from aperag_pg.checkpoint import PGSyncCheckpointSaver
from aperag_pg.manager import PostgreSQLSyncConnectionManager as Manager
from aperag_pg.memory import PGSyncStore
from aperag_pg.schema import ensure_schema
from aperag_pg.settings import PostgresSettings
from aperag_pg.stores.doc_status import DocStatusStore
from aperag_pg.stores.graph import GraphStore
from aperag_pg.stores.kv import KVStore
from aperag_pg.stores.vector import VectorStore
from aperag_pg.stores.vector_tables import vector_table_name
from devtools.services import create_database, drop_database

from .checkpoint_support import drop_schema


def _init_schema() -> None:
    from aperag_pg.__main__ import main

    assert main(["init-schema", "--embedding-dim", "4", "--embedding-model", "m"]) == 0


FIRST_USERS: dict[str, Callable[[], object]] = {
    "ensure_schema": ensure_schema,
    "checkpointer": lambda: PGSyncCheckpointSaver().setup(),
    "kv": lambda: KVStore("full_docs", "ws").ensure_tables(),
    "vector": lambda: VectorStore(
        "chunks", vector_table_name("chunks", "m", 4), 4, 0.2, "ws"
    ).ensure_tables(),
    "doc_status": lambda: DocStatusStore(workspace="ws").ensure_tables(),
    "graph": lambda: GraphStore(workspace="ws").ensure_tables(),
    "memory": lambda: PGSyncStore(index={"dims": 4}).setup(),
    "init-schema": _init_schema,
}


def _first_use(name: str, settings: PostgresSettings, barrier, results) -> None:
    """In a forked process: open a pool, wait for the other, then be a first user."""
    os.environ.update(settings.to_env(), POSTGRES_SCHEMA=settings.schema)  # for init-schema
    try:
        Manager.initialize(settings)
        barrier.wait(timeout=60)
        FIRST_USERS[name]()
        results.put((name, None))
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        results.put((name, f"{type(exc).__name__}: {exc}"))
    finally:
        Manager.close()


def at_once(settings: PostgresSettings, names: tuple[str, str]) -> dict[str, str | None]:
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(len(names)), context.Queue()
    processes = [
        context.Process(target=_first_use, args=(name, settings, barrier, results))
        for name in names
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(60)
    return dict(outcomes) if names[0] != names[1] else {names[0]: outcomes[0][1] or outcomes[1][1]}


PAIRS = list(itertools.combinations_with_replacement(FIRST_USERS, 2))


@pytest.mark.parametrize("names", PAIRS, ids=["+".join(pair) for pair in PAIRS])
def test_two_first_users_of_a_fresh_schema(base_settings, admin_conn, names):
    schema = f"first_{uuid.uuid4().hex[:8]}"
    try:
        outcomes = at_once(base_settings.replace(schema=schema), names)
        assert outcomes == dict.fromkeys(names), outcomes
    finally:
        drop_schema(admin_conn, schema)


def test_two_first_users_of_a_database_without_pgvector(pg_server, base_settings):
    """Both create the extension, the schema and the table at once."""
    database = f"first_{uuid.uuid4().hex[:8]}"
    create_database(pg_server.admin, database, extensions=())
    try:
        settings = base_settings.replace(database=database, schema="fresh")
        assert at_once(settings, ("vector", "vector")) == {"vector": None}
        assert at_once(settings.replace(schema="other"), ("vector", "init-schema")) == {
            "vector": None,
            "init-schema": None,
        }
    finally:
        drop_database(pg_server.admin, database)
