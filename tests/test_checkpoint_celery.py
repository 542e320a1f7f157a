"""A LangGraph run interrupted in one Celery worker process and resumed in another, and the
retention task, through real prefork workers."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from aperag_pg.checkpoint import PGSyncCheckpointSaver, tasks
from aperag_pg.errors import ConfigError
from devtools.services import celery_worker

from .checkpoint_support import Chain, config, new_thread, table_counts
from .conftest import REPO_ROOT

QUESTION = "Publish this draft?"


def test_interrupted_graph_resumes_in_another_worker_process(
    service_env, tmp_path, manager, admin_conn
):
    async_thread, sync_thread = new_thread("celery-async"), new_thread("celery-sync")
    old_thread = new_thread("celery-old")
    saver = PGSyncCheckpointSaver(schema="public")
    saver.setup()
    Chain(saver, old_thread).put(ts=datetime.now(timezone.utc) - timedelta(days=40))

    with celery_worker(service_env, tmp_path, concurrency=1, cwd=REPO_ROOT) as first:
        started = [
            first.call("aperag_pg.checkpoint_demo_start", thread, "workers", timeout=120)
            for thread in (async_thread, sync_thread)
        ]
        assert first.warm_shutdown() == 0
    with celery_worker(service_env, tmp_path, concurrency=1, cwd=REPO_ROOT) as second:
        resumed_async = second.call(
            "aperag_pg.checkpoint_demo_resume", async_thread, "yes", True, timeout=120
        )
        resumed_sync = second.call(
            "aperag_pg.checkpoint_demo_resume", sync_thread, "no", False, timeout=120
        )
        pruned = second.call("aperag_pg.prune_checkpoints", 30, None, timeout=120)
        assert second.warm_shutdown() == 0
        log = second.log_text()

    first_pid = started[0]["pid"]
    second_pid = resumed_async["pid"]
    assert started[1]["pid"] == first_pid and resumed_sync["pid"] == second_pid
    assert first_pid != second_pid
    for begun in started:
        assert begun["next"] == ["review"]
        assert begun["interrupts"] == [
            {"question": QUESTION, "draft": "A short note about workers."}
        ]
    published, revised = resumed_async["state"], resumed_sync["state"]
    assert published["draft"] == "A short note about workers. (published)"
    assert revised["draft"] == "A short note about workers. (needs work)"
    assert published["log"] == [
        f"draft@{first_pid}",
        f"review@{second_pid}",
        f"publish@{second_pid}",
    ]
    assert revised["log"][-1] == f"revise@{second_pid}"
    for resumed in (resumed_async, resumed_sync):
        assert resumed["next"] == [] and resumed["checkpoints"] == 5

    # What the workers wrote is an ordinary thread for any other process, too.
    latest = saver.get_tuple(config(async_thread))
    assert latest.checkpoint["channel_values"]["verdict"] == "yes"
    assert latest.metadata["step"] == 3 and latest.metadata["source"] == "loop"

    assert pruned["pid"] == second_pid and pruned["threads_deleted"] >= 1
    assert table_counts(admin_conn, "public", old_thread)["checkpoints"] == 0
    assert saver.get_tuple(config(async_thread)) is not None  # recent: kept
    assert "Traceback" not in log


def test_prune_task_reads_its_defaults_from_the_environment(manager, monkeypatch):
    saver = PGSyncCheckpointSaver(schema="public")
    saver.setup()
    old = Chain(saver, new_thread("env-old"))
    old.put(ts=datetime.now(timezone.utc) - timedelta(days=3))
    monkeypatch.delenv("CHECKPOINT_THREAD_TTL_DAYS", raising=False)
    monkeypatch.delenv("CHECKPOINT_HISTORY_TTL_DAYS", raising=False)
    assert tasks.prune_checkpoints()["threads_deleted"] == 0  # no rule set: nothing deleted
    assert saver.get_tuple(config(old.thread_id)) is not None
    monkeypatch.setenv("CHECKPOINT_THREAD_TTL_DAYS", "2.5")
    assert tasks.prune_checkpoints()["threads_deleted"] >= 1
    assert saver.get_tuple(config(old.thread_id)) is None
    for bad in ("soon", "0", "-1"):
        monkeypatch.setenv("CHECKPOINT_THREAD_TTL_DAYS", bad)
        with pytest.raises(ConfigError, match="CHECKPOINT_THREAD_TTL_DAYS"):
            tasks.prune_checkpoints()
