"""Checkpoints, blobs and writes to rows and back, in langgraph-checkpoint-postgres' formats.

A checkpoint row holds the checkpoint as JSON with its primitive channel values
inline (None, str, int, float, bool); every other channel value is a blob row
keyed by (channel, version), serialized with the saver's ``serde``. This is
PostgresSaver's layout, so either saver reads what the other wrote. Two values
PostgreSQL's jsonb cannot hold, a string with a NUL character and a NaN or
infinite float, go to blobs instead of failing: PostgresSaver reads them back
the same way.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    get_serializable_checkpoint_metadata,
    writes_sort_key,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.types import _DeltaSnapshot

from ..errors import InvalidInput
from ..values import unstorable

_NUL = "\x00"


def text_key(value: Any, what: str) -> str:
    """``value`` as the text stored in a key column; a NUL or a lone surrogate is refused."""
    text = value if isinstance(value, str) else str(value)
    reason = unstorable(text)
    if reason:
        raise InvalidInput(f"{what} {text[:40]!r} contains {reason}; nothing was written.")
    return text


def never_stored(*values: Any) -> bool:
    """Whether a key holds text no row can hold (a NUL, a lone surrogate): a read of it
    finds nothing, without asking the server."""
    return any(isinstance(v, str) and unstorable(v) for v in values)


def _inline(value: Any) -> bool:
    """Whether a channel value stays in the checkpoint JSON (as in PostgresSaver)."""
    if value is None or isinstance(value, (bool, int)):
        return True
    if isinstance(value, str):
        return _NUL not in value
    if isinstance(value, float):
        return math.isfinite(value)
    return False


def split_checkpoint(checkpoint: Checkpoint) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the checkpoint to store as JSON, the channel values to store as blobs)."""
    stored: dict[str, Any] = dict(checkpoint)
    inline = dict(checkpoint["channel_values"])
    stored["channel_values"] = inline
    blobs: dict[str, Any] = {}
    for channel, value in checkpoint["channel_values"].items():
        if isinstance(value, _DeltaSnapshot):
            blobs[channel] = value
            inline[channel] = True  # PostgresSaver's marker: "the value is in the blob"
        elif not _inline(value):
            blobs[channel] = inline.pop(channel)
    return stored, blobs


def dump_blobs(
    serde: SerializerProtocol, values: Mapping[str, Any], new_versions: ChannelVersions
) -> list[tuple[str, str, str, bytes]]:
    """(channel, version, type, bytes) for each blob value whose version is new."""
    rows = []
    for channel, version in new_versions.items():
        if channel in values:
            type_, data = serde.dumps_typed(values[channel])
            rows.append((channel, str(version), type_, data))
    return rows


def dump_checkpoint_json(stored: Mapping[str, Any]) -> str:
    try:
        text = json.dumps(stored, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            f"checkpoint {stored.get('id')!r} cannot be stored as JSON ({exc}); nothing was "
            "written. Channel versions and versions_seen must be JSON values."
        ) from exc
    _refuse_nul_in_json(text, stored, f"checkpoint {stored.get('id')!r}")
    return text


def dump_metadata_json(config: RunnableConfig, metadata: CheckpointMetadata) -> str:
    """The metadata as PostgresSaver stores it (with the config's extra keys), as JSON.

    LangGraph strips NUL characters from values it copies from the config, but a
    NUL in the metadata given here is refused rather than silently altered.
    """
    # LangGraph would strip NULs from top-level strings below; look before it does. Deeper
    # ones survive into the JSON, where the cheap test in _refuse_nul_in_json finds them.
    for key, value in metadata.items():
        if (isinstance(key, str) and _NUL in key) or (isinstance(value, str) and _NUL in value):
            _refuse_nul_in_metadata(metadata)
    serializable = get_serializable_checkpoint_metadata(config, metadata)
    try:
        text = json.dumps(serializable, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            f"checkpoint metadata cannot be stored as JSON ({exc}); nothing was written. "
            "Metadata values must be JSON values: str, int, finite float, bool, None, "
            "lists and dicts with str keys."
        ) from exc
    if "\\u0000" in text:
        _refuse_nul_in_metadata(metadata)
    return text


def _refuse_nul_in_metadata(metadata: Any) -> None:
    path = nul_path(metadata)
    if path is not None:
        raise InvalidInput(
            f"checkpoint metadata has a NUL character (\\x00) at {path}, which PostgreSQL's "
            "jsonb cannot store; nothing was written. Remove NUL characters from metadata."
        )


def dump_metadata_filter(filter: Mapping[str, Any]) -> str | None:
    """The filter as JSON, or None when it has a NUL character (then nothing can match)."""
    if nul_path(filter) is not None:
        return None
    return json.dumps(filter)


def _refuse_nul_in_json(text: str, value: Any, what: str) -> None:
    # json.dumps escapes NUL as \u0000; the cheap substring test may also hit an escaped
    # backslash followed by "u0000", so the walk decides.
    if "\\u0000" not in text:
        return
    path = nul_path(value)
    if path is not None:
        raise InvalidInput(
            f"{what} has a NUL character (\\x00) at {path}, which PostgreSQL's jsonb cannot "
            "store; nothing was written. Remove NUL characters from channel names and "
            "versions."
        )


def nul_path(value: Any, path: str = "$") -> str | None:
    """Where in ``value`` (dicts, lists, strings) a NUL character is, or None."""
    if isinstance(value, str):
        return path if _NUL in value else None
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str) and _NUL in key:
                return f"{path} (a key)"
            found = nul_path(item, f"{path}.{key}")
            if found is not None:
                return found
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = nul_path(item, f"{path}[{i}]")
            if found is not None:
                return found
    return None


def dump_writes(
    serde: SerializerProtocol, writes: Sequence[tuple[str, Any]]
) -> list[tuple[int, str, str, bytes]]:
    """(idx, channel, type, bytes) per write; special channels get their fixed idx."""
    rows = []
    for idx, (channel, value) in enumerate(writes):
        type_, data = serde.dumps_typed(value)
        rows.append(
            (WRITES_IDX_MAP.get(channel, idx), text_key(channel, "write channel"), type_, data)
        )
    return rows


def load_value(serde: SerializerProtocol, type_: str, blob: Any) -> Any:
    return serde.loads_typed((type_, bytes(blob) if blob is not None else b""))


def load_writes(
    serde: SerializerProtocol, rows: Sequence[tuple[str, str, str, Any, str, int]]
) -> list[tuple[str, str, Any]]:
    """Rows of (task_id, channel, type, blob, task_path, idx) in ``writes_sort_key`` order."""
    ordered = sorted(rows, key=lambda w: writes_sort_key(w[4], w[0], w[5]))
    return [(task_id, channel, load_value(serde, t, b)) for task_id, channel, t, b, _, _ in ordered]


def next_version(current: str | int | float | None) -> str:
    """PostgresSaver's version format: a zero-padded counter and a random fraction."""
    if current is None:
        counter = 0
    elif isinstance(current, int):
        counter = current
    else:
        counter = int(str(current).split(".")[0])
    return f"{counter + 1:032}.{random.random():016}"
