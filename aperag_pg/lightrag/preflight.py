"""Checks a worker runs at start, before its first task can write anything.

The embedding dimension against LightRAG's vector tables: LightRAG names each table after
the embedding model and dimension (``lightrag_vdb_chunks_<model>_<dim>d``), so

- a table of that very name with another dimension (tables made without a model name, or
  by hand) would refuse every write;
- the same model's tables at another dimension, with rows, mean EMBEDDING_DIM changed:
  LightRAG would start new, empty tables and queries would no longer find what is stored.

Either stops the worker at start with the tables and both dimensions, as does an invalid
model setting (``EMBEDDING_DIM=big``); ``doctor`` reports the same. A worker whose models
are not configured starts (its LightRAG tasks refuse to run, saying why); so does one that
cannot reach the database (tasks retry until it is back).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any, NoReturn

import psycopg2

from ..errors import ConfigError, EmbeddingDimensionMismatch, ModelsNotConfigured, first_line
from ..settings import PostgresSettings, load_environment
from ..stores.vector_tables import (
    VECTOR_NAMESPACES,
    VectorTable,
    vector_table_name,
    vector_tables,
)
from .models import EMBEDDING_ROLE, lightrag_arguments

logger = logging.getLogger(__name__)


def dimension_problems(
    tables: list[VectorTable], schema: str, model_name: str | None, dimension: int
) -> list[str]:
    """What is wrong between the embedding (``model_name``, ``dimension``) and ``tables``
    (those in ``schema``), one sentence each; empty when nothing is."""
    by_name = {table.name: table for table in tables}
    problems = []
    for namespace in VECTOR_NAMESPACES:
        expected = vector_table_name(namespace, model_name, dimension).lower()
        table = by_name.get(expected)
        if table is not None and table.dimension != dimension:
            problems.append(
                f"table {schema}.{expected} stores {table.dimension or 'undimensioned'}"
                f"-dimensional vectors, but the embedding model gives {dimension} (EMBEDDING_DIM "
                "or the embedding function's embedding_dim)"
            )
        elif (table is None or not table.has_rows) and model_name:
            # vector_table_name at dimension 0 ends in "_0d": the rest is the model's prefix
            prefix = vector_table_name(namespace, model_name, 0).lower()[: -len("0d")]
            same_model = re.compile(re.escape(prefix) + r"(\d+)d")
            for other in tables:
                found = same_model.fullmatch(other.name)
                if found and other.has_rows and int(found.group(1)) != dimension:
                    problems.append(
                        f"table {schema}.{other.name} holds {found.group(1)}-dimensional "
                        f"vectors of model {model_name!r}, but EMBEDDING_DIM is {dimension}: "
                        f"LightRAG would write to a new, empty {expected} and queries would "
                        "not find what is stored"
                    )
    return problems


def check_vector_tables(
    conn: Any, schema: str, environ: Mapping[str, str] | None = None
) -> list[str]:
    """``dimension_problems`` for the configured embedding and the vector tables in
    ``schema``. Raises ModelsNotConfigured when there is no model to check."""
    embedding = lightrag_arguments(load_environment(environ))[EMBEDDING_ROLE]
    model_name = getattr(embedding, "model_name", None)
    return dimension_problems(
        vector_tables(conn, schema), schema, model_name, embedding.embedding_dim
    )


def check_configured_database() -> list[str]:
    """``check_vector_tables`` on the database POSTGRES_* names."""
    settings = PostgresSettings.from_env()
    conn = psycopg2.connect(**settings.connect_kwargs(application_name="aperag_pg_preflight"))
    conn.autocommit = True
    try:
        return check_vector_tables(conn, settings.schema)
    finally:
        conn.close()


def check_at_worker_start() -> None:
    """Stop the worker when the embedding does not fit the vector tables, or a model
    setting is invalid; warn, and let it start, when there is no model or no database to
    check against. Runs in the worker's main process (``aperag_pg.worker.startup_check``),
    before any child takes a task."""
    try:
        problems = check_configured_database()
    except ModelsNotConfigured as exc:
        logger.warning("the LightRAG tasks will refuse to run: %s", exc)
        return
    except ConfigError as exc:
        _refuse_to_start(exc)
    except psycopg2.OperationalError as exc:
        logger.warning(
            "vector tables not checked, the database is unreachable: %s", first_line(exc)
        )
        return
    except psycopg2.Error as exc:  # e.g. no privilege on a table: the tasks will say so too
        logger.warning("vector tables not checked: %s", first_line(exc))
        return
    if problems:
        _refuse_to_start(dimension_mismatch(problems))


def dimension_mismatch(problems: list[str]) -> EmbeddingDimensionMismatch:
    """The error that stops a process at start over ``dimension_problems``."""
    return EmbeddingDimensionMismatch(
        "; ".join(problems) + ". Fix: set EMBEDDING_DIM (and EMBEDDING_MODEL) to what "
        "the tables were made with, or drop those tables (or use another "
        "POSTGRES_SCHEMA) to start over with this model. Nothing was written."
    )


def _refuse_to_start(error: Exception) -> NoReturn:
    logger.critical("worker not started: %s", error)
    raise SystemExit(f"aperag_pg: worker not started: {error}")
