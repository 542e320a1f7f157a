"""The store's async methods, as a LangGraph graph run with ainvoke calls them: from a new
event loop on every asyncio.run, from many tasks of one loop at once, and from several
threads each running a loop, all on one store instance. Plain asyncio.run in sync tests:
each test owns its loops."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from langgraph.store.base import (
    GetOp,
    InvalidNamespaceError,
    ListNamespacesOp,
    PutOp,
    SearchOp,
)

from .memory_support import (
    IMPLS,
    LetterEmbeddings,
    StoreFactory,
    index_config,
    row_ttl,
    store_in,
    wait_for_clock_tick,
)


@pytest.fixture(params=IMPLS)
def make_store(request, schema, base_settings):
    factory = StoreFactory(request.param, schema, base_settings)
    yield factory
    factory.close()


@pytest.fixture
def emb() -> LetterEmbeddings:
    return LetterEmbeddings()


def test_one_store_serves_successive_event_loops(make_store):
    """Each asyncio.run makes a new loop; the same store keeps working in every one."""
    store = make_store()
    ns = ("loops", "a")
    asyncio.run(store.aput(ns, "k1", {"v": 1}))
    assert asyncio.run(store.aget(ns, "k1")).value == {"v": 1}
    asyncio.run(store.aput(ns, "k2", {"v": 2}))
    found = asyncio.run(store.asearch(("loops",), filter={"v": 2}))
    assert [i.key for i in found] == ["k2"]
    results = asyncio.run(
        store.abatch(
            [
                GetOp(ns, "k1"),
                PutOp(ns, "k3", {"v": 3}),
                SearchOp(("loops",), limit=10),
                ListNamespacesOp(max_depth=1),
                GetOp(ns, "missing"),
            ]
        )
    )
    assert results[0].value == {"v": 1}
    assert results[1] is None
    assert {i.key for i in results[2]} >= {"k1", "k2"}
    assert results[3] == [("loops",)]
    assert results[4] is None
    assert asyncio.run(store.alist_namespaces(prefix=("loops",))) == [ns]
    asyncio.run(store.adelete(ns, "k1"))
    assert asyncio.run(store.aget(ns, "k1")) is None
    assert store.get(ns, "k3").value == {"v": 3}  # the sync API sees the same data


def test_many_tasks_of_one_loop_at_once(make_store):
    """asyncio.gather over dozens of aput, then aget/asearch/alist_namespaces tasks:
    every task gets its own answer, and nothing is lost."""
    store = make_store()
    n = 40

    async def run():
        await asyncio.gather(
            *(
                store.aput(("g", str(i % 4)), f"k{i}", {"i": i, "even": i % 2 == 0})
                for i in range(n)
            )
        )
        gets = asyncio.gather(*(store.aget(("g", str(i % 4)), f"k{i}") for i in range(n)))
        searches = asyncio.gather(
            *(store.asearch(("g", str(j)), limit=n) for j in range(4)),
            store.asearch(("g",), filter={"even": True}, limit=n),
        )
        listing = store.alist_namespaces(prefix=("g",))
        return await asyncio.gather(gets, searches, listing)

    items, searches, listing = asyncio.run(run())
    assert [item.value["i"] for item in items] == list(range(n))
    for j in range(4):
        assert {i.key for i in searches[j]} == {f"k{i}" for i in range(j, n, 4)}
    assert {i.key for i in searches[4]} == {f"k{i}" for i in range(0, n, 2)}
    assert listing == [("g", str(j)) for j in range(4)]

    async def mixed():
        return await asyncio.gather(
            *(store.adelete(("g", str(i % 4)), f"k{i}") for i in range(0, n, 2)),
            *(store.aput(("g", "new"), f"n{i}", {"i": i}) for i in range(10)),
            *(store.abatch([GetOp(("g", str(i % 4)), f"k{i}")]) for i in range(1, n, 2)),
        )

    results = asyncio.run(mixed())
    assert [r[0].value["i"] for r in results[n // 2 + 10 :]] == list(range(1, n, 2))
    assert len(store.search(("g",), limit=100)) == n // 2 + 10


def test_loops_in_several_threads_share_one_store(make_store):
    """Threads each running their own event loop, with gathers inside, on one store."""
    store = make_store()

    def worker(w: int) -> list:
        async def run():
            ns = ("threads", f"w{w}")
            await asyncio.gather(*(store.aput(ns, f"k{i}", {"w": w, "i": i}) for i in range(10)))
            return await asyncio.gather(*(store.aget(ns, f"k{i}") for i in range(10)))

        return asyncio.run(run())

    with ThreadPoolExecutor(4) as pool:
        per_worker = list(pool.map(worker, range(6)))
    for w, items in enumerate(per_worker):
        assert [(i.value["w"], i.value["i"]) for i in items] == [(w, i) for i in range(10)]
    assert len(store.list_namespaces(prefix=("threads",))) == 6


def test_async_vector_search_matches_the_sync_one(make_store, emb):
    """asearch with a query ranks and scores as search does; aput embeds like put."""
    store = make_store(index=index_config(emb, fields=["text"]))
    texts = {"a": "apple pie", "b": "banana bread", "c": "cherry tart", "d": "apple tart"}

    async def fill():
        await asyncio.gather(*(store.aput(("v",), k, {"text": t}) for k, t in texts.items()))
        return await asyncio.gather(
            *(store.asearch(("v",), query=q) for q in ("apple", "bread", "tart"))
        )

    async_results = asyncio.run(fill())
    for q, got in zip(("apple", "bread", "tart"), async_results, strict=True):
        expected = store.search(("v",), query=q)
        assert [r.key for r in got] == [r.key for r in expected]
        assert [r.score for r in got] == pytest.approx([r.score for r in expected])
    assert [r.key for r in async_results[0][:2]] == ["a", "d"]
    assert async_results[1][0].key == "b"


def test_async_reads_refresh_ttl(make_store, schema, admin_conn):
    """aget and asearch refresh the TTL of what they return, like their sync twins."""
    store = make_store(ttl={"default_ttl": 1, "refresh_on_read": True})
    ns = ("attl",)
    asyncio.run(store.aput(ns, "got", {"id": "got"}))
    asyncio.run(store.aput(ns, "found", {"id": "found"}))
    asyncio.run(store.aput(ns, "untouched", {"id": "untouched"}))
    before = {k: row_ttl(admin_conn, schema, ns, k)[0] for k in ("got", "found", "untouched")}
    wait_for_clock_tick(admin_conn, max(before.values()) - timedelta(minutes=1))

    async def read():
        return await asyncio.gather(
            store.aget(ns, "got"), store.asearch(ns, filter={"id": "found"})
        )

    got, found = asyncio.run(read())
    assert got.key == "got" and [i.key for i in found] == ["found"]
    after = {k: row_ttl(admin_conn, schema, ns, k)[0] for k in before}
    assert after["got"] > before["got"]
    assert after["found"] > before["found"]
    assert after["untouched"] == before["untouched"]


def test_async_errors_reach_the_awaiting_task(make_store):
    """A bad namespace or filter raises in the awaiting task; the other tasks of the
    gather and later calls are unaffected."""
    store = make_store()

    async def run():
        return await asyncio.gather(
            store.aput(("ok",), "k", {"v": 1}),
            store.aput(("bad.label",), "k", {"v": 1}),
            store.asearch(("ok",), filter={"v": {"$unknown": 1}}),
            store.abatch([PutOp(("a\x00",), "k", {"v": 1})]),
            return_exceptions=True,
        )

    results = asyncio.run(run())
    assert results[0] is None
    assert isinstance(results[1], InvalidNamespaceError)
    assert isinstance(results[2], ValueError)
    assert isinstance(results[3], InvalidNamespaceError)
    assert asyncio.run(store.aget(("ok",), "k")).value == {"v": 1}
    assert store.list_namespaces() == [("ok",)]


def test_ours_awaits_an_async_embed_function_on_the_callers_loop(schema):
    """Ours: an async-only embed function (a client bound to its event loop, say) is
    awaited on the loop of each asyncio.run that calls aput/asearch, gathers included."""
    words = LetterEmbeddings()
    loops_seen: list = []

    async def embed(texts: list[str]) -> list[list[float]]:
        loop = asyncio.get_running_loop()
        loops_seen.append(loop)
        # awaited through this loop, as a client bound to it would
        return await loop.run_in_executor(None, words.embed_documents, texts)

    store = store_in(schema, index={**index_config(words, fields=["text"]), "embed": embed})

    async def put_and_search(texts: dict[str, str], query: str):
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(store.aput(("ae",), k, {"text": t}) for k, t in texts.items()))
        found = await store.asearch(("ae",), query=query)
        return loop, found

    first_loop, found = asyncio.run(put_and_search({"a": "apple pie", "b": "bread"}, "apple"))
    assert found[0].key == "a" and set(loops_seen) == {first_loop}
    loops_seen.clear()
    second_loop, found = asyncio.run(put_and_search({"c": "cherry tart"}, "cherry"))
    assert found[0].key == "c" and set(loops_seen) == {second_loop}
    assert len(loops_seen) == 2  # one aput, one asearch
