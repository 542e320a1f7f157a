"""DocStatusStore against a real PostgreSQL: LightRAG 1.5.7's doc-status semantics.

The scheduling cases follow LightRAG's own shared contract suite
(tests/kg/test_doc_status_scheduling_contract.py); the rest pin PGDocStatusStorage's
behaviour: listing, lookups, source conflicts, targeted updates and input checks. The
returned plain data is fed to LightRAG's real dataclasses, so a shape mismatch fails here.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import psycopg2
import pytest
from lightrag.base import (
    CURSOR_END,
    CURSOR_START,
    CursorAfter,
    DocProcessingStatus,
    DocSchedulingRecord,
    DocStatus,
    SourceConflictRepairResult,
    SourceConflictSummary,
)
from lightrag.kg.postgres_impl import ClientManager, PGDocStatusStorage, PostgreSQLDB

from aperag_pg.errors import (
    DocStatusNotFound,
    InvalidInput,
    MalformedCursor,
    SourceConflictChanged,
    UnusableDocStatusRow,
)
from aperag_pg.stores.doc_status import SORT_FIELDS, UPDATABLE_COLUMNS, DocStatusStore
from aperag_pg.stores.doc_status_rows import conflict_fingerprint, decode_cursor, encode_cursor

_BASE_TIME = datetime(2026, 1, 1, tzinfo=timezone.utc)
HOSTILE = [
    "it's",
    'say "hi"',
    "a; DROP TABLE lightrag_doc_status; --",
    "\\x00 is not a NUL",
    "naïve-文档-📄",
    "$1 %s %(x)s {table}",
    "",
]


def _stamp(offset_seconds: float) -> str:
    return (_BASE_TIME + timedelta(seconds=offset_seconds)).isoformat()


def _row(
    *,
    status: DocStatus | str = DocStatus.PENDING,
    created_at: str | None = None,
    file_path: str = "doc.md",
    summary: str = "body",
    **extra,
) -> dict:
    """A doc_status record shaped as LightRAG's pipeline writes one; created_at=None omits it."""
    row = {
        "status": getattr(status, "value", status),
        "updated_at": created_at or _stamp(0),
        "content_summary": summary[:32],
        "content_length": len(summary),
        "file_path": file_path,
        "chunks_list": [],
        "chunks_count": 0,
        "track_id": "track-1",
    }
    if created_at is not None:
        row["created_at"] = created_at
    row.update(extra)
    return row


def _workspace() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make_store(manager):
    """Stores on fresh workspaces (the session database is shared); dropped afterwards."""
    made: list[DocStatusStore] = []

    def make(workspace: str | None = None) -> DocStatusStore:
        store = DocStatusStore(workspace=workspace or _workspace(), manager=manager)
        store.ensure_tables()
        made.append(store)
        return store

    yield make
    for store in made:
        store.drop()


@pytest.fixture
def store(make_store) -> DocStatusStore:
    return make_store()


def _drain(store: DocStatusStore, statuses, *, limit: int, strict: bool = True) -> list[str]:
    """Walk a whole sweep; the end is a None cursor and nothing else."""
    seen: list[str] = []
    position = None
    for _ in range(500):
        docs, position = store.get_docs_by_statuses_page(
            statuses, limit=limit, position=position, strict=strict
        )
        seen.extend(docs)
        if position is None:
            return seen
    pytest.fail(f"sweep did not terminate; collected {len(seen)}")


def _scheduling_record(record: dict) -> DocSchedulingRecord:
    """What the facade builds from a record dict."""
    return DocSchedulingRecord(**{**record, "status": DocStatus(record["status"])})


# -- table ---------------------------------------------------------------------------


def test_ensure_tables_creates_lightrags_table_and_indexes(store, admin_conn):
    store.ensure_tables()  # a second call finds the table and does nothing
    with admin_conn.cursor() as cur:
        cur.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = %s "
            "AND tablename = 'lightrag_doc_status'",
            (store.schema,),
        )
        indexes = {name for (name,) in cur.fetchall()}
        cur.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = 'lightrag_doc_status'",
            (store.schema,),
        )
        columns = dict(cur.fetchall())
    assert {
        "lightrag_doc_status_pk",
        "idx_lightrag_doc_status_id",
        "idx_lightrag_doc_status_workspace_id",
        "idx_lightrag_doc_status_track_id",
        "idx_lightrag_doc_status_workspace_status_updated_at",
        "idx_lightrag_doc_status_workspace_status_created_at",
        "idx_lightrag_doc_status_workspace_updated_at",
        "idx_lightrag_doc_status_workspace_created_at",
        "idx_lightrag_doc_status_workspace_file_path",
        "idx_lightrag_doc_status_workspace_content_hash",
        "idx_lightrag_doc_status_ws_status_created_nf_id",
    } <= indexes
    assert columns["created_at"] == "timestamp without time zone"
    assert columns["metadata"] == "jsonb"
    assert len(columns) == 14


def test_the_store_serves_only_the_doc_status_namespace(manager):
    assert DocStatusStore("ws_doc_status", manager=manager).namespace == "ws_doc_status"
    with pytest.raises(InvalidInput, match="doc_status namespace"):
        DocStatusStore("full_docs", manager=manager)


# -- scheduling contract: sort order and cursor ----------------------------------------


def test_equal_timestamps_are_ordered_by_id(store):
    same = _stamp(0)
    store.upsert(
        {
            "doc-c": _row(created_at=same, file_path="c.md"),
            "doc-a": _row(created_at=same, file_path="a.md"),
            "doc-b": _row(created_at=same, file_path="b.md"),
        }
    )
    assert _drain(store, [DocStatus.PENDING], limit=10) == ["doc-a", "doc-b", "doc-c"]


def test_limit_one_paging_loses_and_repeats_nothing(store):
    ids = {f"doc-{i:02d}": _row(created_at=_stamp(i)) for i in range(7)}
    store.upsert(ids)
    assert _drain(store, [DocStatus.PENDING], limit=1) == sorted(ids)


@pytest.mark.parametrize("limit", [1, 2, 3, 4, 7, 30, 100])
def test_ties_across_page_boundaries_visit_every_doc_once(store, limit):
    # 30 docs on 4 timestamps, inserted out of order, mixed with other statuses.
    docs = {}
    for i in range(30):
        status = DocStatus.PENDING if i % 3 else DocStatus.FAILED
        docs[f"doc-{(i * 7) % 30:02d}"] = _row(status=status, created_at=_stamp(i % 4))
    docs["other"] = _row(status=DocStatus.PROCESSED, created_at=_stamp(0))
    store.upsert(docs)
    expected = sorted((docs[d]["created_at"], d) for d in docs if docs[d]["status"] != "processed")
    walked = _drain(store, [DocStatus.PENDING, DocStatus.FAILED], limit=limit)
    assert walked == [d for _, d in expected]


