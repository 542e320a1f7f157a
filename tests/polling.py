"""Waiting on observable state instead of sleeping: each poll is a query or a stats read,
so the loop is paced by the work it checks."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """``condition()``'s first truthy value; AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
    raise AssertionError(f"timed out after {timeout:.0f} s waiting until {what}")


def lock_waiters(conn) -> int:
    """Backends waiting for another transaction (a row lock, a unique key in flight)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = 'transactionid'"
        )
        return cur.fetchone()[0]


def backends_of(conn, application_name: str) -> set[int]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (application_name,)
        )
        return {row[0] for row in cur.fetchall()}


def backend_alive(conn, pid: int) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = %s)", (pid,))
        return cur.fetchone()[0]
