"""Real Celery workers (prefork, solo, threads) using the per-process pool."""

from __future__ import annotations

import time
from collections import defaultdict

import pytest

from devtools.services import celery_worker, connections_per_process, wait_for_no_connections

from .celery_test_tasks import ATTEMPTS_DDL
from .conftest import REPO_ROOT


@pytest.mark.parametrize("pool", ["prefork", "solo", "threads"])
def test_worker_processes_own_their_pools(pool, service_env, base_settings, tmp_path):
    with celery_worker(service_env, tmp_path, pool=pool, concurrency=2, cwd=REPO_ROOT) as worker:
        pending = [worker.send("aperag_pg.pool_probe", 0.3) for _ in range(8)]
        pending += [worker.send("aperag_pg.async_pool_probe", 0.1) for _ in range(8)]
        results = [r.get(timeout=90) for r in pending]
        task_pids = {r["pid"] for r in results}
        main_pid = worker.process.pid

        for r in results:  # every session is labelled with the process that holds it
            assert r["application_name"] == f"aperag_pg:{r['pid']}"
            assert r["stats"]["pid"] == r["pid"]
            assert r["stats"]["requests_timeouts"] == 0
        if pool == "prefork":
            assert len(task_pids) == 2 and main_pid not in task_pids
        else:
            assert task_pids == {main_pid}

        # One event loop per process, reused by every task that process runs.
        loops = defaultdict(set)
        for r in results:
            if "event_loop_id" in r:
                loops[r["pid"]].add(r["event_loop_id"])
        assert loops and all(len(ids) == 1 for ids in loops.values())

        open_now = connections_per_process(base_settings)
        for pid in task_pids:
            assert 1 <= open_now.get(pid, 0) <= 3  # POSTGRES_MAX_CONNECTIONS=3 in service_env
        assert main_pid not in open_now or pool != "prefork"  # the prefork parent opens nothing

        assert worker.warm_shutdown() == 0
        log = worker.log_text()

    assert wait_for_no_connections(base_settings, task_pids | {main_pid}) == {}
    for pid in task_pids:
        assert f"aperag_pg closed in worker process {pid}" in log
    assert "Traceback" not in log


def _worker_with_test_tasks(service_env, tmp_path, concurrency: int):
    """A prefork worker that also runs tests.celery_test_tasks."""
    return celery_worker(
        service_env,
        tmp_path,
        pool="prefork",
        concurrency=concurrency,
        cwd=REPO_ROOT,
        include=("tests.celery_test_tasks",),
    )


@pytest.fixture
def attempts_table(admin_conn) -> None:
    with admin_conn.cursor() as cur:
        cur.execute(ATTEMPTS_DDL)


def _attempts(admin_conn, task_id: str) -> int:
    with admin_conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM celery_task_attempts WHERE task_id = %s", (task_id,))
        return cur.fetchone()[0]


def test_transient_database_errors_are_retried_programming_errors_are_not(
    service_env, admin_conn, tmp_path, attempts_table
):
    with _worker_with_test_tasks(service_env, tmp_path, concurrency=1) as worker:
        flaky = worker.send("tests.loses_connection", 2)
        assert flaky.get(timeout=90) == 2  # succeeded on the third attempt
        broken = worker.send("tests.bad_sql")
        with pytest.raises(Exception, match="table_that_does_not_exist"):
            broken.get(timeout=60)
        time.sleep(3)  # longer than the first backoff: a retry would have run by now
        log = worker.log_text()
    assert _attempts(admin_conn, flaky.id) == 3
    assert _attempts(admin_conn, broken.id) == 1
    assert broken.state == "FAILURE"
    assert "Retry in" in log and "UndefinedTable" in log


def test_a_task_whose_worker_process_dies_runs_again_and_a_crash_loop_ends(
    service_env, admin_conn, tmp_path, attempts_table
):
    """SIGKILL of the process running a task (out of memory looks the same): the task is
    delivered again and completes; one that kills its process every time fails after
    max_retries + 1 deliveries with an error naming its work, instead of looping."""
    with _worker_with_test_tasks(service_env, tmp_path, concurrency=2) as worker:
        survivor = worker.send("tests.dies", 2, "survivor")
        doomed = worker.send("tests.dies", 99, "doomed-batch-7")
        outcome = survivor.get(timeout=120)
        with pytest.raises(Exception) as failure:
            doomed.get(timeout=120)
        log = worker.log_text()
    assert outcome["retries"] == 2 and outcome["label"] == "survivor"
    assert _attempts(admin_conn, survivor.id) == 3
    assert _attempts(admin_conn, doomed.id) == 6  # 1 delivery + max_retries (5)
    assert type(failure.value).__name__ == "TaskKeepsCrashing"
    message = str(failure.value)
    assert "died on each of its 6 deliveries" in message and "doomed-batch-7" in message
    assert "SIGKILL" in log or "signal 9" in log
