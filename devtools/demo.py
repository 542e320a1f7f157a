"""``make demo``: a prefork Celery worker doing real work on aperag_pg's per-process pools.

Starts PostgreSQL (with pgvector) and Redis locally unless POSTGRES_* / REDIS_URL point
at running ones (the local ones keep their data under run/services, as `make services-up`
does, and are stopped again at the end if the demo started them), starts
``celery -A config.celery worker --pool=prefork``, and submits a batch: documents ingested
through LightRAG on the PGSync storages, queries in every mode, and LangGraph workflows
that stop at a human review and are resumed from their checkpoints, often in another
worker process. It shows live progress, prints a summary, stops everything, and says how
to see the graph it built in LightRAG's WebUI (`make webui` shows the last demo's
workspace). LightRAG runs on the models LLM_BINDING and friends name; with
--stand-ins-unless-configured (as `make demo` runs it) and no model variable set, on the
offline stand-ins, asked for by name (LLM_BINDING=standin).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aperag_pg.environment import (
    DEFAULT_WEBUI_PORT,
    EMBEDDING_BINDING,
    LIGHTRAG_FACTORY,
    LLM_BINDING,
    OPENAI_API_KEY,
)
from aperag_pg.errors import ConfigError
from aperag_pg.lightrag.instance import DEFAULT_STORAGES
from aperag_pg.lightrag.models import STANDIN, configured_models
from aperag_pg.lightrag.selection import lightrag_storage_kwargs
from aperag_pg.manager import PostgreSQLSyncConnectionManager
from aperag_pg.settings import PostgresSettings, load_environment
from aperag_pg.stores.graph import GraphStore

from .corpus import documents
from .services import (
    celery_worker,
    connections_per_process,
    kept_services,
    local_services,
    named_postgres,
    wait_for_no_connections,
)
from .webui import record_demo

MODES = ("local", "global", "hybrid", "naive", "mix")
WEBUI_URL = f"http://127.0.0.1:{DEFAULT_WEBUI_PORT}/webui/"
AUTHORS = 4  # the demo's workflows share this many authors (long-term memory per author)


@dataclass
class Progress:
    """Tasks sent and finished, by kind, with the results kept for the summary."""

    started: float = field(default_factory=time.perf_counter)
    sent: Counter = field(default_factory=Counter)
    done: Counter = field(default_factory=Counter)
    results: list[dict[str, Any]] = field(default_factory=list)

    def finish(self, kind: str, result: dict[str, Any]) -> None:
        self.done[kind] += 1
        self.results.append({**result, "kind": kind})
        total, elapsed = sum(self.done.values()), time.perf_counter() - self.started
        parts = ", ".join(f"{k} {self.done[k]}/{self.sent[k]}" for k in self.sent)
        line = f"  {parts} | {total / elapsed:5.1f} tasks/s"
        if sys.stdout.isatty():  # one live line on a terminal
            print(f"\r{line}", end="", flush=True)
        elif self.done[kind] == self.sent[kind] or total % 20 == 0:  # a log: every 20 tasks
            print(line, flush=True)


def _wait_all(pending: list[tuple[str, Any]], progress: Progress) -> None:
    for kind, result in pending:
        progress.finish(kind, result.get(timeout=600))


def run_batch(
    worker: Any, docs: int, per_task: int, queries: int, workflows: int, progress: Progress
) -> str:
    """Run the batch; returns the LightRAG workspace it used."""
    workspace = f"demo_{uuid.uuid4().hex[:6]}"
    corpus = documents(docs)
    ingest = []
    for start in range(0, docs, per_task):
        texts, paths = zip(*corpus[start : start + per_task], strict=True)
        progress.sent["ingest"] += 1
        ingest.append(
            (
                "ingest",
                worker.send("aperag_pg.lightrag_ingest", workspace, list(texts), list(paths)),
            )
        )
    threads = [f"review-{uuid.uuid4().hex[:8]}" for _ in range(workflows)]
    # A few authors share the workflows: each publication recalls the author's earlier ones
    # from the LangGraph memory store, whichever worker process wrote them.
    authors = [f"author-{workspace[-6:]}-{i % AUTHORS}" for i in range(workflows)]
    started = []
    for thread, author in zip(threads, authors, strict=True):
        progress.sent["workflow start"] += 1
        started.append(
            (
                "workflow start",
                worker.send(
                    "aperag_pg.checkpoint_demo_start", thread, f"topic {thread[-4:]}", author
                ),
            )
        )
    progress.sent["query"] += queries
    progress.sent["workflow resume"] += workflows
    _wait_all(ingest + started, progress)
    asked = [
        (
            "query",
            worker.send(
                "aperag_pg.lightrag_query",
                workspace,
                f"How is {name} connected to its partners?",
                MODES[i % len(MODES)],
            ),
        )
        for i, name in enumerate(
            ("Acme Robotics", "Globex Corporation", "Alice Johnson", "Initech Systems")
            * (queries // 4 + 1)
        )
        if i < queries
    ]
    started_in = {r["thread"]: r["pid"] for r in progress.results if "thread" in r}
    resumed = [
        ("workflow resume", worker.send("aperag_pg.checkpoint_demo_resume", thread, "yes"))
        for thread in threads
    ]
    _wait_all(asked + resumed, progress)
    for r in progress.results:  # a resume in another process than its start has "moved"
        if r["kind"] == "workflow resume":
            r["moved"] = r["pid"] != started_in.get(r["thread"])
    print()
    return workspace


def knowledge_graph_size(settings: PostgresSettings, workspace: str) -> tuple[int, int]:
    """(nodes, edges) of the workspace's graph in PostgreSQL, which every process shares."""
    PostgreSQLSyncConnectionManager.initialize(settings.replace(min_connections=0))
    try:
        return GraphStore(workspace=workspace).counts()
    finally:
        PostgreSQLSyncConnectionManager.close()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summarize(
    progress: Progress,
    elapsed: float,
    connections: dict[int, int],
    exit_code: int,
    left: dict[int, int],
    label: str,
    storages: dict[str, str],
    graph_size: tuple[int, int],
) -> None:
    results = progress.results
    db_ms = [r["db_ms"] for r in results if "db_ms" in r]
    last_stats: dict[int, dict] = {}
    for r in results:
        if "pool" in r:
            last_stats[r["pid"]] = r["pool"]
    moved = [r for r in results if r["kind"] == "workflow resume" and r.get("moved")]
    resumes = sum(r["kind"] == "workflow resume" for r in results)
    print("\nSummary")
    print(f"  models:                {label}")
    print(f"  LightRAG storages:     {', '.join(storages.values())}")
    print(
        f"  knowledge graph:       {graph_size[0]} nodes, {graph_size[1]} edges in "
        "PostgreSQL, shared by every worker process"
    )
    print(
        f"  tasks:                 {len(results)} in {elapsed:.1f} s = "
        f"{len(results) / elapsed:.1f} tasks/s ({dict(progress.done)})"
    )
    print(
        f"  db time per task:      p50 {statistics.median(db_ms):.1f} ms, "
        f"p99 {_percentile(db_ms, 99):.1f} ms (connections held: checkout to return)"
    )
    print(f"  workflows resumed:     {resumes}, {len(moved)} of them in another worker process")
    recalled = [
        r["state"]["follows_up"]
        for r in results
        if r["kind"] == "workflow resume" and r["state"].get("follows_up")
    ]
    from_elsewhere = sum(
        any(fact["pid"] != r["pid"] for fact in r["state"].get("follows_up", []))
        for r in results
        if r["kind"] == "workflow resume"
    )
    print(
        f"  long-term memory:      {len(recalled)} of {resumes} publications recalled the "
        f"author's earlier ones, {from_elsewhere} of them written by another worker process"
    )
    for pid, stats in sorted(last_stats.items()):
        print(
            f"  worker process {pid}: {connections.get(pid, 0)} connection(s) open; pool "
            f"{stats['pool_size']}/{stats['pool_max']}, {stats['requests_num']} checkouts, "
            f"{stats['connections_num']} opened, {stats['requests_timeouts']} timeouts, "
            f"{stats['connections_lost']} lost, waited {stats['requests_wait_ms']} ms"
        )
    print(f"  warm shutdown:         exit code {exit_code}, connections left: {sum(left.values())}")


