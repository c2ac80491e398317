"""One ingest in a process of its own, for the memory figure (peak RSS is per process).

    python -m benchmarks.child --root DIR --transcripts T --articles A.csv ...

Ingests with the hash embedder into DIR's own Milvus Lite and cache, then prints one JSON
line: chunks, seconds, RSS before the ingest and this process's peak RSS (KiB): VmHWM (the
high-water mark of this program's memory since exec) and ru_maxrss. Start it through
`benchmarks.launcher`, or ru_maxrss is the parent's size.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmarks.common import (
    current_rss_kib,
    make_context,
    max_rss_kib,
    offline_environ,
    peak_rss_kib,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--transcripts", action="append", default=[])
    parser.add_argument("--articles", action="append", default=[])
    args = parser.parse_args()
    offline_environ()

    from benchmarks.fake_embedder import HashEmbedder
    from corpusflow.pipeline import extract, ingest

    embedder = HashEmbedder()
    ctx = make_context(Path(args.root), embedder)
    ctx.store.has("warm_up")  # open Milvus Lite and the cache before the baseline reading
    ctx.cache.count()
    embedder.count_tokens("warm up the tokenizer")
    embedder.embed(["warm up numpy"])
    before = current_rss_kib()
    started = time.perf_counter()
    items = extract(ctx.params, args.transcripts, args.articles)
    result = ingest(ctx, items)
    seconds = time.perf_counter() - started
    after, hwm_open = current_rss_kib(), peak_rss_kib()
    ctx.close()  # as the CLI does: Milvus Lite persists its in-memory data here
    print(
        json.dumps(
            {
                "documents": result.documents,
                "chunks": result.chunks,
                "upserted": result.upserted,
                "rejected": result.rejected,
                "seconds": round(seconds, 3),
                "rss_before_ingest_kib": before,
                "rss_after_ingest_kib": after,
                "peak_before_close_kib": hwm_open,
                "maxrss_self_kib": max_rss_kib(),
                "vm_hwm_kib": peak_rss_kib(),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
