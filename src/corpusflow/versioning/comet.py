"""Comet experiments and artifact versions: every snapshot an artifact version, every run an
experiment — online, or later through the offline queue (versioning.queue, versioning.sync).

With COMET_API_KEY set (and `comet.mode` auto or online) `start_experiment` opens a Comet
experiment; without a key (or when Comet cannot be reached) the experiment goes to an
offline archive under `comet.offline_dir`, checked and published by `end_experiment`.
`log_artifact` logs a snapshot as a new version of the dataset artifact (alias `latest`
moves to it, a `sha256-…` alias names its bytes). Offline experiments cannot log or get
artifacts (the SDK raises NotImplementedError): that is why the pending queue exists.
Every run also lands in the lineage ledger, which answers the same questions with no Comet.

Network hygiene (design decision 4): error tracking, announcements and framework
auto-logging are off before comet_ml is imported, and experiments never log host, env,
git, code, CPU/GPU/network/disk or console output. The API key is read only by the SDK
from its own configuration (the environment); it is never passed, logged or stored here.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from corpusflow import OFFLINE_ENV
from corpusflow.redact import scrub
from corpusflow.versioning.queue import publish_archive, staging_dir
from corpusflow.versioning.settings import SNAPSHOT_FILE, CometError, CometSettings

LOG = logging.getLogger(__name__)

# The Comet part of the offline switches (corpusflow.OFFLINE_ENV, the one list), set again
# (as defaults: a user's explicit setting wins) before comet_ml is first imported.
COMET_ENV_DEFAULTS = {k: v for k, v in OFFLINE_ENV.items() if k.startswith("COMET_")}

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
HTML_BARS = 50  # sources drawn in the chunks-per-source chart
UPLOAD_MAX_BYTES = 64 << 20  # snapshots up to this size are uploaded beside the DVC reference
DVC_REMOTE_ASSET = "dvc-remote/snapshot.json"  # logical path of the remote (DVC) reference
PROBE_SECONDS = 5.0  # reachability check before going online


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
# the producing run's charts
# ----------------------------------------------------------------------------------------
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


def log_chunks_per_source(exp: Any, counts: dict[str, int]) -> None:
    """A table (source, chunks), a curve over the sources in id order, and an HTML chart."""
    if counts:
        rows = [[sid, n] for sid, n in counts.items()]
        exp.log_table("chunks_per_source.csv", tabular_data=rows, headers=["source_id", "chunks"])
        exp.log_curve("chunks_per_source", x=list(range(len(counts))), y=list(counts.values()))
    exp.log_html(_bar_chart_html(counts), clear=True)


__all__ = [  # CometError, CometSettings and scrub: importable from here as before
    "COMET_ENV_DEFAULTS",
    "CometError",
    "CometSettings",
    "comet_ml",
    "end_experiment",
    "log_artifact",
    "log_chunks_per_source",
    "scrub",
    "sha_alias",
    "start_experiment",
]
