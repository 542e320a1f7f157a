"""LightRAG's own API server and WebUI on the workers' tables: ``python -m aperag_pg webui``
(``make webui``), from the workers' environment (one ``.env``).

The server is lightrag-hku's (extra ``webui``: ``lightrag-hku[api]``). What this adds:

- Its LightRAG instance is built as the workers' are (``instance.instance_arguments``):
  the PGSync storages on this process's pool, the workers' models (``LLM_BINDING=standin``
  included, which the server does not know) and tokenizer (so it starts offline), and the
  same retrieval settings; the WebUI reads through the workers' code, and a query answers
  from the same context. The server builds the instance inside ``create_app``; this module
  hands it the builder in place of the ``LightRAG`` class it would call.
- Its writes hold the workspace's writer lease (``server_writer.py``).
- It refuses to start where a worker would, saying why: an embedding that does not fit
  the vector tables (``preflight``), a workspace name the server would rewrite, and, on
  an address other than loopback, no LightRAG authentication (``AUTH_ACCOUNTS`` with
  ``TOKEN_SECRET``, or ``LIGHTRAG_API_KEY``): the WebUI uploads and deletes documents.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from ..environment import (
    AUTH_ACCOUNTS,
    DEFAULT_WEBUI_HOST,
    DEFAULT_WEBUI_PORT,
    LIGHTRAG_API_KEY,
    LIGHTRAG_WORKING_DIR,
    TOKEN_SECRET,
    WEBUI_HOST,
    WEBUI_PORT,
    WORKSPACE,
)
from ..errors import ConfigError, InvalidInput
from ..manager import PostgreSQLSyncConnectionManager
from ..settings import PostgresSettings, load_environment
from ..stores.base import DEFAULT_WORKSPACE
from .bindings import chosen_bindings
from .instance import DEFAULT_WORKING_DIR, check_workspace_name, instance_arguments
from .models import configured_models
from .preflight import check_configured_database, dimension_mismatch
from .server_writer import ServerWriter

# The server's own bindings (lightrag.api.config); another of ours (the stand-ins) is
# named to its argument parser as "openai", whose functions the builder then replaces.
SERVER_BINDINGS = ("lollms", "ollama", "openai", "azure_openai", "bedrock", "gemini")
# What the server passes to LightRAG that the workers' instances have no use for but the
# server's own routes read back (its Ollama-compatible /api names itself from it).
SERVER_ONLY_ARGUMENTS = ("ollama_server_infos",)
BINDING_VARIABLES = ("LLM_BINDING", "EMBEDDING_BINDING")
STORAGE_VARIABLES = {
    "kv_storage": "LIGHTRAG_KV_STORAGE",
    "vector_storage": "LIGHTRAG_VECTOR_STORAGE",
    "doc_status_storage": "LIGHTRAG_DOC_STATUS_STORAGE",
    "graph_storage": "LIGHTRAG_GRAPH_STORAGE",
}


@dataclass(frozen=True)
class WebUISettings:
    host: str
    port: int
    workspace: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WebUISettings:
        """WEBUI_HOST (127.0.0.1), WEBUI_PORT (9621), WORKSPACE, else POSTGRES_WORKSPACE,
        else "default"; ConfigError naming the variable and the fix."""
        env = load_environment(environ)
        host = (env.get(WEBUI_HOST) or DEFAULT_WEBUI_HOST).strip()
        port_text = (env.get(WEBUI_PORT) or str(DEFAULT_WEBUI_PORT)).strip()
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ConfigError(f"{WEBUI_PORT}={port_text!r} is not a TCP port (1 to 65535).")
        workspace = (
            env.get(WORKSPACE) or env.get("POSTGRES_WORKSPACE") or DEFAULT_WORKSPACE
        ).strip()
        try:
            check_workspace_name(workspace)
        except InvalidInput as exc:
            raise ConfigError(f"{WORKSPACE}={workspace!r}: {exc}") from None
        if not _loopback(host) and not _authenticated(env):
            raise ConfigError(
                f"{WEBUI_HOST}={host!r} is reachable from other machines, and the WebUI can "
                "upload, delete and re-process documents: set LightRAG's authentication, "
                f"{AUTH_ACCOUNTS}='user:password' with {TOKEN_SECRET}, or {LIGHTRAG_API_KEY}, "
                f"or listen on {DEFAULT_WEBUI_HOST}."
            )
        return cls(host, int(port_text), workspace)

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/webui/"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve anywhere


def _authenticated(env: Mapping[str, str]) -> bool:
    accounts = bool(env.get(AUTH_ACCOUNTS, "").strip() and env.get(TOKEN_SECRET, "").strip())
    return accounts or bool(env.get(LIGHTRAG_API_KEY, "").strip())


def server_environment(
    webui: WebUISettings, arguments: Mapping[str, Any], env: Mapping[str, str]
) -> dict[str, str]:
    """The variables LightRAG's server reads its arguments from, for ``webui`` and the
    instance ``arguments``."""
    base = env.get(LIGHTRAG_WORKING_DIR) or DEFAULT_WORKING_DIR
    server = {
        "HOST": webui.host,
        "PORT": str(webui.port),
        "WORKSPACE": webui.workspace,
        "WORKING_DIR": arguments["working_dir"],
        "INPUT_DIR": os.path.join(base, "webui-inputs"),
        **{STORAGE_VARIABLES[k]: arguments[k] for k in STORAGE_VARIABLES},
    }
    for variable, binding in zip(BINDING_VARIABLES, chosen_bindings(env), strict=True):
        if binding not in SERVER_BINDINGS:
            server[variable] = "openai"
    return server


def _show_the_workers_bindings(args: Any, env: Mapping[str, str]) -> None:
    """What /health reports: the bindings the workers' models come from, where the server's
    parser was given another name."""
    for variable, binding in zip(BINDING_VARIABLES, chosen_bindings(env), strict=True):
        if binding not in SERVER_BINDINGS:
            role = variable.lower()
            setattr(args, role, binding)
            setattr(args, f"{role}_host", None)


def like_the_workers(
    arguments: Mapping[str, Any], writers: list[ServerWriter]
) -> Callable[..., Any]:
    """What the server calls in place of ``LightRAG(...)``: an instance built from the
    workers' ``arguments``, its writes under the writer lease (its ServerWriter kept in
    ``writers``)."""
    from lightrag import LightRAG

    def build(**server_kwargs: Any) -> Any:
        kept = {k: server_kwargs[k] for k in SERVER_ONLY_ARGUMENTS if k in server_kwargs}
        rag = LightRAG(**arguments, **kept)
        writer = ServerWriter(rag)
        writer.install()
        writers.append(writer)
        return rag

    return build


def create_app(webui: WebUISettings, environ: Mapping[str, str] | None = None) -> Any:
    """LightRAG's FastAPI app on the workers' tables (this process's pool opened)."""
    env = load_environment(environ)
    configured_models(env)  # ModelsNotConfigured, naming the variables, before anything
    PostgreSQLSyncConnectionManager.initialize(PostgresSettings.from_env(env))
    problems = check_configured_database()
    if problems:
        raise dimension_mismatch(problems)
    # read before the server's variables are set: they name its bindings, not ours
    arguments = instance_arguments(webui.workspace)
    os.environ.update(server_environment(webui, arguments, env))
    sys.argv = sys.argv[:1]  # the server parses sys.argv too: only the variables count
    from lightrag.api import config, lightrag_server

    args = config.initialize_config(force=True)
    writers: list[ServerWriter] = []
    lightrag_server.LightRAG = like_the_workers(arguments, writers)
    app = lightrag_server.create_app(args)
    _show_the_workers_bindings(args, env)
    _watch_writers_while_serving(app, writers)
    return app


def _watch_writers_while_serving(app: Any, writers: list[ServerWriter]) -> None:
    server_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: Any) -> AsyncIterator[Any]:
        async with server_lifespan(application) as state:
            watches = [asyncio.create_task(writer.watch()) for writer in writers]
            try:
                yield state
            finally:
                for watch in watches:
                    watch.cancel()

    app.router.lifespan_context = lifespan


def serve(environ: Mapping[str, str] | None = None) -> int:
    """Run the server until interrupted; prints the WebUI's address once it listens."""
    import uvicorn

    webui = WebUISettings.from_env(environ)
    app = create_app(webui, environ)

    class Announcing(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started:
                print(f"LightRAG WebUI on workspace {webui.workspace!r}: {webui.url}", flush=True)

    try:
        Announcing(uvicorn.Config(app, host=webui.host, port=webui.port, log_config=None)).run()
    except KeyboardInterrupt:  # a second Ctrl-C: uvicorn stops at once
        return 130
    finally:
        PostgreSQLSyncConnectionManager.close()
    return 0
