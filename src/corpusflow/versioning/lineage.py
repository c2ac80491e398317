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
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

LOG = logging.getLogger(__name__)
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
# JSON-lines files written by appends (the ledger, the pending queue, rejects.jsonl)
# ----------------------------------------------------------------------------------------
_WARNED: set[tuple[str, str]] = set()


def warn_once(where: str, message: str) -> None:
    """One warning line per distinct problem per process (files are read many times)."""
    if (where, message) not in _WARNED:
        _WARNED.add((where, message))
        LOG.warning("%s: %s", where, message)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file, in order. A line that is not one JSON object
    (torn by a killed writer, a merge marker, a stray value) is skipped with one warning
    line naming it, so one bad line never stops the runs that read the file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    out = []
    for no, line in enumerate(raw.decode("utf-8", "replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            warn_once(str(path), f"line {no} is not valid JSON (a torn write?): ignored")
            continue
        if not isinstance(value, dict):
            warn_once(str(path), f"line {no} is not a JSON object: ignored")
            continue
        out.append(value)
    return out


def write_line(f: Any, line: str) -> None:
    """Append one line to an open a+ file, on a line of its own even after a torn write."""
    f.seek(0, os.SEEK_END)
    if f.tell() > 0:  # a torn last line must not swallow this one
        f.seek(f.tell() - 1)
        if f.read(1) != "\n":
            f.write("\n")
    f.write(line + "\n")
    f.flush()
    os.fsync(f.fileno())


def append_jsonl(path: str | Path, value: dict[str, Any]) -> None:
    """Append one JSON object as a line (unlocked: for single-writer logs like rejects)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+", encoding="utf-8") as f:
        write_line(f, json.dumps(value, sort_keys=True, ensure_ascii=False))


def _well_formed(e: dict[str, Any], where: Path) -> bool:
    """Events the graph can use: `produced`/`renumbered` need a sha256 and a vN version."""
    if e.get("event") not in ("produced", "renumbered"):
        return True
    if isinstance(e.get("sha256"), str) and _VERSION.match(str(e.get("version", ""))):
        return True
    warn_once(str(where), f"a {e['event']} event without sha256/version ({e.get('time')}): ignored")
    return False


def _first_claims(events: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """sha -> (time, version) of its first `produced` event."""
    first: dict[str, tuple[str, str]] = {}
    for e in events:
        if e.get("event") == "produced":
            first.setdefault(e["sha256"], (str(e.get("time") or ""), e["version"]))
    return first


def numbering(events: list[dict[str, Any]], where: str = "ledger") -> dict[str, str]:
    """sha256 -> version, deterministic even for a merged ledger in which two branches
    each appended their own `v2`: the snapshot first produced (time, then sha256) keeps
    the number, the other is read as the next free number (one warning line), and the
    next append makes that durable with a `renumbered` event."""
    fixed = {e["sha256"]: e["version"] for e in events if e.get("event") == "renumbered"}
    claims: dict[str, list[tuple[str, str]]] = {}
    for sha, (time, version) in _first_claims(events).items():
        if sha not in fixed:
            claims.setdefault(version, []).append((time, sha))
    out = dict(fixed)
    taken = set(fixed.values())
    losers: list[tuple[str, str, str]] = []
    for version, who in claims.items():
        ranked = sorted(who)
        if version not in taken:
            out[ranked[0][1]] = version
            ranked = ranked[1:]
        losers += [(time, sha, version) for time, sha in ranked]
    top = max((int(v[1:]) for v in [*claims, *taken]), default=0)
    for _, sha, version in sorted(losers):
        top += 1
        out[sha] = f"v{top}"
        warn_once(where, f"{version} names two snapshots (merged ledger?): {sha[:12]} is v{top}")
    return out


def _unfixed(events: list[dict[str, Any]], numbers: dict[str, str]) -> list[tuple[str, str]]:
    """(sha, version) read differently from what their first `produced` line says."""
    fixed = {e["sha256"] for e in events if e.get("event") == "renumbered"}
    return [
        (sha, numbers[sha])
        for sha, (_, version) in _first_claims(events).items()
        if sha not in fixed and numbers[sha] != version
    ]


def _next_number(versions: dict[str, str]) -> int:
    return max((int(v[1:]) for v in versions.values()), default=0) + 1


# ----------------------------------------------------------------------------------------
# the ledger file
# ----------------------------------------------------------------------------------------
class Ledger:
    """An append-only JSONL file of lineage events."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def events(self) -> list[dict[str, Any]]:
        """All well-formed events in file order (see `read_jsonl`: torn or foreign lines
        are skipped with a one-line warning)."""
        return [e for e in read_jsonl(self.path) if _well_formed(e, self.path)]

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
        write_line(f, json.dumps(event, sort_keys=True, ensure_ascii=False))

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
            events = self.events()
            versions = numbering(events, str(self.path))
            for loser, version in _unfixed(events, versions):
                self._write(f, {"time": now(), "event": "renumbered", "sha256": loser,
                                "version": version})  # fmt: skip
            sha = event["sha256"]
            event = {"time": now(), **event, "event": "produced"}
            if sha in versions:
                event["version"] = versions[sha]
                event.pop("sources", None)
                event["new_version"] = False
            else:
                event["version"] = f"v{_next_number(versions)}"
                event["new_version"] = True
            self._write(f, event)
        return event

    # --- questions -------------------------------------------------------------------
    def upcoming_version(self) -> str:
        """The number the next new snapshot gets (stable while the caller holds the
        versioning lock: only the versioning step makes versions)."""
        return f"v{_next_number(numbering(self.events(), str(self.path)))}"

    def version_of(self, sha256: str) -> str | None:
        return numbering(self.events(), str(self.path)).get(sha256)

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
        return build_graph(self.events(), str(self.path))


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


def build_graph(events: list[dict[str, Any]], where: str = "ledger") -> list[dict[str, Any]]:
    """Fold the event stream into one view per version (in version order). Versions come
    from `numbering`; sync and consume events apply to their sha256 wherever they stand
    (a sync recorded before a rerun's `produced` line still counts)."""
    numbers = numbering(events, where)
    by_sha: dict[str, dict[str, Any]] = {}
    for i, e in enumerate(events):
        if e.get("event") == "produced":
            v = by_sha.get(e["sha256"])
            if v is None:
                v = by_sha[e["sha256"]] = _new_view(e, numbers[e["sha256"]])
            v["_last"] = i
            _apply_produced(v, e)
    for e in events:
        v = by_sha.get(e.get("sha256", ""))
        if v is not None and e.get("event") in _FOLD:
            _FOLD[e["event"]](v, e)
    ordered = sorted(by_sha.values(), key=lambda v: int(v["version"][1:]))
    if ordered:
        latest = max(ordered, key=lambda v: v["_last"])
        latest["aliases"].append("latest")
    return ordered


def _apply_produced(v: dict[str, Any], e: dict[str, Any]) -> None:
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
        _add(v["dvc"], {k: dvc[k] for k in ("md5", "remote", "path") if dvc.get(k)})


def _apply_synced(v: dict[str, Any], e: dict[str, Any]) -> None:
    comet = e.get("comet") or {}
    if comet.get("version"):
        _add(v["comet"]["versions"], comet["version"])
        v["comet"]["artifact"] = comet.get("artifact") or v["comet"]["artifact"]
    if e.get("pending_id") in v["comet"]["pending"]:
        v["comet"]["pending"].remove(e["pending_id"])
    for p in v["produced_by"]:
        if p.get("pending_id") == e.get("pending_id"):
            p["comet_version"] = comet.get("version")


def _apply_consumed(v: dict[str, Any], e: dict[str, Any]) -> None:
    v["consumers"].append(_consumer(e))


def _apply_consume_synced(v: dict[str, Any], e: dict[str, Any]) -> None:
    for c in v["consumers"]:
        if c.get("pending_id") and c["pending_id"] == e.get("pending_id"):
            c["comet_recorded"] = True
            c["comet_version"] = (e.get("comet") or {}).get("version")


_FOLD = {
    "comet_synced": _apply_synced,
    "consumed": _apply_consumed,
    "consume_synced": _apply_consume_synced,
}


def _add(items: list[Any], item: Any) -> None:
    if item not in items:
        items.append(item)


def _new_view(e: dict[str, Any], version: str) -> dict[str, Any]:
    snap = e.get("snapshot") or {}
    sources = e.get("sources") or {}
    return {
        "version": version,
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
        "producer": e.get("producer")
        or {"kind": "prefect" if runs.get("prefect_flow_run") else "cli"},
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


# the consuming side lives in versioning.consume; importable from here as before
from corpusflow.versioning.consume import UsedSnapshot, use_snapshot  # noqa: E402

__all__ = ["DEFAULT_ARTIFACT", "Ledger", "LineageError", "UsedSnapshot", "use_snapshot"]
