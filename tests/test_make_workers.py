"""``make worker-start / worker-restart / worker-stop / worker-status`` driven like a user."""

from __future__ import annotations

import uuid

from celery import Celery

from aperag_pg.stores.vector import VectorStore
from aperag_pg.stores.vector_tables import vector_table_name
from devtools.services import connections_per_process, wait_for_no_connections

from .make_support import make, make_ok
from .polling import wait_until


def run_batch(client: Celery, count: int, hold: float) -> list:
    return [client.send_task("aperag_pg.pool_probe", args=(hold,)) for _ in range(count)]


def test_start_tasks_restart_tasks_stop(service_env, base_settings, tmp_path):
    run_dir = tmp_path / "run"
    client = Celery(broker=service_env["REDIS_URL"], backend=service_env["REDIS_URL"])
    try:
        make_ok("worker-start", service_env, run_dir)
        status = make("worker-status", service_env, run_dir)
        assert status.returncode == 0 and "running" in status.stdout
        first_main = int((run_dir / "maketest.pid").read_text())

        before = [r.get(timeout=60) for r in run_batch(client, 12, 0.05)]
        pids_before = {r["pid"] for r in before}
        in_flight = run_batch(client, 8, 1.0)  # running and queued while the restart happens
        wait_until(lambda: any(r.state == "STARTED" for r in in_flight), "a task runs")
        make_ok("worker-restart", service_env, run_dir)
        survived = [r.get(timeout=120) for r in in_flight]  # no task lost
        after = [r.get(timeout=60) for r in run_batch(client, 12, 0.05)]
        pids_after = {r["pid"] for r in after}
        second_main = int((run_dir / "maketest.pid").read_text())

        assert len(survived) == 8 and all(r["backend_pid"] > 0 for r in survived)
        assert second_main != first_main
        assert pids_before and pids_after and not (pids_before & pids_after)
        assert all(r["application_name"] == f"aperag_pg:{r['pid']}" for r in before + after)
        open_now = connections_per_process(base_settings)
        assert not (set(open_now) & pids_before)  # the old processes left nothing behind
    finally:
        stopped = make("worker-stop", service_env, run_dir)
        client.close()
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert make("worker-status", service_env, run_dir).returncode != 0
    every_pid = pids_before | pids_after | {first_main, second_main}
    assert wait_for_no_connections(base_settings, every_pid) == {}


def test_a_worker_whose_embedding_does_not_fit_the_tables_says_why_in_its_log(
    service_env, base_settings, manager, tmp_path
):
    """An embedding function without a model name uses LightRAG's vector tables without a
    suffix; one made for another dimension would refuse every write. The detached worker
    stops at start; `make worker-start` fails and prints the reason from its log: the table
    and both dimensions."""
    schema = f"unfit_{uuid.uuid4().hex[:6]}"
    manager.close()
    manager.initialize(base_settings.replace(schema=schema))
    VectorStore("chunks", vector_table_name("chunks", None, 32), 32, 0.2).ensure_tables()
    env = {
        **service_env,
        "POSTGRES_SCHEMA": schema,
        "LIGHTRAG_FACTORY": "tests.lightrag_factory:unnamed_embedding",  # 64 dimensions
        "LIGHTRAG_WORKING_DIR": str(tmp_path / "rag"),
    }
    run_dir = tmp_path / "run"
    started = make("worker-start", env, run_dir)
    # celery multi only detaches; make waits for the worker and says why it quit
    assert started.returncode != 0, started.stdout + started.stderr
    assert "the worker refused to start" in started.stderr
    assert (
        f"table {schema}.lightrag_vdb_chunks stores 32-dimensional vectors, but the embedding "
        "model gives 64" in started.stderr
    )
    wait_until(lambda: make("worker-status", env, run_dir).returncode != 0, "the worker exits")
    text = (run_dir / "maketest.log").read_text()
    assert "worker not started" in text
