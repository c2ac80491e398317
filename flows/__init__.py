"""Prefect flows for corpusflow: thin compositions of corpusflow.pipeline steps as tasks.

- flows/ingest.py   `ingest`: sources -> chunk -> embed -> load -> snapshot -> version
                    (deployments `ingest/local` and `ingest/hourly` in prefect.yaml)
- flows/tasks.py    the tasks: per batch of documents, retries, per-run caching, Dask model call
- flows/evaluate.py (to come) `evaluate`: wrap `corpusflow evaluate`'s pipeline function as a
                    task, publish an "evaluate-summary" markdown artifact, and add an
                    `evaluate/local` deployment to prefect.yaml (a commented stub is there).

Nothing in corpusflow imports this package; it imports nothing heavy at import time.
"""