def test_multi_status_pages_merge_into_one_key_order(store):
    store.upsert(
        {
            "doc-1": _row(status=DocStatus.PENDING, created_at=_stamp(1)),
            "doc-2": _row(status=DocStatus.FAILED, created_at=_stamp(2)),
            "doc-3": _row(status=DocStatus.PENDING, created_at=_stamp(3)),
            "doc-4": _row(status=DocStatus.FAILED, created_at=_stamp(4)),
        }
    )
    walked = _drain(store, [DocStatus.PENDING, DocStatus.FAILED], limit=2)
    assert walked == ["doc-1", "doc-2", "doc-3", "doc-4"]
    # A repeated status and plain string values mean the same sweep.
    assert _drain(store, ["pending", DocStatus.FAILED, "pending"], limit=2) == walked


def test_a_row_with_no_created_at_fails_the_strict_page(store):
    store.upsert(
        {
            "doc-good": _row(created_at=_stamp(10)),
            "doc-nostamp": _row(created_at=None),
        }
    )
    assert store.get_by_id("doc-nostamp")["created_at"] is None  # stored as NULL, like LightRAG
    with pytest.raises(UnusableDocStatusRow, match="doc-nostamp.*created_at"):
        store.get_docs_by_statuses_page([DocStatus.PENDING], limit=10, strict=True)


def test_a_relaxed_sweep_skips_the_unusable_row_and_still_advances(store):
    store.upsert(
        {
            "doc-good": _row(created_at=_stamp(10)),
            "doc-nostamp": _row(created_at=None),
            "doc-nostamp2": _row(created_at=None),
        }
    )
    cursors = []
    seen: list[str] = []
    position = None
    for _ in range(10):
        docs, position = store.get_docs_by_statuses_page(
            [DocStatus.PENDING], limit=1, position=position, strict=False
        )
        seen.extend(docs)
        if position is None:
            break
        cursors.append(position)
    assert seen == ["doc-good"]
    # The NULL bucket sorts first and is walked by id, in LightRAG's cursor format.
    assert cursors[:2] == [json.dumps([None, "doc-nostamp"]), json.dumps([None, "doc-nostamp2"])]


def test_the_end_is_the_cursor_not_an_empty_page(store):
    store.upsert({"doc-1": _row(created_at=_stamp(1))})
    docs, position = store.get_docs_by_statuses_page([DocStatus.PENDING], limit=1)
    assert set(docs) == {"doc-1"}
    assert position is not None  # a full page cannot know it was the last
    docs, position = store.get_docs_by_statuses_page(
        [DocStatus.PENDING], limit=1, position=position
    )
    assert (docs, position) == ({}, None)


def test_an_empty_status_set_terminates_immediately(store):
    store.upsert({"doc-1": _row(status=DocStatus.PROCESSED, created_at=_stamp(1))})
    assert store.get_docs_by_statuses_page([DocStatus.FAILED], limit=5) == ({}, None)
    assert store.get_docs_by_statuses_page([], limit=5) == ({}, None)


def test_page_sizes_and_limits(store):
    store.upsert({f"doc-{i}": _row(created_at=_stamp(i)) for i in range(5)})
    docs, position = store.get_docs_by_statuses_page([DocStatus.PENDING], limit=5)
    assert len(docs) == 5 and position is not None
    docs, position = store.get_docs_by_statuses_page([DocStatus.PENDING], limit=6)
    assert len(docs) == 5 and position is None
    for bad in (0, -1, 1.5):
        with pytest.raises(InvalidInput, match="limit"):
            store.get_docs_by_statuses_page([DocStatus.PENDING], limit=bad)


def test_cursor_format_is_lightrags(store):
    store.upsert(
        {
            "doc-1": _row(created_at="2026-01-01T08:00:00.123456+08:00"),
            "doc-2": _row(created_at=_stamp(3600)),
        }
    )
    _, cursor = store.get_docs_by_statuses_page([DocStatus.PENDING], limit=1)
    # json.dumps([created_at ISO with offset, id]), created_at normalised to UTC.
    assert cursor == json.dumps(["2026-01-01T00:00:00.123456+00:00", "doc-1"])
    row = {"id": "doc-1", "created_at": datetime(2026, 1, 1, 0, 0, 0, 123456)}
    lightrag_pg = PGDocStatusStorage.__new__(PGDocStatusStorage)  # pure helpers only
    assert cursor == lightrag_pg._encode_cursor(row)
    assert decode_cursor(cursor) == PGDocStatusStorage._decode_cursor(cursor)
    # A cursor written with another offset resumes at the same instant.
    other = json.dumps(["2026-01-01T01:00:00.123456+01:00", "doc-1"])
    docs, _ = store.get_docs_by_statuses_page([DocStatus.PENDING], limit=5, position=other)
    assert list(docs) == ["doc-2"]
    assert encode_cursor(None, "x") == json.dumps([None, "x"])


@pytest.mark.parametrize(
    "cursor",
    ["not json", "[]", '["2026-01-01T00:00:00", 5]', '[5, "id"]', '["yesterday", "id"]', "{}"],
)
def test_a_malformed_cursor_is_refused(store, cursor):
    with pytest.raises(MalformedCursor):
        store.get_docs_by_statuses_page([DocStatus.PENDING], limit=5, position=cursor)
    with pytest.raises(InvalidInput, match="cursor string"):
        store.get_docs_by_statuses_page([DocStatus.PENDING], limit=5, position=object())


def test_a_sweep_sees_inserts_ahead_of_the_cursor_but_not_behind_it(store):
    store.upsert({f"doc-{i:02d}": _row(created_at=_stamp(i * 10)) for i in range(6)})
    seen: list[str] = []
    position = None
    inserted = False
    for _ in range(50):
        docs, position = store.get_docs_by_statuses_page(
            [DocStatus.PENDING], limit=2, position=position, strict=True
        )
        seen.extend(docs)
        if not inserted:
            store.upsert(
                {
                    "behind": _row(created_at=_stamp(5)),  # before the cursor: not visited
                    "tie-behind": _row(created_at=_stamp(10)),  # ties with the cursor row
                    "ahead": _row(created_at=_stamp(999)),  # after it: visited
                }
            )
            inserted = True
        if position is None:
            break
    assert len(seen) == len(set(seen))
    # "tie-behind" ties with doc-01 (the cursor) on created_at but sorts after it by id.
    assert seen == [f"doc-{i:02d}" for i in range(2)] + ["tie-behind"] + [
        f"doc-{i:02d}" for i in range(2, 6)
    ] + ["ahead"]


def test_concurrent_page_reads_do_not_interfere(store):
    store.upsert({f"doc-{i:02d}": _row(created_at=_stamp(i)) for i in range(4)})
    with ThreadPoolExecutor(4) as pool:
        pages = list(
            pool.map(
                lambda _: store.get_docs_by_statuses_page([DocStatus.PENDING], limit=4),
                range(4),
            )
        )
    for docs, _ in pages:
        assert set(docs) == {f"doc-{i:02d}" for i in range(4)}


def test_a_sweep_with_concurrent_writers_loses_nothing(store):
    store.upsert({f"doc-{i:03d}": _row(created_at=_stamp(i)) for i in range(100)})
    stop = threading.Event()

    def writer() -> None:
        n = 0
        while not stop.is_set():
            store.upsert({f"new-{n}": _row(created_at=_stamp(-1 if n % 2 else 10_000 + n))})
            n += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        seen = _drain(store, [DocStatus.PENDING], limit=7)
    finally:
        stop.set()
        thread.join()
    assert len(seen) == len(set(seen))
    assert {f"doc-{i:03d}" for i in range(100)} <= set(seen)


