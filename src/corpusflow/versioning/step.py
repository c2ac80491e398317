"""The versioning step: a written snapshot -> one ledger version and one Comet artifact version.

One definition, used by `corpusflow snapshot` (pipeline.version), the Prefect ingest flow
(its `version` task calls pipeline.version) and the DVC snapshot stage, so by `dvc repro` and
`dvc exp run` too. A version is named by the sha256 of the bytes: bytes seen before make no
new ledger version, no new Comet version and no new offline archive; the run is still
recorded as one more producer of that version. Each version records its producer (cli run,
Prefect flow run, or DVC stage and experiment), the git commit, the params values, the
model, the sources' content hashes and its DVC address (path, md5, remote URL).

The durable steps run under the pending queue's lock (one versioning step or sync at a
time) in this order: saved bytes and queue entry, the experiment's archive (staged, checked,
then moved in place), the ledger line. A kill between any two leaves state that the rerun
or the next `comet sync` completes, never a second Comet version of the same bytes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corpusflow.ids import file_sha256
from corpusflow.redact import scrub
from corpusflow.snapshot import manifest_path, read_manifest
from corpusflow.versioning.comet import (
    UPLOAD_MAX_BYTES,
    end_experiment,
    log_artifact,
    log_chunks_per_source,
    loggable_params,
    start_experiment,
)
from corpusflow.versioning.facts import (
    RunCounts,
    SnapshotFacts,
    detect_producer,
    dvc_identity,
    git_commit,
    ingest_metrics,
    prefect_flow_run_id,
    run_counts,
    snapshot_facts,
)
from corpusflow.versioning.ledger import Ledger, now
from corpusflow.versioning.queue import PendingQueue, save_bytes, tidy
from corpusflow.versioning.settings import SNAPSHOT_FILE, CometSettings

if TYPE_CHECKING:
    from corpusflow.config import Params

LOG = logging.getLogger(__name__)
RunIds = dict[str, str | None]


@dataclass
class _Version:
    """One snapshot on its way to a version: what the steps below share."""

    params: Params
    settings: CometSettings
    snapshot: Path
    counts: dict[str, Any]  # the producing run's result, as a dict
    event: dict[str, Any]  # the ledger's `produced` event
    metadata: dict[str, Any]  # the Comet artifact version's metadata
    facts: SnapshotFacts

    @property
    def sha(self) -> str:
        return self.event["sha256"]


def version_snapshot(
    params: Params,
    snapshot_path: str | Path,
    *,
    result: RunCounts | dict[str, Any] | None = None,
    producer: dict[str, Any] | None = None,
    run_ids: RunIds | None = None,
) -> dict[str, Any]:
    """Version one snapshot file; never raises (the data is loaded and the snapshot
    written already): a failure is reported as {"error": ...} under "comet".

    Returns {"dvc": address, "comet": {mode, experiment_key, artifact, artifact_version,
    pending_id, ledger_version, new_version, sha256, archive, producer}}.
    """
    snapshot = Path(snapshot_path)
    dvc = dvc_identity(snapshot)
    try:
        outcome = record_version(
            params, snapshot, result=result, producer=producer, run_ids=run_ids, dvc=dvc
        )
    except Exception as exc:
        outcome = {"error": str(exc).strip().splitlines()[0] if str(exc) else type(exc).__name__}
    return {"dvc": dvc, "comet": outcome}


def _describe(
    params: Params,
    snapshot: Path,
    counts: dict[str, Any],
    who: dict[str, Any],
    run_ids: RunIds | None,
    dvc: dict[str, Any],
) -> _Version:
    """The ledger event and the Comet version metadata of one snapshot file."""
    manifest = read_manifest(snapshot)
    facts = snapshot_facts(snapshot)
    model = counts.get("model") or (facts.models[0] if facts.models else params.embedding.model)
    commit, dirty = git_commit()
    runs = {
        "ingest": counts.get("run_id"),
        "snapshot": manifest.get("run_id"),
        "prefect_flow_run": prefect_flow_run_id(),
        **(run_ids or {}),
    }
    physical = manifest.get("physical_collection") or counts.get("physical_collection")
    event: dict[str, Any] = {
        "event": "produced",
        "sha256": file_sha256(snapshot),
        "snapshot": {"path": str(snapshot), "records": facts.records},
        "producer": who,
        "collection": params.milvus.collection,
        "alias": params.milvus.collection,
        "physical_collection": physical,
        "model": model,
        "params_hash": params.digest(),
        "params": scrub(params.model_dump(mode="json")),
        "code_commit": commit,
        "code_dirty": dirty,
        "run_ids": {k: v for k, v in runs.items() if v},
        "sources": facts.sources,
        "dvc": scrub({k: v for k, v in dvc.items() if v and k != "error"}),
    }
    metadata = _metadata(event, manifest.get("created_at") or now())
    settings = CometSettings.from_params(params)
    return _Version(params, settings, snapshot, counts, event, metadata, facts)


def _metadata(event: dict[str, Any], created: str) -> dict[str, Any]:
    """The Comet artifact version's metadata: the ledger event's facts, flat."""
    runs, address, values = event["run_ids"], event["dvc"], event["params"]
    return scrub(
        {
            "sha256": event["sha256"],
            "records": event["snapshot"]["records"],
            "sources": len(event["sources"]),
            "collection": event["collection"],
            "alias": event["alias"],
            "physical_collection": event["physical_collection"],
            "embedding_model": event["model"],
            "params_hash": event["params_hash"],
            "params": {k: values[k] for k in ("sources", "chunking", "embedding", "snapshot")},
            "producer": event["producer"],
            "git_commit": event["code_commit"],
            "git_dirty": event["code_dirty"],
            "dvc_path": address.get("path"),
            "dvc_md5": address.get("md5"),
            "dvc_remote": address.get("remote"),
            "ingest_run_id": runs.get("ingest"),
            "snapshot_run_id": runs.get("snapshot"),
            "prefect_flow_run_id": runs.get("prefect_flow_run"),
            "created_at": created,
        }
    )


def record_version(
    params: Params,
    snapshot: Path,
    *,
    result: RunCounts | dict[str, Any] | None = None,
    producer: dict[str, Any] | None = None,
    run_ids: RunIds | None = None,
    dvc: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`version_snapshot` without the error shield (raises what goes wrong)."""
    who = producer or detect_producer()
    v = _describe(params, snapshot, run_counts(result), who, run_ids, dvc or dvc_identity(snapshot))
    settings, event = v.settings, v.event
    ledger, queue = settings.ledger, PendingQueue(settings.pending_dir)
    with queue.locked():
        tidy(settings.offline_dir, queue)
        if settings.mode == "disabled":
            event["comet"] = {"mode": "disabled"}
            return _outcome(ledger.record_produced(event), settings, None, who)
        known = _known(settings, ledger, queue, v.sha)
        if known is not None:  # same bytes: one more producer, no new Comet version
            event["comet"] = known
            return _outcome(ledger.record_produced(event), settings, None, who)
        return _new_version(v, queue)


