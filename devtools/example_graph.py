"""A small LangGraph graph with a human-in-the-loop interrupt, for the demo and the tests.

``draft`` writes a draft, ``review`` stops the run with ``interrupt()`` until a
reviewer answers (``Command(resume=...)``), and ``publish`` or ``revise`` follow.
Every node appends ``node@pid`` to ``log``, so a test can see which worker
process ran which part of one thread.

With a store and an ``author``, ``publish`` also uses long-term memory: it recalls what the
author published before, in any earlier workflow and any worker process, and remembers
this publication for the next one.
"""

from __future__ import annotations

import operator
import os
from typing import Annotated, Any, TypedDict

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.store.base import BaseStore
from langgraph.types import interrupt


class ReviewState(TypedDict, total=False):
    topic: str
    draft: str
    verdict: str
    notes: dict[str, Any]
    log: Annotated[list[str], operator.add]
    author: str
    follows_up: list[dict[str, Any]]  # what the author published before (long-term memory)


def _step(name: str) -> str:
    return f"{name}@{os.getpid()}"


def draft(state: ReviewState) -> ReviewState:
    return {
        "draft": f"A short note about {state['topic']}.",
        "notes": {"words": 5, "tags": ["draft"]},
        "log": [_step("draft")],
    }


def review(state: ReviewState) -> ReviewState:
    answer = interrupt({"question": "Publish this draft?", "draft": state["draft"]})
    return {"verdict": str(answer), "log": [_step("review")]}


def publish(state: ReviewState, runtime: Runtime) -> ReviewState:
    update: ReviewState = {"draft": state["draft"] + " (published)", "log": [_step("publish")]}
    if runtime.store is not None and state.get("author"):
        update["follows_up"] = remember_publication(runtime.store, state["author"], state["topic"])
    return update


def remember_publication(store: BaseStore, author: str, topic: str) -> list[dict[str, Any]]:
    """What ``author`` published before (oldest first), then this publication remembered."""
    namespace = ("authors", author, "published")
    earlier = [item.value for item in reversed(store.search(namespace, limit=50))]
    store.put(namespace, topic, {"topic": topic, "pid": os.getpid()})
    return earlier


def revise(state: ReviewState) -> ReviewState:
    return {"draft": state["draft"] + " (needs work)", "log": [_step("revise")]}


def _after_review(state: ReviewState) -> str:
    return "publish" if state.get("verdict") == "yes" else "revise"


def build_review_graph(checkpointer: BaseCheckpointSaver, store: BaseStore | None = None):
    """The compiled graph, saving its state with ``checkpointer``; ``store`` is its
    long-term memory."""
    builder = StateGraph(ReviewState)
    builder.add_node("draft", draft)
    builder.add_node("review", review)
    builder.add_node("publish", publish)
    builder.add_node("revise", revise)
    builder.add_edge(START, "draft")
    builder.add_edge("draft", "review")
    builder.add_conditional_edges("review", _after_review, ["publish", "revise"])
    builder.add_edge("publish", END)
    builder.add_edge("revise", END)
    return builder.compile(checkpointer=checkpointer, store=store)
