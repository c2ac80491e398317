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
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corpusflow.redact import REDACTED, redact
from corpusflow.versioning.lineage import SNAPSHOT_FILE, Ledger
from corpusflow.versioning.queue import PendingQueue, publish_archive, staging_dir

if TYPE_CHECKING:
    from corpusflow.config import Params

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
UPLOAD_MAX_BYTES = 64 << 20  # snapshots up to this size are uploaded beside the DVC reference
DVC_REMOTE_ASSET = "dvc-remote/snapshot.json"  # logical path of the remote (DVC) reference
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
    if exp is None:  # written in staging; end_experiment publishes it once it checks out
        stage = staging_dir(settings.offline_dir)
        stage.mkdir(parents=True, exist_ok=True)
        exp = cm.OfflineExperiment(
            project_name=settings.project,
            workspace=settings.workspace,
            offline_directory=str(stage.resolve()),
            **EXPERIMENT_KWARGS,
        )
    exp.set_name(name)
    exp.add_tags(tags)
    return exp, mode


class _NoTraceback(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info, record.exc_text = None, None
        return True


@contextmanager
def _one_line_sdk_failures() -> Iterator[None]:
    """The SDK's own failures while ending (a full disk under its archive) as its one-line
    warning, without the traceback it attaches, nor the one Python prints when the SDK's
    half-written zip is collected."""
    import gc

    handlers = logging.getLogger("comet_ml").handlers
    quiet = _NoTraceback()
    for h in handlers:
        h.addFilter(quiet)
    hook = sys.unraisablehook
    sys.unraisablehook = lambda u: LOG.warning("comet_ml: %s", u.exc_value)
    try:
        yield
        gc.collect()
    finally:
        sys.unraisablehook = hook
        for h in handlers:
            h.removeFilter(quiet)


def end_experiment(exp: Any, mode: str, settings: CometSettings) -> str | None:
    """End the experiment; for offline ones, the path of the archive it wrote, checked and
    moved out of staging (None, with one warning line, when it could not be written: the
    run's versions still reach Comet through the pending queue)."""
    key = exp.id
    with _one_line_sdk_failures():
        exp.end()
    if mode != "offline":
        return None
    try:
        return str(publish_archive(key, Path(exp.offline_directory), settings.offline_dir))
    except OSError as exc:
        LOG.warning("%s", exc)
        return None


# ----------------------------------------------------------------------------------------
# artifact versions
# ----------------------------------------------------------------------------------------
def sha_alias(sha256: str) -> str:
    """The alias naming a snapshot's bytes in the artifact: lets a sync find a version it
    logged before a kill, and `use_snapshot(name, "sha256-…")` fetch by content."""
    return f"sha256-{sha256[:16]}"


def remote_uri(location: str) -> str:
    """A DVC remote address as a URI Comet can keep (local paths become file://)."""
    return location if "://" in location else Path(location).resolve().as_uri()


def log_artifact(
    exp: Any,
    name: str,
    artifact_type: str,
    snapshot: Path,
    metadata: dict[str, Any],
    aliases: list[str],
) -> str:
    """Log `snapshot` as a new version of the dataset artifact; returns the version.

    The version references where DVC keeps the bytes (`dvc_remote` in metadata) as a remote
    asset, and carries the bytes themselves when they are small (UPLOAD_MAX_BYTES) or when
    there is no DVC address to point at.
    """
    cm = comet_ml()
    artifact = cm.Artifact(
        name,
        artifact_type=artifact_type,
        metadata=metadata,
        aliases=[*aliases, sha_alias(metadata["sha256"])],
    )
    remote = metadata.get("dvc_remote")
    if remote:
        artifact.add_remote(remote_uri(remote), logical_path=DVC_REMOTE_ASSET, sync_mode=False)
    if not remote or snapshot.stat().st_size <= UPLOAD_MAX_BYTES:
        artifact.add(str(snapshot), logical_path=SNAPSHOT_FILE)
    logged = exp.log_artifact(artifact)
    return str(logged.version)


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
