"""A steady mixed load on a running Celery worker, for the long benchmarks (chaos, soak)."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from devtools.corpus import documents

IN_FLIGHT = 6  # tasks kept outstanding
REPO = Path(__file__).resolve().parent.parent


def worker_env(services: dict[str, str], work_dir: Path) -> dict[str, str]:
    """A worker's environment: this one without model or service settings, plus the
    services', the offline stand-ins and a small pool."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "LLM_", "OPENAI"))}
    env.update(services)
    env.update(
        POSTGRES_MAX_CONNECTIONS="3",
        LLM_BINDING="standin",
        LIGHTRAG_WORKING_DIR=str(work_dir / "rag"),
        PYTHONPATH=str(REPO),
    )
    return env


class SteadyLoad:
    """Keeps IN_FLIGHT tasks outstanding (ingests of 2 documents into two workspaces,
    queries, LangGraph workflows started and resumed) and records when each one
    completes and how long it took from sending. With ``corpus_size`` the documents come
    round again after that many: a long run re-sends processed documents, which an ingest
    skips, instead of growing the knowledge graph without bound."""

    def __init__(self, worker, workspaces: list[str], corpus_size: int | None = None) -> None:
        self.worker = worker
        self.workspaces = workspaces
        self.corpus_size = corpus_size
        self.pending: list[tuple[str, object, object, float]] = []  # (kind, result, detail, sent)
        self.done: list[tuple[float, str, dict]] = []  # (time, kind, result)
        self.latencies: list[tuple[float, float]] = []  # (time done, seconds from sending)
        self.next_doc = 0
        self.threads_waiting: list[str] = []  # workflows started, to resume
        self.threads_done: list[str] = []
        self.ingested_docs: dict[str, int] = dict.fromkeys(workspaces, 0)
        self.turn = 0

    def fill(self) -> None:
        while len(self.pending) < IN_FLIGHT:
            self.turn += 1
            kind = ("ingest", "ingest", "query", "workflow")[self.turn % 4]
            if kind == "workflow" and self.threads_waiting:
                thread = self.threads_waiting.pop(0)
                self._add("resume", self._send_resume(thread), thread)
            elif kind == "workflow":
                thread = f"chaos-bench-{uuid.uuid4().hex}"
                result = self.worker.send("aperag_pg.checkpoint_demo_start", thread, "chaos")
                self._add("start", result, thread)
            elif kind == "query":
                workspace = self.workspaces[self.turn % 2]
                result = self.worker.send("aperag_pg.lightrag_query", workspace, "Who leads?")
                self._add("query", result, workspace)
            else:
                workspace = self.workspaces[self.turn % 2]
                first = self.next_doc % self.corpus_size if self.corpus_size else self.next_doc
                batch = documents(2, start=first)
                self.next_doc += 2
                if not self.corpus_size or self.next_doc <= self.corpus_size:
                    self.ingested_docs[workspace] += 2
                result = self.worker.send(
                    "aperag_pg.lightrag_ingest",
                    workspace,
                    [t for t, _ in batch],
                    [p for _, p in batch],
                )
                self._add("ingest", result, workspace)

    def _add(self, kind: str, result, detail: str) -> None:
        self.pending.append((kind, result, detail, time.monotonic()))

    def _send_resume(self, thread: str):
        return self.worker.send("aperag_pg.checkpoint_demo_resume", thread, "yes")

    def collect(self) -> None:
        still = []
        for kind, result, detail, sent in self.pending:
            if not result.ready():
                still.append((kind, result, detail, sent))
                continue
            value = result.get(timeout=1)  # raises if the task failed
            now = time.monotonic()
            self.done.append((now, kind, value))
            self.latencies.append((now, now - sent))
            if kind == "start":
                self.threads_waiting.append(detail)
            elif kind == "resume":
                assert value["next"] == [], value
                self.threads_done.append(detail)
        self.pending = still

    def run_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.fill()
            self.collect()
            time.sleep(0.02)  # paces the polling of task results

    def drain(self, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while self.pending or self.threads_waiting:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.pending)} tasks still outstanding")
            while self.threads_waiting and len(self.pending) < IN_FLIGHT:
                thread = self.threads_waiting.pop(0)
                self._add("resume", self._send_resume(thread), thread)
            self.collect()
            time.sleep(0.02)
