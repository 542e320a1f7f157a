"""Several worker hosts on one PostgreSQL and one Redis, simulated on this machine: each a
prefork worker in namespaces of its own (its hostname, its pids), all consuming one queue,
all through one real PgBouncer in transaction mode with a fixed server pool. A host is
lost at once (SIGKILL to its whole PID namespace), as a machine that dies."""

from __future__ import annotations

import os
import re
import time
import uuid
from contextlib import ExitStack

from devtools.corpus import documents
from devtools.services import celery_worker

from .conftest import REPO_ROOT, worker_environment
from .lightrag_support import new_workspace, status_counts

INGEST = "aperag_pg.lightrag_ingest"


def _hosts_env(pgbouncer, base_settings, redis_url, tmp_path, **extra) -> dict[str, str]:
    """The hosts' environment: PostgreSQL through PgBouncer, the slow stand-in models."""
    routed = pgbouncer.route(base_settings, application_name="hosts")
    return {
        **worker_environment(os.environ, routed, redis_url),
        "LIGHTRAG_WORKING_DIR": str(tmp_path / "rag"),
        "LIGHTRAG_FACTORY": "devtools.slow_models:lightrag_arguments",
        **extra,
    }


def _holders(admin_conn) -> dict[str, str]:
    """Live writer leases: workspace lease name -> holder text (host:pid:boot:pidns:nonce)."""
    with admin_conn.cursor() as cur:
        cur.execute("SELECT to_regclass('aperag_pg_leases') IS NOT NULL")
        if not cur.fetchone()[0]:
            return {}
        cur.execute(
            "SELECT name, holder FROM aperag_pg_leases "
            "WHERE starts_with(name, 'lightrag-writer:') AND expires_at > clock_timestamp()"
        )
        return dict(cur.fetchall())


def _worker_pids(log: str) -> set[int]:
    """The worker processes' pids (in their host's namespace), as their log names them."""
    return {int(pid) for pid in re.findall(r"opened PostgreSQL pool for pid (\d+)", log)}


def _batches(count: int, per: int, start: int) -> list[tuple[list[str], list[str]]]:
    corpus = documents(count * per, start=start)
    return [
        ([t for t, _ in corpus[i : i + per]], [p for _, p in corpus[i : i + per]])
        for i in range(0, len(corpus), per)
    ]


def _server_connections(pgbouncer) -> int:
    """Server connections PgBouncer has open to the database now."""
    return sum(1 for server in pgbouncer.show("SERVERS") if server["database"] != "pgbouncer")


def test_two_hosts_with_one_hostname_take_turns_on_a_workspace(
    pgbouncer, base_settings, redis_url, admin_conn, tmp_path
):
    """Both hosts are named "twin" and have pids of their own (two worker processes on
    one, one on the other): a holder's pid that is free on the other host does not make
    it look gone there. Ingests into one workspace from both hosts take the writer lease
    in turn; none loses it to the other."""
    workspace = new_workspace("twin")
    env = _hosts_env(pgbouncer, base_settings, redis_url, tmp_path, STANDIN_LLM_DELAY_S="0.05")
    queue = f"hosts-{uuid.uuid4().hex[:8]}"
    with ExitStack() as hosts:
        a, b = (
            hosts.enter_context(
                celery_worker(env, tmp_path, concurrency=n, cwd=REPO_ROOT, host="twin", queue=queue)
            )
            for n in (2, 1)
        )
        namespaces = {a.pid_namespace(), b.pid_namespace()}
        tasks = [a.send(INGEST, workspace, texts, paths) for texts, paths in _batches(6, 2, 300)]
        seen: set[str] = set()
        while not all(task.ready() for task in tasks):
            seen.update(_holders(admin_conn).values())
        results = [task.get(timeout=10) for task in tasks]
        logs = a.log_text() + b.log_text()
        a_namespace, b_pids = a.pid_namespace(), _worker_pids(b.log_text())
    assert len(namespaces) == 2
    holders = [holder.split(":") for holder in seen]
    assert {host for host, *_ in holders} == {"twin"}
    assert {pidns for _, _, _, pidns, _ in holders} == namespaces  # both hosts wrote
    # the case that matters: a holder on one host whose pid no process has on the other
    assert any(ns == a_namespace and int(pid) not in b_pids for _, pid, _, ns, _ in holders)
    assert all(r["status_counts"].get("processed") for r in results)
    assert status_counts(admin_conn, workspace) == {"processed": 12}
    assert "LeaseLost" not in logs and "Traceback" not in logs


