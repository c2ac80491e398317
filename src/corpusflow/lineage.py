"""Lineage for downstream code: `use_snapshot` and the ledger (see corpusflow.versioning.lineage).

from corpusflow.lineage import use_snapshot
snap = use_snapshot("milvus-query-results", "latest", experiment=exp, ledger=...)
"""

from corpusflow.versioning.lineage import (
    DEFAULT_ARTIFACT,
    Ledger,
    LineageError,
    UsedSnapshot,
    use_snapshot,
)

__all__ = ["DEFAULT_ARTIFACT", "Ledger", "LineageError", "UsedSnapshot", "use_snapshot"]
