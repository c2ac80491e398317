"""CLI for Comet sync, snapshot versioning, lineage and evaluation (registered in cli.py).

Thin: each command loads params, calls one function and prints. comet_ml is imported only
by the commands that talk to Comet, so `corpusflow lineage` stays fast and offline.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from corpusflow.cli_support import JsonOpt, ParamsOpt, errors_as_lines, fail
from corpusflow.config import ConfigError, Params, load_params
from corpusflow.versioning.comet import apply_env_defaults

# Every `corpusflow` process gets Comet's hygiene defaults before anything can import
# comet_ml (transformers does, when the embedder loads).
apply_env_defaults()

comet_app = typer.Typer(
    help="Comet: upload offline runs and pending snapshot versions; version a snapshot.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _params(path: str | None) -> Params:
    try:
        return load_params(path)
    except ConfigError as exc:
        fail(str(exc))
        raise  # unreachable: _fail exits


# ----------------------------------------------------------------------------------------
# corpusflow comet ...
# ----------------------------------------------------------------------------------------
@comet_app.command("sync")
def sync_command(
    force_upload: Annotated[
        bool, typer.Option("--force-upload", help="re-upload archives Comet already has")
    ] = False,
    as_json: JsonOpt = False,
    params: ParamsOpt = None,
) -> None:
    """Upload offline archives, then log pending snapshot versions in order (needs
    COMET_API_KEY)."""
    from corpusflow.versioning.sync import sync

    with errors_as_lines():
        report = sync(_params(params), force_upload=force_upload)
    if as_json:
        typer.echo(json.dumps(report, sort_keys=True))
    else:
        typer.echo(
            f"archives uploaded {len(report['archives_uploaded'])}, "
            f"failed {len(report['archives_failed'])}; "
            f"artifact versions logged {len(report['artifacts_logged'])}, "
            f"consumers recorded {len(report['consumers_recorded'])}; "
            f"still pending {report['remaining']}"
        )
        for a in report["artifacts_logged"]:
            typer.echo(f"  {a['sha256'][:12]} -> version {a['version']}")
        for q in report["archives_quarantined"]:
            typer.echo(f"  quarantined: {q['archive']}: {q['problem']}", err=True)
        for f in report["archives_failed"]:
            typer.echo(f"  failed: {f['archive']}: {f['error']}", err=True)
        if report["error"]:
            typer.echo(f"  stopped: {report['error']}", err=True)
    if report["error"] or report["archives_failed"]:
        raise typer.Exit(1)


@comet_app.command("status")
def status_command(as_json: JsonOpt = False, params: ParamsOpt = None) -> None:
    """What is waiting for `corpusflow comet sync`."""
    from corpusflow.versioning.sync import status

    info = status(_params(params))
    if as_json:
        typer.echo(json.dumps(info, sort_keys=True))
        return
    typer.echo(f"mode {info['mode']}: {len(info['archives'])} archives to upload")
    for a in info["archives"]:
        typer.echo(f"  {a}")
    typer.echo(f"{len(info['pending'])} pending")
    for p in info["pending"]:
        typer.echo(f"  {p['id']}  {p['kind']}  {p['sha256'][:12]}  {p['time']}")


@comet_app.command("record")
def record_command(
    snapshot: Annotated[
        str | None, typer.Option(help="snapshot file (default: snapshot.out in params)")
    ] = None,
    ingest_run_id: Annotated[str | None, typer.Option(help="the ingest run that led to it")] = None,
    as_json: JsonOpt = False,
    params: ParamsOpt = None,
) -> None:
    """Version a snapshot file (the step `corpusflow snapshot` ends with): ledger version,
    Comet artifact version (or pending) and its DVC address; same bytes, same version."""
    from pathlib import Path

    from corpusflow.versioning.step import version_snapshot

    p = _params(params)
    path = Path(snapshot or p.snapshot.out)
    if not path.is_file():
        fail(f"snapshot not found: {path}")
    runs = {"ingest": ingest_run_id} if ingest_run_id else None
    out = version_snapshot(p, path, run_ids=runs)
    comet = out["comet"]
    if "error" in comet:
        fail(f"versioning failed: {comet['error']}")
    if as_json:
        typer.echo(json.dumps(out, sort_keys=True))
    else:
        typer.echo(
            f"{comet['ledger_version']} sha256 {comet['sha256'][:12]} -> "
            f"{comet['artifact']}:{comet['artifact_version']} ({comet['mode']})"
        )


# ----------------------------------------------------------------------------------------
# corpusflow lineage
# ----------------------------------------------------------------------------------------
def lineage_command(
    ref: Annotated[
        str | None, typer.Argument(help="version (v2), sha256 prefix, Comet version, latest")
    ] = None,
    as_json: JsonOpt = False,
    params: ParamsOpt = None,
) -> None:
    """Where each snapshot came from and who used it, from the ledger (works offline)."""
    from corpusflow.versioning.comet import CometSettings
    from corpusflow.versioning.lineage import public_view

    settings = CometSettings.from_params(_params(params))
    ledger = settings.ledger
    with errors_as_lines():
        views = [ledger.resolve(ref)] if ref else ledger.graph()
    if as_json:
        doc: dict[str, Any] = {"ledger": str(ledger.path)}
        if ref:
            doc["version"] = public_view(views[0])
        else:
            doc["versions"] = [public_view(v) for v in views]
        typer.echo(json.dumps(doc, sort_keys=True, ensure_ascii=False))
        return
    if not views:
        typer.echo(f"no snapshot versions in {ledger.path} yet")
        return
    for i, view in enumerate(views):
        if i:
            typer.echo("")
        _print_version(view, all_sources=bool(ref))


PARAM_SECTIONS = ("sources", "chunking", "embedding", "milvus", "snapshot")  # what shapes data


def _flat(prefix: str, value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, dict) and value:
        return [kv for k, v in value.items() for kv in _flat(f"{prefix}.{k}", v)]
    return [(prefix, value)]


def _params_lines(params: dict[str, Any], width: int = 96) -> list[str]:
    """The params values that shape the data, `section.key=value`, wrapped to `width`."""
    lines: list[str] = []
    for section in PARAM_SECTIONS:
        items = _flat(section, params.get(section, {}))
        text = "  ".join(
            f"{k[len(section) + 1 :]}={json.dumps(v, ensure_ascii=False, separators=(',', ':'))}"
            for k, v in items
        )
        head = f"  params {section}: "
        while len(head) + len(text) > width and "  " in text[: width - len(head)]:
            cut = text[: width - len(head)].rindex("  ")
            lines.append(head + text[:cut])
            head, text = " " * len(head), text[cut + 2 :]
        lines.append(head + text)
    return lines


def _producer(p: dict[str, Any]) -> str:
    who = p.get("producer") or {}
    if who.get("kind") == "dvc":
        exp = f", experiment {who['experiment']}" if who.get("experiment") else ""
        return f"dvc stage {who.get('stage')}{exp}"
    if who.get("kind") == "prefect":
        return f"prefect flow run {who.get('flow_run_id')}"
    return who.get("kind") or "?"


def _short(value: str | None, n: int = 12) -> str:
    return value[:n] if value else "-"


def _print_version(v: dict[str, Any], all_sources: bool) -> None:
    tags = f" [{', '.join(v['aliases'])}]" if v["aliases"] else ""
    typer.echo(
        f"{v['version']}{tags}  sha256 {_short(v['sha256'])}  {v['records']} records  "
        f"first {v['created']}"
    )
    typer.echo(f"  collection {v['collection']} -> {v['physical_collection']}")
    typer.echo(
        f"  model {v['model']}  params {_short(v['params_hash'])}  code {_short(v['code_commit'])}"
    )
    for line in _params_lines(v.get("params") or {}):
        typer.echo(line)
    for p in v["produced_by"]:
        runs = ", ".join(
            f"{label} {p[key]}"
            for label, key in (
                ("ingest", "ingest_run_id"),
                ("snapshot", "snapshot_run_id"),
                ("prefect", "prefect_flow_run_id"),
            )
            if p.get(key)
        )
        exp = (
            f"comet {p['comet_mode']} {_short(p['comet_experiment'])}"
            if p.get("comet_experiment")
            else f"comet {p.get('comet_mode') or '-'}"
        )
        if p.get("comet_version") and p["comet_version"] != "pending":
            exp += f" -> {v['comet']['artifact']}:{p['comet_version']}"
        typer.echo(f"  produced {p['time']} by {_producer(p)}: {runs or 'no run ids'}; {exp}")
    for d in v["dvc"]:
        typer.echo(f"  dvc md5 {d.get('md5') or '-'}  remote {d.get('remote') or '-'}")
    comet = v["comet"]
    versions = ", ".join(comet["versions"]) or "none yet"
    pending = f"  ({len(comet['pending'])} pending sync)" if comet["pending"] else ""
    typer.echo(f"  comet artifact {comet['artifact'] or '-'}: {versions}{pending}")
    sources = list(v["sources"].items())
    shown = sources if all_sources else sources[:5]
    typer.echo(f"  sources ({v['source_count']}):")
    for sid, h in shown:
        typer.echo(f"    {sid}  {_short(h)}")
    if len(shown) < len(sources):
        typer.echo(f"    … {len(sources) - len(shown)} more (`corpusflow lineage {v['version']}`)")
    typer.echo(f"  consumers ({len(v['consumers'])}):")
    for c in v["consumers"]:
        metrics = "  ".join(f"{k}={val}" for k, val in sorted(c["metrics"].items()))
        where = "recorded in Comet" if c["comet_recorded"] else c["mode"]
        typer.echo(
            f"    {c['kind']} {c['run_id']}  comet {_short(c['experiment_key'])} ({where})  "
            f"{metrics}"
        )


# ----------------------------------------------------------------------------------------
# corpusflow evaluate
# ----------------------------------------------------------------------------------------
def evaluate_command(
    snapshot: Annotated[
        str | None,
        typer.Option(help="snapshot: latest, v2, sha256 prefix, Comet version or alias"),
    ] = None,
    k: Annotated[int | None, typer.Option("-k", min=1, help="cutoff for hit rate and MRR")] = None,
    as_json: JsonOpt = False,
    params: ParamsOpt = None,
) -> None:
    """Retrieval evaluation of one snapshot version, recorded as its consumer."""
    from corpusflow.evaluation import evaluate
    from corpusflow.pipeline import Context

    p = _params(params)
    ctx = Context(p)
    try:
        with errors_as_lines():
            result = evaluate(ctx, snapshot, k=k)
    finally:
        ctx.close()
    if as_json:
        typer.echo(json.dumps(result.to_dict(), sort_keys=True, ensure_ascii=False))
        return
    snap = result.snapshot
    typer.echo(
        f"snapshot {snap['version'] or '?'} ({snap['artifact']}:{snap['comet_version'] or '-'}, "
        f"sha256 {_short(snap['sha256'])}) via {snap['source']}"
    )
    typer.echo(
        f"  hit_rate@{result.k} {result.hit_rate:.3f}  mrr@{result.k} {result.mrr:.3f}  "
        f"over {result.queries} queries; comet {result.mode}"
        + (" (consumer recorded)" if result.comet_recorded else "")
    )
    for o in result.per_query:
        typer.echo(f"  {o.rank or '-':>2}  {o.query}  -> {o.expected_source}")
