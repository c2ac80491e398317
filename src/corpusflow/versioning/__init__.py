"""Versioning of snapshots: DVC (data), Comet (artifacts, runs) and the lineage ledger.

By concern, each taking settings (corpusflow.config types), never a pipeline object, and
none importing corpusflow.pipeline:

- `settings`: `CometSettings` (the `comet:` section against the environment), `CometError`.
- `ledger`: the lineage ledger file, and the only code that writes it (`Ledger.record_*`).
- `views`: the ledger's events folded into one view per version (pure; `LineageError`).
- `lineage`: where to import the lineage names from (`Ledger`, `use_snapshot`, ...).
- `consume`: `use_snapshot`, how a downstream run gets a snapshot and is recorded as its user.
- `facts`: what a version records: snapshot facts, producer, git commit, DVC address, metrics.
- `comet`: Comet experiments and artifact versions (hygiene defaults before comet_ml loads).
- `queue`: the offline side: pending queue, offline archives and their upkeep.
- `step`: the versioning step every snapshot ends with (ledger + Comet version).
- `sync`: `corpusflow comet sync`, uploading what waited offline.
- `dvc`: snapshots through DVC at any git revision, and their DVC remote address.

Submodules are imported on use, so `import corpusflow.versioning` stays cheap and never
imports comet_ml or dvc.
"""
