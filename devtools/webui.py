"""LightRAG's WebUI on the workers' tables, for `make webui` and the tests.

``make webui`` runs ``python -m devtools.webui``: on the services POSTGRES_* / REDIS_URL
name, or else the local ones `make demo` and `make services-up` keep under run/services
(started for the while if they are down), showing the workspace WORKSPACE= names, else
POSTGRES_WORKSPACE, else (on the local services) the one `make demo` built last, else
"default"; with the demo's offline stand-ins when no model is configured and the demo
ran on them. The server itself
is ``python -m aperag_pg webui`` (``aperag_pg.lightrag.server``).

``running_webui`` starts that server as a process for a test and waits until it listens.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from aperag_pg.environment import LLM_BINDING, WORKSPACE
from aperag_pg.settings import load_environment

from .services import kept_services, named_postgres, wait_for_log_line

READY = "LightRAG WebUI on workspace"
DEMO_RECORD = "demo.json"  # in the services directory: the last demo's workspace and models


@dataclass
class RunningWebUI:
    process: subprocess.Popen
    port: int
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def running_webui(
    env: Mapping[str, str],
    log_dir: Path,
    port: int,
    timeout: float = 90,
    command: tuple[str, ...] = ("-m", "aperag_pg", "webui"),
    cwd: Path | None = None,
    wrapper: tuple[str, ...] = (),
) -> Iterator[RunningWebUI]:
    """``python -m aperag_pg webui`` (or ``python <command>``, run by ``wrapper`` if given,
    which must exec it) on ``port`` with ``env``, until it prints its URL; interrupted (a
    clean shutdown) on exit."""
    log = log_dir / f"webui-{port}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [*wrapper, sys.executable, *command],
            env={**env, "WEBUI_PORT": str(port)},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd or log_dir,
        )
    server = RunningWebUI(process, port, log)
    try:
        wait_for_log_line(process, log, READY, "the WebUI server", timeout)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def record_demo(services_dir: Path, workspace: str, models: Mapping[str, str]) -> None:
    """Remember the demo's workspace and model variables for `make webui`."""
    (services_dir / DEMO_RECORD).write_text(json.dumps({"workspace": workspace, **models}))


def demo_choices(services_dir: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """The last demo's workspace and stand-ins, for what ``environ`` leaves unset."""
    env = load_environment(environ)
    record = services_dir / DEMO_RECORD
    demo = json.loads(record.read_text()) if record.exists() else {}
    chosen: dict[str, str] = {}
    if not (env.get(WORKSPACE) or env.get("POSTGRES_WORKSPACE")) and demo.get("workspace"):
        chosen[WORKSPACE] = demo["workspace"]
    models_set = any(env.get(v) for v in (LLM_BINDING, "OPENAI_API_KEY", "LIGHTRAG_FACTORY"))
    if not models_set and demo.get(LLM_BINDING):
        chosen[LLM_BINDING] = demo[LLM_BINDING]
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.webui", description=__doc__)
    parser.add_argument("--services-dir", default="run/services", type=Path)
    args = parser.parse_args(argv)
    from aperag_pg.__main__ import main as aperag_pg_main

    with ExitStack() as stack:
        # the demo's record names what it built in the local services, not in others
        if not named_postgres():
            os.environ.update(stack.enter_context(kept_services(args.services_dir)))
            os.environ.update(demo_choices(args.services_dir, os.environ))
        return aperag_pg_main(["webui"])


if __name__ == "__main__":
    sys.exit(main())