def test_page_records_are_lightrags_scheduling_records(store):
    store.upsert(
        {
            "doc-1": _row(
                created_at=_stamp(1),
                updated_at=_stamp(2),
                metadata={"custom_chunk_patch": {"v": 1}, "big": "x" * 1000},
                chunks_list=[f"c{i}" for i in range(50)],
            ),
            "doc-2": _row(created_at=_stamp(2), file_path="", metadata={"custom_chunk_patch": 1}),
        }
    )
    docs, _ = store.get_docs_by_statuses_page([DocStatus.PENDING], limit=5, strict=True)
    assert _scheduling_record(docs["doc-1"]) == DocSchedulingRecord(
        id="doc-1",
        status=DocStatus.PENDING,
        created_at="2026-01-01T00:00:01+00:00",
        updated_at="2026-01-01T00:00:02+00:00",
        file_path="doc.md",
        track_id="track-1",
        has_custom_chunk_journal=True,
    )
    assert docs["doc-2"]["file_path"] == "no-file-path"
    assert docs["doc-2"]["has_custom_chunk_journal"] is False


# -- scheduling contract: created_at immutability, strict reads, counts ---------------


def test_a_status_transition_preserves_created_at(store):
    created = _stamp(5)
    store.upsert({"doc-1": _row(status=DocStatus.FAILED, created_at=created)})
    store.update_doc_status_fields("doc-1", {"status": DocStatus.PENDING.value, "error_msg": None})
    docs, _ = store.get_docs_by_statuses_page([DocStatus.PENDING], limit=5, strict=True)
    assert docs["doc-1"]["created_at"] == created


def test_update_fields_refuses_to_move_the_sort_key(store):
    created = _stamp(5)
    store.upsert({"doc-1": _row(created_at=created)})
    with pytest.raises(ValueError, match="created_at is an immutable"):
        store.update_doc_status_fields("doc-1", {"created_at": _stamp(999), "status": "failed"})
    assert store.get_by_id("doc-1")["created_at"] == created
    assert store.get_by_id("doc-1")["status"] == "pending"


def test_batch_read_returns_only_confirmed_ids(store):
    store.upsert({"doc-1": _row(created_at=_stamp(1)), "doc-2": _row(created_at=_stamp(2))})
    found = store.get_docs_by_ids(["doc-1", "doc-missing", "doc-2"], strict=True)
    assert set(found) == {"doc-1", "doc-2"}
    assert _scheduling_record(found["doc-1"]).status is DocStatus.PENDING
    assert "chunks_list" not in found["doc-1"] and "content_summary" not in found["doc-1"]


def test_batch_reads_of_nothing_are_not_errors(store):
    assert store.get_docs_by_ids([], strict=True) == {}
    assert store.get_full_docs_by_ids([], strict=True) == {}


def test_strict_batch_read_raises_on_an_unusable_row_and_relaxed_skips_it(store):
    store.upsert(
        {
            "doc-1": _row(created_at=_stamp(1)),
            "doc-odd": _row(created_at=_stamp(2), status="archived"),
        }
    )
    with pytest.raises(UnusableDocStatusRow, match="archived"):
        store.get_docs_by_ids(["doc-1", "doc-odd"], strict=True)
    assert set(store.get_docs_by_ids(["doc-1", "doc-odd"])) == {"doc-1"}


def test_full_hydration_carries_what_the_projection_dropped(store):
    store.upsert(
        {
            "doc-1": _row(
                created_at=_stamp(1),
                chunks_list=["chunk-a"],
                chunks_count=1,
                metadata={"k": [1, 2]},
                content_hash="h1",
            )
        }
    )
    full = store.get_full_docs_by_ids(["doc-1", "doc-missing"], strict=True)
    status = DocProcessingStatus(**full["doc-1"])
    assert status.chunks_list == ["chunk-a"]
    assert status.created_at == _stamp(1)
    assert status.metadata == {"k": [1, 2]}
    assert status.content_hash == "h1"
    assert list(full) == ["doc-1"]


def test_strict_point_read_distinguishes_absent(store):
    store.upsert({"doc-1": _row(created_at=_stamp(1))})
    assert store.get_by_id_strict("doc-1") is not None
    assert store.get_by_id_strict("doc-missing") is None


def test_strict_count_counts_the_requested_statuses_only(store):
    store.upsert(
        {
            "doc-1": _row(status=DocStatus.PENDING, created_at=_stamp(1)),
            "doc-2": _row(status=DocStatus.PROCESSING, created_at=_stamp(2)),
            "doc-3": _row(status=DocStatus.PROCESSED, created_at=_stamp(3)),
            "doc-4": _row(status=DocStatus.FAILED, created_at=_stamp(4)),
        }
    )
    assert store.count_docs_by_statuses([DocStatus.PENDING, DocStatus.PROCESSING]) == 2
    assert store.count_docs_by_statuses(["failed", "failed"], strict=True) == 1
    assert store.count_docs_by_statuses([], strict=True) == 0


def test_count_and_page_agree_after_a_transition(store):
    store.upsert(
        {f"doc-{i}": _row(status=DocStatus.FAILED, created_at=_stamp(i)) for i in range(5)}
    )
    store.update_doc_status_fields("doc-2", {"status": DocStatus.PENDING})
    assert store.count_docs_by_statuses([DocStatus.FAILED]) == 4
    assert store.count_docs_by_statuses([DocStatus.PENDING]) == 1
    assert _drain(store, [DocStatus.PENDING], limit=10) == ["doc-2"]
    assert "doc-2" not in _drain(store, [DocStatus.FAILED], limit=10)


def test_upserting_over_a_row_keeps_one_row(store):
    store.upsert({"doc-1": _row(created_at=_stamp(1))})
    store.upsert({"doc-1": _row(status=DocStatus.PROCESSED, created_at=_stamp(1))})
    assert store.count_docs_by_statuses([DocStatus.PENDING]) == 0
    assert store.count_docs_by_statuses([DocStatus.PROCESSED]) == 1
    assert _drain(store, [DocStatus.PROCESSED], limit=10) == ["doc-1"]


def test_deleting_a_row_removes_it_from_every_read(store):
    store.upsert(
        {
            "doc-1": _row(created_at=_stamp(1), file_path="gone.md"),
            "doc-2": _row(created_at=_stamp(2), file_path="stays.md"),
        }
    )
    store.delete(["doc-1"])
    assert store.count_docs_by_statuses([DocStatus.PENDING]) == 1
    assert _drain(store, [DocStatus.PENDING], limit=10) == ["doc-2"]
    assert store.resolve_doc_source_strict("gone.md") == {"kind": "absent"}
    assert store.get_docs_by_ids(["doc-1"], strict=True) == {}
    assert store.get_by_id("doc-1") is None


# -- source resolution ------------------------------------------------------------------


def test_source_absent_when_nothing_claims_the_key(store):
    assert store.resolve_doc_source_strict("nobody.md") == {"kind": "absent"}
    assert store.resolve_doc_source_strict("") == {"kind": "absent"}
    store.upsert({"doc-u": _row(created_at=_stamp(1), file_path="unknown_source")})
    assert store.resolve_doc_source_strict("unknown_source") == {"kind": "absent"}


