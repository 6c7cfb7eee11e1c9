"""Experiments and benchmarks run as modules from the repository root (``python -m experiments...``)."""
