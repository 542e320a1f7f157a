"""Writers of the same vector ids at once, from threads and from two processes: every call
ends in success or one of the package's errors, never a raw UniqueViolation,
DeadlockDetected or any other driver error, and every id ends as one of the versions
written to it, its vector and content from the same call.

Each written version names its writer and call in its content, and its vector is made
from that name, so a row whose vector and content came from different calls shows."""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import random
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg2
import pytest
from psycopg2 import sql

from aperag_pg import locks
from aperag_pg.errors import AperagPGError, TransientFailure
from aperag_pg.manager import PostgreSQLSyncConnectionManager as Manager
from aperag_pg.settings import PostgresSettings
from aperag_pg.stores import vector as vector_module
from aperag_pg.stores.vector import VectorStore, compute_mdhash_id
from aperag_pg.stores.vector_tables import vector_table_name

from .polling import lock_waiters, wait_until

DIM = 8
SECONDS = 5.0  # each test's writers run this long
NAMES = [f"Entity {i}" for i in range(6)]  # few names: many writers of each id


def vector_of(content: str) -> list[float]:
    """The vector a version's content determines (float32-exact)."""
    digest = hashlib.sha256(content.encode()).digest()
    return [float(b) - 127.5 for b in digest[:DIM]]


def version(writer: str, call: int, key: str) -> str:
    return f"{writer}|{call}|{key}"


def entity_row(name: str, content: str) -> dict:
    return {
        "entity_name": name,
        "content": content,
        "source_id": "chunk-1<SEP>chunk-2",
        "file_path": "f.txt",
        "__vector__": vector_of(content),
    }


def relation_row(src: str, tgt: str, content: str) -> dict:
    return {
        "src_id": src,
        "tgt_id": tgt,
        "content": content,
        "source_id": "chunk-1",
        "file_path": "f.txt",
        "__vector__": vector_of(content),
    }


def relation_id(src: str, tgt: str) -> str:
    return compute_mdhash_id(src + tgt, prefix="rel-")


RELATIONS = [(a, b) for a in NAMES for b in NAMES if a < b]


def stores(suffix: str, workspace: str) -> tuple[VectorStore, VectorStore]:
    """An entity and a relation store of one workspace, on tables named by ``suffix``."""
    return (
        VectorStore("entities", vector_table_name("entities", suffix, DIM), DIM, 0.2, workspace),
        VectorStore(
            "relationships", vector_table_name("relationships", suffix, DIM), DIM, 0.2, workspace
        ),
    )


def entity_id(name: str) -> str:
    return compute_mdhash_id(name, "ent-")


def upsert_entities(entities: VectorStore, writer: str, call: int, rng: random.Random) -> None:
    """An upsert of a random batch of the entities (LightRAG's ids for their names)."""
    names = rng.sample(NAMES, rng.randint(1, len(NAMES)))
    entities.upsert(
        {entity_id(n): entity_row(n, version(writer, call, entity_id(n))) for n in names}
    )


def one_call(entities: VectorStore, relations: VectorStore, writer: str, call: int, rng) -> None:
    """One random write: an upsert of a random batch of entities or relations, or one of
    the deletes (by ids, by entity name, the relations of an entity)."""
    choice = rng.random()
    if choice < 0.35:
        upsert_entities(entities, writer, call, rng)
    elif choice < 0.7:
        pairs = rng.sample(RELATIONS, rng.randint(1, len(RELATIONS)))
        relations.upsert(
            {
                relation_id(a, b): relation_row(a, b, version(writer, call, relation_id(a, b)))
                for a, b in pairs
            }
        )
    elif choice < 0.8:
        entities.delete([entity_id(n) for n in rng.sample(NAMES, 2)])
    elif choice < 0.9:
        entities.delete_entity(rng.choice(NAMES))
    else:
        relations.delete_entity_relation(rng.choice(NAMES))


def write_for(
    seconds: float, writer: str, call: Callable[[int, random.Random], None], seed: int
) -> tuple[int, list[str]]:
    """Calls ``call`` until ``seconds`` are over: (calls made, the errors, as tracebacks).
    Any exception counts as an error: the package's ones would be acceptable in principle,
    but none is expected here (nothing is transient, every input is valid)."""
    rng = random.Random(seed)
    deadline = time.monotonic() + seconds
    calls, errors = 0, []
    while time.monotonic() < deadline:
        try:
            call(calls, rng)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            kind = "package" if isinstance(exc, AperagPGError) else "driver/other"
            errors.append(f"{writer} ({kind}): {''.join(traceback.format_exception(exc))}")
        calls += 1
    return calls, errors


