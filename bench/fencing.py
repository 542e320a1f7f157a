"""The cost of fencing: store writes in a workspace whose writer lease this process holds
(``leases.hold_lease(..., fence=...)``, as every LightRAG writer task does) against the same
writes without the lease, same server, one run.

A fenced write ends its transaction with the lease check and COMMIT in one round trip,
and its BEGIN rides with its first statement: a multi-statement write (``Mode.TRANSACTION``)
costs no round trip more than unfenced (n statements + COMMIT), and a one-statement write
(``Mode.WRITE``) one more than autocommit (it needs a transaction to check the lease
in). Each operation runs ``n`` times per side, the sides alternating in blocks so that
neither always runs first.

    python -m bench.fencing [--quick]
"""

from __future__ import annotations

import statistics
import uuid
from collections.abc import Callable
from contextlib import nullcontext

from aperag_pg.manager import PostgreSQLSyncConnectionManager as Manager
from aperag_pg.stores.base import workspace_fence
from aperag_pg.stores.doc_status import DocStatusStore
from aperag_pg.stores.graph import GraphStore
from aperag_pg.stores.kv import KVStore
from aperag_pg.stores.leases import hold_lease
from bench.common import benchmark_postgres, machine_line, run_benchmark, time_calls

SIDES = ("unfenced", "fenced")


def operations(workspace: str) -> dict[str, tuple[str, Callable[[], object]]]:
    """label -> (cursor mode, one call); each call writes new rows or rewrites its own."""
    kv = KVStore("text_chunks", workspace)
    status = DocStatusStore("doc_status", workspace)
    graph = GraphStore("chunk_entity_relation", workspace)
    for store in (kv, status, graph):
        store.ensure_tables()
    counter = iter(range(10**9))

    def chunk(i: int) -> dict:
        return {
            "tokens": 5,
            "chunk_order_index": i,
            "full_doc_id": "d",
            "content": f"c{i}",
            "file_path": "f.txt",
        }

    def kv_one() -> None:
        kv.upsert({f"c-{next(counter)}": chunk(0)})

    def kv_hundred() -> None:
        n = next(counter)
        kv.upsert({f"b-{n}-{i}": chunk(i) for i in range(100)})

    def kv_thousand() -> None:  # two INSERT statements (500 rows each): a transaction
        n = next(counter)
        kv.upsert({f"t-{n}-{i}": chunk(i) for i in range(1000)})

    def status_one() -> None:
        status.upsert(
            {
                f"doc-{next(counter)}": {
                    "status": "pending",
                    "content_summary": "s",
                    "content_length": 1,
                    "file_path": "f.txt",
                }
            }
        )

    def node() -> None:
        n = next(counter)
        graph.upsert_node(f"n{n}", {"entity_id": f"n{n}", "entity_type": "thing"})

    def edge() -> None:
        n = next(counter)
        graph.upsert_edge(f"n{n}", f"n{n + 1}", {"weight": 1.0})

    return {
        "KV upsert, 1 record": ("WRITE", kv_one),
        "KV upsert, 100 records": ("WRITE", kv_hundred),
        "KV upsert, 1,000 records": ("TRANSACTION", kv_thousand),
        "doc-status upsert, 1 record": ("WRITE", status_one),
        "graph upsert_node": ("WRITE", node),
        "graph upsert_edge": ("WRITE", edge),
    }


def measure(n: int, blocks: int) -> dict[str, dict[str, list[float]]]:
    results: dict[str, dict[str, list[float]]] = {}
    for side in SIDES:  # untimed: tables, the lease table and first-call costs
        for _mode, call in _run_side(side, lambda ops: ops, n=0).values():
            call()
    for block in range(blocks):
        order = SIDES if block % 2 == 0 else SIDES[::-1]
        for side in order:
            timed = _run_side(side, lambda ops: ops, n=n // blocks)
            for label, samples in timed.items():
                results.setdefault(label, {}).setdefault(side, []).extend(samples)
    return results


def _run_side(side: str, _select, n: int) -> dict:
    """Time every operation ``n`` times in a fresh workspace, under the workspace's writer
    lease when ``side`` is fenced; with n=0, return the operations (warm-up)."""
    workspace = f"fence_{uuid.uuid4().hex[:8]}"
    ops = operations(workspace)
    schema = Manager.settings().schema
    held = (
        hold_lease(f"bench:{workspace}", fence=workspace_fence(schema, workspace))
        if side == "fenced"
        else nullcontext()
    )
    with held:
        if n == 0:
            for _mode, call in ops.values():
                call()
            return ops
        return {label: time_calls(call, n, warmup=5) for label, (_mode, call) in ops.items()}


def report(results: dict[str, dict[str, list[float]]], n: int) -> str:
    modes = {label: mode for label, (mode, _) in operations_labels().items()}
    lines = [
        "## Fencing: store writes under a workspace's writer lease (`bench/fencing.py`)",
        "",
        f"{machine_line()}; one PostgreSQL 18 server, loopback TCP; {n:,} calls per operation "
        "and side, the sides alternating in blocks. fenced = inside `hold_lease(..., fence="
        "workspace_fence(...))`, as every LightRAG writer task runs its storages' writes; "
        "unfenced = the same calls without it.",
        "",
        "| operation | mode | round trips unfenced -> fenced | unfenced p50 ms | fenced p50 ms "
        "| fenced - unfenced |",
        "|---|---|---|---:|---:|---:|",
    ]
    trips = {"TRANSACTION": "n+1 -> n+1", "WRITE": "1 -> 2"}
    for label, sides in results.items():
        plain, fenced = (statistics.median(sides[s]) * 1000 for s in SIDES)
        lines.append(
            f"| {label} | {modes[label]} | {trips[modes[label]]} | {plain:.3f} | "
            f"{fenced:.3f} | {fenced - plain:+.3f} ms ({fenced / plain:.2f}x) |"
        )
    return "\n".join(lines)


def operations_labels() -> dict[str, tuple[str, Callable[[], object]]]:
    return operations(f"fence_{uuid.uuid4().hex[:8]}")


def run(quick: bool) -> str:
    n, blocks = (200, 2) if quick else (2000, 4)
    with benchmark_postgres() as settings:
        Manager.initialize(settings)
        try:
            results = measure(n, blocks)
            text = report(results, n)
        finally:
            Manager.close()
    return text


if __name__ == "__main__":
    run_benchmark(__doc__.splitlines()[0], run, "fencing")
