"""Prefect flows for corpusflow: thin compositions of corpusflow.pipeline steps as tasks.

- flows/ingest.py   `ingest`: sources -> chunk -> embed -> load -> snapshot -> version
                    (deployments `ingest/local` and `ingest/hourly` in prefect.yaml)
- flows/tasks.py    the tasks: per batch of documents, retries, per-run caching, Dask model call
- flows/evaluate.py `evaluate`: retrieval evaluation of a snapshot version, recorded as its
                    consumer, with an "evaluate-summary" artifact (deployment `evaluate/local`)

Nothing in corpusflow imports this package; it imports nothing heavy at import time.
"""
