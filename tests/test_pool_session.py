"""What a caller leaves behind in a pooled connection: a failed transaction is never
committed as if it had succeeded, and session changes never reach the next checkout."""

from __future__ import annotations

import psycopg2
import pytest

from aperag_pg.errors import TransactionAborted


@pytest.fixture
def probe_table(admin_conn):
    with admin_conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS session_probe")
        cur.execute("CREATE TABLE session_probe (id int PRIMARY KEY)")
    yield "session_probe"
    with admin_conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS session_probe")


def rows(admin_conn) -> list[int]:
    with admin_conn.cursor() as cur:
        cur.execute("SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM session_probe")
        return cur.fetchone()[0]


def test_a_swallowed_error_is_no_silent_rollback(manager, admin_conn, probe_table):
    """INSERT, then a failing statement whose error the caller catches: the block must not
    end as if it had committed."""
    with pytest.raises(TransactionAborted, match="failed inside the block and was rolled back"):
        with manager.get_connection() as conn, conn.cursor() as cur:
            cur.execute("INSERT INTO session_probe VALUES (1)")
            try:
                cur.execute("SELECT 1 / 0")
            except psycopg2.errors.DivisionByZero:
                pass  # swallowed
    assert rows(admin_conn) == []
    stats = manager.stats()
    assert stats["pool_in_use"] == 0 and stats["returns_bad"] == 0  # the connection is fine
    assert manager.execute_query("SELECT 1 AS one", fetch_one=True)["one"] == 1


def test_an_error_recovered_by_a_savepoint_still_commits(manager, admin_conn, probe_table):
    with manager.get_connection() as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO session_probe VALUES (1)")
        cur.execute("SAVEPOINT maybe")
        try:
            cur.execute("INSERT INTO session_probe VALUES (1)")
        except psycopg2.errors.UniqueViolation:
            cur.execute("ROLLBACK TO SAVEPOINT maybe")
        cur.execute("INSERT INTO session_probe VALUES (2)")
    assert rows(admin_conn) == [1, 2]


@pytest.fixture
def one_connection(manager, base_settings):
    """A pool of one connection, so the next checkout gets the connection just returned."""
    manager.initialize(base_settings.replace(min_connections=1, max_connections=1))
    return manager


def backend(manager) -> int:
    return manager.execute_query("SELECT pg_backend_pid() AS pid", fetch_one=True)["pid"]


def show(manager, setting: str) -> str:
    with manager.get_connection() as conn, conn.cursor() as cur:
        cur.execute(f"SHOW {setting}")
        return cur.fetchone()[0]


def test_transaction_characteristics_are_put_back_without_a_new_connection(
    one_connection, admin_conn, probe_table
):
    manager = one_connection
    first = backend(manager)
    with manager.get_connection() as conn:
        conn.set_session(readonly=True, isolation_level="SERIALIZABLE", deferrable=True)
    with manager.get_connection() as conn, conn.cursor() as cur:
        assert (conn.readonly, conn.isolation_level, conn.deferrable) == (None, None, None)
        cur.execute("INSERT INTO session_probe VALUES (1)")  # ReadOnlySqlTransaction before
        cur.execute("SHOW transaction_isolation")
        assert cur.fetchone()[0] == "read committed"
    assert rows(admin_conn) == [1]
    assert backend(manager) == first and manager.stats()["returns_changed"] == 0


@pytest.mark.parametrize(
    "change",
    [
        "SET search_path TO pg_catalog",
        "SET TIME ZONE 'Asia/Tokyo'",
        "SET client_encoding TO 'LATIN1'",
        "SET DateStyle TO 'German'",
        "SET IntervalStyle TO 'iso_8601'",
        "SET default_transaction_read_only TO on",
        "SET application_name TO 'someone else'",
    ],
)
def test_a_session_setting_changed_with_set_never_reaches_the_next_checkout(
    one_connection, base_settings, change
):
    manager = one_connection
    first = backend(manager)
    defaults = {s: show(manager, s) for s in ("search_path", "TimeZone", "client_encoding")}
    with manager.get_connection() as conn, conn.cursor() as cur:
        cur.execute(change)
    # the next user: vector types resolve, times and text come as configured, writes work
    with manager.get_connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT '[1,2,3]'::vector::text")
        assert cur.fetchone()[0] == "[1,2,3]"
        cur.execute("CREATE TEMP TABLE written (x int)")
    assert {s: show(manager, s) for s in defaults} == defaults
    assert show(manager, "application_name").startswith(base_settings.application_name)
    assert backend(manager) != first  # replaced, not reused
    assert manager.stats()["returns_changed"] == 1


def test_read_only_set_in_autocommit_is_seen_too(one_connection, admin_conn, probe_table):
    """In autocommit, psycopg2's set_session sends SET default_transaction_read_only."""
    manager = one_connection
    with manager.get_connection() as conn:
        conn.autocommit = True
        conn.set_session(readonly=True)
    with manager.get_connection() as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO session_probe VALUES (7)")
    assert rows(admin_conn) == [7]


def test_unreported_settings_are_reset_when_asked_for(manager, base_settings):
    """A plain SET statement_timeout is not reported by the server: POSTGRES_RESET_ON_RETURN
    resets everything on return; SET LOCAL needs no reset at all."""
    manager.initialize(
        base_settings.replace(
            min_connections=1, max_connections=1, statement_timeout=5000, reset_on_return=True
        )
    )
    first = backend(manager)
    with manager.get_connection() as conn, conn.cursor() as cur:
        cur.execute("SET statement_timeout TO 1")
        cur.execute("SET ROLE NONE")
        cur.execute("SET work_mem TO '77MB'")
    assert show(manager, "statement_timeout") == "5s"  # the configured value, not 1 ms
    assert show(manager, "work_mem") != "77MB"
    assert backend(manager) == first  # reset, not replaced

    manager.initialize(base_settings.replace(min_connections=1, max_connections=1))
    with manager.get_connection() as conn, conn.cursor() as cur:
        cur.execute("SET LOCAL statement_timeout TO 1")
    assert show(manager, "statement_timeout") == "0"


def test_reset_on_return_is_a_yes_or_no_setting(base_settings):
    from aperag_pg.errors import ConfigError
    from aperag_pg.settings import PostgresSettings

    env = {**base_settings.to_env(), "POSTGRES_RESET_ON_RETURN": "sometimes"}
    with pytest.raises(ConfigError, match="POSTGRES_RESET_ON_RETURN='sometimes' is not a yes/no"):
        PostgresSettings.from_env(env, dotenv_path="/dev/null")
    env["POSTGRES_RESET_ON_RETURN"] = "true"
    assert PostgresSettings.from_env(env, dotenv_path="/dev/null").reset_on_return is True
