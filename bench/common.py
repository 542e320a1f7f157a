"""Shared pieces of the benchmarks: a server to run against, timing, and the report file."""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from aperag_pg.settings import PostgresSettings
from devtools.services import local_services

REPORT = Path(__file__).resolve().parent.parent / "docs" / "BENCHMARKS.md"


@contextmanager
def benchmark_postgres(database: str = "aperag_bench") -> Iterator[PostgresSettings]:
    """The server named by POSTGRES_* if set, else an embedded PostgreSQL 18 on loopback."""
    with benchmark_services(database, redis=False) as env:
        yield PostgresSettings.from_env({**os.environ, **env})


@contextmanager
def benchmark_services(database: str = "aperag_bench", redis: bool = True) -> Iterator[dict]:
    """The variables of the services to benchmark against (see ``local_services``)."""
    with tempfile.TemporaryDirectory(prefix="apg-bench-") as tmp:
        Path(tmp).chmod(0o755)
        with local_services(Path(tmp), database, redis=redis, report=lambda _line: None) as env:
            yield env


# A backend flushes its statistics at most once a second, or after 10 s idle
# (PGSTAT_IDLE_INTERVAL): wait that long before reading pg_stat_database.
STATS_SETTLE_S = 11.0
_XACT_COMMIT = "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"


def xact_commit(conn) -> int:
    """Committed transactions of ``conn``'s database so far (this read is one more), read
    once every backend has had time to flush its counts."""
    time.sleep(STATS_SETTLE_S)
    with conn.cursor() as cur:
        cur.execute(_XACT_COMMIT)
        return cur.fetchone()[0]


def time_calls(fn: Callable[[], object], n: int, warmup: int = 10) -> list[float]:
    """Seconds taken by each of ``n`` calls of ``fn``, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def concurrent(calls: list[Callable[[], object]], per_thread: int) -> tuple[list[float], float]:
    """Run ``per_thread`` calls of each callable, one thread per callable, all at once.

    Returns every call's latency and the operations per second of the whole run.
    """
    latencies: list[list[float]] = [[] for _ in calls]
    start_gate = threading.Barrier(len(calls) + 1)

    def work(i: int) -> None:
        start_gate.wait()
        for _ in range(per_thread):
            t0 = time.perf_counter()
            calls[i]()
            latencies[i].append(time.perf_counter() - t0)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    start_gate.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    samples = [x for per in latencies for x in per]
    return samples, len(samples) / wall


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(samples: list[float]) -> dict[str, float]:
    """p50, p99 and mean in milliseconds."""
    return {
        "p50": percentile(samples, 50) * 1000,
        "p99": percentile(samples, 99) * 1000,
        "mean": statistics.fmean(samples) * 1000,
    }


def comparison_header(theirs: str) -> list[str]:
    """The header of a side-by-side table: ours against ``theirs``."""
    return [
        f"| operation | ours p50 | {theirs} p50 | p50 ratio | ours p99 | {theirs} p99 "
        f"| ours ops/s | {theirs} ops/s | throughput ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]


def comparison_row(
    label: str, ours: list[float], ours_rate: float, theirs: list[float], theirs_rate: float
) -> tuple[str, float]:
    """One table row from both sides' latencies (seconds) and rates (0: none), and the p50
    ratio (theirs / ours)."""
    o50, t50 = statistics.median(ours) * 1000, statistics.median(theirs) * 1000
    o99, t99 = percentile(ours, 99) * 1000, percentile(theirs, 99) * 1000
    ratio = t50 / o50
    rates = (
        f"{ours_rate:,.0f} | {theirs_rate:,.0f} | {ours_rate / theirs_rate:.1f}x"
        if ours_rate
        else "- | - | -"
    )
    row = f"| {label} | {o50:.3f} | {t50:.3f} | {ratio:.1f}x | {o99:.3f} | {t99:.3f} | {rates} |"
    return row, ratio


def machine_line() -> str:
    return (
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"run {time.strftime('%Y-%m-%d')}"
    )


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section between ``<!-- name -->`` markers in docs/BENCHMARKS.md."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.strip()}\n{end}"
    text = REPORT.read_text() if REPORT.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    text = (
        pattern.sub(lambda _m: block, text)
        if pattern.search(text)
        else f"{text.rstrip()}\n\n{block}\n"
    )
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(text)


def run_benchmark(description: str, run: Callable[[bool], str], section: str) -> None:
    """The command line every benchmark shares: ``--quick`` runs less and writes nothing;
    otherwise the report replaces its ``section`` of docs/BENCHMARKS.md."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="fewer iterations; report not written")
    quick = parser.parse_args().quick
    text = run(quick)
    print(text)
    if not quick:
        write_section(section, text)
