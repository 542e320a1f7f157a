"""Deleting parts of threads: prune's keep_latest, delete_for_runs, and the clean-up they share.

Each function runs its statements on the caller's cursor, inside the caller's
transaction. Deleting checkpoints leaves two things to tidy, done here once for
all callers: a remaining checkpoint whose parent was deleted loses its parent
link, and blobs that only deleted checkpoints referenced are removed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ..batching import as_columns, chunked
from . import sql
from .connection import Render

# Keys per statement when arrays of thread IDs, run IDs or blob keys are sent.
CHUNK_SIZE = 1000


def delta_threads(cur: Any, q: Render, thread_ids: Sequence[str]) -> list[str]:
    """The given threads whose graph uses a DeltaChannel."""
    found: set[str] = set()
    for chunk in chunked(thread_ids, CHUNK_SIZE):
        cur.execute(q(sql.DELTA_THREADS), (chunk, chunk))
        found.update(row[0] for row in cur.fetchall())
    return sorted(found)


def refuse_delta_threads(cur: Any, q: Render, thread_ids: Sequence[str]) -> None:
    if delta := delta_threads(cur, q, thread_ids):
        raise NotImplementedError(
            "keep_latest can't prune threads that use a DeltaChannel, whose latest value is "
            f"rebuilt from older checkpoints: {', '.join(delta)}. Use strategy='delete' or "
            "leave these threads unpruned."
        )


def keep_latest(
    cur: Any,
    q: Render,
    thread_id: str,
    *,
    older_than: datetime | None = None,
    drop_subgraph_calls: bool = True,
) -> int:
    """Delete the thread's checkpoints except each namespace's latest; return how many.

    The caller's transaction must be REPEATABLE READ (``Mode.SNAPSHOT``), so
    checkpoints a run saves meanwhile are neither seen nor deleted. The latest
    checkpoint keeps its parent when it predates format v4 and reads pending sends
    from it. With ``older_than``, only checkpoints whose ``ts`` is older are deleted.
    With ``drop_subgraph_calls``, a subgraph call's namespace (its name has a ":")
    goes with the root checkpoint it started from once that one is deleted, as
    PostgresSaver's prune does.
    """
    cur.execute(q(sql.THREAD_HEADS), (thread_id,) * 4)
    heads = cur.fetchall()
    if not heads:
        return 0
    kept = {ns: [i for i in (head, sends_parent) if i] for ns, head, sends_parent, _, _ in heads}
    calls: set[str] = set()
    if drop_subgraph_calls:
        root_kept = kept.get("", [])
        calls = {
            ns
            for ns, _, _, root, root_saved in heads
            if ":" in ns and root_saved and root not in root_kept
        }
    if calls:
        cur.execute(q(sql.DELETE_NAMESPACES), (thread_id, sorted(calls)) * 3)
    namespaces = [ns for ns in kept if ns not in calls]
    kept_ns = [ns for ns in namespaces for _ in kept[ns]]
    kept_ids = [cid for ns in namespaces for cid in kept[ns]]
    cur.execute(
        q(sql.DELETE_UNKEPT),
        (kept_ns, kept_ids, thread_id, namespaces, older_than, older_than),
    )
    return clean_up_after_delete(cur, q, cur.fetchall())


def delete_runs(cur: Any, q: Render, run_ids: Sequence[str]) -> int:
    """Delete every checkpoint whose metadata run_id is one of ``run_ids``, with its writes."""
    deleted = 0
    for chunk in chunked(run_ids, CHUNK_SIZE):
        cur.execute(q(sql.DELETE_RUNS), (chunk,))
        deleted += clean_up_after_delete(cur, q, cur.fetchall())
    return deleted


def clean_up_after_delete(cur: Any, q: Render, rows: Sequence[tuple]) -> int:
    """Unlink children of deleted checkpoints and delete blobs nothing references any more.

    ``rows`` are (thread_id, checkpoint_ns, checkpoint_id, channel, version), one per
    blob a deleted checkpoint referenced. Returns the number of deleted checkpoints.
    """
    deleted = sorted({(t, ns, cid) for t, ns, cid, _, _ in rows})
    freed = sorted({(t, ns, ch, ver) for t, ns, _, ch, ver in rows if ch is not None})
    for chunk in chunked(deleted, CHUNK_SIZE):
        cur.execute(q(sql.CLEAR_DELETED_PARENTS), as_columns(chunk, 3))
    for chunk in chunked(freed, CHUNK_SIZE):
        cur.execute(q(sql.DELETE_UNREFERENCED_BLOBS), as_columns(chunk, 4))
    return len(deleted)
