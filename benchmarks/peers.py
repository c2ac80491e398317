"""corpusflow side by side with LangChain `index()` and LlamaIndex `IngestionPipeline` (issue 17).

    python -m benchmarks.peers [--articles 264] [--rounds 3] [--quick] [--out FILE]

The same corpus (CSV articles from `benchmarks.corpus`: 264 of them make 1,757 chunks, the
issue's size; its 400 articles were shorter than these), RecursiveCharacterTextSplitter at
1000/50 characters, the shipped MiniLM on the CPU and Milvus Lite for all three; each step a
fresh process under `benchmarks.launcher` (wall time, user + sys CPU, peak RSS): cold
ingest, a re-run with nothing changed, then 1% of documents edited and 1% deleted with full
cleanup. Rounds interleave the peers (corpusflow, langchain, llamaindex, then again), each
round on fresh state. The peers run in their own venvs (`make bench-peers` builds them).

Each round also times the bare model for acceptance 1: a fresh process that imports
sentence-transformers, loads MiniLM and encodes corpusflow's chunk texts; the figure is that
time ÷ the round's cold `corpusflow ingest` (goal >= 0.9).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import BIN, REPO, launch, machine_info, offline_environ, r3, write_result
from benchmarks.corpus import generate

PEERS = ("corpusflow", "langchain", "llamaindex")
STEPS = ("cold", "rerun", "edit")
RUNNERS = REPO / "benchmarks" / "peer_runners"
SCRIPTS = {"langchain": "langchain_index.py", "llamaindex": "llamaindex_pipeline.py"}
CHUNKING = {"mode": "characters", "chunk_size": 1000, "chunk_overlap": 50}
MIB = 1024


def changes(articles: int, seed: int) -> tuple[dict[int, int], set[int]]:
    """1% of the articles (at least one) to edit and another 1% to delete, reproducibly."""
    k = max(1, round(articles * 0.01))
    chosen = random.Random(f"peers:{seed}:{articles}").sample(range(articles), 2 * k)
    return {i: 1 for i in sorted(chosen[:k])}, set(chosen[k:])


def write_params(root: Path, corpus: Path) -> None:
    """A scratch corpusflow project: characters 1000/50, full cleanup, Comet off."""
    params = {
        "sources": {"articles": [str(corpus / "articles")]},
        "chunking": CHUNKING,
        "ingest": {"cleanup": "full"},
        "comet": {"mode": "disabled"},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def chunk_texts(root: Path) -> list[str]:
    """The distinct chunk texts corpusflow embeds for root's corpus (its own chunker)."""
    from corpusflow.chunking import Chunker, resolve_spec
    from corpusflow.config import LOCAL_MODEL_ID, load_params
    from corpusflow.models import Document
    from corpusflow.pipeline import extract

    params = load_params(str(root / "params.yaml"))
    chunker = Chunker(resolve_spec(params.chunking, LOCAL_MODEL_ID, None))
    items = extract(params, (), params.sources.articles)
    docs = [d for d in items if isinstance(d, Document)]
    return list(dict.fromkeys(c.text for d in docs for c in chunker.split(d)))


def step_command(peer: str, root: Path, venvs: Path) -> list[str]:
    """The fresh process of one step of `peer` on the corpus and state under `root`."""
    if peer == "corpusflow":
        return [str(BIN / "corpusflow"), "ingest", "--json"]
    python = venvs / peer / "bin" / "python"
    articles = root / "corpus" / "articles"
    script = RUNNERS / SCRIPTS[peer]
    return [str(python), str(script), "--articles", str(articles), "--work", str(root / "state")]


def measured(record: dict[str, Any]) -> dict[str, Any]:
    """One step's figures: the launcher's wall, CPU and peak RSS, and what the step reported."""
    launcher = record.pop("launcher")
    return {
        "wall_s": launcher["seconds"],
        "cpu_s": launcher["cpu_seconds"],
        "peak_rss_mib": round(launcher["maxrss_kib"] / MIB, 1),
        "report": record,
    }


