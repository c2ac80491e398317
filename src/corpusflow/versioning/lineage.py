"""The lineage ledger: which snapshot came from what, and who used it — answerable offline.

`lineage/ledger.jsonl` is append-only and kept in git, one JSON event a line:

- `produced`: a run wrote a snapshot. Versions `v1, v2, …` number distinct snapshot sha256s
  (same bytes, same version). Carries sources with content hashes (first time a version is
  seen), params hash and params, model, code commit, run ids, DVC md5/remote, Comet artifact
  version or "pending".
- `comet_synced`: a pending artifact version reached Comet (`corpusflow comet sync`).
- `consumed`: a downstream run used a snapshot; carries its run id / experiment key and metrics.
- `consume_synced`: an offline consumer was later recorded as a consumer in Comet.

Appends take an exclusive lock on the ledger file, so concurrent runs never interleave lines
or hand out the same version twice. `use_snapshot` is how a downstream run gets a snapshot:
through Comet's `get_artifact` when online (Comet records the consumption), else from the
ledger and the local files whose bytes match.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DEFAULT_ARTIFACT = "milvus-query-results"
SNAPSHOT_FILE = "snapshot.json"  # logical path of the snapshot inside the artifact version
_VERSION = re.compile(r"^v(\d+)$")
_SHA = re.compile(r"^[0-9a-f]{7,64}$")


class LineageError(Exception):
    """A lineage question that cannot be answered (unknown version, missing bytes)."""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------
# the ledger file
# ----------------------------------------------------------------------------------------
class Ledger:
    """An append-only JSONL file of lineage events."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def events(self) -> list[dict[str, Any]]:
        """All events in file order; a torn last line (killed writer) is ignored."""
        if not self.path.exists():
            return []
        out = []
        with self.path.open(encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return out

    @contextmanager
    def _locked(self) -> Iterator[Any]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+", encoding="utf-8") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield f
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    @staticmethod
    def _write(f: Any, event: dict[str, Any]) -> None:
        f.seek(0, os.SEEK_END)
        if f.tell() > 0:  # a torn last line must not swallow this event
            f.seek(f.tell() - 1)
            if f.read(1) != "\n":
                f.write("\n")
        f.write(json.dumps(event, sort_keys=True, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())

    def append(self, event: dict[str, Any]) -> dict[str, Any]:
        """Append one event (a `time` is added when missing)."""
        event = {"time": now(), **event}
        with self._locked() as f:
            self._write(f, event)
        return event

    def record_produced(self, event: dict[str, Any]) -> dict[str, Any]:
        """Append a `produced` event, numbering its sha256 (new bytes get the next vN).

        `sources` is stored only the first time a version appears: same bytes, same sources.
        """
        with self._locked() as f:
            versions = _versions_by_sha(self.events())
            sha = event["sha256"]
            event = {"time": now(), **event, "event": "produced"}
            if sha in versions:
                event["version"] = versions[sha]
                event.pop("sources", None)
                event["new_version"] = False
            else:
                event["version"] = f"v{len(versions) + 1}"
                event["new_version"] = True
            self._write(f, event)
        return event

    # --- questions -------------------------------------------------------------------
    def version_of(self, sha256: str) -> str | None:
        return _versions_by_sha(self.events()).get(sha256)

    def latest_produced(self) -> dict[str, Any] | None:
        produced = [e for e in self.events() if e.get("event") == "produced"]
        return produced[-1] if produced else None

    def resolve(self, ref: str = "latest") -> dict[str, Any]:
        """The version view for `latest`, `vN`, a sha256 (prefix ≥ 7) or a Comet version."""
        views = self.graph()
        if not views:
            raise LineageError(f"the ledger {self.path} has no snapshot versions yet")
        return _pick(views, ref, str(self.path))

    def graph(self) -> list[dict[str, Any]]:
        """One view per snapshot version: sources, params, model, commit, producing runs,
        DVC and Comet versions, and consumers."""
        return build_graph(self.events())


def _versions_by_sha(events: Iterable[dict[str, Any]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for e in events:
        if e.get("event") == "produced" and e.get("sha256") and e.get("version"):
            out.setdefault(e["sha256"], e["version"])
    return out


def _pick(views: list[dict[str, Any]], ref: str, where: str) -> dict[str, Any]:
    ref = (ref or "latest").strip()
    if ref == "latest":
        return max(views, key=lambda v: v["_last"])
    if _VERSION.match(ref):
        for v in views:
            if v["version"] == ref:
                return v
        raise LineageError(f"no snapshot version {ref} in {where}")
    low = ref.lower()
    if _SHA.match(low):
        hits = [v for v in views if v["sha256"].startswith(low)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise LineageError(f"sha256 prefix {ref} is ambiguous in {where}")
    for v in views:  # a Comet artifact version ("2.0.0") or one of its aliases
        if ref in v["comet"]["versions"] or ref in v["comet"].get("aliases", []):
            return v
    raise LineageError(f"no snapshot matching {ref!r} in {where}")


def build_graph(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fold the event stream into one view per version (in version order)."""
    views: dict[str, dict[str, Any]] = {}
    by_sha: dict[str, dict[str, Any]] = {}
    for i, e in enumerate(events):
        kind = e.get("event")
        if kind == "produced":
            v = views.get(e["version"])
            if v is None:
                v = views[e["version"]] = _new_view(e)
                by_sha[e["sha256"]] = v
            v["_last"] = i
            v["produced_by"].append(_producer(e))
            comet = e.get("comet") or {}
            if comet.get("artifact"):
                v["comet"]["artifact"] = comet["artifact"]
            if comet.get("version") and comet["version"] != "pending":
                _add(v["comet"]["versions"], comet["version"])
            elif comet.get("pending_id"):
                _add(v["comet"]["pending"], comet["pending_id"])
            dvc = e.get("dvc") or {}
            if dvc.get("md5") or dvc.get("remote"):
                _add(v["dvc"], {"md5": dvc.get("md5"), "remote": dvc.get("remote")})
        elif kind == "comet_synced" and e.get("sha256") in by_sha:
            v = by_sha[e["sha256"]]
            comet = e.get("comet") or {}
            if comet.get("version"):
                _add(v["comet"]["versions"], comet["version"])
                v["comet"]["artifact"] = comet.get("artifact") or v["comet"]["artifact"]
            if e.get("pending_id") in v["comet"]["pending"]:
                v["comet"]["pending"].remove(e["pending_id"])
            for p in v["produced_by"]:
                if p.get("pending_id") == e.get("pending_id"):
                    p["comet_version"] = comet.get("version")
        elif kind == "consumed" and e.get("sha256") in by_sha:
            by_sha[e["sha256"]]["consumers"].append(_consumer(e))
        elif kind == "consume_synced" and e.get("sha256") in by_sha:
            for c in by_sha[e["sha256"]]["consumers"]:
                if c.get("pending_id") and c["pending_id"] == e.get("pending_id"):
                    c["comet_recorded"] = True
                    c["comet_version"] = (e.get("comet") or {}).get("version")
    ordered = sorted(views.values(), key=lambda v: int(v["version"][1:]))
    if ordered:
        latest = max(ordered, key=lambda v: v["_last"])
        latest["aliases"].append("latest")
    return ordered


def _add(items: list[Any], item: Any) -> None:
    if item not in items:
        items.append(item)


def _new_view(e: dict[str, Any]) -> dict[str, Any]:
    snap = e.get("snapshot") or {}
    sources = e.get("sources") or {}
    return {
        "version": e["version"],
        "sha256": e["sha256"],
        "created": e.get("time"),
        "records": snap.get("records"),
        "collection": e.get("collection"),
        "alias": e.get("alias"),
        "physical_collection": e.get("physical_collection"),
        "model": e.get("model"),
        "params_hash": e.get("params_hash"),
        "params": e.get("params"),
        "code_commit": e.get("code_commit"),
        "sources": dict(sorted(sources.items())),
        "source_count": len(sources),
        "produced_by": [],
        "dvc": [],
        "comet": {"artifact": None, "versions": [], "pending": []},
        "aliases": [],
        "consumers": [],
        "_last": 0,
    }


def _producer(e: dict[str, Any]) -> dict[str, Any]:
    comet = e.get("comet") or {}
    runs = e.get("run_ids") or {}
    return {
        "time": e.get("time"),
        "ingest_run_id": runs.get("ingest"),
        "snapshot_run_id": runs.get("snapshot"),
        "prefect_flow_run_id": runs.get("prefect_flow_run"),
        "comet_experiment": comet.get("experiment_key"),
        "comet_mode": comet.get("mode"),
        "comet_version": comet.get("version"),
        "pending_id": comet.get("pending_id"),
        "code_commit": e.get("code_commit"),
        "code_dirty": e.get("code_dirty"),
        "params_hash": e.get("params_hash"),
        "snapshot_path": (e.get("snapshot") or {}).get("path"),
    }


def _consumer(e: dict[str, Any]) -> dict[str, Any]:
    c = e.get("consumer") or {}
    comet = e.get("comet") or {}
    return {
        "time": e.get("time"),
        "kind": c.get("kind"),
        "run_id": c.get("run_id"),
        "experiment_key": c.get("experiment_key"),
        "mode": c.get("mode"),
        "reference": e.get("reference"),
        "comet_version": comet.get("version"),
        "comet_recorded": bool(comet.get("recorded")),
        "pending_id": comet.get("pending_id"),
        "metrics": e.get("metrics") or {},
    }


def public_view(view: dict[str, Any]) -> dict[str, Any]:
    """A version view without internal bookkeeping keys (for JSON output)."""
    return {k: v for k, v in view.items() if not k.startswith("_")}


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
    if book is not None and (_VERSION.match(ref) or _SHA.match(ref.lower())):
        view = book.resolve(ref)
        if not view["comet"]["versions"]:
            raise LineageError(
                f"snapshot {view['version']} has no Comet version yet (run `corpusflow comet sync`)"
            )
        comet_ref = view["comet"]["versions"][-1]
    logged = experiment.get_artifact(name, workspace=workspace, version_or_alias=comet_ref)
    target = Path(dest) if dest else Path("data/comet/downloads") / f"{name}-{logged.version}"
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
