"""With every logger at DEBUG, through a bad password, a server that goes away and comes
back, and batches that fail, no log line holds a password, a vector or document text."""

from __future__ import annotations

import logging

import psycopg2
import pytest

from aperag_pg.errors import DatabaseUnavailable, InvalidInput, VectorDimensionMismatch
from aperag_pg.manager import PostgreSQLSyncConnectionManager as Manager
from aperag_pg.stores.kv import KVStore
from aperag_pg.stores.vector import VectorStore
from devtools.services import EmbeddedPostgres, create_database

SECRET = "s3cr3t-Pa55word-9f1e"
DOCUMENT = "Confidential merger memo: Acme acquires Globex for 4.2 billion"
VECTOR = [0.123456789, -0.987654321, 0.555555555, 0.314159265]
VECTOR_SIGNS = ("0.123456", "0.987654", "0.555555", "0.314159")


@pytest.fixture
def secret_server(tmp_path):
    server = EmbeddedPostgres(tmp_path / "secret-pg", password=SECRET, durable=False).start()
    create_database(server.settings(), "secrets")
    yield server
    Manager.close()
    server.destroy()


def test_no_secret_in_any_log_line(secret_server, caplog):
    caplog.set_level(logging.DEBUG)
    settings = secret_server.settings("secrets", min_connections=1, max_connections=2)

    with pytest.raises(DatabaseUnavailable, match="POSTGRES_PASSWORD"):
        Manager.initialize(settings.replace(password=SECRET + "-wrong"))

    Manager.initialize(settings)
    kv = KVStore("full_docs", workspace="secrets")
    kv.ensure_tables()
    kv.upsert({"memo": {"content": DOCUMENT}})
    chunks = VectorStore("chunks", "LIGHTRAG_VDB_CHUNKS_secret_4d", 4, 0.0, "secrets")
    chunks.ensure_tables()
    row = {"content": DOCUMENT, "full_doc_id": "memo", "file_path": "memo.txt", "tokens": 9}
    chunks.upsert({"c1": {**row, "chunk_order_index": 0, "__vector__": VECTOR}})

    secret_server.stop("fast")  # the server goes away mid-run
    with pytest.raises(psycopg2.OperationalError):
        kv.upsert({"memo-2": {"content": DOCUMENT}})
    with pytest.raises(psycopg2.OperationalError):
        chunks.query(VECTOR, top_k=1)
    secret_server.start()
    assert chunks.query(VECTOR, top_k=1)[0]["id"] == "c1"  # and it comes back

    with pytest.raises(InvalidInput):  # a failed batch: one record cannot be stored
        kv.upsert({"ok": {"content": DOCUMENT}, "bad": {"content": DOCUMENT + "\x00"}})
    with pytest.raises(VectorDimensionMismatch):
        chunks.upsert({"c2": {**row, "chunk_order_index": 1, "__vector__": VECTOR + [0.5]}})

    logged = "\n".join(record.getMessage() for record in caplog.records) + caplog.text
    assert caplog.records, "nothing was logged: the test would prove nothing"
    assert SECRET not in logged
    assert "Confidential" not in logged and "merger memo" not in logged
    for sign in VECTOR_SIGNS:
        assert sign not in logged
