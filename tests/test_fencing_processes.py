"""A writer paused past its lease (SIGSTOP, as a long GC pause or a frozen VM would) in a
real prefork worker: another holder takes the lease over; when the paused one resumes,
none of its writes commits after the takeover, and its task fails with LeaseLost."""

from __future__ import annotations

import os
import signal
import uuid

from aperag_pg.errors import LeaseLost, TransientFailure
from aperag_pg.lightrag.writer import WRITER_LEASE_PREFIX, writer_lease
from aperag_pg.stores.leases import hold_lease, live_holders
from devtools.services import celery_worker

from .conftest import REPO_ROOT
from .polling import wait_until

TTL = 3  # LIGHTRAG_WRITER_LEASE_TTL of the worker: the pause outlasts it


def _rows(admin_conn, workspace: str) -> int:
    with admin_conn.cursor() as cur:
        cur.execute("SELECT to_regclass('lightrag_doc_full') IS NOT NULL")
        if not cur.fetchone()[0]:
            return 0
        cur.execute("SELECT count(*) FROM lightrag_doc_full WHERE workspace = %s", (workspace,))
        return cur.fetchone()[0]


def _writer_pid(admin_conn, workspace: str) -> int | None:
    with admin_conn.cursor() as cur:
        holders = dict(live_holders(cur, WRITER_LEASE_PREFIX))
    return holders.get(writer_lease(workspace))


def test_a_paused_writer_commits_nothing_after_the_takeover_and_its_task_fails(
    service_env, admin_conn, manager, tmp_path
):
    assert issubclass(LeaseLost, TransientFailure)  # DatabaseTask retries it
    workspace = f"paused-{uuid.uuid4().hex[:8]}"
    env = {**service_env, "LIGHTRAG_WRITER_LEASE_TTL": str(TTL)}
    with celery_worker(
        env, tmp_path, concurrency=1, cwd=REPO_ROOT, include=("tests.celery_test_tasks",)
    ) as worker:
        result = worker.send("tests.fenced_writer", workspace, 120.0)
        wait_until(lambda: _rows(admin_conn, workspace) >= 20, "the writer writes", 60)
        pid = _writer_pid(admin_conn, workspace)
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            with hold_lease(writer_lease(workspace), ttl=60, timeout=TTL * 10):
                taken_at = _rows(admin_conn, workspace)  # the paused one cannot commit now
                os.kill(pid, signal.SIGCONT)
                result.get(timeout=60, propagate=False)
                assert result.state == "FAILURE"
                assert isinstance(result.result, LeaseLost) or "LeaseLost" in repr(result.result)
                assert "rolled back" in str(result.result)
                assert _rows(admin_conn, workspace) == taken_at
        finally:
            os.kill(pid, signal.SIGCONT)
        assert worker.warm_shutdown() == 0
