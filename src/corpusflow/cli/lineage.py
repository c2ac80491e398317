"""`corpusflow lineage`: where each snapshot version came from and who used it (offline)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from corpusflow.cli.support import JsonOpt, ParamsOpt, errors_as_lines, params_or_fail


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

    settings = CometSettings.from_params(params_or_fail(params))
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
        _print_snapshot_version(view, all_sources=bool(ref))


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


def short(value: str | None, n: int = 12) -> str:
    """A hash or key cut to its first `n` characters, `-` when there is none."""
    return value[:n] if value else "-"


def _print_snapshot_version(v: dict[str, Any], all_sources: bool) -> None:
    tags = f" [{', '.join(v['aliases'])}]" if v["aliases"] else ""
    typer.echo(
        f"{v['version']}{tags}  sha256 {short(v['sha256'])}  {v['records']} records  "
        f"first {v['created']}"
    )
    typer.echo(f"  collection {v['collection']} -> {v['physical_collection']}")
    typer.echo(
        f"  model {v['model']}  params {short(v['params_hash'])}  code {short(v['code_commit'])}"
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
            f"comet {p['comet_mode']} {short(p['comet_experiment'])}"
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
        typer.echo(f"    {sid}  {short(h)}")
    if len(shown) < len(sources):
        typer.echo(f"    … {len(sources) - len(shown)} more (`corpusflow lineage {v['version']}`)")
    typer.echo(f"  consumers ({len(v['consumers'])}):")
    for c in v["consumers"]:
        metrics = "  ".join(f"{k}={val}" for k, val in sorted(c["metrics"].items()))
        where = "recorded in Comet" if c["comet_recorded"] else c["mode"]
        typer.echo(
            f"    {c['kind']} {c['run_id']}  comet {short(c['experiment_key'])} ({where})  "
            f"{metrics}"
        )