def test_source_unique_returns_the_doc_id_to_use(store):
    store.upsert(
        {
            "doc-custom-id": _row(
                status=DocStatus.PROCESSED, created_at=_stamp(1), file_path="report.md"
            )
        }
    )
    resolution = store.resolve_doc_source_strict("report.md")
    assert resolution["kind"] == "unique"
    assert resolution["doc_id"] == "doc-custom-id"
    record = _scheduling_record(resolution["doc"])
    assert (record.id, record.status, record.file_path) == (
        "doc-custom-id",
        DocStatus.PROCESSED,
        "report.md",
    )


def test_two_or_more_primaries_on_one_key_are_a_conflict(store):
    store.upsert(
        {
            "doc-old": _row(created_at=_stamp(1), file_path="dup.md"),
            "doc-new": _row(created_at=_stamp(2), file_path="dup.md"),
            "doc-newer": _row(created_at=_stamp(3), file_path="dup.md"),
        }
    )
    assert store.resolve_doc_source_strict("dup.md") == {
        "kind": "conflict",
        "candidate_count": 3,
        "sample_doc_ids": ("doc-new", "doc-old"),  # the two earliest, sorted by id
    }


def test_a_duplicate_marked_row_is_not_a_primary_candidate(store):
    store.upsert(
        {
            "doc-keep": _row(created_at=_stamp(2), file_path="dup.md"),
            "doc-dup": _row(
                created_at=_stamp(1),
                file_path="dup.md",
                metadata={"is_duplicate": True, "original_doc_id": "doc-keep"},
            ),
            "doc-notdup": _row(
                created_at=_stamp(3), file_path="other.md", metadata={"is_duplicate": False}
            ),
        }
    )
    resolution = store.resolve_doc_source_strict("dup.md")
    assert (resolution["kind"], resolution["doc_id"]) == ("unique", "doc-keep")
    assert store.resolve_doc_source_strict("other.md")["doc_id"] == "doc-notdup"


def test_a_non_boolean_duplicate_flag_fails_closed(store):
    store.upsert({"doc-1": _row(created_at=_stamp(1), metadata={"is_duplicate": "maybe"})})
    with pytest.raises(psycopg2.errors.InvalidTextRepresentation):
        store.resolve_doc_source_strict("doc.md")


def test_moving_a_source_key_moves_it(store):
    store.upsert({"doc-1": _row(created_at=_stamp(1), file_path="before.md")})
    store.update_doc_status_fields("doc-1", {"file_path": "after.md"})
    assert store.resolve_doc_source_strict("before.md") == {"kind": "absent"}
    assert store.resolve_doc_source_strict("after.md")["doc_id"] == "doc-1"


# -- source conflicts: listing and repair ----------------------------------------------


def _conflicts(store, keys: dict[str, int]) -> None:
    rows = {}
    for key, count in keys.items():
        for i in range(count):
            rows[f"{key}#{i:02d}"] = _row(created_at=_stamp(i), file_path=key)
    store.upsert(rows)


def test_conflict_listing_finds_only_conflicting_keys(store):
    _conflicts(store, {"dup.md": 2, "fine.md": 1, "": 2, "unknown_source": 2, "no-file-path": 2})
    store.upsert(
        {"marked": _row(created_at=_stamp(1), file_path="fine.md", metadata={"is_duplicate": True})}
    )
    conflicts, position = store.list_source_conflicts_page(limit=10)
    assert position is None
    assert [SourceConflictSummary(**c) for c in conflicts] == [
        SourceConflictSummary("dup.md", 2, ("dup.md#00", "dup.md#01"))
    ]


def test_conflict_listing_pages_by_key_with_a_bounded_sample(store):
    _conflicts(store, {"a.md": 40, "b.md": 2, "文档.md": 3})
    pages = []
    position = None
    while True:
        conflicts, position = store.list_source_conflicts_page(limit=1, position=position)
        pages.append(conflicts)
        if position is None:
            break
        assert position == json.dumps(conflicts[-1]["canonical_source_key"], ensure_ascii=False)
    summaries = {c["canonical_source_key"]: c for page in pages for c in page}
    assert sorted(summaries) == ["a.md", "b.md", "文档.md"]
    assert len(pages) == 4 and pages[-1] == []  # three full pages, then the end
    assert summaries["a.md"]["candidate_count"] == 40
    assert summaries["a.md"]["sample_doc_ids"] == tuple(f"a.md#{i:02d}" for i in range(32))
    assert summaries["文档.md"]["candidate_count"] == 3
    with pytest.raises(MalformedCursor):
        store.list_source_conflicts_page(limit=1, position="[1]")
    with pytest.raises(InvalidInput):
        store.list_source_conflicts_page(limit=0)


def test_repair_is_dry_run_by_default_then_commits_under_cas(store):
    store.upsert(
        {
            "doc-keep": _row(created_at=_stamp(1), file_path="dup.md", metadata={"a": 1}),
            "doc-lose": _row(created_at=_stamp(2), file_path="dup.md", metadata={"b": 2}),
        }
    )
    preview = store.repair_source_conflict(
        "dup.md",
        primary_doc_id="doc-keep",
        expected_candidate_count=0,
        expected_candidate_fingerprint="",
    )
    assert SourceConflictRepairResult(**preview) == SourceConflictRepairResult(
        canonical_source_key="dup.md",
        primary_doc_id="doc-keep",
        candidate_count=2,
        fingerprint=PGDocStatusStorage._conflict_fingerprint(["doc-keep", "doc-lose"]),
        demoted_sample_doc_ids=("doc-lose",),
        committed=False,
    )
    assert preview["fingerprint"] == conflict_fingerprint(["doc-keep", "doc-lose"])
    assert store.resolve_doc_source_strict("dup.md")["kind"] == "conflict"

    committed = store.repair_source_conflict(
        "dup.md",
        primary_doc_id="doc-keep",
        expected_candidate_count=preview["candidate_count"],
        expected_candidate_fingerprint=preview["fingerprint"],
        dry_run=False,
    )
    assert committed == {**preview, "committed": True}
    assert store.resolve_doc_source_strict("dup.md")["doc_id"] == "doc-keep"
    assert store.get_by_id("doc-lose")["metadata"] == {
        "b": 2,
        "is_duplicate": True,
        "original_doc_id": "doc-keep",
    }
    assert store.get_by_id("doc-keep")["metadata"] == {"a": 1}
    assert store.list_source_conflicts_page(limit=5) == ([], None)


def test_repair_of_a_row_with_null_metadata(store, admin_conn):
    _conflicts(store, {"dup.md": 2})
    with admin_conn.cursor() as cur:
        cur.execute(
            "UPDATE lightrag_doc_status SET metadata = NULL WHERE workspace = %s",
            (store.workspace,),
        )
    preview = store.repair_source_conflict(
        "dup.md",
        primary_doc_id="dup.md#00",
        expected_candidate_count=0,
        expected_candidate_fingerprint="",
    )
    store.repair_source_conflict(
        "dup.md",
        primary_doc_id="dup.md#00",
        expected_candidate_count=2,
        expected_candidate_fingerprint=preview["fingerprint"],
        dry_run=False,
    )
    assert store.get_by_id("dup.md#01")["metadata"] == {
        "is_duplicate": True,
        "original_doc_id": "dup.md#00",
    }
    assert store.get_by_id("dup.md#00")["metadata"] is None


