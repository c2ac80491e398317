"""`corpusflow comet sync`: offline archives, then pending artifact versions and consumers.

Safe to kill and rerun at any point, and never stuck on one bad item:
- archives are checked first; a broken one (empty, torn, not a zip) is quarantined with one
  warning line, and versions whose run archive is gone are logged from a new experiment;
- an archive moves to `uploading/` before it is sent and to `uploaded/` after, so a rerun
  after a kill resends only what may not have arrived (with force, as the SDK needs);
- each snapshot sha256 becomes exactly one artifact version: entries for bytes that already
  have a version are dropped, and before logging, the version is looked up in Comet by its
  `sha256-…` alias (a kill between Comet's answer and the ledger line must not log it twice).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corpusflow.ids import file_sha256
from corpusflow.versioning.comet import EXPERIMENT_KWARGS, comet_ml, log_artifact, sha_alias
from corpusflow.versioning.queue import PendingQueue, archive_problem, quarantine, tidy
from corpusflow.versioning.settings import CometError, CometSettings
from corpusflow.versioning.views import LineageError

if TYPE_CHECKING:
    from corpusflow.config import Params

LOG = logging.getLogger(__name__)


def _report() -> dict[str, Any]:
    return {
        "archives_uploaded": [],
        "archives_failed": [],
        "archives_quarantined": [],
        "artifacts_logged": [],
        "consumers_recorded": [],
        "dropped": [],
        "remaining": 0,
        "error": None,
    }


def sync(params: Params, *, force_upload: bool = False) -> dict[str, Any]:
    """Upload offline archives, then log pending artifact versions and consumptions in order.

    The queue is worked in order and stops at the first failure that a rerun could fix
    (Comet unreachable), so versions never swap; items that can never succeed are dropped
    or recovered, with a line in the report, instead of blocking everything after them.
    """
    settings = CometSettings.from_params(params)
    if not os.environ.get("COMET_API_KEY"):
        raise CometError("COMET_API_KEY is not set: nothing can be uploaded")
    cm = comet_ml()
    report = _report()
    queue = PendingQueue(settings.pending_dir)
    with queue.locked():
        tidy(settings.offline_dir, queue)
        _upload_archives(settings, report, force_upload)
        entries = queue.entries()
        done = 0
        for entry in entries:
            try:
                _sync_entry(cm, settings, entry, report)
            except Exception as exc:
                report["error"] = f"{entry['id']}: {str(exc).strip().splitlines()[0]}"
                break
            done += 1
            queue.replace(entries[done:])
        report["remaining"] = len(entries) - done
        tidy(settings.offline_dir, queue)
    return report


def _upload_archives(settings: CometSettings, report: dict[str, Any], force: bool) -> None:
    from comet_ml.offline import main_upload

    uploading = settings.offline_dir / "uploading"
    archives = sorted(
        [(p, force) for p in settings.offline_dir.glob("*.zip")]
        + [(p, True) for p in settings.fallback_dir.glob("*.zip")]  # resume known runs
        + [(p, True) for p in uploading.glob("*.zip")],  # may have arrived before a kill
        key=lambda pf: (pf[0].stat().st_mtime, pf[0].name),
    )
    for archive, force_this in archives:
        problem = archive_problem(archive)
        if problem is not None:
            quarantine(archive, settings.offline_dir, problem)
            report["archives_quarantined"].append({"archive": archive.name, "problem": problem})
            continue
        uploading.mkdir(parents=True, exist_ok=True)
        sending = uploading / archive.name
        os.replace(archive, sending)
        try:
            main_upload([str(sending)], force_upload=force_this)
        except Exception as exc:
            os.replace(sending, archive)  # back where it was: the next sync retries it
            report["archives_failed"].append({"archive": str(archive), "error": str(exc)})
            continue
        settings.uploaded_dir.mkdir(parents=True, exist_ok=True)
        os.replace(sending, settings.uploaded_dir / archive.name)
        report["archives_uploaded"].append(str(archive))


def _archive_state(settings: CometSettings, key: str) -> str:
    """uploaded | waiting (not uploaded yet) | lost (quarantined or never written)."""
    if any(settings.uploaded_dir.glob(f"{key}*.zip")):
        return "uploaded"
    places = (settings.offline_dir, settings.fallback_dir, settings.offline_dir / "uploading")
    if any(any(d.glob(f"{key}*.zip")) for d in places):
        return "waiting"
    return "lost"


def _sync_entry(cm: Any, settings: CometSettings, entry: dict[str, Any], report: dict) -> None:
    state = _archive_state(settings, entry["experiment_key"]) if entry.get("offline") else "online"
    if state == "waiting":  # keep the order: the run's archive goes first
        raise CometError(f"archive of experiment {entry['experiment_key']} not uploaded")
    if entry["kind"] == "consume":
        if state == "lost":
            why = "the consuming run left no usable archive"
            report["dropped"].append({"pending_id": entry["id"], "version": None, "why": why})
            return
        outcome = _sync_consumption(cm, settings, entry)
        report["consumers_recorded" if outcome.get("version") else "dropped"].append(outcome)
        return
    known = _comet_versions(settings, entry["sha256"], entry["artifact"])
    if known:  # these bytes have their Comet version already: never a second one
        report["dropped"].append(
            {"pending_id": entry["id"], "version": known[-1], "why": "already versioned"}
        )
        return
    report["artifacts_logged"].append(_sync_artifact(cm, settings, entry, state == "lost"))


def _comet_versions(settings: CometSettings, sha: str, artifact: str) -> list[str]:
    try:
        view = settings.ledger.resolve(sha)
    except LineageError:
        return []
    if view["comet"]["artifact"] not in (None, artifact):
        return []
    return list(view["comet"]["versions"])


def _superseded(settings: CometSettings, entry: dict[str, Any]) -> bool:
    """Whether a later snapshot already has a Comet version (then `latest` stays there)."""
    seen = False
    for e in settings.ledger.events():
        comet = e.get("comet") or {}
        if e.get("event") == "produced" and comet.get("pending_id") == entry["id"]:
            seen = True
        elif (
            seen
            and e.get("event") == "produced"
            and (comet.get("version") or "pending") != "pending"
        ):
            return True
    return False


def _existing(cm: Any, key: str) -> Any:
    exp = cm.ExistingExperiment(experiment_key=key, **EXPERIMENT_KWARGS)
    if not exp.alive:
        exp.end()
        raise CometError(f"cannot re-attach to experiment {key}")
    return exp


def _recovery_experiment(cm: Any, settings: CometSettings, entry: dict[str, Any]) -> Any:
    """A new experiment for a version whose producing run left no archive (killed, disk
    full, quarantined): the version still reaches Comet, once, with its metadata."""
    LOG.warning(
        "the run that made snapshot %s left no usable archive: logging its version from a "
        "new experiment",
        entry["sha256"][:12],
    )
    exp = cm.Experiment(
        project_name=settings.project, workspace=entry.get("workspace"), **EXPERIMENT_KWARGS
    )
    exp.set_name(f"recovered {entry['sha256'][:12]}")
    exp.add_tags(["corpusflow", "snapshot", "recovered"])
    exp.log_other("recovered_from_experiment", entry["experiment_key"])
    return exp


def _already_in_comet(exp: Any, entry: dict[str, Any]) -> str | None:
    """The Comet version carrying this sha256's alias, if a sync logged it before a kill."""
    try:
        found = exp.rest_api_client.get_artifact_version_details(
            workspace=entry.get("workspace"),
            name=entry["artifact"],
            alias=sha_alias(entry["sha256"]),
            experiment_key=exp.id,
        )
    except Exception:  # not found (the usual answer)
        return None
    meta = found.get("metadata") or {}
    if isinstance(meta, str):
        meta = json.loads(meta)
    return str(found["artifactVersion"]) if meta.get("sha256") == entry["sha256"] else None


