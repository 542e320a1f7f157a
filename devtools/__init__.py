"""Dev tooling, outside the installed package: embedded PostgreSQL and Redis, a Celery
worker harness, the demo, its corpus, its LangGraph workflow and its tasks.

Run from the repository root (``make demo``, ``make test``, ``make bench``).
"""