def test_a_lost_host_s_ingests_are_finished_by_the_others(
    pgbouncer, base_settings, redis_url, admin_conn, tmp_path
):
    """Three hosts ingest into six workspaces and start LangGraph workflows; the host
    holding a writer lease is lost at once. With a visibility timeout of 60 s (the least
    allowed) and a lease TTL of 3 s, the other hosts finish everything within their sum
    plus 30 s: every document processed once, none duplicated, every workflow resumed to
    its end from its checkpoints, every workspace answers a query, no task reported done
    that was not."""
    visibility, ttl = 60, 3
    env = _hosts_env(
        pgbouncer,
        base_settings,
        redis_url,
        tmp_path,
        CELERY_VISIBILITY_TIMEOUT=str(visibility),
        LIGHTRAG_WRITER_LEASE_TTL=str(ttl),
        STANDIN_LLM_DELAY_S="0.05",
    )
    workspaces = [new_workspace(f"lost{i}") for i in range(6)]
    batches = _batches(6, 3, 400)
    threads = [f"lost-{uuid.uuid4().hex[:8]}" for _ in range(4)]
    queue = f"hosts-{uuid.uuid4().hex[:8]}"
    with ExitStack() as stack:
        hosts = [
            stack.enter_context(
                celery_worker(
                    env, tmp_path, concurrency=2, cwd=REPO_ROOT, host=f"host{n}", queue=queue
                )
            )
            for n in range(3)
        ]
        by_namespace = {host.pid_namespace(): host for host in hosts}
        tasks = [
            hosts[0].send(INGEST, workspace, texts, paths)
            for workspace, (texts, paths) in zip(workspaces, batches, strict=True)
        ] + [hosts[0].send("aperag_pg.checkpoint_demo_start", t, "hosts") for t in threads]
        victim = None
        while victim is None:  # a host holding a lease, with its ingest midway
            for holder in _holders(admin_conn).values():
                pidns = holder.split(":")[3]
                if pidns in by_namespace:
                    victim = by_namespace[pidns]
                    break
            assert not all(task.ready() for task in tasks), "every ingest ended first"
        victim.kill_host()
        lost_at = time.monotonic()
        most_servers = 0
        while not all(task.ready() for task in tasks):
            most_servers = max(most_servers, _server_connections(pgbouncer))
            assert time.monotonic() - lost_at < visibility + ttl + 90, "not finished"
        recovered = time.monotonic() - lost_at
        results = [task.get(timeout=10) for task in tasks]
        survivor = next(host for host in hosts if host is not victim)
        resumed = [
            survivor.call("aperag_pg.checkpoint_demo_resume", t, "yes", timeout=120)
            for t in threads
        ]
        answers = [
            survivor.call("aperag_pg.lightrag_query", w, "What does Bob Smith lead?", "local")
            for w in workspaces
        ]
    print(f"host lost -> every ingest finished elsewhere: {recovered:.1f} s")
    assert recovered < visibility + ttl + 30, recovered
    assert 0 < most_servers <= pgbouncer.default_pool_size  # the budget held
    ingested, started = results[: len(workspaces)], results[len(workspaces) :]
    assert len(started) == len(threads)
    for workspace, result in zip(workspaces, ingested, strict=True):
        assert set(result["statuses"].values()) == {"processed"}
        assert status_counts(admin_conn, workspace) == {"processed": 3}
    for state in resumed:
        steps = [entry.split("@")[0] for entry in state["state"]["log"]]
        assert steps == ["draft", "review", "publish"] and state["next"] == []
    assert all(answer["context_chars"] > 0 for answer in answers)