def test_a_stale_cas_token_refuses_instead_of_overwriting(store):
    _conflicts(store, {"dup.md": 2})
    preview = store.repair_source_conflict(
        "dup.md",
        primary_doc_id="dup.md#00",
        expected_candidate_count=0,
        expected_candidate_fingerprint="",
    )
    store.upsert({"doc-third": _row(created_at=_stamp(3), file_path="dup.md")})
    with pytest.raises(SourceConflictChanged, match="changed"):
        store.repair_source_conflict(
            "dup.md",
            primary_doc_id="dup.md#00",
            expected_candidate_count=preview["candidate_count"],
            expected_candidate_fingerprint=preview["fingerprint"],
            dry_run=False,
        )
    assert store.resolve_doc_source_strict("dup.md")["candidate_count"] == 3


def test_repairing_onto_a_non_candidate_is_a_value_error(store):
    _conflicts(store, {"dup.md": 2})
    with pytest.raises(ValueError, match="not a current primary candidate"):
        store.repair_source_conflict(
            "dup.md",
            primary_doc_id="doc-not-a-candidate",
            expected_candidate_count=2,
            expected_candidate_fingerprint="x",
            dry_run=False,
        )
    assert store.resolve_doc_source_strict("dup.md")["candidate_count"] == 2


# -- paginated listing -------------------------------------------------------------------


@pytest.fixture
def listed(store):
    """Five docs whose created_at, updated_at, id and file_path orders all differ."""
    store.upsert(
        {
            "d-1": _row(created_at=_stamp(3), updated_at=_stamp(50), file_path="c.md"),
            "d-2": _row(created_at=_stamp(1), updated_at=_stamp(10), file_path="e.md"),
            "d-3": _row(created_at=_stamp(5), updated_at=_stamp(30), file_path="a.md"),
            "d-4": _row(
                status=DocStatus.FAILED,
                created_at=_stamp(2),
                updated_at=_stamp(40),
                file_path="d.md",
            ),
            "d-5": _row(
                status=DocStatus.PROCESSED,
                created_at=_stamp(4),
                updated_at=_stamp(20),
                file_path="b.md",
                chunks_list=["c1"],
            ),
        }
    )
    return store


@pytest.mark.parametrize(
    ("sort_field", "ascending"),
    [
        ("created_at", ["d-2", "d-4", "d-1", "d-5", "d-3"]),
        ("updated_at", ["d-2", "d-5", "d-3", "d-4", "d-1"]),
        ("id", ["d-1", "d-2", "d-3", "d-4", "d-5"]),
        ("file_path", ["d-3", "d-5", "d-1", "d-4", "d-2"]),
    ],
)
@pytest.mark.parametrize("direction", ["asc", "desc", "DESC"])
def test_paginated_sorts_by_each_field_and_direction(listed, sort_field, ascending, direction):
    expected = ascending if direction == "asc" else ascending[::-1]
    docs, total = listed.get_docs_paginated(
        sort_field=sort_field, sort_direction=direction, page_size=10
    )
    assert [doc_id for doc_id, _ in docs] == expected
    assert total == 5


def test_paginated_defaults_filters_and_shapes(listed):
    docs, total = listed.get_docs_paginated()  # updated_at desc
    assert [d for d, _ in docs] == ["d-1", "d-4", "d-3", "d-5", "d-2"] and total == 5
    statuses = {d: DocProcessingStatus(**doc) for d, doc in docs}
    assert statuses["d-5"].chunks_list == []  # listings do not carry chunks
    assert statuses["d-1"].created_at == _stamp(3)

    docs, total = listed.get_docs_paginated(status_filter=DocStatus.FAILED)
    assert ([d for d, _ in docs], total) == (["d-4"], 1)
    docs, total = listed.get_docs_paginated(
        status_filter=DocStatus.FAILED, status_filters=["processed", DocStatus.FAILED]
    )
    assert ({d for d, _ in docs}, total) == ({"d-4", "d-5"}, 2)
    docs, total = listed.get_docs_paginated(status_filter="failed", status_filters=[])
    assert total == 1  # an empty multi-filter falls back to the single one
    assert listed.get_docs_paginated(status_filters=[DocStatus.PARSING]) == ([], 0)


def test_paginated_pages_clamp_like_lightrag(store):
    store.upsert({f"d-{i:03d}": _row(created_at=_stamp(i)) for i in range(25)})
    ids = [f"d-{i:03d}" for i in range(25)]

    def page(**kwargs):
        docs, total = store.get_docs_paginated(sort_field="id", sort_direction="asc", **kwargs)
        assert total == 25
        return [d for d, _ in docs]

    assert page(page=1, page_size=1) == ids[:10]  # page_size below 10 reads as 10
    assert page(page=3, page_size=10) == ids[20:]
    assert page(page=0, page_size=10) == ids[:10]  # page below 1 reads as 1
    assert page(page=9, page_size=10) == []  # past the end: no docs, still the total
    assert page(page=1, page_size=500) == ids  # above 200 reads as 200


def test_paginated_nulls_last_and_ties_by_id(store):
    store.upsert(
        {
            "b": _row(created_at=_stamp(1), file_path=None),
            "a": _row(created_at=_stamp(1), file_path="x.md"),
            "c": _row(created_at=_stamp(1), file_path="x.md"),
        }
    )
    asc, _ = store.get_docs_paginated(sort_field="file_path", sort_direction="asc")
    desc, _ = store.get_docs_paginated(sort_field="file_path", sort_direction="desc")
    assert [d for d, _ in asc] == ["a", "c", "b"]
    assert [d for d, _ in desc] == ["c", "a", "b"]
    assert dict(asc)["b"]["file_path"] is None  # listings keep a NULL file_path


@pytest.mark.parametrize("sort_field", ["content_summary", "id; DROP TABLE x", "ID", ""])
def test_paginated_rejects_unknown_sort_fields(store, sort_field):
    with pytest.raises(InvalidInput) as excinfo:
        store.get_docs_paginated(sort_field=sort_field)
    for allowed in SORT_FIELDS:
        assert allowed in str(excinfo.value)


def test_paginated_rejects_unknown_directions(store):
    with pytest.raises(InvalidInput, match="asc"):
        store.get_docs_paginated(sort_direction="sideways")


# -- lookups -----------------------------------------------------------------------------


def test_get_doc_by_file_path_returns_the_earliest_exact_match(store):
    store.upsert(
        {
            "doc-2": _row(created_at=_stamp(2), file_path="docs/a.md"),
            "doc-1": _row(
                created_at=_stamp(1),
                file_path="docs/a.md",
                metadata={"is_duplicate": True},
            ),
            "doc-3": _row(created_at=_stamp(0), file_path="docs/A.md"),
        }
    )
    doc = store.get_doc_by_file_path("docs/a.md")
    assert doc["created_at"] == _stamp(1)  # duplicates count here, unlike the basename
    assert set(doc) == set(DocProcessingStatus.__dataclass_fields__) - {"multimodal_processed"}
    assert store.get_doc_by_file_path("a.md") is None


