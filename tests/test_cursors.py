"""The one way to a cursor (``aperag_pg.cursors``): each mode runs its statements as it
says, a caller that swallows an error inside a transaction never gets a silent commit,
and every connection comes back to the pool as it was opened."""

from __future__ import annotations

import uuid

import psycopg2
import psycopg2.errors
import pytest

from aperag_pg.cursors import Mode, cursor
from aperag_pg.errors import TransactionAborted
from aperag_pg.stores.base import DictRowCursor

SETTINGS = (
    "SELECT current_setting('transaction_isolation'), current_setting('transaction_read_only'), "
    "now() = statement_timestamp()"  # true only when the statement is its own transaction
)


@pytest.fixture
def table(manager, admin_conn):
    name = f"cursor_{uuid.uuid4().hex[:8]}"
    with admin_conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {name} (id int PRIMARY KEY)")
    yield name
    with admin_conn.cursor() as cur:
        cur.execute(f"DROP TABLE {name}")


def _ids(admin_conn, table: str) -> list[int]:
    with admin_conn.cursor() as cur:
        cur.execute(f"SELECT id FROM {table} ORDER BY id")
        return [row[0] for row in cur.fetchall()]


@pytest.mark.parametrize(
    ("mode", "isolation", "read_only", "own_transaction"),
    [
        (Mode.AUTOCOMMIT, "read committed", "off", True),
        (Mode.TRANSACTION, "read committed", "off", False),
        (Mode.SNAPSHOT, "repeatable read", "off", False),
        (Mode.READ_ONLY_SNAPSHOT, "repeatable read", "on", False),
    ],
)
def test_each_mode_runs_as_it_says(manager, mode, isolation, read_only, own_transaction):
    with cursor(manager, mode) as cur:
        cur.execute("SELECT pg_sleep(0.01)")  # a first statement, so now() falls behind
        cur.execute(SETTINGS)
        assert cur.fetchone() == (isolation, read_only, own_transaction)


@pytest.mark.parametrize("mode", [Mode.TRANSACTION, Mode.SNAPSHOT])
def test_writes_are_committed_when_the_block_ends(manager, admin_conn, table, mode):
    with cursor(manager, mode) as cur:
        cur.execute(f"INSERT INTO {table} VALUES (1), (2)")
        assert _ids(admin_conn, table) == []  # not before the block ends
    assert _ids(admin_conn, table) == [1, 2]


@pytest.mark.parametrize("mode", [Mode.TRANSACTION, Mode.SNAPSHOT])
def test_an_error_rolls_back_everything(manager, admin_conn, table, mode):
    with pytest.raises(psycopg2.errors.UniqueViolation):
        with cursor(manager, mode) as cur:
            cur.execute(f"INSERT INTO {table} VALUES (1)")
            cur.execute(f"INSERT INTO {table} VALUES (1)")
    assert _ids(admin_conn, table) == []


@pytest.mark.parametrize("mode", [Mode.TRANSACTION, Mode.SNAPSHOT])
def test_a_swallowed_error_is_not_a_silent_commit(manager, admin_conn, table, mode):
    with pytest.raises(TransactionAborted, match="rolled back"):
        with cursor(manager, mode) as cur:
            cur.execute(f"INSERT INTO {table} VALUES (1)")
            try:
                cur.execute(f"INSERT INTO {table} VALUES (1)")
            except psycopg2.errors.UniqueViolation:
                pass  # the caller carries on as if nothing happened
    assert _ids(admin_conn, table) == []
    with cursor(manager, mode) as cur:  # and the pool is fine afterwards
        cur.execute(f"INSERT INTO {table} VALUES (3)")
    assert _ids(admin_conn, table) == [3]


def test_a_read_only_snapshot_refuses_writes(manager, table):
    with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction):
        with cursor(manager, Mode.READ_ONLY_SNAPSHOT) as cur:
            cur.execute(f"INSERT INTO {table} VALUES (1)")


def test_a_snapshot_sees_one_state(manager, admin_conn, table):
    with cursor(manager, Mode.SNAPSHOT) as cur:
        cur.execute(f"SELECT count(*) FROM {table}")
        assert cur.fetchone() == (0,)
        with admin_conn.cursor() as other:  # committed by another session meanwhile
            other.execute(f"INSERT INTO {table} VALUES (9)")
        cur.execute(f"SELECT count(*) FROM {table}")
        assert cur.fetchone() == (0,)
    with cursor(manager, Mode.AUTOCOMMIT) as cur:
        cur.execute(f"SELECT count(*) FROM {table}")
        assert cur.fetchone() == (1,)


def test_connections_come_back_clean_and_are_kept(manager):
    """After every mode, each pooled connection reads in autocommit-off READ COMMITTED
    again, and none was thrown away for it."""
    opened = manager.stats()["connections_num"]
    for mode in Mode:
        with cursor(manager, mode, DictRowCursor) as cur:
            cur.execute("SELECT 1 AS one")
            assert cur.fetchone() == {"one": 1}
    for _ in range(manager.settings().max_connections + 1):  # every pooled connection
        with manager.get_connection() as conn, conn.cursor() as cur:
            assert not conn.autocommit
            cur.execute("SELECT current_setting('transaction_isolation')")
            assert cur.fetchone() == ("read committed",)
    assert manager.stats()["connections_num"] == opened


class _CountingFence:
    """A fence that commits and counts (the real one, ``leases.Lease``, also checks)."""

    def __init__(self) -> None:
        self.commits = 0

    def commit(self, cur) -> None:
        self.commits += 1
        cur.execute("COMMIT")


@pytest.mark.parametrize("mode", [Mode.TRANSACTION, Mode.WRITE])
def test_a_fenced_write_is_one_transaction_that_the_fence_ends(manager, admin_conn, table, mode):
    fence = _CountingFence()
    with cursor(manager, mode, fence=fence) as cur:
        cur.execute(f"INSERT INTO {table} VALUES (1)")
        cur.execute(b"SELECT pg_sleep(0.01)")  # bytes, as psycopg2.extras sends them
        cur.execute(SETTINGS)
        assert cur.fetchone() == ("read committed", "off", False)
        assert _ids(admin_conn, table) == []
    assert _ids(admin_conn, table) == [1] and fence.commits == 1


def test_a_fenced_copy_first_begins_the_transaction(manager, admin_conn, table):
    import io

    fence = _CountingFence()
    with cursor(manager, Mode.TRANSACTION, fence=fence) as cur:
        cur.copy_expert(f"COPY {table} FROM STDIN", io.StringIO("7\n8\n"))
        assert _ids(admin_conn, table) == []
    assert _ids(admin_conn, table) == [7, 8] and fence.commits == 1


def test_a_fenced_block_that_swallowed_an_error_is_not_committed(manager, admin_conn, table):
    fence = _CountingFence()
    with pytest.raises(TransactionAborted):
        with cursor(manager, Mode.TRANSACTION, fence=fence) as cur:
            cur.execute(f"INSERT INTO {table} VALUES (1)")
            try:
                cur.execute(f"INSERT INTO {table} VALUES (1)")
            except psycopg2.errors.UniqueViolation:
                pass
    assert _ids(admin_conn, table) == [] and fence.commits == 0


@pytest.mark.parametrize("mode", [Mode.AUTOCOMMIT, Mode.READ_ONLY_SNAPSHOT])
def test_reads_ignore_the_fence(manager, mode):
    fence = _CountingFence()
    with cursor(manager, mode, fence=fence) as cur:
        cur.execute("SELECT 1")
    assert fence.commits == 0
