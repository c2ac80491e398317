"""Prefect flows for corpusflow: thin compositions of corpusflow.pipeline steps as tasks.

- flows/ingest.py   `ingest`: sources -> chunk -> embed -> load -> snapshot -> version
                    (deployments `ingest/local` and `ingest/hourly` in prefect.yaml)
- flows/watch.py    `watch`: streaming ingestion, an `ingest` subflow run per burst of new or
                    changed files in watched directories (deployment `watch/local`)
- flows/tasks.py    the tasks over the public run API (`Ingestion`): per batch of documents,
                    retries, per-run caching
- flows/cluster.py  `task_runner="dask"`: parsing and batches on Dask workers (corpusflow.scaleout)
- flows/accounting.py  a run's counts, from IngestResult as a whole (retried steps count once;
                    cached batches count)
- flows/artifacts.py   what a run shows in the UI: summary, counts and rejects tables, progress
- flows/evaluate.py `evaluate`: retrieval evaluation of a snapshot version, recorded as its
                    consumer, with an "evaluate-summary" artifact (deployment `evaluate/local`)

Nothing in corpusflow imports this package; it imports nothing heavy at import time.
"""