def test_get_doc_by_file_basename_returns_the_earliest_primary(store):
    store.upsert(
        {
            "doc-dup": _row(
                created_at=_stamp(0),
                file_path="a.md",
                metadata={"is_duplicate": True, "original_doc_id": "doc-2"},
            ),
            "doc-3": _row(created_at=_stamp(2), file_path="a.md"),
            "doc-2": _row(created_at=_stamp(1), file_path="a.md", content_hash="h"),
            "doc-u": _row(created_at=_stamp(1), file_path="unknown_source"),
        }
    )
    doc_id, doc = store.get_doc_by_file_basename("a.md")
    assert doc_id == "doc-2"
    assert doc == store.get_by_id("doc-2")
    assert store.get_doc_by_file_basename("unknown_source") is None
    assert store.get_doc_by_file_basename("") is None
    assert store.get_doc_by_file_basename("b.md") is None
    store.delete(["doc-2", "doc-3"])
    assert store.get_doc_by_file_basename("a.md") is None  # only a marker left: free again


def test_get_doc_by_content_hash_is_deterministic_and_honours_exclusions(store):
    store.upsert(
        {
            "doc-b": _row(created_at=_stamp(1), content_hash="h"),
            "doc-a": _row(created_at=_stamp(1), content_hash="h"),
            "doc-c": _row(created_at=_stamp(0), content_hash="other"),
            "pointer": _row(
                created_at=_stamp(0),
                content_hash="h",
                metadata={"is_duplicate": True, "original_doc_id": "doc-a"},
            ),
            "marker-no-original": _row(
                created_at=_stamp(5), content_hash="h", metadata={"is_duplicate": True}
            ),
        }
    )
    assert store.get_doc_by_content_hash("h")[0] == "pointer"  # earliest by (created_at, id)
    # Neither doc-a itself nor the row pointing at it; the search goes on to doc-b.
    assert store.get_doc_by_content_hash("h", exclude_doc_id="doc-a")[0] == "doc-b"
    store.delete(["doc-b"])
    assert store.get_doc_by_content_hash("h", exclude_doc_id="doc-a")[0] == "marker-no-original"
    assert store.get_doc_by_content_hash("") is None
    assert store.get_doc_by_content_hash("missing") is None


# -- targeted updates ----------------------------------------------------------------------


def test_update_writes_only_the_given_fields(store):
    store.upsert({"doc-1": _row(created_at=_stamp(1), chunks_list=["a"], metadata={"k": 1})})
    before = store.get_by_id("doc-1")
    store.update_doc_status_fields(
        "doc-1",
        {
            "status": DocStatus.PROCESSED,
            "chunks_list": ["a", "b"],
            "chunks_count": 2,
            "metadata": {"k": 2, "nested": {"x": [1]}},
            "updated_at": "2026-01-02T09:00:00+09:00",
            "error_msg": "none",
            "content_hash": "abc",
            "track_id": "t2",
            "content_length": 99,
            "content_summary": "new summary",
            "file_path": "new.md",
        },
    )
    after = store.get_by_id("doc-1")
    assert after == {
        **before,
        "status": "processed",
        "chunks_list": ["a", "b"],
        "chunks_count": 2,
        "metadata": {"k": 2, "nested": {"x": [1]}},
        "updated_at": "2026-01-02T00:00:00+00:00",
        "error_msg": "none",
        "content_hash": "abc",
        "track_id": "t2",
        "content_length": 99,
        "content_summary": "new summary",
        "file_path": "new.md",
    }
    store.update_doc_status_fields("doc-1", {"metadata": '{"raw": "json text"}'})
    assert store.get_by_id("doc-1")["metadata"] == {"raw": "json text"}


@pytest.mark.parametrize(
    "column", ["workspace", "id", "content", "status = 'x'; --", "Status", "multimodal_processed"]
)
def test_update_rejects_columns_outside_the_whitelist(store, column):
    store.upsert({"doc-1": _row(created_at=_stamp(1))})
    before = store.get_by_id("doc-1")
    with pytest.raises(InvalidInput) as excinfo:
        store.update_doc_status_fields("doc-1", {column: "x", "status": "failed"})
    for allowed in UPDATABLE_COLUMNS:
        assert allowed in str(excinfo.value)
    assert store.get_by_id("doc-1") == before


def test_update_of_a_missing_doc(store):
    with pytest.raises(DocStatusNotFound) as excinfo:
        store.update_doc_status_fields("ghost", {"status": "failed"})
    assert isinstance(excinfo.value, KeyError)
    store.update_doc_status_fields("ghost", {"status": "failed"}, missing_ok=True)
    with pytest.raises(DocStatusNotFound):
        store.update_doc_status_fields("ghost", {})  # nothing to write, still checked
    store.update_doc_status_fields("ghost", {}, missing_ok=True)
    assert store.get_by_id("ghost") is None
    store.upsert({"doc-1": _row(created_at=_stamp(1))})
    store.update_doc_status_fields("doc-1", {})


def test_update_rejects_bad_values_and_writes_nothing(store):
    store.upsert({"doc-1": _row(created_at=_stamp(1))})
    before = store.get_by_id("doc-1")
    bad_updates = [
        {"status": "failed", "error_msg": "bad\x00byte"},
        {"status": "failed", "metadata": {"k\x00": 1}},
        {"status": "failed", "updated_at": "not a time"},
        {"status": "failed", "metadata": {"x": object()}},
    ]
    for fields in bad_updates:
        with pytest.raises(InvalidInput):
            store.update_doc_status_fields("doc-1", fields)
    assert store.get_by_id("doc-1") == before


# -- status counts -------------------------------------------------------------------------


def test_status_counts(store):
    assert store.get_status_counts() == {}
    assert store.get_all_status_counts() == {"all": 0}
    store.upsert(
        {
            "a": _row(status=DocStatus.PENDING, created_at=_stamp(1)),
            "b": _row(status=DocStatus.PENDING, created_at=_stamp(2)),
            "c": _row(status=DocStatus.PROCESSED, created_at=_stamp(3)),
        }
    )
    assert store.get_status_counts() == {"pending": 2, "processed": 1}
    assert store.get_all_status_counts() == {"pending": 2, "processed": 1, "all": 3}


# -- upsert and basic reads ----------------------------------------------------------------


def test_upsert_round_trip_and_lightrags_write_rules(store):
    store.upsert(
        {
            "doc-1": {
                "status": DocStatus.PROCESSING,
                "content_summary": "summary",
                "content_length": 7,
                "file_path": "f.md",
                "created_at": "2026-01-01T10:00:00+02:00",
                "updated_at": datetime(2026, 1, 1, 9, 0),  # naive means UTC
                "content_hash": "hash-1",
                "content": "ignored: full_docs holds the body",
            }
        }
    )
    assert store.get_by_id("doc-1") == {
        "content_summary": "summary",
        "content_length": 7,
        "file_path": "f.md",
        "status": "processing",
        "created_at": "2026-01-01T08:00:00+00:00",
        "updated_at": "2026-01-01T09:00:00+00:00",
        "track_id": None,
        "chunks_count": -1,
        "chunks_list": [],
        "error_msg": None,
        "metadata": {},
        "content_hash": "hash-1",
    }
    # A later upsert without a hash keeps it; created_at is overwritten, as LightRAG does.
    store.upsert({"doc-1": _row(created_at=_stamp(7), content_hash="")})
    doc = store.get_by_id("doc-1")
    assert (doc["content_hash"], doc["created_at"]) == ("hash-1", _stamp(7))
    store.upsert({"doc-1": _row(created_at=_stamp(7), content_hash="hash-2")})
    assert store.get_by_id("doc-1")["content_hash"] == "hash-2"