def _sync_artifact(
    cm: Any, settings: CometSettings, entry: dict[str, Any], lost: bool
) -> dict[str, Any]:
    file = Path(entry["file"])
    if not file.exists() or file_sha256(file) != entry["sha256"]:
        raise CometError(f"saved bytes for {entry['id']} are missing or changed: {file}")
    aliases = [] if _superseded(settings, entry) else list(entry.get("aliases") or [])
    key = entry["experiment_key"]
    exp = _recovery_experiment(cm, settings, entry) if lost else _existing(cm, key)
    try:
        version = _already_in_comet(exp, entry) or log_artifact(
            exp,
            entry["artifact"],
            entry.get("artifact_type", settings.artifact_type),
            file,
            entry["metadata"],
            aliases,
        )
        exp.log_other("snapshot_artifact", f"{entry['artifact']}:{version}")
    finally:
        exp.end()
    comet = {
        "artifact": entry["artifact"],
        "version": version,
        "experiment_key": exp.id,
        "aliases": aliases,
    }
    settings.ledger.record_synced(entry["sha256"], entry["id"], comet)
    return {"pending_id": entry["id"], "sha256": entry["sha256"], "version": version}


def _sync_consumption(cm: Any, settings: CometSettings, entry: dict[str, Any]) -> dict[str, Any]:
    versions = _comet_versions(settings, entry["sha256"], entry["artifact"])
    if not versions:
        return {"pending_id": entry["id"], "version": None, "why": "no Comet version"}
    exp = _existing(cm, entry["experiment_key"])
    try:
        logged = exp.get_artifact(
            entry["artifact"], workspace=entry.get("workspace"), version_or_alias=versions[-1]
        )
    finally:
        exp.end()
    version = str(logged.version)
    settings.ledger.record_consume_synced(
        entry["sha256"],
        entry["id"],
        {"artifact": entry["artifact"], "version": version},
        {"experiment_key": entry["experiment_key"]},
    )
    return {"pending_id": entry["id"], "version": version}


def status(params: Params) -> dict[str, Any]:
    """What is waiting for `comet sync`."""
    settings = CometSettings.from_params(params)
    entries = PendingQueue(settings.pending_dir).entries()
    places = (settings.offline_dir, settings.fallback_dir, settings.offline_dir / "uploading")
    archives = sorted(str(p) for d in places for p in d.glob("*.zip"))
    return {
        "mode": settings.mode,
        "archives": archives,
        "pending": [
            {k: e.get(k) for k in ("id", "kind", "sha256", "experiment_key", "time")}
            for e in entries
        ],
    }
