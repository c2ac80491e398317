"""What a snapshot says about itself, for its version: record count, chunks and content hash
per source, models, the manifest beside it; and the run's counts as Comet metrics/charts."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corpusflow.versioning.comet import HTML_BARS, iter_snapshot_records

if TYPE_CHECKING:
    from corpusflow.pipeline import IngestResult


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


def read_manifest(snapshot_path: Path) -> dict[str, Any]:
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


def log_chunks_per_source(exp: Any, counts: dict[str, int]) -> None:
    """A table (source, chunks), a curve over the sources in id order, and an HTML chart."""
    if counts:
        rows = [[sid, n] for sid, n in counts.items()]
        exp.log_table("chunks_per_source.csv", tabular_data=rows, headers=["source_id", "chunks"])
        exp.log_curve("chunks_per_source", x=list(range(len(counts))), y=list(counts.values()))
    exp.log_html(_bar_chart_html(counts), clear=True)