def test_get_by_ids_filter_keys_is_empty_delete_and_drop(store):
    assert store.is_empty()
    store.upsert({f"doc-{i}": _row(created_at=_stamp(i)) for i in range(3)})
    assert not store.is_empty()
    got = store.get_by_ids(["doc-2", "missing", "doc-0", "doc-2"])
    assert [d and d["created_at"] for d in got] == [_stamp(2), None, _stamp(0), _stamp(2)]
    assert store.filter_keys({"doc-1", "new-1", "new-2"}) == {"new-1", "new-2"}
    store.delete({"doc-1", "missing"})
    assert store.filter_keys({"doc-0", "doc-1"}) == {"doc-1"}
    store.drop()
    assert store.is_empty()


def test_large_batches_are_written_and_deleted_whole(store):
    ids = [f"doc-{i:05d}" for i in range(1203)]
    store.upsert({d: _row(created_at=_stamp(i)) for i, d in enumerate(ids)})
    assert store.count_docs_by_statuses([DocStatus.PENDING]) == 1203
    assert _drain(store, [DocStatus.PENDING], limit=500) == ids
    store.delete(ids[:1100])
    assert store.get_all_status_counts() == {"pending": 103, "all": 103}


def test_get_docs_by_statuses_and_track_id_build_lightrags_statuses(store):
    store.upsert(
        {
            "a": _row(created_at=_stamp(1), track_id="t-1", file_path=""),
            "b": _row(status=DocStatus.FAILED, created_at=_stamp(2), track_id="t-1"),
            "c": _row(status=DocStatus.PROCESSED, created_at=_stamp(3), track_id="t-2"),
        }
    )
    by_status = store.get_docs_by_statuses([DocStatus.PENDING, "failed"], strict=True)
    assert set(by_status) == {"a", "b"}
    status = DocProcessingStatus(**by_status["a"])
    assert status.file_path == "no-file-path"  # LightRAG's fallback for an empty path
    assert status.status == "pending"
    assert set(store.get_docs_by_track_id("t-1")) == {"a", "b"}
    assert store.get_docs_by_track_id("t-9") == {}
    assert store.get_docs_by_statuses([]) == {}


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"file_path": "a\x00b.md"},
        {"content_summary": "sum\x00mary"},
        {"metadata": {"k": ["ok", "v\x00"]}},
        {"metadata": {"k\x00": 1}},
        {"chunks_list": ["c\x00"]},
        {"error_msg": "\x00"},
        {"track_id": "t\x00"},
        {"content_hash": "h\x00"},
        {"status": "pend\x00ing"},
    ],
)
def test_nul_characters_are_refused_and_nothing_is_written(store, bad):
    data = {"good": _row(created_at=_stamp(1)), "bad": _row(created_at=_stamp(2), **bad)}
    with pytest.raises(InvalidInput, match="NUL"):
        store.upsert(data)
    assert store.is_empty()


@pytest.mark.parametrize(
    ("doc_id", "record"),
    [
        ("x" * 256, _row(created_at=_stamp(1))),
        ("nul\x00id", _row(created_at=_stamp(1))),
        ("no-status", {k: v for k, v in _row(created_at=_stamp(1)).items() if k != "status"}),
        ("no-path", {k: v for k, v in _row(created_at=_stamp(1)).items() if k != "file_path"}),
        ("bad-time", _row(created_at="first of May")),
        ("bad-time-2", _row(created_at=_stamp(1), updated_at="")),
        ("bad-json", _row(created_at=_stamp(1), metadata={"when": datetime.now()})),
        ("not-a-dict", ["status", "pending"]),
    ],
)
def test_invalid_records_are_refused_and_nothing_is_written(store, doc_id, record):
    with pytest.raises(InvalidInput):
        store.upsert({"good": _row(created_at=_stamp(0)), doc_id: record})
    assert store.is_empty()


def test_nul_in_lookups_is_invalid_input(store):
    for call in (
        lambda: store.get_by_id("a\x00"),
        lambda: store.get_by_ids(["a\x00"]),
        lambda: store.filter_keys({"a\x00"}),
        lambda: store.delete(["a\x00"]),
        lambda: store.get_doc_by_file_path("a\x00"),
        lambda: store.get_doc_by_file_basename("a\x00"),
        lambda: store.get_doc_by_content_hash("a\x00"),
        lambda: store.resolve_doc_source_strict("a\x00"),
        lambda: store.get_docs_by_track_id("a\x00"),
        lambda: store.count_docs_by_statuses(["a\x00"]),
    ):
        with pytest.raises(InvalidInput):
            call()


def test_hostile_ids_and_values_are_stored_and_read_back_exactly(store):
    data = {
        doc_id: _row(
            created_at=_stamp(i),
            file_path=doc_id,
            track_id=doc_id,
            content_hash=doc_id or None,
            metadata={doc_id: doc_id},
            chunks_list=[doc_id],
            content_summary=doc_id,
        )
        for i, doc_id in enumerate(HOSTILE)
    }
    store.upsert(data)
    assert store.filter_keys(set(HOSTILE)) == set()
    for doc_id in HOSTILE:
        doc = store.get_by_id(doc_id)
        assert doc["metadata"] == {doc_id: doc_id}
        assert doc["chunks_list"] == [doc_id]
        assert (doc["file_path"], doc["track_id"], doc["content_summary"]) == (doc_id,) * 3
        assert set(store.get_docs_by_track_id(doc_id)) == {doc_id}
    # LightRAG cannot schedule an empty id: a relaxed sweep skips it, a strict one raises.
    assert set(_drain(store, [DocStatus.PENDING], limit=2, strict=False)) == set(HOSTILE) - {""}
    with pytest.raises(UnusableDocStatusRow, match="id is empty"):
        _drain(store, [DocStatus.PENDING], limit=2)
    assert store.get_doc_by_file_basename(HOSTILE[2])[0] == HOSTILE[2]
    store.update_doc_status_fields(HOSTILE[0], {"error_msg": HOSTILE[2]})
    assert store.get_by_id(HOSTILE[0])["error_msg"] == HOSTILE[2]
    store.delete(HOSTILE[:3])
    assert store.filter_keys(set(HOSTILE)) == set(HOSTILE[:3])


@pytest.mark.parametrize("workspace", ["it's; DROP TABLE x; --", 'ws "q"', "工作区-🚀", "$1"])
def test_hostile_workspaces_are_kept_apart(make_store, workspace):
    hostile = make_store(workspace)
    plain = make_store()
    hostile.upsert({"doc": _row(created_at=_stamp(1))})
    assert hostile.workspace == workspace
    assert hostile.get_all_status_counts() == {"pending": 1, "all": 1}
    assert plain.is_empty()


