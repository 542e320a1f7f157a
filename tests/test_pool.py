"""The connection manager against a real PostgreSQL server."""

from __future__ import annotations

import contextlib
import gc
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg2
import pytest

from aperag_pg.batching import chunked, execute_values_chunked
from aperag_pg.errors import DatabaseUnavailable, PoolClosed, PoolTimeout
from aperag_pg.manager import PostgreSQLSyncConnectionManager as Manager
from aperag_pg.pool import LIFETIME_SHARE
from devtools.services import EmbeddedPostgres

from .polling import backend_alive, backends_of, wait_until

BACKEND_PID = "SELECT pg_backend_pid() AS pid"


def backend_pid() -> int:
    return Manager.execute_query(BACKEND_PID, fetch_one=True)["pid"]


def assert_consistent(stats: dict) -> None:
    assert stats["pool_size"] == stats["pool_available"] + stats["pool_in_use"]
    assert 0 <= stats["pool_size"] <= stats["pool_max"]
    assert stats["requests_waiting"] >= 0
    assert stats["pid"] == os.getpid()


def test_64_threads_share_a_pool_of_4(manager, base_settings):
    manager.initialize(base_settings.replace(min_connections=1, max_connections=4))
    errors: list[BaseException] = []
    seen_backends: set[int] = set()

    def work(i: int) -> None:
        try:
            for j in range(10):
                with manager.get_connection() as conn, conn.cursor() as cur:
                    cur.execute("SELECT %s::int * %s::int, pg_backend_pid()", (i, j))
                    product, pid = cur.fetchone()
                    assert product == i * j
                    seen_backends.add(pid)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    stats = manager.stats()
    assert_consistent(stats)
    assert stats["pool_in_use"] == 0
    assert stats["requests_num"] == 640
    assert stats["requests_timeouts"] == 0
    # Connections are kept up to the maximum, not re-opened per checkout.
    assert len(seen_backends) <= 4
    assert stats["connections_num"] <= 4


def test_exhausted_pool_waits_then_times_out(manager, base_settings):
    manager.initialize(base_settings.replace(max_connections=2, pool_timeout=0.5))
    with manager.get_connection(), manager.get_connection():
        started = time.monotonic()
        with pytest.raises(PoolTimeout) as info:
            with manager.get_connection():
                pass
        waited = time.monotonic() - started
        assert manager.stats()["pool_in_use"] == 2
    assert 0.45 <= waited < 3.0
    message = str(info.value)
    assert "2 of 2" in message
    assert "POSTGRES_MAX_CONNECTIONS" in message and "POSTGRES_POOL_TIMEOUT" in message
    assert "exhausted" not in message
    assert isinstance(info.value, psycopg2.OperationalError)  # retry policies still match
    stats = manager.stats()
    assert stats["requests_timeouts"] == 1
    assert stats["requests_wait_ms"] >= 450
    assert stats["requests_wait_p99_ms"] >= 450
    assert_consistent(stats)


def test_waiting_caller_gets_the_released_connection(manager, base_settings):
    manager.initialize(base_settings.replace(max_connections=1, pool_timeout=5))
    holder_has_it = threading.Event()

    def hold() -> None:  # gives the connection back once the caller below waits for it
        with manager.get_connection():
            holder_has_it.set()
            wait_until(lambda: manager.stats()["requests_waiting"] == 1, "the caller waits")

    t = threading.Thread(target=hold)
    t.start()
    holder_has_it.wait()
    assert backend_pid() > 0
    t.join()
    stats = manager.stats()
    assert stats["requests_timeouts"] == 0 and stats["requests_waiting"] == 0
    assert stats["requests_wait_p99_ms"] >= 1  # one of two checkouts waited
    for _ in range(200):
        backend_pid()
    # one wait in 202 checkouts is under 1 %: the p99 is of checkouts, not the worst wait
    assert manager.stats()["requests_wait_p99_ms"] == 0


def test_terminated_backends_are_replaced(manager, base_settings, admin_conn):
    manager.initialize(base_settings.replace(min_connections=4, max_connections=4))
    pids_before = {backend_pid() for _ in range(8)}
    with admin_conn.cursor() as cur:
        cur.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = %s",
            (f"aperag_pg:{os.getpid()}",),
        )
        assert cur.fetchone()[0] == 4
    app = f"aperag_pg:{os.getpid()}"
    wait_until(lambda: not backends_of(admin_conn, app), "the terminated backends are gone")
    pids_after = {backend_pid() for _ in range(8)}
    assert pids_after and not (pids_after & pids_before)
    stats = manager.stats()
    assert stats["connections_lost"] >= 1
    assert_consistent(stats)


