"""Lineage views: the ledger's event stream folded into one view per snapshot version.

Pure functions of the events (no file access): version numbering that stays deterministic
for a merged ledger, the per-version view (sources, params, producers, DVC and Comet
versions, consumers) and the lookup of `latest`, `vN`, a sha256 prefix or a Comet version.
The ledger file itself is versioning.ledger.
"""

from __future__ import annotations

import re
from typing import Any

from corpusflow.files import warn_once

VERSION_RE = re.compile(r"^v(\d+)$")
SHA_RE = re.compile(r"^[0-9a-f]{7,64}$")


class LineageError(Exception):
    """A lineage question that cannot be answered (unknown version, missing bytes)."""


def well_formed(e: dict[str, Any], where: str) -> bool:
    """Events the graph can use: `produced`/`renumbered` need a sha256 and a vN version."""
    if e.get("event") not in ("produced", "renumbered"):
        return True
    if isinstance(e.get("sha256"), str) and VERSION_RE.match(str(e.get("version", ""))):
        return True
    warn_once(where, f"a {e['event']} event without sha256/version ({e.get('time')}): ignored")
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


def unfixed(events: list[dict[str, Any]], numbers: dict[str, str]) -> list[tuple[str, str]]:
    """(sha, version) read differently from what their first `produced` line says."""
    fixed = {e["sha256"] for e in events if e.get("event") == "renumbered"}
    return [
        (sha, numbers[sha])
        for sha, (_, version) in _first_claims(events).items()
        if sha not in fixed and numbers[sha] != version
    ]


def next_number(versions: dict[str, str]) -> int:
    return max((int(v[1:]) for v in versions.values()), default=0) + 1


def pick(views: list[dict[str, Any]], ref: str, where: str) -> dict[str, Any]:
    ref = (ref or "latest").strip()
    if ref == "latest":
        return max(views, key=lambda v: v["_last"])
    if VERSION_RE.match(ref):
        for v in views:
            if v["version"] == ref:
                return v
        raise LineageError(f"no snapshot version {ref} in {where}")
    low = ref.lower()
    if SHA_RE.match(low):
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
