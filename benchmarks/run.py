"""`make bench`: measure the pipeline against its ceilings and against the book's loop.

    python -m benchmarks.run [--quick] [--only 1,3] [--keep] [--write-docs]

Prints a table (figure, value, goal, met?) and writes benchmarks/results/latest.json with
every raw measurement and the machine. Each figure is a ratio of two measurements taken in
this run, so machine noise largely cancels. Benchmarks never fail on a time: the exit code
is 0 whatever the figures say (1 only if a measurement itself broke).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/run.py` as well as `python -m benchmarks.run`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import REPO, machine_info, offline_environ, write_result  # noqa: E402
from benchmarks.figures import FIGURES, ORDER, QUICK, Bench, Figure, Sizes  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "latest.json"
DOCS = REPO / "docs" / "benchmarks.md"
DOCS_BEGIN, DOCS_END = "<!-- bench:begin -->", "<!-- bench:end -->"
NAMES = {
    1: "Pipeline efficiency",
    2: "Load path",
    3: "Against the book's loop",
    4: "No-op re-run",
    5: "Incremental (1% changed)",
    6: "Memory (10x corpus)",
    7: "Snapshot export",
}


def _fmt(fig: dict[str, Any]) -> str:
    value, unit = fig["value"], fig["unit"]
    if value is None:
        return "n/a"
    if unit == "x":
        return f"{value:.1f}x"
    if unit == "s":
        return f"{value:.2f} s"
    return f"{value:.3f}"


def _met(fig: dict[str, Any]) -> str:
    return {True: "yes", False: "NO", None: "n/a"}[fig["met"]]


def _goal(fig: dict[str, Any]) -> str:
    return fig["goal"].replace(">= ", "≥ ").replace("<= ", "≤ ")


def table(figures: list[dict[str, Any]]) -> str:
    """The plain-text table printed at the end of a run."""
    rows = [("#", "figure", "value", "goal", "met?")]
    for f in figures:
        rows.append((str(f["id"]), NAMES.get(f["id"], f["name"]), _fmt(f), _goal(f), _met(f)))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(result: dict[str, Any]) -> str:
    """The table, the notes and the machine of one results file, for docs/benchmarks.md."""
    out = [
        "| # | figure | value | goal | met? | measured with |",
        "|---|---|---|---|---|---|",
    ]
    for f in result["figures"]:
        out.append(
            f"| {f['id']} | {f['name']} | {_fmt(f)} | {_goal(f)} | {_met(f)} "
            f"| {f['embedder'].split(' (')[0]} |"
        )
    out += ["", "Notes, written by the run from its own measurements:", ""]
    out += [f"{f['id']}. {f['note']}" for f in result["figures"]]
    m = result["machine"]
    loads = result.get("loadavg_1min_per_figure", {})
    peak = max((x for pair in loads.values() for x in pair), default=None)
    out += [
        "",
        f"Machine: {m['cpu_model']}, {m['nproc']} CPUs, {m['ram_gib']} GiB RAM, "
        f"Python {m['python']}, {m['platform']}. Run on {m['date']}, "
        f"{result['seconds'] / 60:.1f} min"
        + (f"; 1-minute load average up to {peak} (other work shared the CPUs)" if peak else "")
        + ". Raw measurements: `benchmarks/results/latest.json`.",
    ]
    return "\n".join(out)


def write_docs(text: str) -> None:
    """Replace the generated section of docs/benchmarks.md (between the markers)."""
    doc = DOCS.read_text(encoding="utf-8")
    head, rest = doc.split(DOCS_BEGIN, 1)
    _, tail = rest.split(DOCS_END, 1)
    DOCS.write_text(f"{head}{DOCS_BEGIN}\n{text}\n{DOCS_END}{tail}", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="corpusflow benchmarks")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument("--only", default="", help="comma-separated figure numbers")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("--out", default=str(RESULTS), help="JSON results path")
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    parser.add_argument(
        "--docs-only",
        action="store_true",
        help="rewrite docs/benchmarks.md from --out; measure nothing",
    )
    args = parser.parse_args(argv)
    if args.docs_only:
        write_docs(markdown(json.loads(Path(args.out).read_text(encoding="utf-8"))))
        print(f"updated {DOCS} from {args.out}")
        return 0
    offline_environ()
    import logging

    logging.getLogger("pymilvus").setLevel(logging.ERROR)
    logging.getLogger("corpusflow").setLevel(logging.ERROR)

    sizes: Sizes = QUICK if args.quick else Sizes()
    wanted = {int(x) for x in args.only.split(",") if x.strip()} or set(FIGURES)
    machine = machine_info()
    work = Path(tempfile.mkdtemp(prefix="corpusflow-bench-"))
    bench = Bench(work=work, sizes=sizes, log=lambda s: print(s, flush=True))
    figures: list[Figure] = []
    errors: dict[int, str] = {}
    timings: dict[int, float] = {}
    loads: dict[int, list[float]] = {}
    started = time.perf_counter()
    print(f"corpusflow benchmarks ({'quick' if args.quick else 'full'}) in {work}", flush=True)
    try:
        for fid in ORDER:
            if fid not in wanted:
                continue
            print(f"figure {fid}: {NAMES[fid]} ...", flush=True)
            t = time.perf_counter()
            loads[fid] = [round(os.getloadavg()[0], 2)]
            try:
                fig = FIGURES[fid](bench)
            except Exception as exc:  # one broken measurement must not hide the others
                traceback.print_exc()
                errors[fid] = f"{type(exc).__name__}: {exc}"
                fig = Figure(fid, NAMES[fid], None, "", ">= 0", "", note=f"failed: {errors[fid]}")
            timings[fid] = round(time.perf_counter() - t, 1)
            loads[fid].append(round(os.getloadavg()[0], 2))
            shown = fig.to_dict()
            print(f"  -> {_fmt(shown)} ({_met(shown)}) in {timings[fid]} s", flush=True)
            figures.append(fig)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    total = time.perf_counter() - started
    figures.sort(key=lambda f: f.id)
    dicts = [f.to_dict() for f in figures]
    print()
    print(table(dicts))
    print()
    for f in figures:
        print(f"{f.id}. {f.note}")
    result = {
        "quick": args.quick,
        "sizes": asdict(sizes),
        "machine": machine,
        "seconds": round(total, 1),
        "seconds_per_figure": timings,
        "loadavg_1min_per_figure": loads,  # [start, end]: other work on the machine
        "figures": dicts,
        "errors": errors,
    }
    out = write_result(args.out, result)
    print(f"\nwrote {out} ({total / 60:.1f} min)")
    if args.write_docs:
        write_docs(markdown(result))
        print(f"updated {DOCS}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
