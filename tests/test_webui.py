"""LightRAG's own server and WebUI on the workers' tables (``python -m aperag_pg webui``):
its settings, its start-up refusals, and its one writer beside the Celery workers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections import Counter

import pytest

from aperag_pg.errors import ConfigError, InvalidInput
from aperag_pg.lightrag.instance import check_workspace_name, instance_arguments
from aperag_pg.lightrag.server import WebUISettings
from aperag_pg.lightrag.tasks import context_digest
from devtools.corpus import documents
from devtools.services import celery_worker, free_port, services_running
from devtools.webui import running_webui

from .conftest import MODEL_AND_SERVICE_PREFIXES, REPO_ROOT
from .lightrag_support import new_workspace, status_counts, workspace_writers
from .polling import wait_until


def _http(server, method: str, path: str, body: dict | None = None, headers: dict | None = None):
    """(status, decoded JSON body) of a request to the server."""
    request = urllib.request.Request(
        server.base_url + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


# -- settings ---------------------------------------------------------------------------


def test_the_webui_listens_on_loopback_port_9621_on_the_default_workspace():
    webui = WebUISettings.from_env({})
    assert (webui.host, webui.port, webui.workspace) == ("127.0.0.1", 9621, "default")
    assert webui.url == "http://127.0.0.1:9621/webui/"
    assert WebUISettings.from_env({"POSTGRES_WORKSPACE": "team_a"}).workspace == "team_a"
    assert WebUISettings.from_env({"WORKSPACE": "b", "POSTGRES_WORKSPACE": "a"}).workspace == "b"


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "webui.internal"])
def test_off_loopback_the_webui_needs_lightrag_authentication(host):
    with pytest.raises(ConfigError) as refused:
        WebUISettings.from_env({"WEBUI_HOST": host})
    for name in ("AUTH_ACCOUNTS", "TOKEN_SECRET", "LIGHTRAG_API_KEY", "127.0.0.1"):
        assert name in str(refused.value)
    with pytest.raises(ConfigError):  # accounts without the secret that signs their tokens
        WebUISettings.from_env({"WEBUI_HOST": host, "AUTH_ACCOUNTS": "admin:pw"})
    assert WebUISettings.from_env({"WEBUI_HOST": host, "LIGHTRAG_API_KEY": "k"}).host == host
    accounts = {"WEBUI_HOST": host, "AUTH_ACCOUNTS": "admin:pw", "TOKEN_SECRET": "s"}
    assert WebUISettings.from_env(accounts).host == host


def test_a_bad_port_is_refused_by_name():
    with pytest.raises(ConfigError, match="WEBUI_PORT='http'"):
        WebUISettings.from_env({"WEBUI_PORT": "http"})


def test_a_workspace_the_server_would_rename_is_refused_with_the_name_to_use():
    with pytest.raises(ConfigError) as refused:
        WebUISettings.from_env({"WORKSPACE": "team-a"})
    assert "WORKSPACE='team-a'" in str(refused.value) and "'team_a'" in str(refused.value)
    # the workers' instances refuse it too, before LightRAG is built on it
    with pytest.raises(InvalidInput, match="'team_a'"):
        instance_arguments("team-a")
    assert check_workspace_name("Team_A_2") == "Team_A_2"


# -- the server on the workers' tables ----------------------------------------------------


def _processing_counts(*logs: str) -> Counter:
    """How often LightRAG began processing each document, over the processes' logs."""
    return Counter(id_ for log in logs for id_ in re.findall(r"Processing d-id: (doc-\w+)", log))


def test_a_webui_upload_during_a_worker_ingest_runs_no_second_pipeline(
    service_env, admin_conn, tmp_path
):
    """The server's pipeline holds the workspace's writer lease as the workers' does: an
    upload sent while a worker ingests waits for it, the WebUI shows the worker's ingest
    as busy meanwhile, and every document is processed once."""
    workspace = new_workspace("webui")
    env = {
        **service_env,
        "LIGHTRAG_FACTORY": "devtools.slow_models:lightrag_arguments",
        "STANDIN_LLM_DELAY_S": "0.3",
        "LIGHTRAG_WORKING_DIR": str(tmp_path / "rag"),
        "WORKSPACE": workspace,
    }
    corpus = documents(12, start=7000)
    by_worker, by_webui = corpus[:8], corpus[8:]
    with (
        celery_worker(env, tmp_path, concurrency=1, cwd=REPO_ROOT) as worker,
        running_webui(env, tmp_path, free_port()) as server,
    ):
        ingest = worker.send(
            "aperag_pg.lightrag_ingest",
            workspace,
            [t for t, _ in by_worker],
            [p for _, p in by_worker],
        )
        wait_until(lambda: workspace_writers(admin_conn), "the worker holds the writer lease", 60)
        wait_until(
            lambda: _http(server, "GET", "/health")[1]["pipeline_busy"],
            "the WebUI shows the worker's ingest as busy",
        )
        status, _ = _http(
            server,
            "POST",
            "/documents/texts",
            {"texts": [t for t, _ in by_webui], "file_sources": [p for _, p in by_webui]},
        )
        assert status == 200
        assert not ingest.ready()  # the upload came while the worker still ingested
        ingest.get(timeout=180)
        wait_until(
            lambda: status_counts(admin_conn, workspace) == {"processed": 12},
            "the uploaded documents are processed too",
            120,
        )
        logs = (worker.log_text(), server.log_text())
    counts = _processing_counts(*logs)
    assert len(counts) == 12 and set(counts.values()) == {1}, counts


