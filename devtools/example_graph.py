"""A small LangGraph graph with a human-in-the-loop interrupt, for the demo and the tests.

``draft`` writes a draft, ``review`` stops the run with ``interrupt()`` until a
reviewer answers (``Command(resume=...)``), and ``publish`` or ``revise`` follow.
Every node appends ``node@pid`` to ``log``, so a test can see which worker
process ran which part of one thread.
"""

from __future__ import annotations

import operator
import os
from typing import Annotated, Any, TypedDict

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt


class ReviewState(TypedDict, total=False):
    topic: str
    draft: str
    verdict: str
    notes: dict[str, Any]
    log: Annotated[list[str], operator.add]


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


def publish(state: ReviewState) -> ReviewState:
    return {"draft": state["draft"] + " (published)", "log": [_step("publish")]}


def revise(state: ReviewState) -> ReviewState:
    return {"draft": state["draft"] + " (needs work)", "log": [_step("revise")]}


def _after_review(state: ReviewState) -> str:
    return "publish" if state.get("verdict") == "yes" else "revise"


def build_review_graph(checkpointer: BaseCheckpointSaver):
    """The compiled graph, saving its state with ``checkpointer``."""
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
    return builder.compile(checkpointer=checkpointer)
