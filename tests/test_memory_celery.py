"""LangGraph long-term memory in real prefork workers: a fact remembered by one workflow is
recalled by the next in another worker process, and tasks that start a new event loop
each time share their process's one store and pool; and the beat task that sweeps
expired items."""

from __future__ import annotations

import os
import uuid

import pytest

from aperag_pg.environment import store_sweep_interval
from aperag_pg.errors import ConfigError
from aperag_pg.memory import PGSyncStore, tasks
from devtools.services import celery_worker

from .checkpoint_support import new_schema, new_thread
from .conftest import REPO_ROOT
from .memory_support import count_rows, wait_until_expired


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


def test_the_sweep_task_deletes_expired_items_and_their_vectors(schema, admin_conn):
    index = {"dims": 4, "embed": lambda texts: [[1.0, 0.5, 0.25, float(len(t))] for t in texts]}
    store = PGSyncStore(schema=schema, index=index)
    store.setup()
    store.put(("notes",), "brief", {"text": "gone soon"}, ttl=0.002)  # 0.12 s
    store.put(("notes",), "kept", {"text": "stays"}, ttl=600)
    store.put(("notes",), "forever", {"text": "no ttl"})
    wait_until_expired(admin_conn, schema, ("notes",), "brief")
    swept = tasks.sweep_store.run(schema)
    assert swept["deleted"] == 1 and swept["swept"] and swept["schema"] == schema
    assert sorted(i.key for i in store.search(("notes",))) == ["forever", "kept"]
    assert count_rows(admin_conn, schema, "store_vectors") == 2
    assert tasks.sweep_store.run(schema)["deleted"] == 0


def test_the_sweep_task_passes_over_a_schema_without_the_store(manager, admin_conn):
    missing = new_schema("nostore")
    assert tasks.sweep_store.run(missing) == {
        "pid": os.getpid(),
        "schema": missing,
        "deleted": 0,
        "swept": False,
    }


@pytest.mark.parametrize("bad", ["0", "-1", "soon", "nan", "inf"])
def test_a_bad_sweep_interval_names_the_variable(bad):
    with pytest.raises(ConfigError, match="STORE_SWEEP_INTERVAL_MINUTES"):
        store_sweep_interval({"STORE_SWEEP_INTERVAL_MINUTES": bad})
    assert store_sweep_interval({"STORE_SWEEP_INTERVAL_MINUTES": "0.5"}) == 0.5
    assert store_sweep_interval({}) == 5.0
