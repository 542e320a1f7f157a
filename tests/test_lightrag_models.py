"""LightRAG's models: offline stand-ins by default, an OpenAI-compatible endpoint when set.

The endpoint here is a small OpenAI-compatible HTTP server on loopback that answers with
the stand-ins, so the real ``openai`` client and LightRAG's OpenAI bindings are exercised.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from lightrag import QueryParam

from aperag_pg.devservices import celery_worker
from aperag_pg.errors import ConfigError, ModelsNotConfigured
from aperag_pg.lightrag.models import lightrag_models
from aperag_pg.standins import embed_texts, standin_llm

from .conftest import REPO_ROOT
from .lightrag_support import DOCS, OURS, make_rag, new_workspace


class _OpenAICompatible(BaseHTTPRequestHandler):
    requests: list[tuple[str, str]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append((self.path, body["model"]))
        if self.path.endswith("/embeddings"):
            texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
            vectors = embed_texts(texts, dim=int(body.get("dimensions") or 64))
            data = [
                {"object": "embedding", "index": i, "embedding": v.tolist()}
                for i, v in enumerate(vectors)
            ]
            reply = {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": 1, "total_tokens": 1},
            }
        else:
            system = next((m["content"] for m in body["messages"] if m["role"] == "system"), "")
            prompt = body["messages"][-1]["content"]
            text = asyncio.run(standin_llm(prompt, system_prompt=system))
            reply = {
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": text},
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        payload = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def endpoint():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OpenAICompatible)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _OpenAICompatible.requests = []
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_stand_ins_run_only_when_asked_for_by_name():
    kwargs, label = lightrag_models({"LLM_BINDING": "standin"})
    assert "stand-in" in label
    assert kwargs["embedding_func"].model_name == "standin-hash"
    for nothing in ({}, {"LLM_BINDING": ""}, {"LLM_BINDING": "gpt"}, {"OPENAI_BASE_URL": "x"}):
        with pytest.raises(ModelsNotConfigured) as info:
            lightrag_models(nothing)
        message = str(info.value)
        assert "LLM_BINDING=openai" in message and "OPENAI_API_KEY" in message
        assert "LLM_BINDING=standin" in message


def test_the_developers_model_settings_never_reach_a_test_worker(base_settings):
    from .conftest import worker_environment

    developer = {
        "OPENAI_API_KEY": "sk-not-a-real-key",
        "LLM_MODEL": "gpt-x",
        "EMBEDDING_DIM": "3072",
        "LLM_BINDING": "openai",
        "HOME": "/home/dev",
    }
    env = worker_environment(developer, base_settings, "redis://127.0.0.1:1/0")
    assert env["LLM_BINDING"] == "standin" and env["HOME"] == "/home/dev"
    assert not {"OPENAI_API_KEY", "LLM_MODEL", "EMBEDDING_DIM"} & set(env)


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


def test_a_configured_endpoint_is_used_end_to_end(manager, endpoint, tmp_path):
    env = {
        "LLM_BINDING": "openai",
        "OPENAI_API_KEY": "test-key",
        "OPENAI_BASE_URL": endpoint,
        "LLM_MODEL": "chat-model-x",
        "EMBEDDING_MODEL": "embed-model-y",
        "EMBEDDING_DIM": "64",
    }
    kwargs, label = lightrag_models(env)
    assert endpoint in label and "chat-model-x" in label
    rag = make_rag(tmp_path, new_workspace("api"), OURS)
    rag = type(rag)(
        **{
            **{
                f: getattr(rag, f)
                for f in ("working_dir", "workspace", "vector_db_storage_cls_kwargs")
            },
            **OURS,
            **kwargs,
        }
    )

    async def run() -> str:
        await rag.initialize_storages()
        try:
            await rag.ainsert(DOCS[:2])
            return await rag.aquery("Who founded Acme Robotics?", param=QueryParam(mode="hybrid"))
        finally:
            await rag.finalize_storages()

    answer = asyncio.run(run())
    assert answer.startswith("Stand-in answer")  # what the endpoint said
    paths = {path for path, _ in _OpenAICompatible.requests}
    models = {model for _, model in _OpenAICompatible.requests}
    assert paths == {"/v1/chat/completions", "/v1/embeddings"}
    assert models == {"chat-model-x", "embed-model-y"}
    assert rag.chunks_vdb.table_name.lower().endswith("embed_model_y_64d")


def test_bad_embedding_dim_names_the_variable():
    with pytest.raises(ConfigError, match="EMBEDDING_DIM"):
        lightrag_models({"OPENAI_API_KEY": "k", "EMBEDDING_DIM": "big"})


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


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("tests.lightrag_factory", "not 'package.module:function'"),
        ("tests.no_such_module:build", "cannot be imported"),
        ("tests.lightrag_factory:missing", "has no function 'missing'"),
    ],
)
def test_a_bad_factory_stops_the_worker_at_start(path, says):
    import subprocess
    import sys

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
    from aperag_pg.lightrag.models import lightrag_arguments

    with pytest.raises(ConfigError, match="returned list, not a dict"):
        lightrag_arguments({"LIGHTRAG_FACTORY": "tests.lightrag_factory:not_a_dict"})
