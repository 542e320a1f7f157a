"""PGSyncStore: LangGraph's long-term memory (``BaseStore``) on the worker process's pool.

``batch`` takes a connection for one call; ``abatch`` embeds (awaiting an async
``embed``) on the caller's loop and runs the SQL on ``aperag_pg.threads.to_thread``.
Nothing is bound to an event loop or held between calls, and there is no instance lock,
so one store serves sync and async callers from any thread or loop, including a new
``asyncio.run`` per Celery task.

Tables, migration versions and row formats are langgraph-checkpoint-postgres 3.2.0's
``PostgresStore``: each side reads what the other wrote. Where the behaviour differs
on purpose, the module that does it says so (``filters``, ``namespaces``, ``sql``).
"""

from __future__ import annotations

import logging
import reprlib
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psycopg2.errors
from langgraph.store.base import (
    BaseStore,
    GetOp,
    Item,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    TTLConfig,
    get_text_at_path,
    tokenize_path,
    validate_op_namespace,
)
from psycopg2 import sql as pgsql

from ..cursors import DictRowCursor, Manager, MissingTables, Mode, cursor
from ..errors import (
    ConfigError,
    InvalidInput,
    TransientFailure,
    VectorDimensionMismatch,
    first_line,
)
from ..manager import PostgreSQLSyncConnectionManager
from ..pgvector import vector_literal
from ..schema import in_schema
from ..settings import is_plain_schema_name
from ..threads import to_thread
from ..values import check_storable, jsonb_text
from . import namespaces, search, sql
from .config import VectorIndex, vector_index
from .migrate import setup_store_tables

logger = logging.getLogger(__name__)

SWEEP_BATCH = 1000  # expired items deleted per statement
_ITERATIVE_SCAN = {
    # pgvector 0.8+: the index scan goes on past rows the namespace condition drops. Relaxed
    # order is cheaper, and the page is sorted by exact distance afterwards anyway.
    "hnsw": pgsql.SQL("SET LOCAL hnsw.iterative_scan = relaxed_order; "),
    "ivfflat": pgsql.SQL("SET LOCAL ivfflat.iterative_scan = relaxed_order; "),
}
Compose = Callable[..., pgsql.Composed]  # a statement template and its parts -> statement
_ANN_ROUNDS = 3  # index reads, each 4x wider, before an exact scan takes over

# What PostgreSQL can hold, checked before a statement is sent:
BIGINT_MAX = 2**63 - 1  # LIMIT and OFFSET are bigint
MAX_DEPTH = 2**31 - 1  # list_namespaces max_depth is an integer array bound
# About 190,000 years: now() plus this stays far below timestamptz's last year (294276),
# and in seconds within an interval's range (2**63 microseconds, 292,000 years).
MAX_TTL_MINUTES = 1e11
# Writes lock rows in one order (sql.PUT), but a row a rival made after the statement's
# snapshot is invisible to its lock step, and ON CONFLICT then waits for it out of order:
# the one deadlock no row lock order prevents (only churn of deletes and re-puts of the
# same items meets it). Such a statement is rolled back whole and run again, at most this
# often; PGSyncStore.deadlock_retries counts it.
DEADLOCK_RETRIES = 5


@dataclass
class _Plan:
    """A batch checked and grouped, with the texts it needs embedded."""

    size: int
    gets: list[tuple[int, GetOp]] = field(default_factory=list)
    searches: list[tuple[int, SearchOp]] = field(default_factory=list)
    lists: list[tuple[int, ListNamespacesOp]] = field(default_factory=list)
    puts: dict[tuple[str, str], PutOp] = field(default_factory=dict)  # last op per item wins
    fields: list[tuple[str, str, str]] = field(default_factory=list)  # (prefix, key, field)
    texts: list[str] = field(default_factory=list)  # the field's text, embedded on put
    queries: dict[int, str] = field(default_factory=dict)  # search index -> query text


