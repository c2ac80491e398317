"""The lineage ledger: which snapshot came from what, and who used it — answerable offline.

`lineage/ledger.jsonl` is append-only and kept in git, one JSON event a line:

- `produced`: a run wrote a snapshot. Versions `v1, v2, …` number distinct snapshot sha256s
  (same bytes, same version). Carries sources with content hashes (first time a version is
  seen), params hash and params, model, code commit, run ids, DVC md5/remote, Comet artifact
  version or "pending".
- `comet_synced`: a pending artifact version reached Comet (`corpusflow comet sync`).
- `consumed`: a downstream run used a snapshot; carries its run id / experiment key and metrics.
- `consume_synced`: an offline consumer was later recorded as a consumer in Comet.

Where each part lives: the file and every write to it in versioning.ledger (`Ledger`), the
folding of the events into one view per version in versioning.views, and `use_snapshot` —
how a downstream run gets a snapshot, through Comet's `get_artifact` when online, else from
the ledger and the local files whose bytes match — in versioning.consume. This module is
the place to import them from.
"""

from __future__ import annotations

from corpusflow.files import append_jsonl, read_jsonl
from corpusflow.ids import file_sha256
from corpusflow.versioning.consume import UsedSnapshot, use_snapshot
from corpusflow.versioning.ledger import Ledger, now
from corpusflow.versioning.settings import DEFAULT_ARTIFACT, SNAPSHOT_FILE
from corpusflow.versioning.views import LineageError, build_graph, numbering, public_view

__all__ = [
    "DEFAULT_ARTIFACT",
    "SNAPSHOT_FILE",
    "Ledger",
    "LineageError",
    "UsedSnapshot",
    "append_jsonl",
    "build_graph",
    "file_sha256",
    "now",
    "numbering",
    "public_view",
    "read_jsonl",
    "use_snapshot",
]
