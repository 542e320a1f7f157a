"""Shared pieces of the benchmarks: a server to run against, timing, and the report file."""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import tempfile
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