class PGSyncStore(BaseStore):
    """LangGraph ``BaseStore`` on aperag_pg's per-process psycopg2 pool.

    Args:
        schema: schema of the store tables; default ``POSTGRES_SCHEMA`` of the pool.
        index: upstream's ``PostgresIndexConfig`` (dims, embed, fields,
            ann_index_config, distance_type) to enable semantic search.
        ttl: upstream's ``TTLConfig`` (default_ttl in minutes, fractions kept;
            refresh_on_read; omit_expired). Expired items are deleted by
            ``sweep_ttl()``, which the Celery beat task ``aperag_pg.sweep_store`` runs.
        deserializer: turns a stored value that is not a JSON object into a dict.
        manager: the connection manager (the process-wide one by default).
    """

    supports_ttl = True

    def __init__(
        self,
        *,
        schema: str | None = None,
        index: Mapping[str, Any] | None = None,
        ttl: TTLConfig | None = None,
        deserializer: Callable[[Any], dict[str, Any]] | None = None,
        manager: Manager = PostgreSQLSyncConnectionManager,
    ) -> None:
        if schema is not None and not is_plain_schema_name(schema):
            raise ConfigError(
                f"schema {schema!r} is not a plain schema name: use 1 to 63 letters, digits "
                "or underscores, not starting with a digit (as POSTGRES_SCHEMA)."
            )
        self._schema = schema
        self.index: VectorIndex | None = vector_index(index) if index else None
        # upstream's attributes, which LangGraph and callers read
        self.index_config = dict(index) if index else None
        self.embeddings = self.index.embeddings if self.index else None
        self.ttl_config = ttl  # read on every call, as upstream: callers may change it
        self._deserializer = deserializer
        self.manager = manager
        self._iterative_scans = False  # pgvector 0.8+, known after setup()
        self.deadlock_retries = 0  # statements run again after DeadlockDetected
        self._retries_lock = threading.Lock()

    @property
    def _omit_expired(self) -> bool:
        return bool(self.ttl_config and self.ttl_config.get("omit_expired"))

    @property
    def schema(self) -> str:
        return self._schema or self.manager.settings().schema

    # -- setup and maintenance ----------------------------------------------------

    def setup(self) -> None:
        """Create or upgrade the tables (upstream's versions), under the DDL lock; safe to
        call from every process at start. No autocommit connection is needed."""
        pgvector = setup_store_tables(self.schema, self.index, self.manager)
        self._iterative_scans = pgvector >= (0, 8)

    async def asetup(self) -> None:
        await to_thread(self.setup)

    def sweep_ttl(self) -> int:
        """Delete the items whose TTL has run out (their vectors go with them); return how
        many. Bounded statements, and rows another sweeper holds are skipped, so several
        sweepers at once never wait on each other."""
        deleted = 0
        with self._cursor(Mode.AUTOCOMMIT) as (cur, compose):
            statement = compose(sql.SWEEP_EXPIRED)
            while True:
                cur.execute(statement, (SWEEP_BATCH,))
                deleted += cur.rowcount
                if cur.rowcount < SWEEP_BATCH:
                    return deleted

    async def asweep_ttl(self) -> int:
        return await to_thread(self.sweep_ttl)

    def start_ttl_sweeper(self, sweep_interval_minutes: int | None = None) -> Future[None]:
        """Upstream's sweeper thread is not started: in a worker, expired items are deleted
        by the beat task ``aperag_pg.sweep_store`` (one sweep, not one thread per process)."""
        logger.info(
            "PGSyncStore does not start a TTL sweeper thread; schedule the Celery beat task "
            "aperag_pg.sweep_store (config/celery.py does) or call sweep_ttl()."
        )
        done: Future[None] = Future()
        done.set_result(None)
        return done

    def stop_ttl_sweeper(self, timeout: float | None = None) -> bool:
        return True

    # -- batches ----------------------------------------------------------------------

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        plan = self._plan(ops)
        vectors = self._embed(plan.texts)
        queries = self._embed(list(plan.queries.values()))
        return self._execute(plan, vectors, dict(zip(plan.queries, queries, strict=True)))

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        plan = self._plan(ops)
        vectors = await self._aembed(plan.texts)
        queries = await self._aembed(list(plan.queries.values()))
        return await to_thread(
            self._execute, plan, vectors, dict(zip(plan.queries, queries, strict=True))
        )

    # -- planning: validation, grouping, what to embed ------------------------------------

    def _plan(self, ops: Iterable[Op]) -> _Plan:
        ops = list(ops)
        plan = _Plan(size=len(ops))
        for i, op in enumerate(ops):
            validate_op_namespace(op)
            if isinstance(op, GetOp):
                _check_key(op.key)
                plan.gets.append((i, op))
            elif isinstance(op, SearchOp):
                _check_page(op.limit, op.offset, "search")
                if op.query and self.index is not None:  # "" is a plain search, as upstream
                    _check_text(op.query, "search query")
                    plan.queries[len(plan.searches)] = op.query
                plan.searches.append((i, op))
            elif isinstance(op, ListNamespacesOp):
                _check_page(op.limit, op.offset, "list_namespaces")
                if op.max_depth is not None and not _is_int_in(op.max_depth, 1, MAX_DEPTH):
                    raise InvalidInput(
                        f"list_namespaces max_depth is {op.max_depth!r}; use a positive "
                        f"integer up to {MAX_DEPTH}, or None for whole namespaces."
                    )
                plan.lists.append((i, op))
            elif isinstance(op, PutOp):
                _check_key(op.key)
                _check_put(op)
                plan.puts[(namespaces.to_text(op.namespace), op.key)] = op
            else:
                raise InvalidInput(f"unknown store operation {type(op).__name__}")
        if self.index is not None:
            self._fields_to_embed(plan)
        return plan

    def _fields_to_embed(self, plan: _Plan) -> None:
        for (prefix, key), op in plan.puts.items():
            if op.value is None or op.index is False:
                continue
            if op.index is None:
                paths = self._vectors.fields
            else:
                paths = tuple((path, tokenize_path(path)) for path in op.index)
            for path, tokens in paths:
                texts = get_text_at_path(op.value, tokens)
                for n, text in enumerate(texts):
                    plan.fields.append((prefix, key, f"{path}.{n}" if len(texts) > 1 else path))
                    plan.texts.append(_check_text(text, f"the text at {path!r} of item {key!r}"))

    def _embed(self, texts: list[str]) -> list[Any]:
        if not texts:
            return []
        return self._checked_vectors(self._embeddings().embed_documents(texts), len(texts))

    async def _aembed(self, texts: list[str]) -> list[Any]:
        if not texts:
            return []
        return self._checked_vectors(await self._embeddings().aembed_documents(texts), len(texts))

    def _embeddings(self) -> Any:
        if self.embeddings is None:
            raise ConfigError(
                "the store's index has no embed: give index={'dims': ..., 'embed': ...} "
                "(an Embeddings, a function, or a 'provider:model' string) to put or search "
                "by vector."
            )
        return self.embeddings

    def _checked_vectors(self, vectors: Sequence[Sequence[float]], texts: int) -> list[np.ndarray]:
        """The embeddings, one per text, as arrays of the index's dimension, all finite."""
        if len(vectors) != texts:
            raise InvalidInput(
                f"the embedding function returned {len(vectors)} vectors for {texts} texts; "
                "nothing was written."
            )
        checked = []
        for vector in vectors:
            array = np.asarray(vector, dtype=np.float64)
            if array.shape != (self._vectors.dims,):
                raise VectorDimensionMismatch(
                    f"the embedding function returned a vector of shape {array.shape}, but "
                    f"the store's index dims is {self._vectors.dims}. Fix: set index dims to the "
                    "model's dimension (a new schema if its tables hold another)."
                )
            if not np.isfinite(array).all():
                raise InvalidInput(
                    "the embedding function returned NaN or infinity; nothing was written."
                )
            checked.append(array)
        return checked

    # -- execution: one connection, one transaction when anything is written ------------

    def _execute(
        self, plan: _Plan, vectors: list[np.ndarray], queries: dict[int, np.ndarray]
    ) -> list[Result]:
        results: list[Result] = [None] * plan.size
        try:
            # Every statement stands alone: the puts are one statement, and a read is
            # one snapshot either way under READ COMMITTED (upstream runs in autocommit too).
            with self._cursor(Mode.AUTOCOMMIT) as (cur, compose):
                if plan.gets:
                    self._get(cur, compose, plan.gets, results)
                for n, (i, op) in enumerate(plan.searches):
                    if n in queries:
                        results[i] = self._vector_search(cur, compose, op, queries[n])
                    else:
                        results[i] = self._search(cur, compose, op)
                for i, list_op in plan.lists:
                    results[i] = self._list_namespaces(cur, list_op)
                if plan.puts:
                    self._put(cur, compose, plan, vectors)
        except psycopg2.errors.ProgramLimitExceeded as exc:
            raise InvalidInput(
                f"an item is too large for PostgreSQL ({first_line(exc)}); keep keys and "
                "labels short and large content elsewhere, with a reference in the item. "
                "Nothing was written."
            ) from exc
        return results

    def _cursor(self, mode: Mode):
        return _store_cursor(self.manager, self.schema, mode)

    @property
    def _vectors(self) -> VectorIndex:
        """The index, where only a store made with one goes (its searches and embeddings)."""
        assert self.index is not None, "reached only for a store made with index=..."
        return self.index

    def _live(self) -> pgsql.Composable:
        return sql.LIVE if self._omit_expired else sql.ANY

    def _write(self, cur: Any, statement: pgsql.Composed, params: Sequence[Any]) -> None:
        """Run a one-statement write (autocommit: a deadlock rolls back all of it), again
        after a deadlock, at most DEADLOCK_RETRIES times; each retry is counted."""
        for attempt in range(DEADLOCK_RETRIES + 1):
            try:
                cur.execute(statement, params)
                return
            except psycopg2.errors.DeadlockDetected as exc:
                if attempt == DEADLOCK_RETRIES:
                    raise TransientFailure(
                        f"a store write deadlocked {attempt + 1} times with rival writes "
                        f"({first_line(exc)}); nothing of it was written. Run the batch "
                        "again (DatabaseTask retries it)."
                    ) from exc
                with self._retries_lock:
                    self.deadlock_retries += 1
                logger.info("store write deadlocked; running it again: %s", first_line(exc))

    def _get(self, cur: Any, compose: Compose, gets: list[tuple[int, GetOp]], results: list):
        wanted = [(namespaces.to_text(op.namespace), op.key) for _, op in gets]
        cur.execute(
            compose(sql.GET_ITEMS, live=self._live()),
            ([p for p, _ in wanted], [k for _, k in wanted]),
        )
        rows = {(row["prefix"], row["key"]): row for row in cur.fetchall()}
        refresh = set()
        for (i, op), item in zip(gets, wanted, strict=True):
            row = rows.get(item)
            results[i] = None if row is None else self._item(op.namespace, row)
            if row is not None and op.refresh_ttl and row["has_ttl"]:
                refresh.add(item)
        self._refresh(cur, compose, refresh)

    def _search(self, cur: Any, compose: Compose, op: SearchOp) -> list[SearchItem]:
        where, params = search.where_clause(op, pgsql.Identifier("s", "prefix"), self._omit_expired)
        cur.execute(compose(sql.SEARCH_ITEMS, where=where), [*params, op.limit, op.offset])
        return self._found(cur, compose, op, cur.fetchall())

    def _vector_search(
        self, cur: Any, compose: Compose, op: SearchOp, query: np.ndarray
    ) -> list[SearchItem]:
        """The index's nearest vectors, widened while filters leave the page short; an
        exact scan when the index has given all it will (a small namespace, a short
        table, hnsw.max_scan_tuples), so results never go missing."""
        query_text = search.query_text(self._vectors, query)  # once, for every round
        # as many as the page may need, within bigint (more than any table holds)
        per_item = self._vectors.vectors_per_item
        candidates = min((op.offset + op.limit) * per_item * 2 + 1, BIGINT_MAX)
        for _ in range(_ANN_ROUNDS):
            found, rows = self._nearest(cur, op, query_text, candidates)
            if len(rows) >= op.limit:
                return self._found(cur, compose, op, rows)
            if found < candidates:
                break
            candidates = min(candidates * 4, BIGINT_MAX)
        _, rows = self._nearest(cur, op, query_text, None)
        return self._found(cur, compose, op, rows)

    def _nearest(
        self, cur: Any, op: SearchOp, query: str, candidates: int | None
    ) -> tuple[int, list]:
        """(how many vectors were read, the page of items)."""
        statement, params = search.nearest_statement(
            self._vectors, op, self.schema, query, candidates, self._omit_expired
        )
        if candidates and self._iterative_scans and self._vectors.kind in _ITERATIVE_SCAN:
            # One round trip: a multi-statement query is one implicit transaction, so
            # SET LOCAL holds for the search.
            statement = _ITERATIVE_SCAN[self._vectors.kind] + statement
        cur.execute(statement, params)
        rows = cur.fetchall()
        found = rows[0]["candidates"] if rows else 0
        return found, [row for row in rows if row["key"] is not None]

    def _found(self, cur: Any, compose: Compose, op: SearchOp, rows: list) -> list[SearchItem]:
        items = [self._search_item(row) for row in rows]
        if op.refresh_ttl:
            self._refresh(cur, compose, {(r["prefix"], r["key"]) for r in rows if r["has_ttl"]})
        return items

    def _refresh(self, cur: Any, compose: Compose, items: set[tuple[str, str]]) -> None:
        if not items:
            return
        self._write(
            cur,
            compose(sql.REFRESH_TTL, live=self._live()),
            ([p for p, _ in items], [k for _, k in items]),
        )

    def _list_namespaces(self, cur: Any, op: ListNamespacesOp) -> list[tuple]:
        enough = min(op.offset + op.limit, BIGINT_MAX)
        statement, params = namespaces.list_namespaces_sql(
            op, self.schema, self._omit_expired, enough
        )
        cur.execute(statement, params)
        found = [row["prefix"] for row in cur.fetchall()]
        if namespaces.may_be_out_of_order(found, op.max_depth):
            cur.execute(statement, {**params, "enough": None})
            found = [row["prefix"] for row in cur.fetchall()]
        return [namespaces.from_text(text) for text in found[op.offset : enough]]

    def _put(self, cur: Any, compose: Compose, plan: _Plan, vectors: list[np.ndarray]) -> None:
        """All the batch's puts as one statement (see ``sql.PUT``): VALUES lists of
        placeholders, and one flat list of their values."""
        ordered = sorted(plan.puts.items())  # the lock order (see sql.PUT)
        deletes = [item for item, op in ordered if op.value is None]
        upserts = [(item, op) for item, op in ordered if op.value is not None]
        params: list[Any] = []

        def listed(row: pgsql.Composable, values: Sequence[Sequence[Any]]) -> pgsql.Composed:
            """A VALUES list of ``row`` for ``values``, whose values join the parameters:
            so lists must be made in the order the statement's text has them."""
            params.extend(value for row_values in values for value in row_values)
            return sql.rows(row, len(values))

        parts = []
        after_locked = sql.ANY
        if deletes:
            pairs = listed(sql.PAIR, [item for item, _ in ordered])
            parts.append(compose(sql.LOCK_ITEMS, pairs=pairs))
            after_locked = sql.AFTER_LOCKED
            pairs = listed(sql.PAIR, deletes)
            parts.append(compose(sql.DELETE_ITEMS, pairs=pairs, after=after_locked))
        if upserts:
            items = [
                (
                    prefix,
                    key,
                    jsonb_text(dict(op.value or {}), f"the value of item {key!r}"),
                    op.ttl,
                    op.ttl,
                )
                for (prefix, key), op in upserts
            ]
            rows = listed(sql.ITEM_ROW, items)
            parts.append(compose(sql.UPSERT_ITEMS, rows=rows, after=after_locked))
        if upserts and self.index is not None:
            pairs = listed(sql.PAIR, [item for item, _ in upserts])
            keeping: pgsql.Composable = pgsql.SQL("")
            if plan.fields:
                keeping = sql.KEEPING_FIELDS.format(triples=listed(sql.TRIPLE, plan.fields))
            parts.append(
                compose(
                    sql.DELETE_STALE_VECTORS, pairs=pairs, keeping=keeping, after=sql.AFTER_ITEMS
                )
            )
        if plan.fields:
            texts = [vector_literal(v.astype(np.float32)) for v in vectors]
            fields = sorted((*field, text) for field, text in zip(plan.fields, texts, strict=True))
            row = sql.VECTOR_ROW.format(column_type=self._vectors.column_type_sql)
            parts.append(
                compose(sql.UPSERT_VECTORS, rows=listed(row, fields), after=sql.AFTER_ITEMS)
            )
        self._write(cur, compose(sql.PUT, parts=pgsql.SQL(",\n").join(parts)), params)

    # -- rows -> items --------------------------------------------------------------

    def _value(self, value: Any) -> dict[str, Any]:
        if isinstance(value, dict):
            return value
        if self._deserializer is None:
            raise InvalidInput(
                f"a stored value is a JSON {type(value).__name__}, not an object; pass "
                "PGSyncStore(deserializer=...) to read such values."
            )
        return self._deserializer(value)

    def _item(self, namespace: tuple[str, ...], row: Mapping[str, Any]) -> Item:
        return Item(
            value=self._value(row["value"]),
            key=row["key"],
            namespace=tuple(namespace),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    def _search_item(self, row: Mapping[str, Any]) -> SearchItem:
        score = row["score"]
        return SearchItem(
            namespace=namespaces.from_text(row["prefix"]),
            key=row["key"],
            value=self._value(row["value"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            score=None if score is None else float(score),
        )


# -- helpers -----------------------------------------------------------------------------


MISSING = MissingTables(
    "the LangGraph store tables", "call PGSyncStore.setup() once (or PostgresStore.setup())"
)


@contextmanager
def _store_cursor(manager: Manager, schema: str, mode: Mode) -> Iterator[tuple[Any, Compose]]:
    """A dict-row cursor run as ``mode`` says, and the composer of ``{schema}`` and the
    other named parts of a statement; a missing table raises SchemaError naming the fix."""

    def compose(template: pgsql.SQL, **parts: pgsql.Composable) -> pgsql.Composed:
        return in_schema(template, schema, **parts)

    with MISSING.explained(schema), cursor(manager, mode, DictRowCursor) as cur:
        yield cur, compose


def _check_key(key: Any) -> None:
    if not isinstance(key, str):
        raise InvalidInput(f"item key {key!r} is a {type(key).__name__}; use a string.")
    check_storable(key, "item key")


def _check_text(text: Any, where: str) -> str:
    if not isinstance(text, str):
        raise InvalidInput(f"{where} is a {type(text).__name__}; use a string.")
    return check_storable(text, where)


def _is_int_in(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _check_page(limit: Any, offset: Any, what: str) -> None:
    for name, value in (("limit", limit), ("offset", offset)):
        if not _is_int_in(value, 0, BIGINT_MAX):
            raise InvalidInput(
                f"{what} {name} is {value!r}; use an integer from 0 to {BIGINT_MAX} "
                "(PostgreSQL's bigint)."
            )


def _check_put(op: PutOp) -> None:
    if op.value is not None and not isinstance(op.value, Mapping):
        raise InvalidInput(
            f"the value of item {op.key!r} is a {type(op.value).__name__}; a store item's "
            "value is a dict (None deletes the item)."
        )
    # Compared, not converted: NaN fails both comparisons, and a huge int cannot overflow.
    if op.ttl is not None and (
        isinstance(op.ttl, bool)
        or not isinstance(op.ttl, (int, float))
        or not 0 < op.ttl <= MAX_TTL_MINUTES
    ):
        raise InvalidInput(
            f"the ttl of item {op.key!r} is {reprlib.repr(op.ttl)}; use a positive number "
            f"of minutes, at most {MAX_TTL_MINUTES:g} (PostgreSQL's timestamps end in the "
            "year 294276), or None for no expiry."
        )
    if (
        op.index is not None
        and op.index is not False
        and (isinstance(op.index, str) or not all(isinstance(p, str) for p in op.index))
    ):
        raise InvalidInput(
            f"the index of item {op.key!r} is {op.index!r}; use a list of field paths, "
            "False, or None for the store's fields."
        )
