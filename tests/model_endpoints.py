"""A model server on loopback that speaks the OpenAI (and Azure OpenAI) and Ollama HTTP APIs.

It answers with the offline stand-ins, so LightRAG's real bindings (the ``openai`` and
``ollama`` clients inside ``lightrag.llm.*``) run end to end against it, and it records
what each request asked for: which API, model, key and options.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aperag_pg.lightrag.standins import embed_texts, standin_llm


@dataclass(frozen=True)
class Seen:
    """One request as the server received it."""

    kind: str  # "chat" or "embed"
    path: str
    model: str
    key: str | None  # the bearer token, or Azure's api-key header
    query: dict[str, list[str]] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)  # Ollama's options
    temperature: float | None = None  # OpenAI's


class ModelServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, dimension: int) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.dimension = dimension
        self.seen: list[Seen] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def requests(self, kind: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.kind == kind]


@contextmanager
def model_server(dimension: int = 64) -> Iterator[ModelServer]:
    server = ModelServer(dimension)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: ModelServer

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        url = urlsplit(self.path)
        key = self.headers.get("api-key") or self.headers.get("Authorization", "")
        key = key.removeprefix("Bearer ") or None
        if url.path == "/api/chat":
            reply = self._ollama_chat(body)
        elif url.path == "/api/embed":
            reply = {"model": body["model"], "embeddings": self._embed(body["input"])}
        elif url.path.endswith("/chat/completions"):
            reply = self._openai_chat(body)
        elif url.path.endswith("/embeddings"):
            vectors = self._embed(body["input"])
            reply = {
                "object": "list",
                "data": [
                    {"object": "embedding", "index": i, "embedding": v}
                    for i, v in enumerate(vectors)
                ],
                "model": body["model"],
                "usage": {"prompt_tokens": 1, "total_tokens": 1},
            }
        else:
            self.send_error(404, f"no such API: {url.path}")
            return
        kind = "chat" if "chat" in url.path else "embed"
        # Azure names the deployment in the path, not in the body.
        model = body.get("model") or url.path.split("/deployments/")[-1].split("/")[0]
        self.server.record(
            Seen(
                kind,
                url.path,
                model,
                key,
                parse_qs(url.query),
                body.get("options") or {},
                body.get("temperature"),
            )
        )
        payload = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _embed(self, texts: Any) -> list[list[float]]:
        texts = texts if isinstance(texts, list) else [texts]
        return [v.tolist() for v in embed_texts(texts, dim=self.server.dimension)]

    @staticmethod
    def _answer(messages: list[dict[str, Any]]) -> str:
        system = next((m["content"] for m in messages if m["role"] == "system"), "")
        return asyncio.run(standin_llm(messages[-1]["content"], system_prompt=system))

    def _openai_chat(self, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model", "deployment"),
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": self._answer(body["messages"])},
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }

    def _ollama_chat(self, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "model": body["model"],
            "created_at": "2026-01-01T00:00:00Z",
            "message": {"role": "assistant", "content": self._answer(body["messages"])},
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": 1,
            "eval_count": 1,
        }

    def log_message(self, *args: Any) -> None:
        pass
