"""The bare model for acceptance 1: import, load MiniLM and encode the given texts, nothing else.

    .venv/bin/python benchmarks/peer_runners/encode.py --texts TEXTS.json

Runs in the project venv, in a fresh process like `corpusflow ingest`; the launcher's wall
time covers interpreter start, imports, model load and `SentenceTransformer.encode`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import _runner


def main() -> None:
    started = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", required=True, type=Path)
    texts = json.loads(parser.parse_args().texts.read_text(encoding="utf-8"))
    from sentence_transformers import SentenceTransformer

    imported = time.perf_counter()
    model = SentenceTransformer(_runner.model_path(), device="cpu")
    loaded = time.perf_counter()
    vectors = model.encode(texts, batch_size=_runner.BATCH_SIZE, normalize_embeddings=True)
    encoded = time.perf_counter()
    _runner.report(
        started,
        texts=len(texts),
        dimension=int(vectors.shape[1]),
        import_s=round(imported - started, 3),
        load_s=round(loaded - imported, 3),
        encode_s=round(encoded - loaded, 3),
    )


if __name__ == "__main__":
    main()
