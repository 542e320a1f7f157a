"""Faults for a running deployment, as production brings them: for the chaos test and
``bench/chaos.py``.

A ``ChaosTarget`` is a dedicated embedded PostgreSQL with a loopback TCP proxy in front;
the workers connect through the proxy. Its three faults:

- ``restart()``: a fast shutdown of PostgreSQL, then a start;
- ``terminate_backends()``: ``pg_terminate_backend`` of every aperag_pg session;
- ``cut()``: every TCP connection dropped at once (a network blip, a failover).
"""

from __future__ import annotations

import ast
import re
import time
from collections.abc import Callable
from pathlib import Path

import psycopg2

from aperag_pg.settings import PostgresSettings

from .services import EmbeddedPostgres, create_database, drop_database
from .tcp_proxy import TcpProxy

FAULTS = ("restart", "terminate_backends", "cut")
_CLOSED_STATS = re.compile(r"aperag_pg closed in worker process (\d+) \(stats: (\{.*?\})\)")


class ChaosTarget:
    def __init__(self, directory: Path, database: str = "chaos") -> None:
        self.server = EmbeddedPostgres(directory / "chaos-pg", durable=False)
        self.database = database
        self.proxy: TcpProxy | None = None
        self.faults: list[tuple[str, float]] = []  # (fault, monotonic time)

    def start(self) -> ChaosTarget:
        self.server.start()
        create_database(self.server.settings(), self.database)
        self.proxy = TcpProxy("127.0.0.1", self.server.port).start()
        return self

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
        if self.server.is_running():
            drop_database(self.server.settings(), self.database)
        self.server.destroy()

    def __enter__(self) -> ChaosTarget:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what clients use ------------------------------------------------------

    def worker_settings(self) -> PostgresSettings:
        """The settings workers use: through the proxy."""
        assert self.proxy is not None
        return self.server.settings(self.database).replace(port=self.proxy.port)

    def admin(self) -> PostgresSettings:
        """Direct, for the harness's own checks."""
        return self.server.settings(self.database)

    def query(self, statement: str, params: tuple = ()) -> list[tuple]:
        """One statement on a connection of its own (the server may have restarted)."""
        conn = psycopg2.connect(**self.admin().connect_kwargs(application_name="chaos_harness"))
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(statement, params)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    # -- faults ----------------------------------------------------------------

    def inject(self, fault: str) -> None:
        getattr(self, fault)()
        self.faults.append((fault, time.monotonic()))

    def restart(self) -> None:
        self.server.stop("fast")
        self.server.start()

    def terminate_backends(self) -> None:
        self.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name ~ %s",
            (self.worker_settings().pool_application_pattern(),),
        )

    def cut(self) -> None:
        assert self.proxy is not None
        self.proxy.cut()

    def document_tally(self) -> dict[str, tuple[int, int, int]]:
        """workspace -> (documents, not processed, ``dup-`` records) in LightRAG's doc status."""
        rows = self.query(
            "SELECT workspace, count(*), count(*) FILTER (WHERE status <> 'processed'), "
            "count(*) FILTER (WHERE id LIKE 'dup-%%') FROM lightrag_doc_status GROUP BY 1"
        )
        return {workspace: (total, bad, dup) for workspace, total, bad, dup in rows}

    def app_connections(self) -> int:
        pattern = self.worker_settings().pool_application_pattern()
        rows = self.query(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name ~ %s", (pattern,)
        )
        return rows[0][0]


def run_faults(
    target: ChaosTarget,
    schedule: list[str],
    progress: Callable[[], int],
    done: Callable[[], bool],
    every: int = 2,
    timeout: float = 300,
) -> list[str]:
    """Inject the faults of ``schedule`` in order, each once ``progress()`` has grown by
    ``every`` since the last (so each lands while work is under way), until all are in
    or ``done()``; returns the faults injected."""
    injected: list[str] = []
    last = progress()
    deadline = time.monotonic() + timeout
    for fault in schedule:
        while not done() and progress() < last + every:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no progress for the next fault after {injected}")
            time.sleep(0.05)  # paced by the progress query of the next round
        if done():
            break
        target.inject(fault)
        injected.append(fault)
        last = progress()
    return injected


def closed_pool_stats(log_text: str) -> dict[int, dict[str, int]]:
    """Each worker process's pool counters as it logged them when it closed its pool (the
    main process, which opens none, logs an empty pool: left out)."""
    found = {int(pid): ast.literal_eval(stats) for pid, stats in _CLOSED_STATS.findall(log_text)}
    return {pid: stats for pid, stats in found.items() if "connections_lost" in stats}
