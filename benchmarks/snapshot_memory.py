"""Peak memory of the snapshot writer at N and 10N records: streaming vs all in memory.

    python benchmarks/snapshot_memory.py [--records 20000] [--run-size 20000]

Each measurement is a fresh child process that generates records lazily (about 1 KB of
text each, like a chunk) and writes them with `write_snapshot`; its peak RSS (ru_maxrss)
is reported. "in memory" is the same writer with a run size above the record count, which
is what the writer did before it streamed (sort everything, then write). A figure, never
an assertion: the exit code is 0 whatever the numbers are.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

CHILD = textwrap.dedent(
    """
    import random, resource, sys, time
    from corpusflow.snapshot import write_snapshot

    n, run_size, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    words = "amber basalt cedar delta ember fjord granite harbor iris jasper kelp".split()

    def records():
        rng = random.Random(0)
        for i in range(n):
            text = " ".join(rng.choice(words) for _ in range(160))
            yield {"id": f"{rng.getrandbits(128):032x}", "text": text, "chunk_index": i,
                   "source_id": f"file:doc{i // 10}.txt", "start_seconds": None}

    start = time.perf_counter()
    write_snapshot(out, {"collection": "bench"}, records(), {}, {}, run_size=run_size)
    seconds = time.perf_counter() - start
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{rss_mb:.1f} {seconds:.2f}")
    """
)


def measure(n: int, run_size: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(n), str(run_size), str(Path(tmp, "s.json"))],
            capture_output=True,
            text=True,
            check=True,
        )
    rss, seconds = out.stdout.split()
    return float(rss), float(seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000, help="N (10N is also run)")
    parser.add_argument("--run-size", type=int, default=20_000, help="streaming run size")
    args = parser.parse_args(argv)
    results = {}
    for label, big in (("streaming", False), ("in memory", True)):
        for n in (args.records, 10 * args.records):
            run_size = 10**12 if big else args.run_size
            results[f"{label} {n}"] = measure(n, run_size)
            rss, seconds = results[f"{label} {n}"]
            print(f"{label:>10} {n:>8} records: peak RSS {rss:8.1f} MB, {seconds:7.2f} s")
    n = args.records
    for label in ("streaming", "in memory"):
        ratio = results[f"{label} {10 * n}"][0] / results[f"{label} {n}"][0]
        print(f"{label}: peak RSS 10N / N = {ratio:.2f}")
    print(json.dumps({k: {"rss_mb": v[0], "seconds": v[1]} for k, v in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