def test_empty_inputs_do_nothing(store):
    store.upsert({})
    store.delete([])
    assert store.filter_keys(set()) == set()
    assert store.get_by_ids([]) == []
    assert store.get_docs_by_statuses([]) == {}
    assert store.get_docs_by_ids([]) == {}
    assert store.is_empty()


# -- workspace isolation -------------------------------------------------------------------


def test_workspaces_do_not_see_each_other(make_store):
    one, two = make_store(), make_store()
    one.upsert(
        {
            "same": _row(created_at=_stamp(1), file_path="dup.md", content_hash="h"),
            "one-2": _row(created_at=_stamp(2), file_path="dup.md"),
        }
    )
    two.upsert({"same": _row(status=DocStatus.FAILED, created_at=_stamp(1), file_path="dup.md")})

    assert one.get_by_id("same")["status"] == "pending"
    assert two.get_by_id("same")["status"] == "failed"
    assert two.get_by_id("one-2") is None
    assert two.filter_keys({"same", "one-2"}) == {"one-2"}
    assert _drain(two, [DocStatus.PENDING], limit=5) == []
    assert two.count_docs_by_statuses([DocStatus.PENDING]) == 0
    assert one.resolve_doc_source_strict("dup.md")["kind"] == "conflict"
    assert two.resolve_doc_source_strict("dup.md")["kind"] == "unique"
    assert two.list_source_conflicts_page(limit=5) == ([], None)
    assert two.get_doc_by_content_hash("h") is None
    assert two.get_docs_paginated()[1] == 1
    two.delete(["same"])
    assert one.get_by_id("same") is not None
    two.upsert({"x": _row(created_at=_stamp(1))})
    two.drop()
    assert two.is_empty() and not one.is_empty()


# -- interoperability with LightRAG's own PGDocStatusStorage --------------------------------


@pytest.fixture
def lightrag_pg_env(base_settings, monkeypatch):
    """Environment for LightRAG's PostgreSQLDB, pointing at the session database."""
    for name, value in {**base_settings.to_env(), "POSTGRES_MAX_CONNECTIONS": "4"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("POSTGRES_WORKSPACE", raising=False)


def _as_status(doc: dict) -> DocProcessingStatus:
    return DocProcessingStatus(**doc)


def test_lightrags_pg_storage_and_this_store_share_rows_and_cursors(store, lightrag_pg_env):
    theirs_rows = {
        "l-1": _row(created_at=_stamp(1), metadata={"custom_chunk_patch": {}}, content_hash="h"),
        "l-2": _row(status=DocStatus.FAILED, created_at=_stamp(1), file_path="dup.md"),
        "l-3": _row(created_at="2026-01-01T05:00:00.5+05:00", file_path="dup.md"),
    }
    ours_rows = {
        "o-1": _row(created_at=_stamp(1), chunks_list=["c1", "c2"], error_msg="e"),
        "o-2": _row(status=DocStatus.FAILED, created_at=_stamp(0.25), file_path="dup.md"),
        "o-3": _row(created_at=_stamp(2), file_path="", metadata={"is_duplicate": False}),
    }
    statuses = [DocStatus.PENDING, DocStatus.FAILED]

    async def scenario() -> None:
        db = PostgreSQLDB(ClientManager.get_config())
        await db.initdb()
        await db.check_tables()
        theirs = PGDocStatusStorage(
            namespace="doc_status",
            workspace=store.workspace,
            global_config={},
            embedding_func=None,
            db=db,
        )
        try:
            await theirs.upsert(theirs_rows)
            store.upsert(ours_rows)
            ids = sorted([*theirs_rows, *ours_rows])

            # Every read returns the same data from either implementation.
            for doc_id in ids:
                assert store.get_by_id(doc_id) == await theirs.get_by_id(doc_id)
            assert store.get_by_ids(ids) == await theirs.get_by_ids(ids)
            mine = store.get_docs_by_statuses(statuses)
            assert {k: _as_status(v) for k, v in mine.items()} == (
                await theirs.get_docs_by_statuses(statuses)
            )
            full = store.get_full_docs_by_ids(ids)
            assert {k: _as_status(v) for k, v in full.items()} == (
                await theirs.get_full_docs_by_ids(ids)
            )
            records = store.get_docs_by_ids(ids)
            assert {k: _scheduling_record(v) for k, v in records.items()} == (
                await theirs.get_docs_by_ids(ids)
            )
            for field in SORT_FIELDS:
                docs, total = store.get_docs_paginated(sort_field=field, sort_direction="asc")
                their_docs, their_total = await theirs.get_docs_paginated(
                    sort_field=field, sort_direction="asc"
                )
                assert total == their_total == 6
                if field == "id":  # the only sort without ties in this data
                    assert [(d, _as_status(v)) for d, v in docs] == their_docs
            assert store.get_all_status_counts() == await theirs.get_all_status_counts()
            assert store.get_doc_by_content_hash("h") == await theirs.get_doc_by_content_hash("h")
            assert store.get_doc_by_file_basename("dup.md") == (
                await theirs.get_doc_by_file_basename("dup.md")
            )
            conflict = await theirs.resolve_doc_source_strict("dup.md")
            mine = store.resolve_doc_source_strict("dup.md")
            assert (mine["candidate_count"], mine["sample_doc_ids"]) == (
                conflict.candidate_count,
                conflict.sample_doc_ids,
            )

            # A sweep alternating implementations page by page: same cursors, same order.
            walked: list[str] = []
            position = CURSOR_START
            for turn in range(20):
                page = await theirs.get_docs_by_statuses_page(
                    statuses, limit=2, position=position, strict=True
                )
                opaque = None if position is CURSOR_START else position.opaque
                docs, cursor = store.get_docs_by_statuses_page(
                    statuses, limit=2, position=opaque, strict=True
                )
                assert {k: _scheduling_record(v) for k, v in docs.items()} == page.docs
                assert cursor == (
                    None if page.next_position is CURSOR_END else page.next_position.opaque
                )
                walked.extend(docs)
                if cursor is None:
                    break
                position = CursorAfter(cursor) if turn % 2 else page.next_position
            assert walked == ["o-2", "l-3", "l-1", "l-2", "o-1", "o-3"]  # UTC instants, ties by id

            # Source-conflict repair tokens are interchangeable.
            their_preview = await theirs.repair_source_conflict(
                "dup.md",
                primary_doc_id="l-2",
                expected_candidate_count=0,
                expected_candidate_fingerprint="",
            )
            result = store.repair_source_conflict(
                "dup.md",
                primary_doc_id="l-2",
                expected_candidate_count=their_preview.candidate_count,
                expected_candidate_fingerprint=their_preview.fingerprint,
                dry_run=False,
            )
            assert SourceConflictRepairResult(**result) == SourceConflictRepairResult(
                **{**their_preview.__dict__, "committed": True}
            )
            resolved = await theirs.resolve_doc_source_strict("dup.md")
            assert resolved.doc_id == "l-2"
        finally:
            await theirs.drop()
            await db.pool.close()

    asyncio.run(scenario())
