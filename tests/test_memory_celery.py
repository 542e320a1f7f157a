"""LangGraph long-term memory in real prefork workers: a fact remembered by one workflow is
recalled by the next in another worker process, and tasks that start a new event loop
each time share their process's one store and pool."""

from __future__ import annotations

import uuid

from aperag_pg.memory import PGSyncStore
from devtools.services import celery_worker

from .checkpoint_support import new_thread
from .conftest import REPO_ROOT


def test_a_workflow_recalls_what_an_earlier_one_remembered_in_another_process(
    service_env, tmp_path, manager
):
    author = f"author-{uuid.uuid4().hex[:8]}"
    first_thread, second_thread = new_thread("mem-first"), new_thread("mem-second")
    with celery_worker(service_env, tmp_path, concurrency=1, cwd=REPO_ROOT) as first:
        first.call("aperag_pg.checkpoint_demo_start", first_thread, "tides", author, timeout=120)
        earlier = first.call("aperag_pg.checkpoint_demo_resume", first_thread, "yes", timeout=120)
        assert first.warm_shutdown() == 0
    with celery_worker(service_env, tmp_path, concurrency=1, cwd=REPO_ROOT) as second:
        second.call("aperag_pg.checkpoint_demo_start", second_thread, "moons", author, timeout=120)
        later = second.call(
            "aperag_pg.checkpoint_demo_resume", second_thread, "yes", False, timeout=120
        )
        assert second.warm_shutdown() == 0
    assert earlier["pid"] != later["pid"]
    assert earlier["state"]["follows_up"] == []
    assert later["state"]["follows_up"] == [{"topic": "tides", "pid": earlier["pid"]}]
    remembered = PGSyncStore().search(("authors", author, "published"))
    assert sorted(item.key for item in remembered) == ["moons", "tides"]


def test_tasks_with_a_new_event_loop_each_share_the_process_store(
    service_env, tmp_path, manager, admin_conn
):
    run = uuid.uuid4().hex[:8]
    with celery_worker(
        service_env,
        tmp_path,
        concurrency=2,
        cwd=REPO_ROOT,
        include=("tests.celery_test_tasks",),
    ) as worker:
        sent = [
            worker.send("tests.memory_round_trip", [f"run{run}", f"p{i % 3}"], f"k{i}", {"n": i})
            for i in range(24)
        ]
        results = [result.get(timeout=120) for result in sent]
        assert worker.warm_shutdown() == 0
        log = worker.log_text()
    for i, result in enumerate(results):
        assert result["read"] == {"n": i}
        assert result["found"] == [[[f"run{run}", f"p{i % 3}"], f"k{i}"]]
    stores = {result["pid"]: set() for result in results}
    for result in results:
        stores[result["pid"]].add(result["store"])
    assert all(len(ids) == 1 for ids in stores.values()), stores  # one store per process
    assert "Traceback" not in log
    with admin_conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM public.store WHERE prefix LIKE %s", (f"run{run}.%",))
        assert cur.fetchone()[0] == 24
