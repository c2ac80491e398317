"""Facts a snapshot version records: what the snapshot says about itself (records, chunks
and content hash per source, models), who made it (CLI, Prefect flow run, DVC stage and
experiment; git commit) and where DVC keeps it; and the producing run's counts as metrics.

Nothing here imports the pipeline: a run's result is anything with `to_dict()` (RunCounts;
pipeline.IngestResult is one) or that dict itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from corpusflow.snapshot import iter_records


class RunCounts(Protocol):
    """What versioning needs of the producing run's result: its counts as a flat dict
    (with `by_type` per source type, `seconds`, `run_id`, `model`)."""

    def to_dict(self) -> dict[str, Any]: ...


def run_counts(result: RunCounts | dict[str, Any] | None) -> dict[str, Any]:
    """The result as a dict ({} for none)."""
    if result is None:
        return {}
    return result if isinstance(result, dict) else result.to_dict()


@dataclass
class SnapshotFacts:
    """What a snapshot file says about itself, read in one streaming pass."""

    records: int
    chunks_per_source: dict[str, int]
    sources: dict[str, str]  # source_id -> doc_hash
    models: list[str]


def snapshot_facts(path: str | Path) -> SnapshotFacts:
    """Record count, chunks and content hash per source, models by frequency."""
    counts: Counter[str] = Counter()
    hashes: dict[str, str] = {}
    models: Counter[str] = Counter()
    n = 0
    for rec in iter_records(path):
        n += 1
        sid = rec.get("source_id", "")
        counts[sid] += 1
        hashes.setdefault(sid, rec.get("doc_hash", ""))
        if rec.get("model"):
            models[rec["model"]] += 1
    return SnapshotFacts(
        records=n,
        chunks_per_source=dict(sorted(counts.items())),
        sources=dict(sorted(hashes.items())),
        models=[m for m, _ in models.most_common()],
    )


# ----------------------------------------------------------------------------------------
# who made it, and where DVC keeps it
# ----------------------------------------------------------------------------------------
def git_commit(cwd: str | Path | None = None) -> tuple[str | None, bool | None]:
    """(HEAD commit, whether tracked files differ from it), or (None, None) outside git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return None, None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=30,
        )
        return head.stdout.strip(), bool(dirty.stdout.strip()) if dirty.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None, None


def prefect_flow_run_id() -> str | None:
    """The Prefect flow-run id when running under Prefect (never imports Prefect itself)."""
    if "prefect" in sys.modules:
        try:
            from prefect.runtime import flow_run

            if flow_run.id:
                return str(flow_run.id)
        except Exception:  # pragma: no cover - Prefect internals vary
            pass
    return os.environ.get("PREFECT__FLOW_RUN_ID") or None


def detect_producer() -> dict[str, Any]:
    """Who is making this snapshot: a DVC stage (DVC sets DVC_STAGE for every stage
    command, and DVC_EXP_NAME under `dvc exp run`), a Prefect flow run, or the CLI."""
    if os.environ.get("DVC_STAGE"):
        return {
            "kind": "dvc",
            "stage": os.environ["DVC_STAGE"],
            "experiment": os.environ.get("DVC_EXP_NAME") or None,
            "baseline": os.environ.get("DVC_EXP_BASELINE_REV") or None,
        }
    if flow_run := prefect_flow_run_id():
        return {"kind": "prefect", "flow_run_id": flow_run}
    return {"kind": "cli"}


def dvc_identity(snapshot: Path) -> dict[str, Any]:
    """The snapshot's DVC address: path in the project, md5 (dvc.lock's hash of the file)
    and where the default remote keeps (or, after `dvc push`, will keep) those bytes."""
    from corpusflow.versioning.dvc import project_path, snapshot_version_info

    try:
        info = snapshot_version_info(snapshot)
    except Exception as exc:  # not a DVC project, remote misconfigured: say so, go on
        return {"error": str(exc).strip().splitlines()[0] if str(exc) else type(exc).__name__}
    return {
        "md5": info["md5"],
        "remote": info.get("remote_url"),
        "path": project_path(snapshot),
    }


# ----------------------------------------------------------------------------------------
# the run's counts
# ----------------------------------------------------------------------------------------
def ingest_metrics(result: RunCounts | dict[str, Any] | None) -> dict[str, float]:
    """Counts and throughput of an ingest run as flat numeric metrics."""
    data = run_counts(result)
    out: dict[str, float] = {}
    for key, value in data.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            out[key] = value
    for source_type, counts in (data.get("by_type") or {}).items():
        for key, value in counts.items():
            out[f"{source_type}.{key}"] = value
    seconds = float(data.get("seconds") or 0)
    if seconds > 0:
        out["chunks_per_second"] = round(data.get("chunks", 0) / seconds, 3)
        out["embedded_per_second"] = round(data.get("embedded", 0) / seconds, 3)
        out["documents_per_second"] = round(data.get("documents", 0) / seconds, 3)
    return out
