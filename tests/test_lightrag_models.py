"""LightRAG's models in the tasks: chosen explicitly with LightRAG's own variables.

The endpoints are a model server on loopback (``tests.model_endpoints``) that speaks the
OpenAI, Azure OpenAI and Ollama APIs, so LightRAG's own bindings and the real ``openai``
and ``ollama`` clients are exercised; nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid

import pytest
from lightrag import QueryParam

from aperag_pg.errors import ConfigError, ModelsNotConfigured
from aperag_pg.lightrag.bindings import BINDINGS
from aperag_pg.lightrag.models import lightrag_arguments, lightrag_models
from aperag_pg.lightrag.preflight import dimension_problems
from aperag_pg.stores.vector_tables import VectorTable, vector_table_name
from devtools.services import celery_worker

from .cli_support import run_cli, verdicts
from .conftest import REPO_ROOT
from .lightrag_support import DOCS, OURS, make_rag, new_workspace
from .model_endpoints import model_server


def run_rag(tmp_path, kwargs: dict) -> tuple[str, object]:
    """Ingest two documents and answer a question with LightRAG on the PGSync storages."""
    rag = make_rag(tmp_path, new_workspace("models"), OURS, models=kwargs)

    async def run() -> str:
        await rag.initialize_storages()
        try:
            await rag.ainsert(DOCS[:2])
            return await rag.aquery("Who founded Acme Robotics?", param=QueryParam(mode="hybrid"))
        finally:
            await rag.finalize_storages()

    return asyncio.run(run()), rag


def test_stand_ins_run_only_when_asked_for_by_name():
    kwargs, label = lightrag_models({"LLM_BINDING": "standin"})
    assert "stand-in" in label
    assert kwargs["embedding_func"].model_name == "standin-hash"
    for nothing in ({}, {"LLM_BINDING": ""}, {"OPENAI_BASE_URL": "x"}, {"LLM_MODEL": "m"}):
        with pytest.raises(ModelsNotConfigured) as info:
            lightrag_models(nothing)
        message = str(info.value)
        for named in ("LLM_BINDING=openai", "azure_openai", "ollama", "LLM_BINDING_HOST"):
            assert named in message
        assert "OPENAI_API_KEY" in message and "LLM_BINDING=standin" in message


def test_an_unknown_binding_names_the_ones_there_are():
    with pytest.raises(ModelsNotConfigured) as info:
        lightrag_models({"LLM_BINDING": "gemini"})
    assert "LLM_BINDING='gemini'" in str(info.value)
    assert "openai, azure_openai, ollama" in str(info.value)
    assert "LIGHTRAG_FACTORY" in str(info.value)


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"LLM_BINDING": "openai"}, "LLM_BINDING_API_KEY or OPENAI_API_KEY"),
        ({"LLM_BINDING": "azure_openai", "LLM_BINDING_API_KEY": "k"}, "needs LLM_MODEL"),
        (
            {"LLM_BINDING": "azure_openai", "LLM_MODEL": "d", "LLM_BINDING_API_KEY": "k"},
            "LLM_BINDING_HOST or AZURE_OPENAI_ENDPOINT",
        ),
        (
            {"LLM_BINDING": "azure_openai", "LLM_MODEL": "d", "LLM_BINDING_HOST": "h"},
            "LLM_BINDING_API_KEY or AZURE_OPENAI_API_KEY",
        ),
        (
            {
                "LLM_BINDING": "azure_openai",
                "LLM_MODEL": "d",
                "LLM_BINDING_HOST": "h",
                "LLM_BINDING_API_KEY": "k",
            },
            "needs EMBEDDING_DIM",
        ),
        (
            {"OPENAI_API_KEY": "k", "EMBEDDING_MODEL": "text-embedding-3-large"},
            "EMBEDDING_MODEL=text-embedding-3-large needs EMBEDDING_DIM",
        ),
        ({"LLM_BINDING": "ollama", "EMBEDDING_MODEL": "nomic-embed-text"}, "needs EMBEDDING_DIM"),
    ],
)
def test_what_is_missing_is_named(env, names):
    with pytest.raises(ModelsNotConfigured, match=names):
        lightrag_models(env)


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"OPENAI_API_KEY": "k", "EMBEDDING_DIM": "big"}, "EMBEDDING_DIM"),
        ({"OPENAI_API_KEY": "k", "EMBEDDING_DIM": "16001"}, "EMBEDDING_DIM"),
        ({"LLM_BINDING": "ollama", "OLLAMA_LLM_NUM_CTX": "lots"}, "OLLAMA_LLM_NUM_CTX"),
        (
            {"LLM_BINDING": "openai", "OPENAI_API_KEY": "k", "OPENAI_LLM_TEMPERATURE": "hot"},
            "OPENAI_LLM_TEMPERATURE",
        ),
    ],
)
def test_a_bad_value_names_the_variable(env, variable):
    with pytest.raises(ConfigError, match=f"^{variable}") as info:
        lightrag_models(env)
    assert not isinstance(info.value, ModelsNotConfigured)


def test_default_embeddings_are_lightrags_own():
    from lightrag.llm.ollama import ollama_embed
    from lightrag.llm.openai import openai_embed

    for binding, provider in (("openai", openai_embed), ("ollama", ollama_embed)):
        assert BINDINGS[binding].default_embedding == (provider.model_name, provider.embedding_dim)
    kwargs, _ = lightrag_models({"LLM_BINDING": "ollama"})
    assert kwargs["embedding_func"].embedding_dim == 1024
    assert kwargs["llm_model_name"] == "mistral-nemo:latest"  # the LightRAG server's default


def test_openai_binding_with_lightrags_variables(manager, tmp_path):
    """LLM and embeddings on two endpoints, each with its own key, as LightRAG names them."""
    with model_server() as chat, model_server() as embeddings:
        env = {
            "LLM_BINDING": "openai",
            "LLM_MODEL": "chat-model-x",
            "LLM_BINDING_HOST": f"{chat.url}/v1",
            "LLM_BINDING_API_KEY": "llm-key",
            "EMBEDDING_BINDING_HOST": f"{embeddings.url}/v1",
            "EMBEDDING_BINDING_API_KEY": "embedding-key",
            "EMBEDDING_MODEL": "embed-model-y",
            "EMBEDDING_DIM": "64",
            "OPENAI_LLM_TEMPERATURE": "0.25",
        }
        kwargs, label = lightrag_models(env)
        answer, rag = run_rag(tmp_path, kwargs)
    assert answer.startswith("Stand-in answer")  # what the endpoint said
    assert "chat-model-x" in label and chat.url in label and embeddings.url in label
    assert {(s.path, s.model, s.key, s.temperature) for s in chat.seen} == {
        ("/v1/chat/completions", "chat-model-x", "llm-key", 0.25)  # OPENAI_LLM_TEMPERATURE
    }
    assert {(s.path, s.model, s.key) for s in embeddings.seen} == {
        ("/v1/embeddings", "embed-model-y", "embedding-key")
    }
    assert rag.chunks_vdb.table_name.lower().endswith("embed_model_y_64d")


def test_openai_names_of_before_still_work(manager, tmp_path):
    """OPENAI_API_KEY alone chooses openai; OPENAI_BASE_URL serves both roles."""
    with model_server() as server:
        env = {
            "OPENAI_API_KEY": "old-key",
            "OPENAI_BASE_URL": f"{server.url}/v1",
            "EMBEDDING_MODEL": "embed-model-y",
            "EMBEDDING_DIM": "64",
        }
        kwargs, _ = lightrag_models(env)
        answer, _ = run_rag(tmp_path, kwargs)
    assert answer.startswith("Stand-in answer")
    assert {(s.kind, s.model, s.key) for s in server.seen} == {
        ("chat", "gpt-4o-mini", "old-key"),
        ("embed", "embed-model-y", "old-key"),
    }


def test_azure_openai_binding(manager, tmp_path):
    with model_server() as server:
        env = {
            "LLM_BINDING": "azure_openai",
            "LLM_MODEL": "chat-deployment",
            "LLM_BINDING_HOST": server.url,
            "LLM_BINDING_API_KEY": "azure-key",
            "AZURE_OPENAI_API_VERSION": "2024-10-21",
            "EMBEDDING_MODEL": "embed-deployment",
            "EMBEDDING_DIM": "64",
        }
        kwargs, _ = lightrag_models(env)
        answer, rag = run_rag(tmp_path, kwargs)
    assert answer.startswith("Stand-in answer")
    assert {(s.path, s.key, s.query["api-version"][0]) for s in server.seen} == {
        ("/openai/deployments/chat-deployment/chat/completions", "azure-key", "2024-10-21"),
        ("/openai/deployments/embed-deployment/embeddings", "azure-key", "2024-10-21"),
    }
    assert rag.entities_vdb.table_name.lower().endswith("embed_deployment_64d")


def ollama_env(service_env, server, schema: str, dim: int, tmp_path) -> dict[str, str]:
    return {
        **service_env,
        "POSTGRES_SCHEMA": schema,
        "LLM_BINDING": "ollama",
        "LLM_MODEL": "llama-test",
        "LLM_BINDING_HOST": server.url,
        "EMBEDDING_MODEL": "embed-test",
        "EMBEDDING_DIM": str(dim),
        "OLLAMA_LLM_NUM_CTX": "8192",
        "LIGHTRAG_WORKING_DIR": str(tmp_path / "rag"),
    }


def table_rows(admin_conn, schema: str) -> dict[str, int]:
    with admin_conn.cursor() as cur:
        cur.execute(
            "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind = 'r' AND relname LIKE 'lightrag%%'",
            (schema,),
        )
        tables = sorted(name for (name,) in cur.fetchall())
        rows = {}
        for table in tables:
            cur.execute(f'SELECT count(*) FROM "{schema}"."{table}"')
            rows[table] = cur.fetchone()[0]
    return rows


def test_ollama_through_a_worker_then_a_changed_dimension_stops_the_next(
    service_env, base_settings, admin_conn, tmp_path
):
    """The ollama binding end to end in a prefork worker; then a worker configured with
    another EMBEDDING_DIM for the same model refuses to start, and writes nothing."""
    schema = f"ollama_{uuid.uuid4().hex[:6]}"
    workspace = new_workspace("ollama")
    with model_server(dimension=64) as server:
        env = ollama_env(service_env, server, schema, 64, tmp_path)
        with celery_worker(env, tmp_path, concurrency=1, cwd=REPO_ROOT) as worker:
            worker.call(
                "aperag_pg.lightrag_ingest", workspace, DOCS[:2], ["a.txt", "b.txt"], timeout=120
            )
            reply = worker.call("aperag_pg.lightrag_query", workspace, "Who founded Acme?")
            status = worker.call("aperag_pg.lightrag_status", workspace)
    assert reply["answer"].startswith("Stand-in answer")
    assert status["counts"] == {"processed": 2, "all": 2}, status
    chats, embeds = server.requests("chat"), server.requests("embed")
    assert chats and {(s.path, s.model) for s in chats} == {("/api/chat", "llama-test")}
    assert all(s.options.get("num_ctx") == 8192 for s in chats)  # OLLAMA_LLM_NUM_CTX
    assert embeds and {(s.path, s.model) for s in embeds} == {("/api/embed", "embed-test")}
    before = table_rows(admin_conn, schema)
    assert before["lightrag_vdb_chunks_embed_test_64d"] > 0

    env = ollama_env(service_env, server, schema, 128, tmp_path)
    with pytest.raises(RuntimeError, match="worker exited early") as info:
        with celery_worker(env, tmp_path, concurrency=1, cwd=REPO_ROOT):
            pass
    log = str(info.value)
    assert f"{schema}.lightrag_vdb_chunks_embed_test_64d holds 64-dimensional" in log
    assert "EMBEDDING_DIM is 128" in log and "Fix: set EMBEDDING_DIM" in log
    assert table_rows(admin_conn, schema) == before  # no row, no _128d table

    doctor = run_cli(
        base_settings,
        "doctor",
        **{k: v for k, v in env.items() if k.startswith(("LLM_", "EMB"))},
        POSTGRES_SCHEMA=schema,
    )
    assert doctor.returncode == 1 and verdicts(doctor.stdout)["embeddings"] == "FAIL"
    assert "lightrag_vdb_relation_embed_test_64d" in doctor.stdout


def test_an_invalid_model_setting_stops_the_worker_and_fails_doctor(
    service_env, base_settings, tmp_path
):
    env = {**service_env, "LLM_BINDING": "ollama", "OLLAMA_LLM_NUM_CTX": "lots"}
    with pytest.raises(RuntimeError, match="worker exited early") as info:
        with celery_worker(env, tmp_path, concurrency=1, cwd=REPO_ROOT):
            pass
    assert "worker not started: OLLAMA_LLM_NUM_CTX is not valid" in str(info.value)
    doctor = run_cli(base_settings, "doctor", LLM_BINDING="ollama", EMBEDDING_DIM="big")
    assert doctor.returncode == 1 and verdicts(doctor.stdout)["models"] == "FAIL"
    assert "EMBEDDING_DIM='big' is not a vector size" in doctor.stdout


def test_tables_that_fit_or_hold_nothing_are_no_problem():
    def table(name: str, dim: int, rows: bool = True) -> VectorTable:
        return VectorTable(name, dim, rows)

    same = [
        table(vector_table_name(ns, "m", 8).lower(), 8)
        for ns in ("chunks", "entities", "relationships")
    ]
    assert dimension_problems(same, "s", "m", 8) == []
    # another dimension of the model beside the configured one: both in use, by choice
    both = same + [table("lightrag_vdb_chunks_m_16d", 16)]
    assert dimension_problems(both, "s", "m", 8) == []
    # another dimension with no rows: nothing would be lost from sight
    assert (
        dimension_problems([table("lightrag_vdb_chunks_m_16d", 16, rows=False)], "s", "m", 8) == []
    )
    # another model's tables are no concern of this one
    assert dimension_problems([table("lightrag_vdb_chunks_mm_16d", 16)], "s", "m", 8) == []
    problems = dimension_problems([table("lightrag_vdb_entity_m_16d", 16)], "s", "m", 8)
    assert len(problems) == 1 and "s.lightrag_vdb_entity_m_16d holds 16-dimensional" in problems[0]


def test_the_developers_model_settings_never_reach_a_test_worker(base_settings):
    from .conftest import worker_environment

    developer = {
        "OPENAI_API_KEY": "sk-not-a-real-key",
        "LLM_MODEL": "gpt-x",
        "LLM_BINDING_API_KEY": "not-a-real-key",
        "EMBEDDING_DIM": "3072",
        "LLM_BINDING": "openai",
        "AZURE_OPENAI_API_KEY": "not-a-real-key",
        "OLLAMA_API_KEY": "not-a-real-key",
        "LIGHTRAG_FACTORY": "team.models:build",
        "HOME": "/home/dev",
    }
    env = worker_environment(developer, base_settings, "redis://127.0.0.1:1/0")
    assert env["LLM_BINDING"] == "standin" and env["HOME"] == "/home/dev"
    assert not (set(developer) - {"LLM_BINDING", "HOME"}) & set(env)


def test_a_worker_without_a_model_refuses_lightrag_tasks_at_once(service_env, tmp_path):
    """No silent fakes: ingest and query fail with the variables to set, never retried."""
    env = {k: v for k, v in service_env.items() if k != "LLM_BINDING"}
    env["LIGHTRAG_WORKING_DIR"] = str(tmp_path / "rag")
    with celery_worker(env, tmp_path, pool="prefork", concurrency=1, cwd=REPO_ROOT) as worker:
        ingest = worker.send("aperag_pg.lightrag_ingest", "nomodel", DOCS[:1], ["a.txt"])
        query = worker.send("aperag_pg.lightrag_query", "nomodel", "anything?")
        for result in (ingest, query):
            with pytest.raises(Exception, match="LLM_BINDING=openai") as info:
                result.get(timeout=60)
            assert type(info.value).__name__ == "ModelsNotConfigured"
        log = worker.log_text()
    assert "Retry in" not in log
    assert "the LightRAG tasks will refuse to run" in log  # said at start, not only per task


def test_a_factory_supplies_the_models_and_chunking(service_env, tmp_path):
    env = {k: v for k, v in service_env.items() if k != "LLM_BINDING"}  # no binding needed
    env.update(
        LIGHTRAG_FACTORY="tests.lightrag_factory:build",
        LIGHTRAG_WORKING_DIR=str(tmp_path / "rag"),
    )
    workspace = new_workspace("factory")
    with celery_worker(env, tmp_path, pool="prefork", concurrency=1, cwd=REPO_ROOT) as worker:
        worker.call(
            "aperag_pg.lightrag_ingest", workspace, DOCS[:2], ["f0.txt", "f1.txt"], timeout=120
        )
        page = worker.call("aperag_pg.lightrag_status", workspace)
    # 24-token chunks: each document is cut into several (one chunk with LightRAG's default)
    assert all(doc["chunks"] > 1 for doc in page["documents"]), page["documents"]


def test_a_factory_that_leaves_out_a_model_gets_the_configured_one():
    from lightrag.llm.ollama import ollama_model_complete  # noqa: F401 - the binding loads

    env = {"LIGHTRAG_FACTORY": "tests.lightrag_factory:unnamed_embedding"}
    assert lightrag_arguments(env)["embedding_func"].model_name is None  # all its own
    partial = {"LIGHTRAG_FACTORY": "tests.lightrag_factory:chunking_only", "LLM_BINDING": "ollama"}
    kwargs = lightrag_arguments(partial)
    assert kwargs["chunk_token_size"] == 24 and kwargs["llm_model_name"] == "mistral-nemo:latest"
    assert kwargs["embedding_func"].model_name == "bge-m3:latest"
    with pytest.raises(ModelsNotConfigured):
        lightrag_arguments({"LIGHTRAG_FACTORY": "tests.lightrag_factory:chunking_only"})


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("tests.lightrag_factory", "not 'package.module:function'"),
        ("tests.no_such_module:build", "cannot be imported"),
        ("tests.lightrag_factory:missing", "has no function 'missing'"),
    ],
)
def test_a_bad_factory_stops_the_worker_at_start(path, says):
    env = {"PATH": os.environ.get("PATH", ""), "LIGHTRAG_FACTORY": path}
    started = subprocess.run(
        [sys.executable, "-c", "import config.celery"],
        cwd=REPO_ROOT,
        env={**env, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode != 0 and "LIGHTRAG_FACTORY" in started.stderr
    assert says in started.stderr


def test_a_factory_must_return_keyword_arguments():
    with pytest.raises(ConfigError, match="returned list, not a dict"):
        lightrag_arguments({"LIGHTRAG_FACTORY": "tests.lightrag_factory:not_a_dict"})


def test_an_endpoint_description_never_shows_credentials_in_its_url():
    from aperag_pg.lightrag.bindings import Endpoint

    endpoint = Endpoint("openai", "m", "https://svc:hunter2@models.example/v1?key=k3y#frag")
    described = endpoint.describe()
    assert "hunter2" not in described and "k3y" not in described and "frag" not in described
    assert "models.example/v1" in described
    assert "hunter2" not in repr(endpoint) and "k3y" not in repr(endpoint)