def check_final_rows(store: VectorStore, keys: list[str], calls_by_writer: dict[str, int]):
    """Every stored row is a version some writer's call wrote to that id, whole."""
    rows = {key: row for key, row in zip(keys, store.get_by_ids(keys), strict=True) if row}
    vectors = store.get_vectors_by_ids(list(rows))
    for key, row in rows.items():
        writer, call, written_key = row["content"].rsplit("|", 2)
        assert written_key == key, row
        assert int(call) < calls_by_writer[writer], row
        assert vectors[key] == vector_of(row["content"]), f"{key}: vector of another version"
    return rows


@pytest.fixture
def pool(base_settings: PostgresSettings) -> Iterator[type[Manager]]:
    Manager.initialize(base_settings.replace(max_connections=8))
    yield Manager
    Manager.close()


def created(suffix: str) -> tuple[VectorStore, VectorStore]:
    pair = stores(suffix, f"ws_{suffix}")
    for store in pair:
        store.ensure_tables()
    return pair


def check_outcome(entities, relations, outcomes: dict[str, tuple[int, list[str]]]) -> int:
    """No call failed and every stored row is whole; returns how many entities are stored."""
    errors = [error for _, found in outcomes.values() for error in found]
    calls = {writer: made for writer, (made, _) in outcomes.items()}
    assert not errors, f"{len(errors)} errors in {sum(calls.values())} calls; first:\n{errors[0]}"
    check_final_rows(relations, [relation_id(a, b) for a, b in RELATIONS], calls)
    return len(check_final_rows(entities, [entity_id(n) for n in NAMES], calls))


Call = Callable[[VectorStore, VectorStore, str, int, random.Random], None]


def in_threads(call: Call, suffix: str, threads: int = 6) -> int:
    """``threads`` writers make ``call``s for SECONDS on the same ids; all must succeed.
    Returns how many entities are stored at the end."""
    entities, relations = created(suffix)
    writers = [f"t{i}" for i in range(threads)]

    def write(writer: str, seed: int) -> tuple[int, list[str]]:
        return write_for(
            SECONDS, writer, lambda n, rng: call(entities, relations, writer, n, rng), seed
        )

    with ThreadPoolExecutor(threads) as executor:
        futures = {w: executor.submit(write, w, i) for i, w in enumerate(writers)}
        outcomes = {w: f.result() for w, f in futures.items()}
    return check_outcome(entities, relations, outcomes)


def test_upserts_of_the_same_ids_from_many_threads_never_fail(pool):
    """Six threads upsert overlapping batches of the same ids for 5 s: the stored rows of
    an id are replaced, never a UniqueViolation (145-391 of them in 6 s before), nor a
    deadlock."""

    def upsert(entities, _relations, writer, number, rng) -> None:
        upsert_entities(entities, writer, number, rng)

    assert in_threads(upsert, f"conc{uuid.uuid4().hex[:6]}") == len(NAMES)  # none deleted


def test_upserts_and_deletes_of_the_same_ids_from_many_threads_never_fail(pool):
    """Six threads mix upserts with delete, delete_entity and delete_entity_relation of
    the same ids for 5 s: no error of any kind (no deadlock either)."""
    in_threads(one_call, f"mix{uuid.uuid4().hex[:6]}")


def _writer_process(settings: PostgresSettings, suffix: str, writer: str, barrier, results):
    """In a forked process: open a pool, wait for the other process, then write."""
    try:
        Manager.initialize(settings)
        entities, relations = stores(suffix, f"ws_{suffix}")
        barrier.wait(timeout=60)
        seed = int(writer[1:])
        call = lambda number, rng: one_call(entities, relations, writer, number, rng)  # noqa: E731
        outcome = write_for(SECONDS, writer, call, seed)
        results.put((writer, outcome))
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        results.put((writer, (0, [f"{writer}: {traceback.format_exc()}"])))
        raise SystemExit(1) from exc
    finally:
        Manager.close()