def test_connection_broken_during_use_is_discarded(manager, admin_conn):
    with pytest.raises(psycopg2.OperationalError):
        with manager.get_connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            pid = cur.fetchone()[0]
            with admin_conn.cursor() as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            wait_until(lambda: not backend_alive(admin_conn, pid), "the backend is gone")
            cur.execute("SELECT 1")
    assert manager.stats()["returns_bad"] == 1
    assert manager.execute_query("SELECT 2 AS v", fetch_one=True)["v"] == 2


def test_server_restart_mid_run(tmp_root, caplog):
    server = EmbeddedPostgres(tmp_root / "restart-pg", durable=False).start()
    try:
        pool = Manager.initialize(server.settings(min_connections=2, max_connections=3))
        assert backend_pid() > 0
        server.stop()
        for _ in range(3):
            with pytest.raises(DatabaseUnavailable) as info:
                backend_pid()
            assert "cannot connect to PostgreSQL" in str(info.value)
            assert "POSTGRES_HOST" in str(info.value)
        server.start()
        assert backend_pid() > 0
        assert Manager.pool() is pool  # the same manager and pool, no restart needed
        stats = Manager.stats()
        assert stats["connections_lost"] >= 1
        assert stats["connections_errors"] >= 3
        assert_consistent(stats)
    finally:
        Manager.close()
        server.destroy()


@pytest.mark.parametrize("child_uses_pool", [True, False])
def test_fork_child_gets_its_own_pool_and_parent_keeps_its_own(
    manager, admin_conn, child_uses_pool
):
    parent_backend = backend_pid()
    parent_pool = manager.pool()
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # the child: report its backend, drop everything, exit
        code = 1
        try:
            os.close(read_end)
            if child_uses_pool:
                info = Manager.execute_query(
                    "SELECT pg_backend_pid() AS pid, current_setting('application_name') AS app",
                    fetch_one=True,
                )
                os.write(write_end, f"{info['pid']} {info['app']}".encode())
                Manager.close()
            # Neither closing nor collecting the inherited pool may end the parent's session.
            parent_pool.close()
            del parent_pool
            gc.collect()
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    report = os.read(read_end, 200).decode()
    os.close(read_end)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    if child_uses_pool:
        child_backend, child_app = report.split()
        assert int(child_backend) != parent_backend
        assert child_app == f"aperag_pg:{child}"
    wait_until(
        lambda: not backends_of(admin_conn, f"aperag_pg:{child}"), "the child's backends are gone"
    )
    assert backend_pid() == parent_backend  # the parent's session survived
    assert parent_backend in backends_of(admin_conn, f"aperag_pg:{os.getpid()}")
    assert not backends_of(admin_conn, f"aperag_pg:{child}")
    assert manager.stats()["connections_lost"] == 0


def test_commit_on_success_rollback_on_error(manager, admin_conn):
    with admin_conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS tx_probe")
        cur.execute("CREATE TABLE tx_probe (id int PRIMARY KEY)")
    with manager.get_connection() as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO tx_probe VALUES (1)")
    with pytest.raises(ZeroDivisionError):
        with manager.get_connection() as conn, conn.cursor() as cur:
            cur.execute("INSERT INTO tx_probe VALUES (2)")
            1 / 0  # noqa: B018
    with pytest.raises(psycopg2.errors.UniqueViolation):
        with manager.get_connection() as conn, conn.cursor() as cur:
            cur.execute("INSERT INTO tx_probe VALUES (3)")
            cur.execute("INSERT INTO tx_probe VALUES (1)")
    with admin_conn.cursor() as cur:
        cur.execute("SELECT array_agg(id ORDER BY id) FROM tx_probe")
        assert cur.fetchone()[0] == [1]
    stats = manager.stats()
    assert stats["returns_bad"] == 0 and stats["pool_in_use"] == 0
    assert_consistent(stats)


def test_failed_commit_is_raised_and_connection_reused(manager, admin_conn):
    with admin_conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS deferred_probe")
        cur.execute(
            "CREATE TABLE deferred_probe (id int, "
            "CONSTRAINT u UNIQUE (id) DEFERRABLE INITIALLY DEFERRED)"
        )
    with pytest.raises(psycopg2.errors.UniqueViolation):
        with manager.get_connection() as conn, conn.cursor() as cur:
            cur.execute("INSERT INTO deferred_probe VALUES (1), (1)")  # fails only at COMMIT
    with admin_conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM deferred_probe")
        assert cur.fetchone()[0] == 0
    assert manager.execute_query("SELECT 1 AS one", fetch_one=True)["one"] == 1


