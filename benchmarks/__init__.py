"""Benchmarks for corpusflow: `make bench` runs `python -m benchmarks.run`.

Benchmarks are not tests: they measure and report, they never fail a build on a time.
"""
