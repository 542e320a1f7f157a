"""The read side: list() pages, result rows to CheckpointTuples, the DeltaChannel walk.

get_tuple and every list() page return rows of one shape (see ``sql._TUPLE_ROWS``):
the checkpoints, each distinct blob they reference once, their pending writes, and
the pending sends of pre-v4 checkpoints. ``assemble`` turns them into tuples exactly
as PostgresSaver presents the same data.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import CheckpointTuple, DeltaChannelHistory, get_checkpoint_id
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.types import TASKS

from . import codec, sql

# How the walk reads, given by the saver: one checkpoint by its config, and the next page
# of a list cursor. (This module assembles rows; the saver owns connections.)
GetTuple = Callable[[RunnableConfig], "CheckpointTuple | None"]
ReadPage = Callable[["ListCursor"], Iterable[CheckpointTuple]]


@dataclass
class ListCursor:
    """Where a list() is: its fixed filter, how many rows are still wanted, the last key."""

    where: list[str]
    params: list[Any]
    one_namespace: bool
    remaining: int | None
    after: tuple[str, str, str] | None = None
    done: bool = False


def list_cursor(
    config: RunnableConfig | None,
    filter: Mapping[str, Any] | None,
    before: RunnableConfig | None,
    limit: int | None,
) -> ListCursor:
    """The filter of a list() call, as PostgresSaver applies it, ready for paging."""
    where: list[str] = []
    params: list[Any] = []
    impossible = False  # a NUL character: nothing stored can match
    one_namespace = False
    if config:
        configurable = config["configurable"]
        thread_id = str(configurable["thread_id"])
        where.append(sql.WHERE_THREAD)
        params.append(thread_id)
        checkpoint_ns = configurable.get("checkpoint_ns")
        if checkpoint_ns is not None:
            where.append(sql.WHERE_NS)
            params.append(checkpoint_ns)
            one_namespace = True
        if checkpoint_id := get_checkpoint_id(config):
            where.append(sql.WHERE_ID)
            params.append(checkpoint_id)
        impossible = codec.never_stored(thread_id, checkpoint_ns, checkpoint_id)
    if filter:
        filter_json = codec.dump_metadata_filter(filter)
        impossible = impossible or filter_json is None
        where.append(sql.WHERE_METADATA)
        params.append(filter_json)
    if before is not None and (before_id := get_checkpoint_id(before)):
        where.append(sql.WHERE_BEFORE)
        params.append(before_id)
        impossible = impossible or codec.never_stored(before_id)
    if limit is not None:
        limit = int(limit)
        if limit < 0:
            raise ValueError(f"limit must be 0 or more, got {limit}")
    return ListCursor(where, params, one_namespace, limit, done=impossible or limit == 0)


def page_query(cursor: ListCursor, size: int) -> tuple[str, dict[str, str], tuple, int]:
    """(SQL template, its ``{where}`` part, parameters, page size) of the cursor's next
    page; the renderer fills template and part in one pass."""
    if cursor.remaining is not None:
        size = min(size, cursor.remaining)
    where, params = list(cursor.where), list(cursor.params)
    if cursor.after is not None:
        if cursor.one_namespace:  # the primary key orders one namespace by ID alone
            where.append(sql.WHERE_AFTER_ID)
            params.append(cursor.after[0])
        else:
            where.append(sql.WHERE_AFTER_ROW)
            params.extend(cursor.after)
    clause = "WHERE " + " AND ".join(where) if where else ""  # fixed fragments only
    return sql.LIST_PAGE, {"where": clause}, (*params, size), size


def advance(cursor: ListCursor, page: list[CheckpointTuple], size: int) -> None:
    """Move the cursor past ``page``, the result of a page of ``size`` rows."""
    if len(page) < size:
        cursor.done = True
    if cursor.remaining is not None:
        cursor.remaining -= len(page)
        cursor.done = cursor.done or cursor.remaining <= 0
    if page:
        last = page[-1].config["configurable"]
        cursor.after = (last["checkpoint_id"], last["thread_id"], last["checkpoint_ns"])


def assemble(serde: SerializerProtocol, rows: Sequence[tuple]) -> list[CheckpointTuple]:
    """CheckpointTuples, in page order, from the rows of a get or list-page query."""
    checkpoints = []
    blobs: dict[tuple[str, str, str, str], tuple[str, Any]] = {}
    writes: dict[tuple[str, str, str], list] = defaultdict(list)
    sends: dict[tuple[str, str, str], list] = defaultdict(list)
    for kind, thread_id, ns, a, b, c, d, e, blob, idx in rows:
        if kind == 0:  # idx is its position in the page
            checkpoints.append((idx, thread_id, ns, a, b, c, d))
        elif kind == 1:
            blobs[(thread_id, ns, a, b)] = (c, blob)
        else:  # a write of the checkpoint itself (2) or a send of its parent (3)
            (writes if kind == 2 else sends)[(thread_id, ns, a)].append((b, c, d, blob, e, idx))
    checkpoints.sort(key=lambda r: r[0])
    return [_tuple(serde, row[1:], blobs, writes, sends) for row in checkpoints]


def _tuple(
    serde: SerializerProtocol,
    row: tuple,
    blobs: Mapping[tuple[str, str, str, str], tuple[str, Any]],
    writes: Mapping[tuple[str, str, str], list],
    sends: Mapping[tuple[str, str, str], list],
) -> CheckpointTuple:
    thread_id, ns, checkpoint_id, parent_id, checkpoint_text, metadata_text = row
    checkpoint = json.loads(checkpoint_text)
    versions = checkpoint.setdefault("channel_versions", {})
    values = dict(checkpoint.get("channel_values") or {})
    for channel, version in versions.items():  # a blob replaces an inline marker
        hit = blobs.get((thread_id, ns, channel, str(version)))
        if hit is not None and hit[0] != "empty":
            values[channel] = codec.load_value(serde, hit[0], hit[1])
    parent_sends = sends.get((thread_id, ns, parent_id)) if parent_id else None
    if parent_sends and checkpoint.get("v", 4) < 4:
        # Before format v4, pending sends were writes of the parent checkpoint.
        values[TASKS] = [value for _, _, value in codec.load_writes(serde, parent_sends)]
        versions[TASKS] = max(versions.values()) if versions else codec.next_version(None)
    checkpoint["channel_values"] = values
    return CheckpointTuple(
        config=checkpoint_config(thread_id, ns, checkpoint_id),
        checkpoint=checkpoint,
        metadata=json.loads(metadata_text),
        parent_config=checkpoint_config(thread_id, ns, parent_id) if parent_id else None,
        pending_writes=codec.load_writes(serde, writes.get((thread_id, ns, checkpoint_id), [])),
    )


def checkpoint_config(thread_id: str, checkpoint_ns: str, checkpoint_id: str) -> RunnableConfig:
    return {
        "configurable": {
            "thread_id": thread_id,
            "checkpoint_ns": checkpoint_ns,
            "checkpoint_id": checkpoint_id,
        }
    }


# -- DeltaChannel history ----------------------------------------------------------------


def delta_channel_history(
    get_tuple: GetTuple, read_page: ReadPage, config: RunnableConfig, channels: Sequence[str]
) -> dict[str, DeltaChannelHistory]:
    """BaseCheckpointSaver's ancestor walk, step for step, over ancestors read in pages."""
    if not channels:
        return {}
    collected: dict[str, list] = {channel: [] for channel in channels}
    seeds: dict[str, Any] = {}
    remaining = set(channels)
    target = get_tuple(config)
    parent = target.parent_config if target else None
    ancestors = _Ancestors(get_tuple, read_page, target.config) if target and parent else None
    while parent is not None and ancestors is not None and remaining:
        tup = ancestors.get(parent)
        if tup is None:
            break
        for write in reversed(tup.pending_writes or []):
            if write[1] in remaining:
                collected[write[1]].append(write)
        for channel in list(remaining):
            if channel in tup.checkpoint["channel_values"]:
                seeds[channel] = tup.checkpoint["channel_values"][channel]
                remaining.discard(channel)
        parent = tup.parent_config
    result: dict[str, DeltaChannelHistory] = {}
    for channel in channels:
        entry: DeltaChannelHistory = {"writes": list(reversed(collected[channel]))}
        if channel in seeds:
            entry["seed"] = seeds[channel]
        result[channel] = entry
    return result


class _Ancestors:
    """The checkpoints of a thread and namespace older than a given one, read a page at a
    time (newest first) as a walk down the parent links asks for them."""

    def __init__(self, get_tuple: GetTuple, read_page: ReadPage, below: RunnableConfig) -> None:
        where = below["configurable"]
        thread = {"thread_id": where["thread_id"], "checkpoint_ns": where["checkpoint_ns"]}
        before: RunnableConfig = {"configurable": {"checkpoint_id": where["checkpoint_id"]}}
        self.get_tuple, self.read_page = get_tuple, read_page
        self.pages = list_cursor({"configurable": thread}, None, before, None)
        self.loaded: dict[str, CheckpointTuple] = {}

    def get(self, config: RunnableConfig) -> CheckpointTuple | None:
        checkpoint_id = config["configurable"]["checkpoint_id"]
        while checkpoint_id not in self.loaded and not self.pages.done:
            for tup in self.read_page(self.pages):
                self.loaded[tup.config["configurable"]["checkpoint_id"]] = tup
        if checkpoint_id in self.loaded:
            return self.loaded[checkpoint_id]
        return self.get_tuple(config)  # a parent whose ID sorts after its child's