def _known(
    settings: CometSettings, ledger: Ledger, queue: PendingQueue, sha: str
) -> dict[str, Any] | None:
    """The Comet version (or queued version) these bytes have already, in this artifact."""
    view = next((v for v in ledger.graph() if v["sha256"] == sha), None)
    comet = {"mode": "reused", "artifact": settings.artifact, "reused": True}
    if view is not None and view["comet"]["artifact"] in (None, settings.artifact):
        if view["comet"]["versions"]:
            return {**comet, "version": view["comet"]["versions"][-1]}
        if view["comet"]["pending"]:
            return {**comet, "version": "pending", "pending_id": view["comet"]["pending"][-1]}
    entry = queue.artifact_for(sha, settings.artifact)  # queued by a run killed before its
    if entry is not None:  # ledger line: this run finishes it
        return {**comet, "version": "pending", "pending_id": entry["id"]}
    return None


def _queue(v: _Version, queue: PendingQueue, exp: Any, mode: str) -> str:
    """Queue the artifact version for `comet sync` (bytes saved first); its pending id."""
    settings = v.settings
    entry = {
        "id": f"{v.sha[:12]}-{exp.id[:8]}",
        "kind": "artifact",
        "experiment_key": exp.id,
        "offline": mode == "offline",
        "artifact": settings.artifact,
        "artifact_type": settings.artifact_type,
        "workspace": settings.workspace,
        "metadata": v.metadata,
        "aliases": ["latest"],
        "file": str(save_bytes(settings.pending_dir, v.snapshot, v.sha)),
        "sha256": v.sha,
    }
    return queue.add(entry)["id"]


