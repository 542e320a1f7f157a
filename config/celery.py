"""The Celery application. It only wires: broker and backend from the environment, and
aperag_pg's signal handlers."""

from __future__ import annotations

from datetime import timedelta
from importlib.util import find_spec

from celery import Celery
from celery.schedules import crontab
from celery.signals import (
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_shutdown,
)

from aperag_pg.environment import (
    celery_urls,
    store_sweep_interval,
    visibility_timeout,
    writer_lease_ttl,
)
from aperag_pg.settings import load_environment
from aperag_pg.worker import (
    DatabaseTask,
    cleanup_worker_postgres,
    setup_main_process,
    setup_worker_postgres,
    startup_check,
)

_environment = load_environment()
_broker, _backend = celery_urls(_environment)

app = Celery(
    "aperag_pg",
    broker=_broker,
    backend=_backend,
    # Every task retries with backoff on transient database errors, never on bad SQL or input.
    task_cls=DatabaseTask,
    # LightRAG's tasks need the `lightrag` extra; a worker without it still serves the rest.
    include=["aperag_pg.probes"]
    + (["aperag_pg.checkpoint.tasks", "aperag_pg.memory.tasks"] if find_spec("langgraph") else [])
    + (["aperag_pg.lightrag.tasks"] if find_spec("lightrag") else [])
    # The demo's tasks, from a checkout (devtools/ is not part of the installed package).
    + (["devtools.tasks"] if find_spec("devtools") else []),
)
app.conf.update(
    # A task is acknowledged when it ends, and a worker process that dies under it (SIGKILL,
    # out of memory) hands it back: it runs again, at most max_retries times (DatabaseTask).
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    task_retry_on_worker_lost=True,
    # A running task reports STARTED (with its worker process), not PENDING.
    task_track_started=True,
    # Redis delivers an unacknowledged task again after this many seconds (a whole worker
    # that died, say): it must exceed the longest task. CELERY_VISIBILITY_TIMEOUT. Every
    # worker looks for such tasks every 10 s (kombu's default scans on every tenth look
    # only: a lost host's tasks came back up to ~100 s after the timeout).
    broker_transport_options={
        "visibility_timeout": visibility_timeout(_environment),
        "unacked_restore_interval": 10,
        "unacked_restore_throttle": 1,
    },
    result_backend_transport_options={"visibility_timeout": visibility_timeout(_environment)},
    # A result that cannot be stored because Redis is restarting is stored once it is back
    # (retried with backoff up to 10 s apart), never replaced by the ConnectionError: a task
    # whose work was done reports success.
    result_backend_always_retry=True,
    result_backend_max_retries=60,
    result_backend_max_sleep_between_retries_ms=10_000,
    worker_prefetch_multiplier=1,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_expires=3600,
    broker_connection_retry_on_startup=True,
    # `celery -A config.celery beat`: hourly checkpoint retention, by
    # CHECKPOINT_THREAD_TTL_DAYS / CHECKPOINT_HISTORY_TTL_DAYS (unset: nothing is deleted),
    # and the LangGraph memory TTL sweep every STORE_SWEEP_INTERVAL_MINUTES (default 5).
    beat_schedule={
        "prune-langgraph-checkpoints": {
            "task": "aperag_pg.prune_checkpoints",
            "schedule": crontab(minute=17),
        },
        "sweep-langgraph-store": {
            "task": "aperag_pg.sweep_store",
            "schedule": timedelta(minutes=store_sweep_interval(_environment)),
        },
    },
)

if find_spec("lightrag"):
    # A LIGHTRAG_FACTORY that cannot be loaded stops the worker here, at its start, with
    # the reason, instead of failing every LightRAG task later.
    from aperag_pg.lightrag.models import load_factory
    from aperag_pg.lightrag.preflight import check_at_worker_start

    load_factory(_environment)
    writer_lease_ttl(_environment)  # a bad LIGHTRAG_WRITER_LEASE_TTL stops the worker here
    # An embedding dimension that does not fit the vector tables stops the worker at start,
    # in its main process, before any child takes a task.
    app.steps["worker"].add(startup_check(check_at_worker_start))

# Prefork children: one pool each, opened after fork and closed on exit.
worker_process_init.connect(setup_worker_postgres)
worker_process_shutdown.connect(cleanup_worker_postgres)
# Solo and threads pools run tasks in the main process: schema at start, close at shutdown.
worker_init.connect(setup_main_process)
worker_shutdown.connect(cleanup_worker_postgres)