def test_failed_rollback_keeps_the_original_error(manager, admin_conn, caplog):
    class Original(Exception):
        pass

    with pytest.raises(Original, match="the caller's error"):
        with manager.get_connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            pid = cur.fetchone()[0]
            with admin_conn.cursor() as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            wait_until(lambda: not backend_alive(admin_conn, pid), "the backend is gone")
            raise Original("the caller's error")  # the rollback now fails on a dead socket
    assert "rollback failed" in caplog.text
    assert manager.stats()["returns_bad"] == 1
    assert manager.execute_query("SELECT 1 AS one", fetch_one=True)["one"] == 1


def test_close_is_idempotent_and_use_after_close_raises(manager, base_settings):
    assert backend_pid() > 0
    manager.close()
    manager.close()
    with pytest.raises(PoolClosed, match="initialize"):
        backend_pid()
    with pytest.raises(PoolClosed):
        with manager.get_connection():
            pass
    manager.initialize(base_settings)
    assert backend_pid() > 0


def test_close_wakes_waiters_with_pool_closed(manager, base_settings):
    manager.initialize(base_settings.replace(max_connections=1, pool_timeout=10))
    results: list[BaseException] = []

    def wait_for_connection() -> None:
        try:
            with manager.get_connection():
                pass
        except BaseException as exc:  # noqa: BLE001
            results.append(exc)

    with manager.get_connection():
        t = threading.Thread(target=wait_for_connection)
        t.start()
        wait_until(lambda: manager.stats()["requests_waiting"] == 1, "the thread waits")
        manager.close()
        t.join(5)
    assert len(results) == 1 and isinstance(results[0], PoolClosed)


def test_connections_are_recycled_by_lifetime_and_idle_time(manager, base_settings):
    manager.initialize(base_settings.replace(max_lifetime=1, max_idle=600))
    first = backend_pid()
    time.sleep(1.1)
    assert backend_pid() != first
    manager.initialize(base_settings.replace(max_lifetime=600, max_idle=1))
    first = backend_pid()
    assert backend_pid() == first  # reused while fresh
    time.sleep(1.1)
    assert backend_pid() != first
    assert manager.stats()["connections_recycled"] >= 1


def test_idle_connections_beyond_min_are_trimmed(manager, base_settings, admin_conn):
    manager.initialize(base_settings.replace(min_connections=1, max_connections=4, max_idle=1))
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: manager.execute_query("SELECT pg_sleep(0.2)"), range(4)))
    assert manager.stats()["pool_size"] == 4
    time.sleep(1.2)
    backend_pid()  # returning a connection runs the trim
    assert manager.stats()["pool_size"] <= 2
    assert len(backends_of(admin_conn, f"aperag_pg:{os.getpid()}")) == manager.stats()["pool_size"]


def test_application_name_carries_the_pid(manager):
    row = manager.execute_query("SELECT current_setting('application_name') AS a", fetch_one=True)
    assert row["a"] == f"aperag_pg:{os.getpid()}"


def test_statement_timeout_applies(manager, base_settings):
    manager.initialize(base_settings.replace(statement_timeout=100))
    with pytest.raises(psycopg2.errors.QueryCanceled):
        manager.execute_query("SELECT pg_sleep(2)")
    assert manager.execute_query("SELECT 1 AS one", fetch_one=True)["one"] == 1


def test_execute_query_modes(manager):
    assert manager.execute_query("SELECT 1 AS a UNION ALL SELECT 2", fetch_all=True) == [
        {"a": 1},
        {"a": 2},
    ]
    assert manager.execute_query("SELECT 1 AS a WHERE false", fetch_one=True) is None
    manager.execute_query("CREATE TEMP TABLE IF NOT EXISTS t (x int)")
    assert (
        manager.execute_query("SELECT %s::text AS s", ("a'b;--",), fetch_one=True)["s"] == "a'b;--"
    )


def test_stats_names_and_consistency(manager):
    for _ in range(5):
        backend_pid()
    manager.execute_query("SELECT pg_sleep(0.05)")  # 50 ms holding a connection
    stats = manager.stats()
    for name in (
        "pool_min",
        "pool_max",
        "pool_size",
        "pool_available",
        "requests_num",
        "requests_waiting",
        "requests_wait_ms",
        "requests_wait_p99_ms",
        "requests_timeouts",
        "connections_num",
        "connections_lost",
        "returns_bad",
        "usage_ms",
        "pid",
    ):
        assert isinstance(stats[name], int), name
    assert stats["requests_num"] == 6
    assert stats["requests_wait_p99_ms"] == 0  # nobody waited
    assert 50 <= stats["usage_ms"] < 5000
    assert_consistent(stats)