def demo_models(stand_ins_unless_configured: bool) -> dict[str, str]:
    """The model variables to add for the demo: LLM_BINDING=standin only when the caller
    asked for it (``make demo`` does) and no model variable at all is set, in the
    environment or .env; otherwise nothing, so a half-configured model is never completed
    with stand-ins, and a missing piece is the workers' clear error."""
    env = load_environment()
    chosen = (LLM_BINDING, EMBEDDING_BINDING, OPENAI_API_KEY, LIGHTRAG_FACTORY)
    if not stand_ins_unless_configured or any(env.get(v, "").strip() for v in chosen):
        return {}
    return {LLM_BINDING: STANDIN}


def run(
    docs: int,
    per_task: int,
    queries: int,
    workflows: int,
    concurrency: int,
    stand_ins_unless_configured: bool = False,
    services_dir: Path = Path("run/services"),
) -> int:
    models = demo_models(stand_ins_unless_configured)
    _, label = configured_models({**os.environ, **models})
    print(f"LightRAG models: {label}")
    with tempfile.TemporaryDirectory(prefix="apg-demo-") as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        tmp.chmod(0o755)
        # The local services keep what the demo builds, for `make webui` to show afterwards.
        services = (
            local_services(tmp, "aperag_demo") if named_postgres() else kept_services(services_dir)
        )
        env = {
            **os.environ,
            **stack.enter_context(services),
            **models,
            **{k: os.environ[k] for k in ("REDIS_URL",) if os.environ.get(k)},
            "PYTHONPATH": os.getcwd(),
            "LIGHTRAG_WORKING_DIR": str(tmp / "lightrag"),
        }
        settings = PostgresSettings.from_env(env)
        worker = stack.enter_context(
            celery_worker(env, tmp, pool="prefork", concurrency=concurrency, cwd=os.getcwd())
        )
        print(f"worker: pid {worker.process.pid}, --pool=prefork --concurrency={concurrency}")
        print(
            f"batch: {docs} documents in {-(-docs // per_task)} ingest tasks, {queries} "
            f"queries, {workflows} LangGraph workflows started then resumed"
        )
        progress = Progress()
        workspace = run_batch(worker, docs, per_task, queries, workflows, progress)
        elapsed = time.perf_counter() - progress.started
        graph_size = knowledge_graph_size(settings, workspace)
        storages = {**DEFAULT_STORAGES, **lightrag_storage_kwargs(env)}
        connections = connections_per_process(settings)
        exit_code = worker.warm_shutdown()
        left = wait_for_no_connections(settings, set(connections))
    summarize(progress, elapsed, connections, exit_code, left, label, storages, graph_size)
    if named_postgres():
        print(f"\nSee the graph it built: WORKSPACE={workspace} make webui (same POSTGRES_*).")
    else:
        record_demo(services_dir, workspace, models)
        print(f"\nSee the graph it built in LightRAG's WebUI: make webui, then open {WEBUI_URL}")
    return 0 if exit_code == 0 and not left else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.demo", description=__doc__)
    parser.add_argument("--docs", type=int, default=200)
    parser.add_argument("--docs-per-task", type=int, default=5)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--workflows", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument(
        "--stand-ins-unless-configured",
        action="store_true",
        help="run LightRAG on the offline stand-ins when no model is configured",
    )
    parser.add_argument("--services-dir", type=Path, default=Path("run/services"))
    args = parser.parse_args(argv)
    try:
        return run(
            args.docs,
            args.docs_per_task,
            args.queries,
            args.workflows,
            args.concurrency,
            args.stand_ins_unless_configured,
            args.services_dir,
        )
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
