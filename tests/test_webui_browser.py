"""The WebUI in a real browser (Debian's headless Chromium, driven by Playwright) on what a
Celery worker built: the documents, the knowledge graph, the in-page node search."""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request

from playwright.sync_api import expect, sync_playwright

from devtools.browser import chromium_executable
from devtools.corpus import documents
from devtools.services import celery_worker, free_port
from devtools.webui import running_webui

from .conftest import REPO_ROOT
from .lightrag_support import new_workspace

ENTITY = "Bob Smith"
GL_NOISE = "GL Driver Message"  # software WebGL's performance notes, not errors


def _graph(server, label: str) -> dict:
    query = urllib.parse.urlencode({"label": label, "max_depth": 3, "max_nodes": 1000})
    with urllib.request.urlopen(f"{server.base_url}/graphs?{query}", timeout=30) as response:
        return json.loads(response.read())


def test_the_webui_shows_what_a_worker_built(service_env, tmp_path):
    workspace = new_workspace("browser")
    env = {
        **service_env,
        "LIGHTRAG_WORKING_DIR": str(tmp_path / "rag"),
        "WORKSPACE": workspace,
    }
    corpus = documents(6, start=8000)
    with celery_worker(env, tmp_path, concurrency=1, cwd=REPO_ROOT) as worker:
        ingested = worker.call(
            "aperag_pg.lightrag_ingest",
            workspace,
            [t for t, _ in corpus],
            [p for _, p in corpus],
            timeout=180,
        )
    assert ingested["status_counts"]["processed"] == 6
    with (
        running_webui(env, tmp_path, free_port()) as server,
        sync_playwright() as playwright,
    ):
        expected = _graph(server, ENTITY)
        neighbour = next(n["id"] for n in expected["nodes"] if n["id"] != ENTITY)
        browser = playwright.chromium.launch(executable_path=chromium_executable())
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        problems: list[str] = []
        page.on(
            "console",
            lambda m: m.type == "error" and GL_NOISE not in m.text and problems.append(m.text),
        )
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))

        page.goto(f"{server.base_url}/webui/")
        page.get_by_role("tab", name="Documents").click()
        documents_tab = page.get_by_role("tabpanel", name="Documents")
        completed = documents_tab.get_by_role("button", name=re.compile(r"^Completed \(\d+\)$"))
        expect(completed).to_have_text("Completed (6)")
        expect(documents_tab.get_by_role("button", name=re.compile(r"^Failed"))).to_have_text(
            "Failed (0)"
        )
        table = documents_tab.get_by_role("table")
        status_column = table.get_by_role("columnheader").all_inner_texts().index("Status")
        rows = table.locator("tbody").get_by_role("row")
        expect(rows).to_have_count(6)
        statuses = [row.get_by_role("cell").nth(status_column).inner_text() for row in rows.all()]
        assert [s.strip() for s in statuses] == ["Completed"] * 6
        page.screenshot(path=str(tmp_path / "webui-documents.png"))

        page.get_by_role("tab", name="Knowledge Graph").click()
        graph_tab = page.get_by_role("tabpanel", name="Knowledge Graph")
        node_count = graph_tab.get_by_text(re.compile(r"^node: \d+$"))
        edge_count = graph_tab.get_by_text(re.compile(r"^edge: \d+$"))
        expect(node_count).to_have_text(re.compile(r"^node: [1-9]"))  # the whole graph, first
        picker = graph_tab.get_by_role("combobox", name="Search node name")
        picker.click()
        popup = page.get_by_role("dialog")
        popup.get_by_placeholder("Search node name...").fill(ENTITY)
        with page.expect_console_message(lambda m: "sigma graph ready" in m.text):
            popup.get_by_role("option", name=ENTITY, exact=True).click()
        expect(picker).to_have_text(ENTITY)
        expect(node_count).to_have_text(f"node: {len(expected['nodes'])}")
        expect(edge_count).to_have_text(f"edge: {len(expected['edges'])}")
        page.screenshot(path=str(tmp_path / "webui-graph.png"))

        search = graph_tab.get_by_role("combobox", name="Search nodes in page...")
        search.fill(neighbour)
        found = graph_tab.get_by_role("listbox", name="Suggestions").get_by_role("option")
        expect(found.filter(has_text=neighbour)).to_have_count(1)
        browser.close()
    assert problems == []
    assert all((tmp_path / f"webui-{tab}.png").stat().st_size for tab in ("documents", "graph"))
