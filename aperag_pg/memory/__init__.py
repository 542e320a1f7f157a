"""LangGraph long-term memory on the worker pool (extra ``langgraph``): ``PGSyncStore``."""

from .store import PGSyncStore

__all__ = ["PGSyncStore"]