def test_upserts_and_deletes_of_the_same_ids_from_two_processes_never_fail(pool):
    suffix = f"proc{uuid.uuid4().hex[:6]}"
    entities, relations = created(suffix)
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(2), context.Queue()
    settings = pool.settings()
    Manager.close()  # no pool crosses the fork
    processes = [
        context.Process(target=_writer_process, args=(settings, suffix, w, barrier, results))
        for w in ("p0", "p1")
    ]
    for process in processes:
        process.start()
    try:
        outcomes = dict(results.get(timeout=120) for _ in processes)
    finally:
        for process in processes:
            process.join(60)
    Manager.initialize(settings)
    check_outcome(entities, relations, outcomes)


def test_a_second_upsert_of_an_id_waits_for_the_first_and_replaces_its_row(
    pool, admin_conn, caplog
):
    """The defect, step by step: a rival holds the id's upsert lock and has replaced the
    row (its own new row uncommitted). Our upsert waits for the lock, then its delete sees
    the rival's committed row: replaced at the first attempt, its create_time kept."""
    store = created(f"one{uuid.uuid4().hex[:6]}")[0]
    key = entity_id("Alice")
    store.upsert({key: entity_row("Alice", "first")})
    first = store.get_by_id(key)
    rival = psycopg2.connect(**pool.settings().connect_kwargs(application_name="rival"))
    try:
        with rival.cursor() as cur:  # what a rival upsert does, held open midway
            cur.execute(vector_module._ROW_LOCKS, store._row_lock_params([key]))
            cur.execute(
                sql.SQL("DELETE FROM {} WHERE workspace = %s AND id = %s").format(
                    store.table(store.table_name)
                ),
                (store.workspace, key),
            )
            cur.execute(
                sql.SQL(
                    "INSERT INTO {} (workspace, id, entity_name, content, content_vector, "
                    "create_time) VALUES (%s, %s, 'Alice', 'rival', %s::vector, %s)"
                ).format(store.table(store.table_name)),
                (store.workspace, key, str(vector_of("rival")), first["create_time"]),
            )
        caplog.set_level(logging.DEBUG, logger=vector_module.__name__)
        with ThreadPoolExecutor(1) as executor:
            upsert = executor.submit(store.upsert, {key: entity_row("Alice", "second")})
            wait_until(lambda: advisory_waiters(admin_conn), "the upsert waits for the rival")
            rival.commit()
            upsert.result(timeout=60)
    finally:
        rival.close()
    assert not [r for r in caplog.records if "again" in r.getMessage()]  # no retry
    got = store.get_by_id(key)
    assert got["content"] == "second" and got["create_time"] == first["create_time"]
    assert store.get_vectors_by_ids([key])[key] == vector_of("second")


def advisory_waiters(conn) -> int:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = 'advisory' "
            "AND classid = %s::bigint",
            (locks.VECTOR_ROW,),
        )
        return cur.fetchone()[0]


def test_a_writer_without_row_locks_that_keeps_winning_is_a_transient_failure(
    pool, admin_conn, monkeypatch
):
    """A writer that takes no row locks (LightRAG's own storage) commits an id between
    our delete and our COPY on every attempt: the upsert gives up with the package's
    retried TransientFailure naming the cause, not the driver's UniqueViolation."""
    store = created(f"foreign{uuid.uuid4().hex[:6]}")[0]
    monkeypatch.setattr(vector_module, "_REPLACE_ATTEMPTS", 1)
    rival = psycopg2.connect(**pool.settings().connect_kwargs(application_name="rival"))
    try:
        with rival.cursor() as cur:
            cur.execute(
                sql.SQL(
                    "INSERT INTO {} (workspace, id, entity_name, content, content_vector) "
                    "VALUES (%s, 'e1', 'Alice', 'rival', %s::vector)"
                ).format(store.table(store.table_name)),
                (store.workspace, str(vector_of("rival"))),
            )
        with ThreadPoolExecutor(1) as executor:
            upsert = executor.submit(store.upsert, {"e1": entity_row("Alice", "ours")})
            wait_until(lambda: lock_waiters(admin_conn), "the COPY waits for the rival")
            rival.commit()
            with pytest.raises(TransientFailure, match="does not take aperag_pg's row locks"):
                upsert.result(timeout=60)
    finally:
        rival.close()
    assert store.get_by_id("e1")["content"] == "rival"
