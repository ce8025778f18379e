"""Benchmarking: data sets, algorithms (ours and peers) and the runner.

Kept apart from the core in the style of ann-benchmarks; nothing here is
imported by the query path.
"""
