"""Consuming a snapshot: `use_snapshot` gets one for a downstream run and records the use.

Through Comet's `get_artifact` when online (Comet records the consumption), else from the
lineage ledger and the local files whose bytes match.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from corpusflow.ids import file_sha256
from corpusflow.versioning.ledger import Ledger
from corpusflow.versioning.settings import DEFAULT_ARTIFACT, DEFAULT_DOWNLOADS, SNAPSHOT_FILE
from corpusflow.versioning.views import SHA_RE, VERSION_RE, LineageError


# ----------------------------------------------------------------------------------------
# consuming a snapshot
# ----------------------------------------------------------------------------------------
@dataclass
class UsedSnapshot:
    """A snapshot a downstream run is using, with where its bytes came from."""

    path: str
    sha256: str
    artifact: str
    reference: str  # what was asked for: latest, v2, 2.0.0, a sha prefix
    version: str | None = None  # ledger version (v2) when the ledger knows the bytes
    comet_version: str | None = None  # Comet artifact version when fetched from Comet
    source: str = "ledger"  # "comet" (get_artifact recorded the consumption) or "ledger"
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _is_online(experiment: Any) -> bool:
    if experiment is None:
        return False
    from comet_ml import OfflineExperiment

    return not isinstance(experiment, OfflineExperiment) and bool(
        getattr(experiment, "alive", False)
    )


def use_snapshot(
    name: str = DEFAULT_ARTIFACT,
    version_or_alias: str = "latest",
    *,
    experiment: Any = None,
    ledger: Ledger | str | Path | None = None,
    dest: str | Path | None = None,
    workspace: str | None = None,
    candidates: Iterable[str | Path] = (),
    content_dirs: Iterable[str | Path] = (),
) -> UsedSnapshot:
    """Get a snapshot for a downstream run, recording the use where possible.

    With a live online Comet `experiment`, the version is fetched through
    `experiment.get_artifact(...)` — Comet records the experiment as a consumer — and
    downloaded into `dest`; its bytes are checked against the sha256 in its metadata.
    A ledger version (`v2`) or sha prefix is translated to its Comet version first.
    Otherwise (offline, or no experiment) the ledger resolves the reference and the bytes
    are taken from the first of `candidates`, `content_dirs/<sha256>.json` or the files the
    ledger names whose sha256 matches.
    """
    book = ledger if isinstance(ledger, Ledger) else Ledger(ledger) if ledger else None
    ref = version_or_alias or "latest"
    if _is_online(experiment):
        return _use_from_comet(name, ref, experiment, book, dest, workspace)
    if book is None:
        raise LineageError("offline use of a snapshot needs the lineage ledger")
    view = book.resolve(ref)
    return UsedSnapshot(
        path=str(_local_bytes(view, candidates, content_dirs)),
        sha256=view["sha256"],
        artifact=view["comet"]["artifact"] or name,
        reference=ref,
        version=view["version"],
        comet_version=(view["comet"]["versions"] or [None])[-1],
        source="ledger",
        metadata={"records": view["records"], "model": view["model"]},
    )


def _use_from_comet(
    name: str,
    ref: str,
    experiment: Any,
    book: Ledger | None,
    dest: str | Path | None,
    workspace: str | None,
) -> UsedSnapshot:
    comet_ref = ref
    if book is not None and (VERSION_RE.match(ref) or SHA_RE.match(ref.lower())):
        view = book.resolve(ref)
        if not view["comet"]["versions"]:
            raise LineageError(
                f"snapshot {view['version']} has no Comet version yet (run `corpusflow comet sync`)"
            )
        comet_ref = view["comet"]["versions"][-1]
    logged = experiment.get_artifact(name, workspace=workspace, version_or_alias=comet_ref)
    target = Path(dest) if dest else DEFAULT_DOWNLOADS / f"{name}-{logged.version}"
    target.mkdir(parents=True, exist_ok=True)
    logged.download(str(target), overwrite_strategy="OVERWRITE", sync_mode=False)
    path = target / SNAPSHOT_FILE
    if not path.exists():
        raise LineageError(f"artifact {name}:{logged.version} has no {SNAPSHOT_FILE}")
    sha = file_sha256(path)
    metadata = dict(logged.metadata or {})
    if metadata.get("sha256") and metadata["sha256"] != sha:
        raise LineageError(
            f"artifact {name}:{logged.version} bytes do not match its sha256 metadata"
        )
    return UsedSnapshot(
        path=str(path),
        sha256=sha,
        artifact=name,
        reference=ref,
        version=book.version_of(sha) if book is not None else None,
        comet_version=str(logged.version),
        source="comet",
        metadata=metadata,
    )


def _local_bytes(
    view: dict[str, Any], candidates: Iterable[str | Path], content_dirs: Iterable[str | Path]
) -> Path:
    """A local file holding exactly this version's bytes."""
    paths = [Path(c) for c in candidates]
    paths += [Path(d) / f"{view['sha256']}.json" for d in content_dirs]
    paths += [Path(p["snapshot_path"]) for p in view["produced_by"] if p.get("snapshot_path")]
    seen: set[Path] = set()
    for p in paths:
        if p in seen or not p.is_file():
            continue
        seen.add(p)
        if file_sha256(p) == view["sha256"]:
            return p
    raise LineageError(
        f"snapshot {view['version']} (sha256 {view['sha256'][:12]}) is not on this machine: "
        "restore it (`dvc checkout` at the commit that made it) or fetch it from Comet "
        "with COMET_API_KEY set"
    )
