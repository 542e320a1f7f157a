"""Soak: a steady mixed load through a real prefork worker, sampled every minute per process.

The worker (2 processes, offline stand-in models, POSTGRES_MAX_CONNECTIONS=3) keeps a
steady mix in flight: LightRAG ingests into two workspaces (a corpus of 400 documents
that comes round again, so the knowledge stops growing and later ingests are the
redelivery path: looked up, skipped), queries, and LangGraph workflows started and
resumed. Every minute, per worker process: resident memory, its open server sessions,
its pool counters, and the p50/p99 latency (send to result) of the tasks done that
minute. The target is flat memory and connections after warm-up; the report gives the
growth per hour fitted over the samples after the first third of the run.

    python -m bench.soak [--minutes N] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from aperag_pg.settings import PostgresSettings
from bench.common import benchmark_services, machine_line, percentile, write_section
from bench.load import IN_FLIGHT, REPO, SteadyLoad, worker_env
from devtools.services import celery_worker, connections_per_process

CORPUS = 400


def resident_mib(pid: int) -> float:
    """VmRSS of ``pid`` in MiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def latest_pool(done: list[tuple[float, str, dict]], pid: int) -> dict[str, int]:
    """The pool counters a task of ``pid`` last reported."""
    for _, _, value in reversed(done):
        if value.get("pid") == pid and "pool" in value:
            return value["pool"]
    return {}


def growth_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (minute, value), per hour."""
    if len(points) < 2:
        return 0.0
    minutes, values = zip(*points, strict=True)
    return statistics.linear_regression(minutes, values).slope * 60


def soak(minutes: float) -> str:
    with tempfile.TemporaryDirectory(prefix="apg-soak-") as tmp, benchmark_services("soak") as svc:
        base = Path(tmp)
        base.chmod(0o755)
        settings = PostgresSettings.from_env({**os.environ, **svc}, dotenv_path=os.devnull)
        services = {
            **settings.to_env(),
            "REDIS_URL": svc.get("REDIS_URL") or os.environ["REDIS_URL"],
        }
        workspaces = [f"soak_{uuid.uuid4().hex[:6]}_{side}" for side in "ab"]
        samples: list[dict] = []
        with celery_worker(worker_env(services, base), base, concurrency=2, cwd=REPO) as worker:
            worker.call("aperag_pg.lightrag_status", workspaces[0], timeout=120)
            load = SteadyLoad(worker, workspaces, corpus_size=CORPUS)
            start = time.monotonic()
            for minute in range(1, int(minutes) + 1):
                load.run_for(start + minute * 60 - time.monotonic())
                samples += _sample(minute, load, settings, start)
            load.drain()
            total = len(load.done)
            assert worker.warm_shutdown(timeout=180) == 0
        left = sum(connections_per_process(settings).values())
    return _report(samples, minutes, total, left)


def _sample(minute: int, load: SteadyLoad, settings: PostgresSettings, start: float) -> list:
    pids = sorted({value["pid"] for _, _, value in load.done if "pid" in value})
    sessions = connections_per_process(settings)
    window = [s for t, s in load.latencies if start + (minute - 1) * 60 <= t < start + minute * 60]
    rows = []
    for pid in pids:
        pool = latest_pool(load.done, pid)
        rows.append(
            {
                "minute": minute,
                "pid": pid,
                "rss": resident_mib(pid),
                "sessions": sessions.get(pid, 0),
                "opened": pool.get("connections_num", 0),
                "lost": pool.get("connections_lost", 0),
                "timeouts": pool.get("requests_timeouts", 0),
                "tasks": len(window),
                "p50": percentile(window, 50) * 1000 if window else 0.0,
                "p99": percentile(window, 99) * 1000 if window else 0.0,
            }
        )
    return rows


def _report(samples: list[dict], minutes: float, total: int, left: int) -> str:
    lines = [
        "## Soak (`bench/soak.py`)",
        "",
        f"{machine_line()}. {minutes:g} minutes; a prefork worker of 2 processes with "
        f"{IN_FLIGHT} tasks always in flight (ingests into two workspaces over a corpus of "
        f"{CORPUS} documents that comes round again, queries, LangGraph workflows started "
        "and resumed). Sampled every minute per worker process; latency is from sending a "
        "task to its result, over all tasks done that minute (both processes).",
        "",
        "| minute | process | RSS (MiB) | server sessions | connections opened | lost | "
        "pool timeouts | tasks that minute | p50 (ms) | p99 (ms) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in samples:
        lines.append(
            f"| {s['minute']} | {s['pid']} | {s['rss']:.1f} | {s['sessions']} | {s['opened']} | "
            f"{s['lost']} | {s['timeouts']} | {s['tasks']} | {s['p50']:.0f} | {s['p99']:.0f} |"
        )
    warm = max(1, int(minutes) // 3)
    lines += ["", f"Growth per hour, fitted over minutes {warm + 1}-{int(minutes)}:", ""]
    for pid in sorted({s["pid"] for s in samples}):
        mine = [s for s in samples if s["pid"] == pid and s["minute"] > warm]
        rss = growth_per_hour([(s["minute"], s["rss"]) for s in mine])
        sessions = growth_per_hour([(s["minute"], s["sessions"]) for s in mine])
        lines.append(
            f"- process {pid}: resident memory {rss:+.1f} MiB/h (from "
            f"{min(s['rss'] for s in mine):.1f} to {max(s['rss'] for s in mine):.1f} MiB), "
            f"server sessions {sessions:+.2f}/h (last: {mine[-1]['sessions']})"
            if mine
            else f"- process {pid}: no samples after warm-up"
        )
    lines += ["", f"{total} tasks, all succeeded; after the warm shutdown {left} sessions left."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long (default 10)")
    parser.add_argument("--quick", action="store_true", help="2 minutes; report not written")
    args = parser.parse_args()
    text = soak(2.0 if args.quick else args.minutes)
    print(text)
    if not args.quick:
        write_section("soak", text)


if __name__ == "__main__":
    main()
