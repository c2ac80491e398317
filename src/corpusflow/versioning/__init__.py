"""Versioning of snapshots: DVC (data), Comet (artifacts, runs) and the lineage ledger.

Submodules are imported on use, so `import corpusflow.versioning` stays cheap and never
imports comet_ml or dvc: `versioning.comet` (experiments, artifact versions, offline queue and
sync), `versioning.lineage` (the append-only ledger kept in git, and `use_snapshot`).
"""