def test_an_unauthenticated_write_is_refused_off_loopback(service_env, tmp_path):
    env = {
        **service_env,
        "WEBUI_HOST": "0.0.0.0",
        "LIGHTRAG_API_KEY": "test-key",
        "LIGHTRAG_WORKING_DIR": str(tmp_path / "rag"),
        "WORKSPACE": new_workspace("auth"),
    }
    with running_webui(env, tmp_path, free_port()) as server:
        text = {"text": "Alice Johnson leads Acme Robotics.", "file_source": "a.txt"}
        refused, _ = _http(server, "POST", "/documents/text", text)
        assert refused in (401, 403)
        accepted, _ = _http(server, "POST", "/documents/text", text, {"X-API-Key": "test-key"})
        assert accepted == 200


@pytest.mark.processes
def test_make_webui_after_make_demo_shows_what_the_demo_built(tmp_root, tmp_path):
    """`make demo` then `make webui` on a machine with no services and no model set: the
    demo keeps its data in the local services, and the WebUI shows its workspace."""
    services_dir = tmp_root / f"services-{uuid.uuid4().hex[:6]}"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(MODEL_AND_SERVICE_PREFIXES) and k not in ("DATABASE_URL", "REDIS_URL")
    }
    env.update(PYTHONPATH=str(REPO_ROOT), LIGHTRAG_WORKING_DIR=str(tmp_path / "rag"))
    demo = subprocess.run(
        [sys.executable, "-m", "devtools.demo", "--stand-ins-unless-configured"]
        + ["--docs", "10", "--docs-per-task", "5", "--queries", "5", "--workflows", "2"]
        + ["--services-dir", str(services_dir)],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "make webui, then open http://127.0.0.1:9621/webui/" in demo.stdout
    assert not services_running(services_dir)  # the demo stopped what it started
    command = ("-m", "devtools.webui", "--services-dir", str(services_dir))
    with running_webui(env, tmp_path, free_port(), command=command, cwd=REPO_ROOT) as server:
        workspace = re.search(r"workspace '(demo_\w+)'", server.log_text()).group(1)
        configuration = _http(server, "GET", "/health")[1]["configuration"]
        assert configuration["workspace"] == workspace
        # the models are the demo's stand-ins, and /health says so
        assert (configuration["llm_binding"], configuration["embedding_binding"]) == (
            "standin",
            "standin",
        )
        counts = _http(server, "GET", "/documents/status_counts")[1]["status_counts"]
        assert counts == {"processed": 10, "all": 10}
    assert not services_running(services_dir)  # make webui stopped what it started
    # offline: in a network namespace of its own, with loopback only
    offline = ("unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$0" "$@"')
    with running_webui(
        env, tmp_path, free_port(), command=command, cwd=REPO_ROOT, wrapper=offline
    ) as server:
        assert f"workspace '{workspace}'" in server.log_text()


def test_the_webui_refuses_to_start_on_vector_tables_of_another_dimension(
    service_env, base_settings, manager, tmp_path
):
    """The server would otherwise make new, empty vector tables for its dimension (their
    names carry the model and the dimension) and find nothing: it says so instead."""
    from aperag_pg.lightrag.standins import EMBEDDING_MODEL
    from aperag_pg.stores.vector import VectorStore
    from aperag_pg.stores.vector_tables import vector_table_name

    from .test_store_vector import row

    schema = f"webui_dim_{uuid.uuid4().hex[:6]}"
    manager.close()
    manager.initialize(base_settings.replace(schema=schema))
    table = vector_table_name("chunks", EMBEDDING_MODEL, 32)
    store = VectorStore("chunks", table, 32, 0.2)
    store.ensure_tables()
    store.upsert({"chunk-1": row("chunks", [0.5] * 32)})
    env = {**service_env, "POSTGRES_SCHEMA": schema, "LIGHTRAG_WORKING_DIR": str(tmp_path)}
    with pytest.raises(RuntimeError) as refused:
        with running_webui(env, tmp_path, free_port()):
            pass
    message = str(refused.value)
    assert "the WebUI server exited" in message
    assert f"{table.lower()} holds 32-dimensional vectors" in message and "is 64" in message


def test_the_webui_answers_from_the_workers_context_and_the_workers_see_its_documents(
    service_env, tmp_path
):
    workspace = new_workspace("parity")
    env = {**service_env, "LIGHTRAG_WORKING_DIR": str(tmp_path / "rag"), "WORKSPACE": workspace}
    corpus = documents(8, start=9100)
    question = "How is Acme Robotics connected to its partners?"
    with (
        celery_worker(env, tmp_path, concurrency=1, cwd=REPO_ROOT) as worker,
        running_webui(env, tmp_path, free_port()) as server,
    ):
        worker.call(
            "aperag_pg.lightrag_ingest",
            workspace,
            [t for t, _ in corpus],
            [p for _, p in corpus],
            timeout=180,
        )
        for mode in ("local", "global", "hybrid", "naive", "mix"):
            ours = worker.call("aperag_pg.lightrag_query", workspace, question, mode)
            status, body = _http(
                server,
                "POST",
                "/query",
                {"query": question, "mode": mode, "only_need_context": True},
            )
            assert status == 200
            assert context_digest(body["response"]) == ours["context_digest"], mode
        text = "Hannah Young opens the Oslo office of Hooli Analytics."
        assert (
            _http(server, "POST", "/documents/text", {"text": text, "file_source": "o.txt"})[0]
            == 200
        )
        seen = wait_until(
            lambda: [
                d
                for d in worker.call("aperag_pg.lightrag_status", workspace)["documents"]
                if d.get("file_path") == "o.txt" and d.get("status") == "processed"
            ],
            "the workers see the document the WebUI inserted, processed",
            60,
        )
        assert len(seen) == 1