def run_peer(peer: str, root: Path, args: argparse.Namespace, log: Any) -> dict[str, Any]:
    """Cold ingest, re-run, then 1% edited + 1% deleted: three fresh processes on one state."""
    corpus = root / "corpus"
    generate(corpus, args.articles, seed=args.seed, articles_only=True)
    write_params(root, corpus)
    out: dict[str, Any] = {}
    for step in STEPS:
        if step == "edit":
            edits, drop = changes(args.articles, args.seed)
            generate(corpus, args.articles, args.seed, edits, articles_only=True, drop=drop)
        out[step] = measured(launch(step_command(peer, root, args.venvs), cwd=root))
        s = out[step]
        log(f"    {peer:<10} {step:<5} {s['wall_s']:7.1f} s wall {s['cpu_s']:7.1f} s CPU "
            f"{s['peak_rss_mib']:7.0f} MiB")  # fmt: skip
    return out


VERSIONS = (
    "torch", "sentence-transformers", "transformers", "pymilvus", "milvus-lite",
    "langchain-text-splitters", "langchain-core", "langchain-milvus", "langchain-huggingface",
    "langchain-community", "llama-index-core", "llama-index-vector-stores-milvus",
    "llama-index-embeddings-huggingface",
)  # fmt: skip


def peer_versions(venvs: Path) -> dict[str, dict[str, str]]:
    """The installed versions of what matters, per peer venv."""
    import subprocess

    code = (
        "import json, importlib.metadata as m\n"
        "def v(d):\n"
        "    try: return m.version(d)\n"
        "    except m.PackageNotFoundError: return None\n"
        f"print(json.dumps({{d: v(d) for d in {list(VERSIONS)!r}}}))"
    )
    out = {}
    for peer in SCRIPTS:
        proc = subprocess.run(
            [str(venvs / peer / "bin" / "python"), "-c", code],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        out[peer] = {k: v for k, v in json.loads(proc.stdout).items() if v}
    return out


def run_encode(root: Path, texts_file: Path) -> dict[str, Any]:
    """The bare model in a fresh process of the project venv (acceptance 1's denominator)."""
    cmd = [sys.executable, str(RUNNERS / "encode.py"), "--texts", str(texts_file)]
    return measured(launch(cmd, cwd=root))


def summary(values: list[float]) -> dict[str, float]:
    """Min and median: the min is the least disturbed run on a shared machine."""
    return {"min": r3(min(values)), "median": r3(statistics.median(values))}


def summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per peer and step: min and median of wall, CPU and peak RSS over the rounds."""
    out: dict[str, Any] = {}
    for peer in PEERS:
        out[peer] = {
            step: {
                key: summary([r[peer][step][key] for r in rounds])
                for key in ("wall_s", "cpu_s", "peak_rss_mib")
            }
            for step in STEPS
        }
    return out


def ratios(table: dict[str, Any], rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """corpusflow ÷ peer (<= 1 meets the issue's goal; < 1 for re-run and edit), by median
    and by min, and acceptance 1: bare model ÷ cold `corpusflow ingest` (>= 0.9)."""
    peers = [p for p in PEERS if p != "corpusflow"]
    ours = table["corpusflow"]
    out: dict[str, Any] = {}
    for stat in ("median", "min"):
        cold = {p: table[p]["cold"]["wall_s"][stat] for p in peers}
        rss = {p: table[p]["cold"]["peak_rss_mib"][stat] for p in peers}
        fastest, leanest = min(cold, key=cold.__getitem__), min(rss, key=rss.__getitem__)
        row: dict[str, Any] = {
            "cold_wall_vs_fastest_peer": {
                "peer": fastest, "ratio": r3(ours["cold"]["wall_s"][stat] / cold[fastest]),
            },
            "cold_cpu_vs_fastest_peer": {
                "peer": fastest,
                "ratio": r3(ours["cold"]["cpu_s"][stat] / table[fastest]["cold"]["cpu_s"][stat]),
            },
            "cold_peak_rss_vs_leanest_peer": {
                "peer": leanest, "ratio": r3(ours["cold"]["peak_rss_mib"][stat] / rss[leanest]),
            },
        }  # fmt: skip
        for step in ("rerun", "edit"):
            row[f"{step}_wall_vs"] = {
                p: r3(ours[step]["wall_s"][stat] / table[p][step]["wall_s"][stat]) for p in peers
            }
        out[stat] = row
    a1 = [r["encode"]["wall_s"] / r["corpusflow"]["cold"]["wall_s"] for r in rounds]
    out["acceptance_1_encode_over_corpusflow"] = {**summary(a1), "goal": ">= 0.9"}
    med = out["median"]
    out["met_by_median"] = {
        "cold_wall <= fastest peer": med["cold_wall_vs_fastest_peer"]["ratio"] <= 1,
        "cold_peak_rss <= leanest peer": med["cold_peak_rss_vs_leanest_peer"]["ratio"] <= 1,
        "rerun faster than both": max(med["rerun_wall_vs"].values()) < 1,
        "edit faster than both": max(med["edit_wall_vs"].values()) < 1,
        "acceptance 1 >= 0.9": out["acceptance_1_encode_over_corpusflow"]["median"] >= 0.9,
    }
    return out


def print_table(table: dict[str, Any], encode: dict[str, Any], rat: dict[str, Any]) -> None:
    """Min / median per step and peer, then the ratios."""
    print(f"\n{'step (min / median)':<22}" + "".join(f"{p:^22}" for p in PEERS))
    labels = {"wall_s": "wall s", "cpu_s": "CPU s", "peak_rss_mib": "peak MiB"}
    for step in STEPS:
        for key, label in labels.items():
            cells = [table[p][step][key] for p in PEERS]
            print(f"{step + ' ' + label:<22}" + "".join(
                f"{c['min']:>10.1f} / {c['median']:<9.1f}" for c in cells))  # fmt: skip
    wall = encode["wall_s"]
    print(f"bare model, fresh process, wall: {wall['min']:.1f} / {wall['median']:.1f} s")
    med, low = rat["median"], rat["min"]
    print("corpusflow ÷ peer, by median (by min):")
    for key in ("cold_wall_vs_fastest_peer", "cold_cpu_vs_fastest_peer",
                "cold_peak_rss_vs_leanest_peer"):  # fmt: skip
        print(f"  {key} ({med[key]['peer']}): {med[key]['ratio']:.2f} ({low[key]['ratio']:.2f})")
    for key in ("rerun_wall_vs", "edit_wall_vs"):
        cells = ", ".join(f"{p} {v:.2f} ({low[key][p]:.2f})" for p, v in med[key].items())
        print(f"  {key}: {cells}")
    a1 = rat["acceptance_1_encode_over_corpusflow"]
    print(f"acceptance 1, bare model ÷ fresh `corpusflow ingest`: {a1['median']:.2f} "
          f"({a1['min']:.2f}), goal >= 0.9")  # fmt: skip
    print("met (by median): " + ", ".join(f"{k}: {v}" for k, v in rat["met_by_median"].items()))


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=264)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--venvs", type=Path, default=REPO / ".bench-venvs")
    parser.add_argument("--quick", action="store_true", help="40 articles, 1 round: a smoke run")
    parser.add_argument("--out", default="benchmarks/results/peers.json")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args(argv)
    if args.quick:
        args.articles, args.rounds = 40, 1
    args.venvs = args.venvs.resolve()
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    missing = [p for p in SCRIPTS if not (args.venvs / p / "bin" / "python").exists()]
    if missing:
        print(f"no venv for {', '.join(missing)} under {args.venvs}: run `make bench-peers`")
        return 2
    offline_environ()
    machine = machine_info()
    machine["peer_packages"] = peer_versions(args.venvs)
    work = Path(tempfile.mkdtemp(prefix="corpusflow-peers-"))
    rounds: list[dict[str, Any]] = []
    try:
        probe = work / "probe"
        generate(probe / "corpus", args.articles, seed=args.seed, articles_only=True)
        write_params(probe, probe / "corpus")
        texts = chunk_texts(probe)
        texts_file = work / "texts.json"
        texts_file.write_text(json.dumps(texts), encoding="utf-8")
        print(f"{args.articles} articles, {len(texts)} chunks; {args.rounds} round(s)")
        for n in range(args.rounds):
            print(f"  round {n + 1}")
            done = {p: run_peer(p, work / f"r{n}-{p}", args, print) for p in PEERS}
            done["encode"] = run_encode(work, texts_file)
            print(f"    bare model       {done['encode']['wall_s']:7.1f} s wall")
            rounds.append(done)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    table = summarise(rounds)
    encode = {k: summary([r["encode"][k] for r in rounds]) for k in ("wall_s", "cpu_s")}
    rat = ratios(table, rounds)
    print_table(table, encode, rat)
    result = {
        "quick": args.quick,
        "articles": args.articles,
        "chunks": len(texts),
        "rounds": args.rounds,
        "machine": machine,
        "summary": table,
        "bare_model": encode,
        "ratios": rat,
        "raw": rounds,
    }
    out = write_result(args.out, result)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
