"""`corpusflow stage ...`: the DVC stages of dvc.yaml (run by `dvc repro`, see docs/dvc.md).

A *stage* here is always a DVC stage. The work is in corpusflow.stages; these commands add the
timing, the metrics and plots files DVC tracks, and one line of output each.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from corpusflow.cli.support import ParamsOpt, command_context, fail
from corpusflow.stages import (
    CHUNKS,
    DOCUMENTS,
    METRICS,
    PLOTS,
    RUNS,
    chunk_stage,
    embed_stage,
    extract_stage,
    load_stage,
    snapshot_stage,
    write_json,
)

stage_app = typer.Typer(
    help="DVC pipeline stages (run by `dvc repro`, see dvc.yaml).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _metrics(
    stage: str, values: dict[str, Any], started: float, run: dict[str, Any] | None = None
) -> None:
    """Counts of the data -> metrics/pipeline/<stage>.json (a DVC metric: the same inputs
    give the same bytes); seconds and run-dependent counts -> data/work/runs/<stage>.json."""
    seconds = round(time.monotonic() - started, 3)
    write_json(METRICS / f"{stage}.json", values)
    write_json(RUNS / f"{stage}.json", {**(run or {}), "seconds": seconds})


def _rows(key: str, counts: dict[str, int], value: str) -> list[dict[str, Any]]:
    return [{key: k, value: n} for k, n in sorted(counts.items())]


@stage_app.command("extract")
def extract_cmd(params: ParamsOpt = None) -> None:
    """Sources in params.yaml -> data/work/documents.jsonl and rejects.json."""
    started = time.monotonic()
    with command_context(params, with_context=False) as p:
        m = extract_stage(p)
    by_reason = m.pop("by_reason")
    write_json(PLOTS / "rejects_by_reason.json", _rows("reason", by_reason, "rejects") or [])
    _metrics("extract", {k: m[k] for k in ("documents", "rejected", "duplicates")}, started)
    typer.echo(
        f"extract: {m['documents']} documents, {m['rejected']} rejected, "
        f"{m['duplicates']} duplicates -> {DOCUMENTS}"
    )


@stage_app.command("chunk")
def chunk_cmd(params: ParamsOpt = None) -> None:
    """data/work/documents.jsonl -> data/work/chunks.jsonl."""
    started = time.monotonic()
    with command_context(params) as ctx:
        m = chunk_stage(ctx)
    chunks = {t: c["chunks"] for t, c in m.pop("by_type").items()}
    write_json(PLOTS / "chunks_by_type.json", _rows("source_type", chunks, "chunks"))
    _metrics("chunk", {k: v for k, v in m.items() if k != "documents"}, started)  # as extract
    typer.echo(f"chunk: {m['documents']} documents -> {m['chunks']} chunks -> {CHUNKS}")


@stage_app.command("embed")
def embed_cmd(params: ParamsOpt = None) -> None:
    """Chunk texts into the embedding cache; data/work/embeddings.json records which."""
    started = time.monotonic()
    with command_context(params) as ctx:
        m = embed_stage(ctx)
    run = {k: m.pop(k) for k in ("embedded", "cache_hits")}
    _metrics("embed", m, started, run)
    typer.echo(
        f"embed: {m['texts']} texts, embedded {run['embedded']}, cache hits {run['cache_hits']}"
    )


@stage_app.command("load")
def load_cmd(
    cleanup: Annotated[
        str, typer.Option(help="full (default: Milvus holds exactly this data) or incremental")
    ] = "full",
    params: ParamsOpt = None,
) -> None:
    """Sync Milvus with data/work (idempotent) and write its fingerprint to load.json.

    Its metrics are what the collection holds (records, sources), so a sync that found
    nothing to do rewrites the same bytes; what the sync did goes to data/work/runs/load.json.
    """
    if cleanup not in ("full", "incremental"):
        fail(f"--cleanup must be full or incremental, not {cleanup!r}")
    started = time.monotonic()
    with command_context(params) as ctx:
        info, r = load_stage(ctx, cleanup=cleanup)
    changed = bool(r.upserted or r.deleted or r.alias_moved)
    keys = ("added", "updated", "deleted", "upserted", "migrated", "embedded", "cache_hits")
    counts = ("records", "sources", "kept_from_rejected_sources")
    _metrics("load", {k: info[k] for k in counts}, started, {k: getattr(r, k) for k in keys})
    what = (
        f"synced: added {r.added}, updated {r.updated}, deleted {r.deleted}"
        if changed
        else "in sync, nothing to do"
    )
    typer.echo(
        f"load: {info['physical_collection']} {what}; {info['records']} records, "
        f"fingerprint {info['fingerprint'][:12]}"
    )


@stage_app.command("snapshot")
def snapshot_cmd(
    out: Annotated[str | None, typer.Option(help="output path (default: snapshot.out)")] = None,
    params: ParamsOpt = None,
) -> None:
    """The collection and the named queries -> the snapshot (canonical JSON)."""
    started = time.monotonic()
    with command_context(params) as ctx:
        m = snapshot_stage(ctx, out)
    path, sha, versions = m.pop("path"), m.pop("sha256"), m.pop("versions")
    size = [{"snapshot": Path(path).name, "records": m["records"], "kilobytes": m["kilobytes"]}]
    write_json(PLOTS / "snapshot_size.json", size)
    # metric names are unique across the files, so `dvc exp show` columns are just the names
    _metrics("snapshot", {"snapshot_records": m.pop("records"), **m}, started)
    typer.echo(f"snapshot: {size[0]['records']} records -> {path}\n  sha256 {sha}")
    comet = versions["comet"]
    if "error" in comet:
        typer.echo(f"warning: versioning failed: {comet['error']}", err=True)
    else:
        where = comet.get("artifact_version") or comet.get("mode")
        typer.echo(f"  version {comet['ledger_version']} (Comet: {where}); `corpusflow lineage`")
