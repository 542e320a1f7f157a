"""Rival batches on the same items, from several threads for seconds at a time: every call
succeeds. Writes and TTL refreshes lock the items they touch in one global order (prefix,
key, byte order), so they wait for each other instead of deadlocking; the one case no
order covers (a row made after the statement's snapshot) is run again and counted."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

import pytest
from langgraph.store.base import GetOp, PutOp, SearchOp

from aperag_pg.memory import PGSyncStore

from .memory_support import LetterEmbeddings, index_config, store_in

THREADS = 4
SECONDS = 5.0


@pytest.fixture
def store(schema) -> PGSyncStore:
    return store_in(
        schema,
        index=index_config(LetterEmbeddings(), fields=["text"]),
        ttl={"default_ttl": 60, "refresh_on_read": True},
    )


def hammer(work: Callable[[random.Random], None]) -> tuple[int, list[BaseException]]:
    """``work`` over and over from THREADS threads started together, for SECONDS each:
    (how many calls, the errors of any kind)."""
    start = threading.Barrier(THREADS, timeout=60)
    errors: list[BaseException] = []
    calls = [0] * THREADS

    def run(n: int) -> None:
        rng = random.Random(n)
        start.wait()
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline:
            try:
                work(rng)
            except Exception as exc:  # any error fails the test, so collect them all
                errors.append(exc)
            calls[n] += 1

    threads = [threading.Thread(target=run, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(calls), errors


def test_a_delete_and_a_put_in_opposite_orders_never_deadlock(store):
    """[delete a, put b] against [delete b, put a]: PostgresStore never deadlocks on it,
    ours gave raw DeadlockDetected about once a second (each kind of write was sorted on
    its own, and deletes came first). Items deleted and made again by rivals are the case
    that is retried, so retries may be counted here, never an error."""
    ns = ("race",)
    store.batch([PutOp(ns, key, {"text": key}) for key in ("a", "b")])
    batches = [
        [PutOp(ns, "a", None), PutOp(ns, "b", {"text": "b wins"})],
        [PutOp(ns, "b", None), PutOp(ns, "a", {"text": "a wins"})],
    ]
    calls, errors = hammer(lambda rng: store.batch(rng.choice(batches)))
    assert errors == []
    assert calls >= THREADS


def test_reads_refreshing_overlapping_ttls_never_deadlock(store):
    """Searches and gets refresh the TTLs of overlapping items (the join decided the lock
    order of the refresh), while puts rewrite them in random batch order. The items all
    exist throughout, so lock order alone keeps them apart: nothing is retried."""
    ns = ("shared",)
    keys = [f"k{i:02d}" for i in range(24)]
    store.batch([PutOp(ns, key, {"text": key, "n": i}) for i, key in enumerate(keys)])

    def work(rng: random.Random) -> None:
        kind = rng.randrange(4)
        if kind == 0:
            store.batch([SearchOp(ns, limit=rng.randint(5, 24), offset=rng.randint(0, 8))])
        elif kind == 1:
            store.batch([SearchOp(ns, query=rng.choice(keys), limit=rng.randint(5, 24))])
        elif kind == 2:
            store.batch([GetOp(ns, key) for key in rng.sample(keys, 12)])
        else:
            chosen = rng.sample(keys, 6)
            store.batch([PutOp(ns, key, {"text": key, "n": rng.random()}) for key in chosen])

    calls, errors = hammer(work)
    assert errors == []
    assert calls >= THREADS
    assert store.deadlock_retries == 0
    assert {item.key for item in store.search(ns, limit=100)} == set(keys)


def test_churn_of_deletes_and_puts_of_many_items_never_fails(store):
    """Items deleted and made again by rival batches of several, each in random order:
    every call succeeds (the wait that no order can prevent, on a row made after the
    statement's snapshot, is retried and counted in ``deadlock_retries``)."""
    ns = ("churn",)
    keys = [f"k{i}" for i in range(8)]

    def work(rng: random.Random) -> None:
        chosen = rng.sample(keys, 4)
        ops = [PutOp(ns, key, None if rng.random() < 0.4 else {"text": key}) for key in chosen]
        ops.append(SearchOp(ns, limit=8))
        store.batch(ops)

    calls, errors = hammer(work)
    assert errors == []
    assert calls >= THREADS
