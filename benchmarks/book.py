"""The book's loop: one embedding request and one Milvus `insert` per chunk.

This is the shape most tutorials teach:

    for chunk in chunks:
        vector = client.embeddings.create(model=..., input=chunk.text).data[0].embedding
        milvus.insert(collection, [{"id": ..., "vector": vector, "text": chunk.text, ...}])

It gets the same chunk texts corpusflow makes (chunking is not timed, in the book's favour),
the official `openai` client with its defaults, and a quick-setup Milvus Lite collection
created before the clock starts.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import release_milvus_lite


def book_loop(
    base_url: str,
    chunks: Sequence[tuple[str, str, str]],
    db: Path,
    model: str = "text-embedding-3-small",
    dimensions: int = 384,
) -> dict[str, Any]:
    """Run the loop over `chunks` (id, source id, text); returns counts and seconds."""
    import openai
    from pymilvus import MilvusClient

    db.parent.mkdir(parents=True, exist_ok=True)
    client = openai.OpenAI(api_key="unused", base_url=base_url, max_retries=0)
    milvus = MilvusClient(uri=str(db))
    name = "book"
    milvus.create_collection(
        name,
        dimension=dimensions,
        primary_field_name="id",
        id_type="string",
        max_length=64,
        metric_type="COSINE",
    )
    try:
        started = time.perf_counter()
        embed_seconds = 0.0
        for chunk_id, source_id, text in chunks:
            t = time.perf_counter()
            response = client.embeddings.create(model=model, input=text, dimensions=dimensions)
            vector = response.data[0].embedding
            embed_seconds += time.perf_counter() - t
            milvus.insert(
                name, [{"id": chunk_id, "vector": vector, "text": text, "source_id": source_id}]
            )
        seconds = time.perf_counter() - started
        stored = milvus.query(name, filter="", output_fields=["count(*)"])[0]["count(*)"]
    finally:
        milvus.close()
        client.close()
        release_milvus_lite(str(db))
    return {
        "chunks": len(chunks),
        "seconds": round(seconds, 3),
        "embed_request_seconds": round(embed_seconds, 3),
        "insert_seconds": round(seconds - embed_seconds, 3),
        "stored": int(stored),
    }


def response_decode_cost(
    base_url: str, inputs: int = 256, dimensions: Sequence[int] = (384, 1536)
) -> dict[str, dict[str, float]]:
    """Client CPU per input to receive vectors as JSON floats vs base64, per dimension.

    One request of `inputs` texts each way (after a warm-up), through the `openai` client;
    base64 is decoded with numpy as a caller would. CPU time of this process only (the
    server runs in another), so the server's latency does not count.
    """
    import base64

    import numpy as np
    import openai

    client = openai.OpenAI(api_key="unused", base_url=base_url, max_retries=0)
    texts = [f"decode cost probe {i}: a short text about bread" for i in range(inputs)]
    out: dict[str, dict[str, float]] = {}
    try:
        for dim in dimensions:
            row: dict[str, float] = {}
            for fmt in ("float", "base64"):
                client.embeddings.create(
                    model="m", input=texts[:2], dimensions=dim, encoding_format=fmt
                )
                cpu, wall = time.process_time(), time.perf_counter()
                response = client.embeddings.create(
                    model="m", input=texts, dimensions=dim, encoding_format=fmt
                )
                if fmt == "base64":
                    vectors = np.stack(
                        [np.frombuffer(base64.b64decode(d.embedding), "<f4") for d in response.data]
                    )
                else:
                    vectors = np.asarray([d.embedding for d in response.data], dtype=np.float32)
                assert vectors.shape == (inputs, dim)
                row[f"{fmt}_client_cpu_ms_per_input"] = round(
                    (time.process_time() - cpu) * 1000 / inputs, 3
                )
                row[f"{fmt}_wall_ms_per_input"] = round(
                    (time.perf_counter() - wall) * 1000 / inputs, 3
                )
            out[str(dim)] = row
    finally:
        client.close()
    return out
