"""Benchmarks against what a user would pick instead (`make bench`), run as modules:
``python -m bench.<name>``."""
