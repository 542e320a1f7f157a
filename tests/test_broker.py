"""The broker (Redis) restarted or away while tasks are queued and running: no task lost,
results readable, workers carry on without a restart."""

from __future__ import annotations

import os
import time
from collections import Counter
from contextlib import contextmanager

import pytest
from kombu.exceptions import OperationalError

from devtools.services import EmbeddedRedis, celery_worker

from .celery_test_tasks import ATTEMPTS_DDL, ATTEMPTS_TABLE
from .conftest import REPO_ROOT, worker_environment
from .polling import wait_until


def _attempts(admin_conn, ids: list[str]) -> Counter:
    with admin_conn.cursor() as cur:
        cur.execute(f"SELECT task_id FROM {ATTEMPTS_TABLE} WHERE task_id = ANY(%s)", (ids,))
        return Counter(task_id for (task_id,) in cur.fetchall())


class _Broker:
    """An embedded Redis with the append-only file (compose's setting), stopped and started
    again on the same port and data."""

    def __init__(self, directory) -> None:
        self.directory = directory
        self.server = EmbeddedRedis(directory, persist=True).start()

    def stop(self) -> None:
        self.server.stop()  # SIGTERM: Redis writes its append-only file and exits

    def start(self) -> None:
        self.server = EmbeddedRedis(self.directory, port=self.server.port, persist=True).start()


@contextmanager
def _worker_on_its_own_redis(base_settings, admin_conn, tmp_path):
    """A prefork worker (with the test tasks) on a Redis of its own: (worker, broker)."""
    with admin_conn.cursor() as cur:
        cur.execute(ATTEMPTS_DDL)
    broker = _Broker(tmp_path / "redis")
    try:
        env = worker_environment(os.environ, base_settings, broker.server.url)
        with celery_worker(
            env, tmp_path, concurrency=2, cwd=REPO_ROOT, include=("tests.celery_test_tasks",)
        ) as worker:
            yield worker, broker
    finally:
        broker.stop()


def test_redis_restarted_with_tasks_queued_and_running_loses_none(
    base_settings, admin_conn, tmp_path
):
    with _worker_on_its_own_redis(base_settings, admin_conn, tmp_path) as (worker, broker):
        sent = [worker.send("tests.recorded_sleep", 1.0) for _ in range(8)]
        wait_until(lambda: any(r.state == "STARTED" for r in sent), "a task runs")
        broker.stop()
        down_at = time.monotonic()
        broker.start()
        # the producer that sent them waited through the restart
        outcomes = [r.get(timeout=120) for r in sent]
        back = time.monotonic() - down_at
        later = worker.call("tests.recorded_sleep", 0.0, timeout=60)
        alive = worker.process.poll() is None
    ids = [r.id for r in sent]
    print(f"every task's result back {back:.1f} s after the restart began")
    assert outcomes == ids  # every task ran, and its result is readable
    assert alive and later  # the same worker, reconnected by itself
    attempts = _attempts(admin_conn, ids)
    assert set(attempts) == set(ids)
    print(f"runs per task: {sorted(attempts.values())}")


def test_redis_away_for_ten_seconds(base_settings, admin_conn, tmp_path):
    """While Redis is away a producer's send_task fails with kombu's OperationalError
    after its publish retries (the documented outcome: send it again later); the worker
    reconnects by itself once Redis is back and runs what was queued and what is new."""
    with _worker_on_its_own_redis(base_settings, admin_conn, tmp_path) as (worker, broker):
        queued = [worker.send("tests.recorded_sleep", 0.5) for _ in range(6)]
        broker.stop()
        gone_at = time.monotonic()
        with pytest.raises(OperationalError):
            worker.send("tests.recorded_sleep", 0.0)
        refused_after = time.monotonic() - gone_at
        # away until the worker has failed to reconnect three times (its next try comes
        # 6 s later): about ten seconds without a broker, as the worker sees it
        wait_until(
            lambda: worker.log_text().count("Trying again in") >= 3,
            "the worker failed to reconnect three times",
            timeout=60,
        )
        broker.start()
        outcomes = [r.get(timeout=120) for r in queued]
        later = worker.call("tests.recorded_sleep", 0.0, timeout=60)
        alive = worker.process.poll() is None
    print(f"send_task refused {refused_after:.1f} s after Redis went away")
    assert outcomes == [r.id for r in queued] and later and alive
    assert set(_attempts(admin_conn, outcomes).values()) == {1}


@pytest.mark.parametrize("persist", [True, False], ids=["appendonly", "no persistence"])
def test_what_a_redis_restart_keeps_of_the_queue(tmp_path, persist):
    """Tasks waiting in the queue survive a restart with the append-only file (compose's
    setting) and are gone without it, as DEPLOYMENT.md says."""
    import redis as redis_client
    from celery import Celery

    server = EmbeddedRedis(tmp_path / "redis", persist=persist).start()
    producer = Celery(broker=server.url, backend=server.url)
    queue = "nobody-consumes"
    try:
        for _ in range(3):
            producer.send_task("tests.recorded_sleep", args=(0.0,), queue=queue)
        client = redis_client.Redis.from_url(server.url)
        assert client.llen(queue) == 3
        server.stop()
        server = EmbeddedRedis(tmp_path / "redis", port=server.port, persist=persist).start()
        assert client.llen(queue) == (3 if persist else 0)
        client.close()
    finally:
        producer.close()
        server.stop()
