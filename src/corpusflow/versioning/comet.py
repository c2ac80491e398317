"""Comet: every snapshot an artifact version, every run an experiment — online or later.

With COMET_API_KEY set (and `comet.mode` auto or online) a run opens a Comet experiment,
logs params (scrubbed), counts and throughput, a chunks-per-source table/curve/chart, and the
snapshot as a new version of a dataset artifact (alias `latest` moves to it). Without a key
(or when Comet cannot be reached) the experiment goes to an offline archive under
`comet.offline_dir` and the artifact version — metadata plus a copy of the snapshot bytes,
since the working snapshot will be overwritten — waits in `pending/queue.jsonl` until
`corpusflow comet sync` uploads the archives and logs the versions in order. Offline
experiments cannot log or get artifacts (the SDK raises NotImplementedError): that is why
the queue exists. Every run also lands in the lineage ledger, which answers the same
questions with no Comet at all.

Network hygiene (design decision 4): error tracking, announcements and framework
auto-logging are off before comet_ml is imported, and experiments never log host, env,
git, code, CPU/GPU/network/disk or console output. The API key is read only by the SDK
from its own configuration (the environment); it is never passed, logged or stored here.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corpusflow.redact import REDACTED, redact
from corpusflow.versioning.lineage import (
    SNAPSHOT_FILE,
    Ledger,
    LineageError,
    file_sha256,
    now,
)

if TYPE_CHECKING:
    from corpusflow.config import Params
    from corpusflow.pipeline import Context, IngestResult
    from corpusflow.snapshot import SnapshotResult

LOG = logging.getLogger(__name__)

# Set (as defaults: a user's explicit setting wins) before comet_ml is first imported.
COMET_ENV_DEFAULTS = {
    "COMET_ERROR_TRACKING_ENABLE": "false",  # no Sentry reports
    "COMET_DISABLE_ANNOUNCEMENT": "true",
    "COMET_DISABLE_AUTO_LOGGING": "1",  # no import hooks patching torch & co.
}

# Everything the SDK would collect on its own is off: only what we log is sent.
EXPERIMENT_KWARGS: dict[str, Any] = {
    "log_code": False,
    "log_graph": False,
    "parse_args": False,
    "auto_output_logging": False,
    "auto_param_logging": False,
    "auto_metric_logging": False,
    "log_env_details": False,
    "log_env_host": False,
    "log_env_gpu": False,
    "log_env_cpu": False,
    "log_env_network": False,
    "log_env_disk": False,
    "log_git_metadata": False,
    "log_git_patch": False,
    "auto_log_co2": False,
    "display_summary_level": 0,
}

_SECRET_KEY = re.compile(
    r"(^|[_.-])(api_?key|access_?key|secret(_?key)?|token|password|passwd|credentials?|auth)$",
    re.IGNORECASE,
)
HTML_BARS = 50  # sources drawn in the chunks-per-source chart
PROBE_SECONDS = 5.0  # reachability check before going online


class CometError(Exception):
    """A Comet operation the user asked for cannot be done (e.g. sync without a key)."""


def apply_env_defaults() -> None:
    """Put the hygiene defaults in the environment. comet_ml reads some of them once, at
    import — and transformers imports comet_ml as a side effect of loading the embedder —
    so the earlier this runs in a process, the better."""
    for key, value in COMET_ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)


def comet_ml() -> Any:
    """The comet_ml module, imported with the hygiene defaults in place."""
    apply_env_defaults()
    import comet_ml as module

    return module


# ----------------------------------------------------------------------------------------
# settings
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CometSettings:
    """The `comet:` section resolved against the environment."""

    mode: str  # online | offline | disabled (what this run will do)
    project: str
    workspace: str | None
    artifact: str
    artifact_type: str
    offline_dir: Path
    ledger_path: Path

    @classmethod
    def from_params(cls, params: Params) -> CometSettings:
        c = params.comet
        has_key = bool(os.environ.get("COMET_API_KEY"))
        mode = c.mode
        if mode == "auto":
            mode = "online" if has_key else "offline"
        elif mode == "online" and not has_key:
            LOG.warning("comet.mode is online but COMET_API_KEY is not set: working offline")
            mode = "offline"
        return cls(
            mode=mode,
            project=os.environ.get("COMET_PROJECT_NAME") or c.project or "corpusflow",
            workspace=os.environ.get("COMET_WORKSPACE") or c.workspace or None,
            artifact=c.artifact,
            artifact_type=c.artifact_type,
            offline_dir=Path(c.offline_dir),
            ledger_path=Path(c.ledger),
        )

    @property
    def ledger(self) -> Ledger:
        return Ledger(self.ledger_path)

    @property
    def pending_dir(self) -> Path:
        return self.offline_dir / "pending"

    @property
    def uploaded_dir(self) -> Path:
        return self.offline_dir / "uploaded"

    @property
    def fallback_dir(self) -> Path:
        """Archives the SDK wrote when an online run lost its server (uploaded with force)."""
        return self.offline_dir / "fallback"


# ----------------------------------------------------------------------------------------
# small helpers: scrubbing, provenance
# ----------------------------------------------------------------------------------------
def scrub(value: Any, secrets: list[str] | None = None) -> Any:
    """`value` with anything that looks like a secret replaced: keys named like one, the
    values of secret environment variables (corpusflow.redact), and user:password@ in URLs."""
    if isinstance(value, dict):
        return {
            k: REDACTED if _SECRET_KEY.search(str(k)) and v not in (None, "") else scrub(v, secrets)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [scrub(v, secrets) for v in value]
    if isinstance(value, str):
        return redact(value, secrets or ())
    return value


def loggable_params(value: dict[str, Any]) -> dict[str, Any]:
    """Params as Comet accepts them: nested dicts stay (the SDK flattens them to `a|b`),
    lists become canonical JSON strings (offline uploads reject lists of objects)."""
    from corpusflow.ids import canonical_json

    out: dict[str, Any] = {}
    for k, v in value.items():
        if isinstance(v, dict):
            out[k] = loggable_params(v) if v else "{}"
        elif isinstance(v, list | tuple):
            out[k] = canonical_json(list(v))
        else:
            out[k] = v
    return out


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


def iter_snapshot_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """Records of a snapshot file, streamed line by line (the canonical writer puts one
    record per line); any other JSON layout is read whole."""
    import json

    with open(path, encoding="utf-8") as f:
        head = f.readline()
        if not head.rstrip().endswith('"records":['):
            f.seek(0)
            yield from json.load(f).get("records", [])
            return
        for line in f:
            line = line.strip()
            if not line or line == "]}":
                continue
            yield json.loads(line[1:] if line.startswith(",") else line)


@dataclass
class SnapshotFacts:
    records: int
    chunks_per_source: dict[str, int]
    sources: dict[str, str]  # source_id -> doc_hash
    models: list[str]


def snapshot_facts(path: str | Path) -> SnapshotFacts:
    counts: Counter[str] = Counter()
    hashes: dict[str, str] = {}
    models: Counter[str] = Counter()
    n = 0
    for rec in iter_snapshot_records(path):
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


def _read_manifest(snapshot_path: Path) -> dict[str, Any]:
    import json

    from corpusflow.snapshot import manifest_path

    mpath = manifest_path(snapshot_path)
    if not mpath.exists():
        return {}
    try:
        return json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def ingest_metrics(result: IngestResult | dict[str, Any] | None) -> dict[str, float]:
    """Counts and throughput of an ingest run as flat numeric metrics."""
    if result is None:
        return {}
    data = result if isinstance(result, dict) else result.to_dict()
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


def _bar_chart_html(counts: dict[str, int]) -> str:
    """A dependency-free horizontal bar chart (inline SVG) of chunks per source."""
    from html import escape

    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:HTML_BARS]
    if not top:
        return "<p>no records</p>"
    peak = max(c for _, c in top) or 1
    row, label_w, bar_w = 18, 320, 360
    bars = []
    for i, (sid, n) in enumerate(top):
        y = i * row
        w = max(1, int(bar_w * n / peak))
        bars.append(
            f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end" font-size="11">'
            f"{escape(sid[:60])}</text>"
            f'<rect x="{label_w}" y="{y + 3}" width="{w}" height="{row - 6}" fill="#4c78a8"/>'
            f'<text x="{label_w + w + 4}" y="{y + 13}" font-size="11">{n}</text>'
        )
    more = len(counts) - len(top)
    note = f"<p>{more} more sources not shown</p>" if more > 0 else ""
    height = row * len(top)
    return (
        f"<h3>Chunks per source</h3><svg xmlns='http://www.w3.org/2000/svg' "
        f"width='{label_w + bar_w + 60}' height='{height}'>{''.join(bars)}</svg>{note}"
    )


# ----------------------------------------------------------------------------------------
# experiments
# ----------------------------------------------------------------------------------------
def comet_reachable(timeout: float = PROBE_SECONDS) -> bool:
    """Whether the configured Comet server answers at all: one unauthenticated GET of its
    version endpoint, no retries. Without it an unreachable server costs ~30 s of SDK
    retries before the run could fall back to offline."""
    import requests

    comet_ml()
    from comet_ml.config import get_api_key, get_comet_root_url, get_config

    cfg = get_config()
    get_api_key(None, cfg)  # a key that embeds its server URL sets the default URL
    url = get_comet_root_url(cfg).rstrip("/") + "/clientlib/isAlive/ver"
    try:
        requests.get(url, timeout=timeout, allow_redirects=False)
    except requests.exceptions.SSLError:
        return True  # something answers; TLS settings are the SDK's business
    except requests.RequestException:
        return False
    return True


def start_experiment(settings: CometSettings, name: str, tags: list[str]) -> tuple[Any, str]:
    """(experiment, mode): online when configured and reachable, else an offline archive
    under `offline_dir`. Never raises for Comet being unreachable."""
    cm = comet_ml()
    exp = None
    if settings.mode == "online" and not comet_reachable():
        LOG.warning("Comet server unreachable: this run is recorded offline")
    elif settings.mode == "online":
        try:
            exp = cm.Experiment(
                project_name=settings.project,
                workspace=settings.workspace,
                # where the SDK saves what it could not send if the server goes away mid-run
                offline_directory=str(settings.fallback_dir.resolve()),
                **EXPERIMENT_KWARGS,
            )
            if not exp.alive:
                LOG.warning("Comet could not be reached: this run is recorded offline")
                exp.end()
                exp = None
        except Exception as exc:  # bad key, no network: never fail the pipeline for it
            LOG.warning("Comet unavailable (%s): this run is recorded offline", type(exc).__name__)
            exp = None
    mode = "online" if exp is not None else "offline"
    if exp is None:
        settings.offline_dir.mkdir(parents=True, exist_ok=True)
        exp = cm.OfflineExperiment(
            project_name=settings.project,
            workspace=settings.workspace,
            offline_directory=str(settings.offline_dir.resolve()),
            **EXPERIMENT_KWARGS,
        )
    exp.set_name(name)
    exp.add_tags(tags)
    return exp, mode


def end_experiment(exp: Any, mode: str, settings: CometSettings) -> str | None:
    """End the experiment; for offline ones, the path of the archive it wrote."""
    key = exp.id
    exp.end()
    if mode != "offline":
        return None
    archives = sorted(
        settings.offline_dir.glob(f"{key}*.zip"), key=lambda p: p.stat().st_mtime, reverse=True
    )
    return str(archives[0]) if archives else None


# ----------------------------------------------------------------------------------------
# the pending queue
# ----------------------------------------------------------------------------------------
class PendingQueue:
    """Artifact versions and consumptions that could not reach Comet yet, in order."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.path = directory / "queue.jsonl"

    def entries(self) -> list[dict[str, Any]]:
        return Ledger(self.path).events()

    def add(self, entry: dict[str, Any]) -> dict[str, Any]:
        return Ledger(self.path).append(entry)

    def replace(self, entries: list[dict[str, Any]]) -> None:
        """Rewrite the queue atomically (used by sync to drop what it has done)."""
        import json

        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            for e in entries:
                f.write(json.dumps(e, sort_keys=True, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    @contextmanager
    def locked(self) -> Iterator[None]:
        import fcntl

        self.dir.mkdir(parents=True, exist_ok=True)
        with (self.dir / "sync.lock").open("a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def _pending_copy(settings: CometSettings, snapshot: Path, sha: str) -> Path:
    """Keep the snapshot's bytes for a later upload (content-addressed, written once)."""
    settings.pending_dir.mkdir(parents=True, exist_ok=True)
    target = settings.pending_dir / f"{sha}.json"
    if not target.exists():
        tmp = target.with_name(target.name + ".tmp")
        shutil.copyfile(snapshot, tmp)
        os.replace(tmp, target)
    return target


# ----------------------------------------------------------------------------------------
# the step: version a snapshot
# ----------------------------------------------------------------------------------------
def _normalise_dvc(dvc: dict[str, Any] | None) -> dict[str, Any] | None:
    if not dvc:
        return None
    out = {
        "md5": dvc.get("md5"),
        "remote": dvc.get("remote_url") or dvc.get("remote"),
        "path": dvc.get("path"),
    }
    return scrub({k: v for k, v in out.items() if v})


def record_snapshot_version(
    params: Params,
    snapshot_path: str | Path,
    *,
    result: IngestResult | dict[str, Any] | None = None,
    dvc: dict[str, Any] | None = None,
    run_ids: dict[str, str | None] | None = None,
    new_version: bool = False,
) -> dict[str, Any]:
    """Version one snapshot file in Comet (or the pending queue) and the lineage ledger.

    Needs no Milvus and no model: the CLI, a DVC stage or a Prefect task can call it after
    the snapshot step. `dvc` may carry `md5` and `remote` (URL); `run_ids` extra run ids.
    A snapshot whose bytes equal the latest version already in the same artifact is not
    uploaded again (an unchanged rerun must not add Comet versions) unless `new_version`.
    Returns {mode, experiment_key, artifact, artifact_version, pending_id, ledger_version,
    new_version, sha256, archive}.
    """
    settings = CometSettings.from_params(params)
    snapshot = Path(snapshot_path)
    sha = file_sha256(snapshot)
    manifest = _read_manifest(snapshot)
    if manifest.get("sha256") and manifest["sha256"] != sha:
        LOG.warning("manifest sha256 differs from %s: using the file's own bytes", snapshot)
    facts = snapshot_facts(snapshot)
    rdict = result if isinstance(result, dict) else result.to_dict() if result else {}
    model = rdict.get("model") or (facts.models[0] if facts.models else params.embedding.model)
    commit, dirty = git_commit()
    runs = {
        "ingest": rdict.get("run_id"),
        "snapshot": manifest.get("run_id"),
        "prefect_flow_run": prefect_flow_run_id(),
        **(run_ids or {}),
    }
    runs = {k: v for k, v in runs.items() if v}
    dvc_info = _normalise_dvc(dvc)
    physical = manifest.get("physical_collection") or rdict.get("physical_collection")
    params_dump = scrub(params.model_dump(mode="json"))
    metadata = scrub(
        {
            "sha256": sha,
            "records": facts.records,
            "sources": len(facts.sources),
            "collection": params.milvus.collection,
            "alias": params.milvus.collection,
            "physical_collection": physical,
            "embedding_model": model,
            "params_hash": params.digest(),
            "git_commit": commit,
            "git_dirty": dirty,
            "dvc_md5": (dvc_info or {}).get("md5"),
            "dvc_remote": (dvc_info or {}).get("remote"),
            "ingest_run_id": runs.get("ingest"),
            "snapshot_run_id": runs.get("snapshot"),
            "prefect_flow_run_id": runs.get("prefect_flow_run"),
            "created_at": manifest.get("created_at") or now(),
        }
    )
    ledger = settings.ledger
    event: dict[str, Any] = {
        "event": "produced",
        "sha256": sha,
        "snapshot": {"path": str(snapshot), "records": facts.records},
        "collection": params.milvus.collection,
        "alias": params.milvus.collection,
        "physical_collection": physical,
        "model": model,
        "params_hash": params.digest(),
        "params": params_dump,
        "code_commit": commit,
        "code_dirty": dirty,
        "run_ids": runs,
        "sources": facts.sources,
        "dvc": dvc_info,
    }
    if settings.mode == "disabled":
        event["comet"] = {"mode": "disabled"}
        rec = ledger.record_produced(event)
        return _outcome(rec, settings, "disabled", None, None, None, None)

    reuse_version, reuse_pending = (None, None) if new_version else _reusable(ledger, sha, settings)
    unchanged = bool(reuse_version or reuse_pending)

    name = f"ingest {runs.get('ingest') or runs.get('snapshot') or sha[:12]}"
    exp, mode = start_experiment(settings, name, ["corpusflow", "snapshot"])
    archive = None
    try:
        exp.log_parameters(loggable_params(params_dump))
        exp.log_parameter("params_hash", params.digest())
        exp.log_metrics(ingest_metrics(result))
        exp.log_metrics({"snapshot_records": facts.records, "snapshot_sources": len(facts.sources)})
        exp.log_others({f"snapshot_{k}": v for k, v in metadata.items() if v is not None})
        _log_chunks_per_source(exp, facts.chunks_per_source)
        if (mpath := _manifest_file(snapshot)) is not None:
            exp.log_asset(str(mpath), file_name="snapshot.manifest.json")
        if mode == "offline":  # the archive must stand alone; online, the artifact holds it
            exp.log_asset(str(snapshot), file_name=SNAPSHOT_FILE)

        version: str | None = None
        pending_id: str | None = None
        if unchanged:
            version, pending_id = reuse_version, reuse_pending
        elif mode == "online":
            try:
                version = _log_artifact(exp, settings, snapshot, metadata, aliases=["latest"])
            except Exception as exc:
                LOG.warning("logging the artifact failed (%s): queued for `comet sync`", exc)
        if version is None and pending_id is None:
            pending_id = f"{sha[:12]}-{exp.id[:8]}"
            PendingQueue(settings.pending_dir).add(
                {
                    "id": pending_id,
                    "kind": "artifact",
                    "experiment_key": exp.id,
                    "offline": mode == "offline",
                    "artifact": settings.artifact,
                    "artifact_type": settings.artifact_type,
                    "workspace": settings.workspace,
                    "metadata": metadata,
                    "aliases": ["latest"],
                    "file": str(_pending_copy(settings, snapshot, sha)),
                    "sha256": sha,
                }
            )
        event["comet"] = {
            "mode": mode,
            "experiment_key": exp.id,
            "project": settings.project,
            "workspace": settings.workspace,
            "artifact": settings.artifact,
            "version": version or "pending",
            "pending_id": pending_id,
            "reused": unchanged,
        }
        rec = ledger.record_produced(event)
        exp.log_other("ledger_version", rec["version"])
        exp.log_other("snapshot_artifact", f"{settings.artifact}:{version or 'pending'}")
    finally:
        archive = end_experiment(exp, mode, settings)
    return _outcome(rec, settings, mode, exp.id, version, pending_id, archive)


def _reusable(ledger: Ledger, sha: str, settings: CometSettings) -> tuple[str | None, str | None]:
    """(Comet version, pending id) to reuse when `sha` is the latest snapshot already
    versioned in this artifact: an unchanged rerun adds no Comet version."""
    previous = ledger.latest_produced()
    if previous is None or previous["sha256"] != sha:
        return None, None
    if ((previous.get("comet") or {}).get("artifact")) != settings.artifact:
        return None, None
    view = ledger.resolve(previous["version"])
    if view["comet"]["versions"]:
        return view["comet"]["versions"][-1], None
    if view["comet"]["pending"]:
        return None, view["comet"]["pending"][-1]
    return None, None


def _manifest_file(snapshot: Path) -> Path | None:
    from corpusflow.snapshot import manifest_path

    mpath = manifest_path(snapshot)
    return mpath if mpath.exists() else None


def _outcome(
    rec: dict[str, Any],
    settings: CometSettings,
    mode: str,
    key: str | None,
    version: str | None,
    pending_id: str | None,
    archive: str | None,
) -> dict[str, Any]:
    return {
        "mode": mode,
        "experiment_key": key,
        "artifact": settings.artifact,
        "artifact_version": version or ("pending" if pending_id else None),
        "pending_id": pending_id,
        "ledger_version": rec["version"],
        "new_version": rec["new_version"],
        "sha256": rec["sha256"],
        "archive": archive,
    }


def _log_chunks_per_source(exp: Any, counts: dict[str, int]) -> None:
    """A table (source, chunks), a curve over the sources in id order, and an HTML chart."""
    if counts:
        rows = [[sid, n] for sid, n in counts.items()]
        exp.log_table("chunks_per_source.csv", tabular_data=rows, headers=["source_id", "chunks"])
        exp.log_curve("chunks_per_source", x=list(range(len(counts))), y=list(counts.values()))
    exp.log_html(_bar_chart_html(counts), clear=True)


def _log_artifact(
    exp: Any,
    settings: CometSettings,
    snapshot: Path,
    metadata: dict[str, Any],
    aliases: list[str],
) -> str:
    """Log `snapshot` as a new version of the dataset artifact; returns the version."""
    cm = comet_ml()
    artifact = cm.Artifact(
        settings.artifact,
        artifact_type=settings.artifact_type,
        metadata=metadata,
        aliases=aliases,
    )
    artifact.add(str(snapshot), logical_path=SNAPSHOT_FILE)
    logged = exp.log_artifact(artifact)
    return str(logged.version)


def log_snapshot(
    ctx: Context,
    snap: SnapshotResult,
    result: IngestResult | None = None,
    dvc: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The `version` step at the end of a run: `record_snapshot_version` for this context's
    params and snapshot (no Milvus, no model load)."""
    return record_snapshot_version(ctx.params, snap.path, result=result, dvc=dvc)


# ----------------------------------------------------------------------------------------
# consumers
# ----------------------------------------------------------------------------------------
def queue_consumption(
    settings: CometSettings,
    experiment_key: str,
    sha256: str,
    reference: str,
    *,
    offline: bool = True,
) -> str:
    """Remember that an experiment used a snapshot Comet could not serve (offline, or the
    version was still pending), so `sync` records it in Comet through `get_artifact` once
    the experiment and the version are there."""
    pending_id = f"use-{sha256[:12]}-{experiment_key[:8]}"
    PendingQueue(settings.pending_dir).add(
        {
            "id": pending_id,
            "kind": "consume",
            "experiment_key": experiment_key,
            "offline": offline,
            "artifact": settings.artifact,
            "workspace": settings.workspace,
            "sha256": sha256,
            "reference": reference,
        }
    )
    return pending_id


# ----------------------------------------------------------------------------------------
# sync
# ----------------------------------------------------------------------------------------
def _archive_uploaded(settings: CometSettings, key: str) -> bool:
    return any(settings.uploaded_dir.glob(f"{key}*.zip"))


def sync(params: Params, *, force_upload: bool = False) -> dict[str, Any]:
    """Upload offline archives, then log pending artifact versions and consumptions in order.

    Archives go through the SDK's own offline upload (`comet upload`); an uploaded archive
    moves to `uploaded/`. A pending version is logged from its experiment (re-attached with
    ExistingExperiment, so Comet shows the run that made it) with its saved bytes and
    metadata; `latest` moves to it unless a newer version already reached Comet. The queue
    is worked strictly in order and stops at the first failure, so versions never swap.
    """
    settings = CometSettings.from_params(params)
    if not os.environ.get("COMET_API_KEY"):
        raise CometError("COMET_API_KEY is not set: nothing can be uploaded")
    cm = comet_ml()
    from comet_ml.offline import main_upload

    report: dict[str, Any] = {
        "archives_uploaded": [],
        "archives_failed": [],
        "artifacts_logged": [],
        "consumers_recorded": [],
        "dropped": [],
        "remaining": 0,
        "error": None,
    }
    queue = PendingQueue(settings.pending_dir)
    with queue.locked():
        archives = sorted(
            [(p, force_upload) for p in settings.offline_dir.glob("*.zip")]
            + [(p, True) for p in settings.fallback_dir.glob("*.zip")],  # resume known runs
            key=lambda pf: (pf[0].stat().st_mtime, pf[0].name),
        )
        for archive, force in archives:
            try:
                main_upload([str(archive)], force_upload=force)
            except Exception as exc:
                report["archives_failed"].append({"archive": str(archive), "error": str(exc)})
                continue
            settings.uploaded_dir.mkdir(parents=True, exist_ok=True)
            os.replace(archive, settings.uploaded_dir / archive.name)
            report["archives_uploaded"].append(str(archive))

        entries = queue.entries()
        done = 0
        for entry in entries:
            if entry.get("offline") and not _archive_uploaded(settings, entry["experiment_key"]):
                report["error"] = f"archive of experiment {entry['experiment_key']} not uploaded"
                break
            try:
                if entry["kind"] == "artifact":
                    report["artifacts_logged"].append(_sync_artifact(cm, settings, entry))
                elif entry["kind"] == "consume":
                    outcome = _sync_consumption(cm, settings, entry)
                    key = "consumers_recorded" if outcome.get("version") else "dropped"
                    report[key].append(outcome)
            except Exception as exc:
                report["error"] = f"{entry['id']}: {exc}"
                break
            done += 1
            queue.replace(entries[done:])
        report["remaining"] = len(entries) - done
    return report


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
            and comet.get("version")
            not in (
                None,
                "pending",
            )
        ):
            return True
    return False


def _existing(cm: Any, key: str) -> Any:
    exp = cm.ExistingExperiment(experiment_key=key, **EXPERIMENT_KWARGS)
    if not exp.alive:
        exp.end()
        raise CometError(f"cannot re-attach to experiment {key}")
    return exp


def _sync_artifact(cm: Any, settings: CometSettings, entry: dict[str, Any]) -> dict[str, Any]:
    file = Path(entry["file"])
    if not file.exists() or file_sha256(file) != entry["sha256"]:
        raise CometError(f"saved bytes for {entry['id']} are missing or changed: {file}")
    aliases = [] if _superseded(settings, entry) else list(entry.get("aliases") or [])
    exp = _existing(cm, entry["experiment_key"])
    try:
        s = CometSettings(
            settings.mode,
            settings.project,
            entry.get("workspace"),
            entry["artifact"],
            entry.get("artifact_type", settings.artifact_type),
            settings.offline_dir,
            settings.ledger_path,
        )
        version = _log_artifact(exp, s, file, entry["metadata"], aliases)
        exp.log_other("snapshot_artifact", f"{entry['artifact']}:{version}")
    finally:
        exp.end()
    settings.ledger.append(
        {
            "event": "comet_synced",
            "sha256": entry["sha256"],
            "version": settings.ledger.version_of(entry["sha256"]),
            "pending_id": entry["id"],
            "comet": {
                "artifact": entry["artifact"],
                "version": version,
                "experiment_key": entry["experiment_key"],
                "aliases": aliases,
            },
        }
    )
    if not any(
        e.get("kind") == "artifact" and e["sha256"] == entry["sha256"] and e["id"] != entry["id"]
        for e in PendingQueue(settings.pending_dir).entries()
    ):
        file.unlink(missing_ok=True)
    return {"pending_id": entry["id"], "sha256": entry["sha256"], "version": version}


def _sync_consumption(cm: Any, settings: CometSettings, entry: dict[str, Any]) -> dict[str, Any]:
    try:
        view = settings.ledger.resolve(entry["sha256"])
    except LineageError:
        view = None
    versions = view["comet"]["versions"] if view else []
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
    settings.ledger.append(
        {
            "event": "consume_synced",
            "sha256": entry["sha256"],
            "pending_id": entry["id"],
            "comet": {"artifact": entry["artifact"], "version": version},
            "consumer": {"experiment_key": entry["experiment_key"]},
        }
    )
    return {"pending_id": entry["id"], "version": version}


def status(params: Params) -> dict[str, Any]:
    """What is waiting for `comet sync`."""
    settings = CometSettings.from_params(params)
    entries = PendingQueue(settings.pending_dir).entries()
    archives = sorted(
        str(p) for d in (settings.offline_dir, settings.fallback_dir) for p in d.glob("*.zip")
    )
    return {
        "mode": settings.mode,
        "archives": archives,
        "pending": [
            {k: e.get(k) for k in ("id", "kind", "sha256", "experiment_key", "time")}
            for e in entries
        ],
    }