def _new_version(v: _Version, queue: PendingQueue) -> dict[str, Any]:
    """New bytes: an experiment, an artifact version (or a queued one), the ledger line."""
    settings = v.settings
    upcoming = settings.ledger.upcoming_version()
    exp, mode = start_experiment(
        settings, f"snapshot {upcoming} {v.sha[:12]}", ["corpusflow", "snapshot"]
    )
    version: str | None = None
    pending_id: str | None = None
    archive = None
    try:
        if mode == "offline":  # queued first: a kill from here on leaves it for sync
            pending_id = _queue(v, queue, exp, mode)
        _log_run(exp, v, upcoming, offline=mode == "offline")
        if mode == "online":
            try:
                version = log_artifact(
                    exp,
                    settings.artifact,
                    settings.artifact_type,
                    v.snapshot,
                    v.metadata,
                    ["latest"],
                )
            except Exception as exc:
                LOG.warning("logging the artifact failed (%s): queued for `comet sync`", exc)
                pending_id = _queue(v, queue, exp, mode)
        exp.log_other("snapshot_artifact", f"{settings.artifact}:{version or 'pending'}")
    finally:
        archive = end_experiment(exp, mode, settings)
    v.event["comet"] = {
        "mode": mode,
        "experiment_key": exp.id,
        "project": settings.project,
        "workspace": settings.workspace,
        "artifact": settings.artifact,
        "version": version or "pending",
        "pending_id": pending_id,
        "reused": False,
    }
    rec = settings.ledger.record_produced(v.event)
    return _outcome(rec, settings, archive, v.event["producer"])


def _log_run(exp: Any, v: _Version, upcoming: str, offline: bool) -> None:
    """Params (values, scrubbed), counts, snapshot facts and charts of the producing run."""
    facts, metadata = v.facts, v.metadata
    exp.log_parameters(loggable_params(scrub(v.params.model_dump(mode="json"))))
    exp.log_parameter("params_hash", v.params.digest())
    exp.log_metrics(ingest_metrics(v.counts or None))
    exp.log_metrics({"snapshot_records": facts.records, "snapshot_sources": len(facts.sources)})
    others = {f"snapshot_{k}": val for k, val in metadata.items() if val is not None}
    exp.log_others({k: val for k, val in others.items() if not isinstance(val, dict)})
    exp.log_other("snapshot_producer", metadata["producer"]["kind"])
    exp.log_other("ledger_version", upcoming)
    log_chunks_per_source(exp, facts.chunks_per_source)
    if (mpath := manifest_path(v.snapshot)).exists():
        exp.log_asset(str(mpath), file_name="snapshot.manifest.json")
    # the archive must stand alone; online, the artifact holds the bytes
    if offline and v.snapshot.stat().st_size <= UPLOAD_MAX_BYTES:
        exp.log_asset(str(v.snapshot), file_name=SNAPSHOT_FILE)


def _outcome(
    rec: dict[str, Any], settings: CometSettings, archive: str | None, who: dict[str, Any]
) -> dict[str, Any]:
    comet = rec.get("comet") or {}
    version = comet.get("version")
    return {
        "mode": comet.get("mode"),
        "experiment_key": comet.get("experiment_key"),
        "artifact": settings.artifact,
        "artifact_version": version,
        "pending_id": comet.get("pending_id"),
        "ledger_version": rec["version"],
        "new_version": rec["new_version"],
        "sha256": rec["sha256"],
        "archive": archive,
        "producer": who,
    }
