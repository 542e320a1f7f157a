"""Helpers for the checkpointer tests: savers on fresh schemas, and LangGraph-shaped data."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timezone
from typing import Any

import psycopg2
from langgraph.checkpoint.base.id import uuid6
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES
from langgraph.checkpoint.conformance.report import ProgressCallbacks
from psycopg2 import sql

from aperag_pg.checkpoint import PGSyncCheckpointSaver
from aperag_pg.settings import PostgresSettings


def new_schema(prefix: str = "cp") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def new_thread(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def drop_schema(admin_conn: Any, schema: str) -> None:
    with admin_conn.cursor() as cur:
        cur.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def saver_in(schema: str, **kwargs: Any) -> PGSyncCheckpointSaver:
    saver = PGSyncCheckpointSaver(schema=schema, **kwargs)
    saver.setup()
    return saver


def psycopg3_conninfo(settings: PostgresSettings, **options: str) -> str:
    """A libpq connection string for psycopg 3 (PostgresSaver's driver)."""
    params = {
        "host": settings.host,
        "port": str(settings.port),
        "user": settings.user,
        "password": settings.password,
        "dbname": settings.database,
        **options,
    }
    return " ".join(f"{k}='{_escape(v)}'" for k, v in params.items())


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def config(thread_id: str, checkpoint_ns: str = "", checkpoint_id: str | None = None) -> dict:
    configurable = {"thread_id": thread_id, "checkpoint_ns": checkpoint_ns}
    if checkpoint_id is not None:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


class Chain:
    """Appends checkpoints to one thread and namespace the way a graph run does: each
    step a new message window blob, a context blob every ``context_every`` steps, inline
    scalars, and the parent link."""

    def __init__(
        self,
        saver: Any,
        thread_id: str,
        checkpoint_ns: str = "",
        context_every: int = 5,
        run_id: str = "run-1",
        payload: int = 0,
    ) -> None:
        self.saver = saver
        self.thread_id = thread_id
        self.checkpoint_ns = checkpoint_ns
        self.context_every = context_every
        self.run_id = run_id
        self.payload = "p" * payload
        self.step = 0
        self.parent: str | None = None
        self.versions: dict[str, Any] = {}
        self.configs: list[dict] = []

    def put(self, ts: datetime | None = None, **extra_metadata: Any) -> dict:
        step = self.step
        new = {"messages": self._bump("messages"), "step": self._bump("step")}
        if step % self.context_every == 0:
            new["context"] = self._bump("context")
        checkpoint = {
            "v": 4,
            "id": str(uuid6(clock_seq=step)),
            "ts": (ts or datetime.now(timezone.utc)).isoformat(),
            "channel_values": self.values(step),
            "channel_versions": dict(self.versions),
            "versions_seen": {"agent": {"messages": self.versions["messages"]}},
            "updated_channels": sorted(new),
        }
        cfg = config(self.thread_id, self.checkpoint_ns, self.parent)
        metadata = {
            "source": "loop",
            "step": step,
            "parents": {},
            "run_id": self.run_id,
            **extra_metadata,
        }
        saved = self.saver.put(cfg, checkpoint, metadata, new)
        self.parent = saved["configurable"]["checkpoint_id"]
        self.configs.append(saved)
        self.step += 1
        return saved

    def values(self, step: int) -> dict[str, Any]:
        return {
            "messages": [
                {"role": "user", "text": f"m{i}{self.payload}"}
                for i in range(max(0, step - 4), step + 1)
            ],
            "context": {"docs": [f"d{step // self.context_every}-{i}" for i in range(3)]},
            "step": step,
            "topic": "tests",
        }

    def _bump(self, channel: str) -> str:
        self.versions[channel] = self.saver.get_next_version(self.versions.get(channel), None)
        return self.versions[channel]


def table_counts(admin_conn: Any, schema: str, thread_id: str) -> dict[str, int]:
    """Rows of ``thread_id`` in each checkpoint table of ``schema``."""
    counts = {}
    with admin_conn.cursor() as cur:
        for table in ("checkpoints", "checkpoint_blobs", "checkpoint_writes"):
            cur.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE thread_id = %s").format(
                    sql.Identifier(schema, table)
                ),
                (thread_id,),
            )
            counts[table] = cur.fetchone()[0]
    return counts


def unreferenced_blobs(admin_conn: Any, schema: str, thread_id: str) -> int:
    """Blobs of the thread that no checkpoint of the thread references."""
    with admin_conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                """
                SELECT count(*) FROM {blobs} AS b
                WHERE b.thread_id = %s AND NOT EXISTS (
                    SELECT 1 FROM {checkpoints} AS c
                    WHERE c.thread_id = b.thread_id AND c.checkpoint_ns = b.checkpoint_ns
                      AND c.checkpoint -> 'channel_versions' ->> b.channel = b.version
                )
                """
            ).format(
                blobs=sql.Identifier(schema, "checkpoint_blobs"),
                checkpoints=sql.Identifier(schema, "checkpoints"),
            ),
            (thread_id,),
        )
        return cur.fetchone()[0]


def connect(settings: PostgresSettings, **kwargs: Any) -> Any:
    conn = psycopg2.connect(**settings.connect_kwargs(application_name="aperag_pg_tests"), **kwargs)
    conn.autocommit = True
    return conn


def run_conformance_suite(admin_conn, capsys) -> None:
    """The whole suite on a new schema of the open pool; asserts FULL conformance."""
    schema = new_schema("conformance")
    created: list[PGSyncCheckpointSaver] = []

    @checkpointer_test(name="PGSyncCheckpointSaver")
    async def factory():
        saver = PGSyncCheckpointSaver(schema=schema)
        await saver.asetup()
        created.append(saver)
        yield saver

    failures: list[str] = []

    def on_result(capability: str, test: str, passed: bool, error: str | None) -> None:
        if not passed:
            failures.append(f"{capability}/{test}:\n{error}")

    try:
        report = asyncio.run(
            validate(factory, progress=ProgressCallbacks(on_test_result=on_result))
        )
    finally:
        drop_schema(admin_conn, schema)

    report.print_report()
    counts = {
        name: (r.tests_passed, r.tests_failed, r.tests_skipped)
        for name, r in report.results.items()
    }
    with capsys.disabled():
        print(f"\nconformance level: {report.conformance_level()}")
        for name, (passed, failed, skipped) in sorted(counts.items()):
            print(f"  {name:16s} passed={passed} failed={failed} skipped={skipped}")

    assert not failures, "\n\n".join(failures)
    assert (
        {c.value for c in ALL_CAPABILITIES}
        == set(report.results)
        == {
            "put",
            "put_writes",
            "get_tuple",
            "list",
            "delete_thread",
            "prune",
            "delete_for_runs",
            "copy_thread",
        }
    )
    for name, result in report.results.items():
        assert result.detected, f"{name} was not detected as implemented"
        assert result.passed is True, f"{name}: {result.failures}"
        assert result.tests_passed > 0 and result.tests_failed == 0 and result.tests_skipped == 0
    assert report.conformance_level() == "FULL"
    assert report.passed_all_base() and report.passed_all()
    assert len(created) == 8  # a fresh saver per capability, as the suite intends
