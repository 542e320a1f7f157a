"""LightRAG's query path on 200 ingested documents: aperag_pg's storages against LightRAG's
asyncpg storages, same server, one run.

Both sides ingest the same documents (as ``bench/ingest.py`` does, untimed, but one document
per ``ainsert``: LightRAG merges the entity descriptions of concurrently processed documents
in whatever order they finish, so two batched ingests store descriptions of other lengths)
into fresh workspaces, then answer the same questions in every query mode with
``QueryParam(mode=mode, only_need_context=True)``: LightRAG builds the context (keywords,
vector searches, graph reads, chunk reads) and returns before any LLM answer, so what is
timed is the storages and the stand-in embedding of the question. One long-lived event loop.

  ours:     the PGSync* storages;
  asyncpg:  LightRAG's PGKV/PGVector/PGDocStatus storages and PGTableGraphStorage.

Three passes over the questions:

  1. priming, untimed: every question once per mode and side. LightRAG caches a question's
     keywords (stand-in LLM) in its KV storage; after this pass every timed query reads them
     from that cache, as a repeated question does, instead of timing the LLM;
  2. timed: per mode, per question, both sides in turn (which one first alternates); the
     contexts of the two sides must have the same length, and are compared order-blind
     (sorted lines, as aperag_pg.lightrag.tasks.context_digest compares them), with and
     without the entities' and relations' descriptions;
  3. counted, one side at a time: the whole timed workload again, for the server's
     committed transactions (pg_stat_database.xact_commit of the benchmark database, read
     on a separate connection once every backend has flushed its statistics) and this
     process's CPU time.

    python -m bench.query [--quick]
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from importlib.metadata import version

import psycopg2

from aperag_pg.lightrag.tasks import context_digest
from aperag_pg.settings import PostgresSettings
from bench.common import STATS_SETTLE_S, machine_line, percentile, run_benchmark, xact_commit
from bench.ingest import (
    CHUNK_BYTES,
    VECTOR_DIM,
    checked,
    embedding_func,
    fresh_lightrag,
    insert_all,
    lightrag_postgres,
)
from devtools.corpus import CITIES, COMPANIES, PEOPLE, TOPICS, documents

MODES = ("naive", "local", "global", "hybrid", "mix")
SIDES = ("ours", "asyncpg")


def questions(count: int) -> list[str]:
    """``count`` distinct questions about the corpus's people, companies, cities and topics."""
    kinds = (
        lambda i: f"What does {PEOPLE[i % len(PEOPLE)]} lead at {COMPANIES[i % len(COMPANIES)]}?",
        lambda i: (
            f"Which partners does {COMPANIES[i % len(COMPANIES)]} work with on "
            f"{TOPICS[i % len(TOPICS)]}?"
        ),
        lambda i: f"Which companies plan to open an office in {CITIES[i % len(CITIES)]}?",
    )
    asked = [kinds[i % len(kinds)](i // len(kinds)) for i in range(count)]
    if len(set(asked)) != count:
        raise ValueError(f"only {len(set(asked))} distinct questions of {count}")
    return asked


def warmup_questions() -> list[str]:
    """Questions asked before the timed ones, none of them among those."""
    return [f"Who reviews the results of {person} every quarter?" for person in PEOPLE[-3:]]


def knowledge_digest(context: str) -> str:
    """context_digest of the context without the descriptions of its entities and relations:
    the same entities, relations and chunks, whatever their descriptions say."""
    lines = []
    for line in context.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            item = None
        if isinstance(item, dict):
            item.pop("description", None)
            line = json.dumps(item, sort_keys=True)
        lines.append(line)
    return context_digest("\n".join(lines))


async def ask(rag, question: str, mode: str) -> tuple[float, str]:
    """Seconds taken and the context LightRAG built for ``question`` in ``mode``."""
    from lightrag import QueryParam

    param = QueryParam(mode=mode, only_need_context=True)
    start = time.perf_counter()
    context = await rag.aquery(question, param=param)
    return time.perf_counter() - start, context or ""


async def measure(settings: PostgresSettings, docs: int, asked: list[str], rounds: int) -> dict:
    embedding = embedding_func()
    corpus = documents(docs)
    async with (
        fresh_lightrag("ours", embedding, "query") as ours,
        fresh_lightrag("asyncpg", embedding, "query") as theirs,
    ):
        rags = {"ours": ours, "asyncpg": theirs}
        rows = {}
        for side, rag in rags.items():  # untimed
            await insert_all(rag, corpus, batch_size=1)
            rows[side] = await checked(rag, side, docs)

        for mode in MODES:  # 1. priming (and warm-up), untimed
            for question in warmup_questions() + asked:
                for rag in rags.values():
                    await ask(rag, question, mode)

        latencies = {(side, mode): [] for side in SIDES for mode in MODES}
        chars = {mode: [] for mode in MODES}
        mismatches: list[str] = []
        descriptions: list[str] = []  # the same knowledge, descriptions worded otherwise
        for mode in MODES:  # 2. timed, sides alternating
            for n, question in enumerate(asked * rounds):
                order = SIDES if n % 2 == 0 else SIDES[::-1]
                contexts = {}
                for side in order:
                    seconds, contexts[side] = await ask(rags[side], question, mode)
                    latencies[side, mode].append(seconds)
                mine, yours = contexts["ours"], contexts["asyncpg"]
                if n < len(asked):
                    chars[mode].append(len(mine))
                    pair = f"{mode}, {question!r}"
                    if len(mine) != len(yours) or knowledge_digest(mine) != knowledge_digest(yours):
                        mismatches.append(
                            f"{pair}: {len(mine):,} chars (ours) vs {len(yours):,} (asyncpg)"
                            + ("" if len(mine) != len(yours) else ", other lines")
                        )
                    elif context_digest(mine) != context_digest(yours):
                        descriptions.append(pair)

        counted = {}
        stats = psycopg2.connect(**settings.connect_kwargs("querybench-stats"))
        try:
            stats.autocommit = True
            before = xact_commit(stats)
            for side in SIDES:  # 3. counted, one side at a time
                cpu = time.process_time()
                for mode in MODES:
                    for question in asked * rounds:
                        await ask(rags[side], question, mode)
                cpu = time.process_time() - cpu
                after = xact_commit(stats)
                counted[side] = {"xacts": after - before - 1, "cpu": cpu}  # - the read
                before = after
            idle = xact_commit(stats) - before - 1  # the server's own, over one wait
        finally:
            stats.close()

    return {
        "rows": rows,
        "latencies": latencies,
        "chars": chars,
        "mismatches": mismatches,
        "descriptions": descriptions,
        "counted": counted,
        "idle": idle,
        "queries": len(MODES) * len(asked) * rounds,
    }


def report(results: dict, docs: int, asked: int, rounds: int) -> str:
    latencies, counted, queries = results["latencies"], results["counted"], results["queries"]
    rows = results["rows"]["ours"]
    lines = [
        f"## LightRAG queries on {docs:,} documents at {VECTOR_DIM:,} dimensions "
        "(`bench/query.py`)",
        "",
        f"{machine_line()}; one PostgreSQL 18 + pgvector server, loopback TCP; lightrag-hku "
        f"{version('lightrag-hku')} with the offline stand-in LLM and tokenizer and stand-in "
        f"embeddings of {VECTOR_DIM:,} dimensions (HNSW index), chunks of {CHUNK_BYTES} "
        f"bytes; both sides ingested the same {docs:,} documents ({rows['chunks']:,} chunk, "
        f"{rows['entities']:,} entity and {rows['relationships']:,} relation vectors), "
        "untimed, into fresh workspaces; one long-lived event loop. Each mode: "
        f"{asked} distinct questions x {rounds} {'rounds' if rounds > 1 else 'round'}, "
        "`aquery` with `QueryParam(mode=..., only_need_context=True)` and LightRAG's "
        "default top-k, keywords read from LightRAG's cache (a priming pass asked every "
        "question first), sides alternating per question. ours = the PGSync* storages; "
        "asyncpg = LightRAG's PGKVStorage, PGVectorStorage, PGDocStatusStorage and "
        "PGTableGraphStorage. Times in ms; ratio = asyncpg p50 / ours p50.",
        "",
        "| mode | ours p50 | asyncpg p50 | ratio | ours p99 | asyncpg p99 | "
        "context chars (median) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    ratios = []
    for mode in MODES:
        o, t = latencies["ours", mode], latencies["asyncpg", mode]
        o50, t50 = statistics.median(o) * 1000, statistics.median(t) * 1000
        ratios.append(t50 / o50)
        lines.append(
            f"| {mode} | {o50:.2f} | {t50:.2f} | {t50 / o50:.2f}x | "
            f"{percentile(o, 99) * 1000:.2f} | {percentile(t, 99) * 1000:.2f} | "
            f"{statistics.median(results['chars'][mode]):,.0f} |"
        )
    lines += [
        "",
        f"The whole query workload ({queries:,} queries), one side at a time:",
        "",
        "| side | server transactions | per query | client CPU s | CPU ms per query |",
        "|---|---:|---:|---:|---:|",
    ]
    for side in SIDES:
        c = counted[side]
        lines.append(
            f"| {side} | {c['xacts']:,} | {c['xacts'] / queries:.1f} | {c['cpu']:.2f} | "
            f"{c['cpu'] / queries * 1000:.2f} |"
        )
    ours, theirs = counted["ours"], counted["asyncpg"]
    mismatches, descriptions = results["mismatches"], results["descriptions"]
    lines += [
        "",
        "Server transactions = the delta of pg_stat_database.xact_commit for the benchmark "
        f"database (read on a separate connection, {STATS_SETTLE_S:.0f} s after the last "
        f"query, its own read taken off); the server committed {results['idle']:,} of its "
        "own over one such idle wait. Client CPU = this process's CPU time, all threads. "
        f"asyncpg / ours: p50 **{min(ratios):.2f}x-{max(ratios):.2f}x** by mode, server "
        f"transactions **{theirs['xacts'] / ours['xacts']:.2f}x**, client CPU "
        f"**{theirs['cpu'] / ours['cpu']:.2f}x**.",
        "",
        (
            f"Contexts: all {asked * len(MODES)} (question, mode) pairs gave contexts of the "
            "same length, with the same entities, relations and chunks, on both sides"
            if not mismatches
            else f"Contexts: **{len(mismatches)} of {asked * len(MODES)}** (question, mode) "
            "pairs differ between the sides in length or in their entities, relations or "
            "chunks: " + "; ".join(mismatches[:10]) + ("; ..." if len(mismatches) > 10 else "")
        )
        + (
            f"; in {len(descriptions)} of the pairs an entity's or relation's description "
            "lists the same fragments in another order (LightRAG's merge at ingest, not "
            "the query)."
            if descriptions
            else ("; every line the same (in any order)." if not mismatches else ".")
        ),
    ]
    return "\n".join(lines)


def run(quick: bool) -> str:
    docs, asked, rounds = (40, 6, 1) if quick else (200, 24, 3)
    with lightrag_postgres() as settings:
        results = asyncio.run(measure(settings, docs, questions(asked), rounds))
    return report(results, docs, asked, rounds)


if __name__ == "__main__":
    run_benchmark(__doc__.splitlines()[0], run, "query")