def test_batch_helper_chunks_a_large_batch(manager, admin_conn):
    with admin_conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS batch_probe")
        cur.execute("CREATE TABLE batch_probe (id int PRIMARY KEY, body text)")
    rows = [(i, f"row {i}") for i in range(20_000)]
    statements: list[int] = []

    class CountingCursor(psycopg2.extensions.cursor):
        def execute(self, query, vars=None):  # noqa: A002 - psycopg2's signature
            statements.append(len(query))
            return super().execute(query, vars)

    with manager.get_connection() as conn, conn.cursor(cursor_factory=CountingCursor) as cur:
        ids = execute_values_chunked(
            cur, "INSERT INTO batch_probe VALUES %s RETURNING id", rows, chunk_size=1000, fetch=True
        )
    assert len(statements) == 20
    assert sorted(r[0] for r in ids) == list(range(20_000))
    with admin_conn.cursor() as cur:
        cur.execute("SELECT count(*), sum(id) FROM batch_probe")
        assert cur.fetchone() == (20_000, sum(range(20_000)))


def test_batch_is_atomic_across_chunks(manager, admin_conn):
    with admin_conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS batch_atomic")
        cur.execute("CREATE TABLE batch_atomic (id int PRIMARY KEY)")
    rows = [(i,) for i in range(5000)] + [(0,)]  # the duplicate is in the last chunk
    with pytest.raises(psycopg2.errors.UniqueViolation):
        with manager.get_connection() as conn, conn.cursor() as cur:
            execute_values_chunked(cur, "INSERT INTO batch_atomic VALUES %s", rows, chunk_size=1000)
    with admin_conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM batch_atomic")
        assert cur.fetchone()[0] == 0


def test_chunked_rejects_a_bad_size():
    assert list(chunked(range(5), 2)) == [[0, 1], [2, 3], [4]]
    with pytest.raises(ValueError, match="at least 1"):
        list(chunked(range(5), 0))


class CuttableProxy:
    """A TCP relay to the server whose connections can all be cut, like a network failure."""

    def __init__(self, target_port: int) -> None:
        import socket

        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src, dst) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass

    def cut(self) -> None:
        import socket

        with self._lock:
            for s in self.sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self.sockets.clear()

    def close(self) -> None:
        self.listener.close()
        self.cut()


def test_cut_network_connections_are_replaced(base_settings, admin_conn):
    proxy = CuttableProxy(base_settings.port)
    try:
        Manager.initialize(base_settings.replace(host="127.0.0.1", port=proxy.port))
        first = backend_pid()
        with ThreadPoolExecutor(3) as pool:  # several idle connections in the pool
            list(pool.map(lambda _: Manager.execute_query("SELECT pg_sleep(0.1)"), range(3)))
        proxy.cut()
        wait_until(lambda: not backend_alive(admin_conn, first), "the cut backend is gone")
        assert backend_pid() != first
        assert Manager.stats()["connections_lost"] >= 1
        # A connection cut while in use fails with the driver's error, then is replaced.
        with pytest.raises(psycopg2.OperationalError):
            with Manager.get_connection() as conn, conn.cursor() as cur:
                proxy.cut()
                cur.execute("SELECT 1")
        assert backend_pid() > 0
        assert_consistent(Manager.stats())
    finally:
        Manager.close()
        proxy.close()


def test_autocommit_is_reset_when_a_connection_returns(manager, base_settings):
    manager.initialize(base_settings.replace(min_connections=1, max_connections=1))
    with manager.get_connection() as conn:
        conn.autocommit = True  # e.g. a read-only store call, or DDL that needs it
    with manager.get_connection() as conn:
        assert conn.autocommit is False
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
        assert conn.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_INTRANS


def test_connections_opened_together_do_not_expire_together(manager, base_settings):
    manager.initialize(base_settings.replace(min_connections=4, max_connections=4))
    with contextlib.ExitStack() as held:
        conns = [held.enter_context(manager.get_connection()) for _ in range(4)]
        shares = [conn.lifetime_share for conn in conns]
    low, high = LIFETIME_SHARE
    assert all(low <= share <= high for share in shares) and len(set(shares)) == 4


def test_building_a_store_or_a_saver_opens_no_pool(base_settings):
    from aperag_pg.checkpoint import PGSyncCheckpointSaver
    from aperag_pg.stores.kv import KVStore

    Manager.close()
    KVStore("full_docs", "ws_ctor")
    PGSyncCheckpointSaver()
    assert Manager.stats()["pool_size"] == 0  # nothing opened, nothing connected
    with pytest.raises(PoolClosed):
        Manager.execute_query("SELECT 1")
