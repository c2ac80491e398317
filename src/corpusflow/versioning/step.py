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
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corpusflow.versioning.comet import (
    SNAPSHOT_FILE,
    UPLOAD_MAX_BYTES,
    CometSettings,
    end_experiment,
    git_commit,
    log_artifact,
    loggable_params,
    prefect_flow_run_id,
    scrub,
    start_experiment,
)
from corpusflow.versioning.facts import (
    ingest_metrics,
    log_chunks_per_source,
    read_manifest,
    snapshot_facts,
)
from corpusflow.versioning.lineage import Ledger, file_sha256, now
from corpusflow.versioning.queue import PendingQueue, save_bytes, tidy

if TYPE_CHECKING:
    from corpusflow.config import Params
    from corpusflow.pipeline import IngestResult

LOG = logging.getLogger(__name__)


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


def version_snapshot(
    params: Params,
    snapshot_path: str | Path,
    *,
    result: IngestResult | dict[str, Any] | None = None,
    producer: dict[str, Any] | None = None,
    run_ids: dict[str, str | None] | None = None,
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
    sha: str,
    rdict: dict[str, Any],
    who: dict[str, Any],
    run_ids: dict[str, str | None] | None,
    dvc: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """(ledger event, Comet version metadata, snapshot facts) of one snapshot."""
    manifest = read_manifest(snapshot)
    facts = snapshot_facts(snapshot)
    model = rdict.get("model") or (facts.models[0] if facts.models else params.embedding.model)
    commit, dirty = git_commit()
    runs = {
        "ingest": rdict.get("run_id"),
        "snapshot": manifest.get("run_id"),
        "prefect_flow_run": prefect_flow_run_id(),
        **(run_ids or {}),
    }
    runs = {k: v for k, v in runs.items() if v}
    address = scrub({k: v for k, v in dvc.items() if v and k != "error"})
    physical = manifest.get("physical_collection") or rdict.get("physical_collection")
    values = scrub(params.model_dump(mode="json"))
    event: dict[str, Any] = {
        "event": "produced",
        "sha256": sha,
        "snapshot": {"path": str(snapshot), "records": facts.records},
        "producer": who,
        "collection": params.milvus.collection,
        "alias": params.milvus.collection,
        "physical_collection": physical,
        "model": model,
        "params_hash": params.digest(),
        "params": values,
        "code_commit": commit,
        "code_dirty": dirty,
        "run_ids": runs,
        "sources": facts.sources,
        "dvc": address,
    }
    return event, _metadata(event, manifest.get("created_at") or now()), facts


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
    result: IngestResult | dict[str, Any] | None = None,
    producer: dict[str, Any] | None = None,
    run_ids: dict[str, str | None] | None = None,
    dvc: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`version_snapshot` without the error shield (raises what goes wrong)."""
    settings = CometSettings.from_params(params)
    sha = file_sha256(snapshot)
    rdict = result if isinstance(result, dict) else result.to_dict() if result else {}
    who = producer or detect_producer()
    event, metadata, facts = _describe(
        params, snapshot, sha, rdict, who, run_ids, dvc or dvc_identity(snapshot)
    )
    ledger, queue = settings.ledger, PendingQueue(settings.pending_dir)
    with queue.locked():
        tidy(settings.offline_dir, queue)
        if settings.mode == "disabled":
            event["comet"] = {"mode": "disabled"}
            return _outcome(ledger.record_produced(event), settings, None, who)
        known = _known(settings, ledger, queue, sha)
        if known is not None:  # same bytes: one more producer, no new Comet version
            event["comet"] = known
            return _outcome(ledger.record_produced(event), settings, None, who)
        return _new_version(settings, queue, snapshot, event, metadata, facts, params, rdict)


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


def _queue_entry(
    settings: CometSettings, exp: Any, mode: str, snapshot: Path, metadata: dict[str, Any]
) -> dict[str, Any]:
    sha = metadata["sha256"]
    return {
        "id": f"{sha[:12]}-{exp.id[:8]}",
        "kind": "artifact",
        "experiment_key": exp.id,
        "offline": mode == "offline",
        "artifact": settings.artifact,
        "artifact_type": settings.artifact_type,
        "workspace": settings.workspace,
        "metadata": metadata,
        "aliases": ["latest"],
        "file": str(save_bytes(settings.pending_dir, snapshot, sha)),
        "sha256": sha,
    }


def _new_version(
    settings: CometSettings,
    queue: PendingQueue,
    snapshot: Path,
    event: dict[str, Any],
    metadata: dict[str, Any],
    facts: Any,
    params: Params,
    rdict: dict[str, Any],
) -> dict[str, Any]:
    """New bytes: an experiment, an artifact version (or a queued one), the ledger line."""
    ledger = settings.ledger
    upcoming = ledger.upcoming_version()
    exp, mode = start_experiment(
        settings, f"snapshot {upcoming} {metadata['sha256'][:12]}", ["corpusflow", "snapshot"]
    )
    version: str | None = None
    pending_id: str | None = None
    archive = None
    try:
        if mode == "offline":  # queued first: a kill from here on leaves it for sync
            pending_id = queue.add(_queue_entry(settings, exp, mode, snapshot, metadata))["id"]
        _log_run(exp, params, metadata, facts, rdict, snapshot, upcoming, offline=mode == "offline")
        if mode == "online":
            try:
                version = log_artifact(
                    exp, settings.artifact, settings.artifact_type, snapshot, metadata, ["latest"]
                )
            except Exception as exc:
                LOG.warning("logging the artifact failed (%s): queued for `comet sync`", exc)
                pending_id = queue.add(_queue_entry(settings, exp, mode, snapshot, metadata))["id"]
        exp.log_other("snapshot_artifact", f"{settings.artifact}:{version or 'pending'}")
    finally:
        archive = end_experiment(exp, mode, settings)
    event["comet"] = {
        "mode": mode,
        "experiment_key": exp.id,
        "project": settings.project,
        "workspace": settings.workspace,
        "artifact": settings.artifact,
        "version": version or "pending",
        "pending_id": pending_id,
        "reused": False,
    }
    rec = ledger.record_produced(event)
    return _outcome(rec, settings, archive, event["producer"])


def _log_run(
    exp: Any,
    params: Params,
    metadata: dict[str, Any],
    facts: Any,
    rdict: dict[str, Any],
    snapshot: Path,
    upcoming: str,
    offline: bool,
) -> None:
    """Params (values, scrubbed), counts, snapshot facts and charts of the producing run."""
    from corpusflow.snapshot import manifest_path

    exp.log_parameters(loggable_params(scrub(params.model_dump(mode="json"))))
    exp.log_parameter("params_hash", params.digest())
    exp.log_metrics(ingest_metrics(rdict or None))
    exp.log_metrics({"snapshot_records": facts.records, "snapshot_sources": len(facts.sources)})
    others = {f"snapshot_{k}": v for k, v in metadata.items() if v is not None}
    exp.log_others({k: v for k, v in others.items() if not isinstance(v, dict)})
    exp.log_other("snapshot_producer", metadata["producer"]["kind"])
    exp.log_other("ledger_version", upcoming)
    log_chunks_per_source(exp, facts.chunks_per_source)
    if (mpath := manifest_path(snapshot)).exists():
        exp.log_asset(str(mpath), file_name="snapshot.manifest.json")
    # the archive must stand alone; online, the artifact holds the bytes
    if offline and snapshot.stat().st_size <= UPLOAD_MAX_BYTES:
        exp.log_asset(str(snapshot), file_name=SNAPSHOT_FILE)


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
