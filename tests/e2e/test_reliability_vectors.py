"""Nothing wrong lands: every vector is checked before it is stored or cached.

Real parts: the `corpusflow` CLI, Milvus Lite, MiniLM, SQLite, a local OpenAI-compatible
server speaking the wire protocol (tests/openai_stub.py), kernel mounts (a full tmpfs and a
read-only bind mount, in a private mount namespace) for the cache file's faults.
"""

from __future__ import annotations

import base64
import json
import math
import shutil
import sqlite3
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import CLI
from corpusflow.config import Env
from corpusflow.embedding import EmbeddingError, make_embedder
from corpusflow.pipeline import Context, EmbedCounts
from openai_stub import Fault, hash_vector, openai_settings, serve
from test_faults import assert_one_line_error

TIMEOUT = 180
CACHE = "cache/embeddings.sqlite"  # its own directory, to mount over
TALKS = {
    f"talk{i}.txt": f"Talk {i}. " + " ".join(["granite", "harbor", "meadow", "quartz"][i:] * 9)
    for i in range(4)
}


def run_cli(cwd: Path, *args: str, wrap: list[str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*(wrap or []), CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT
    )


def write_corpus(root: Path, params: dict | None = None) -> None:
    (root / "corpus").mkdir(parents=True, exist_ok=True)
    for name, text in TALKS.items():
        (root / "corpus" / name).write_text(text, encoding="utf-8")
    base = {
        "sources": {"transcripts": ["corpus"]},
        "ingest": {"cache": CACHE},
        "comet": {"mode": "disabled"},
    }
    (root / "params.yaml").write_text(yaml.safe_dump({**base, **(params or {})}))


def stored_vectors(root: Path) -> dict[str, list[float]]:
    from corpusflow.config import load_params

    params = load_params(root / "params.yaml")
    params.milvus.uri = str(root / params.milvus.uri)
    ctx = Context(params, env=Env())
    try:
        target = ctx.store.alias_target()
        return {
            r["text_hash"]: r["vector"]
            for r in ctx.store.iter_rows(target, ["text_hash", "vector"])
        }
    finally:
        ctx.close()


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The corpus ingested once with MiniLM: its Milvus Lite database and embedding cache."""
    root = tmp_path_factory.mktemp("built")
    write_corpus(root)
    out = run_cli(root, "ingest", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["embedded"] == len(TALKS)
    return root


def copy_built(built: Path, dest: Path, milvus: bool = False) -> None:
    write_corpus(dest)
    (dest / "cache").mkdir(exist_ok=True)
    shutil.copy2(built / CACHE, dest / CACHE)
    if milvus:
        shutil.copytree(built / "data" / "milvus.db", dest / "data" / "milvus.db")


# ------------------------------------------------------------------------------------------
# a bad cache entry is discarded, re-embedded, and the run says so in one line
# ------------------------------------------------------------------------------------------
def test_bad_cache_entries_are_discarded_re_embedded_and_reported_in_one_line(built, tmp_path):
    copy_built(built, tmp_path)  # no Milvus: the rebuild reads every vector from the cache
    good = stored_vectors(built)
    db = sqlite3.connect(tmp_path / CACHE)
    hashes = sorted(h for (h,) in db.execute("SELECT text_hash FROM embeddings"))
    assert len(hashes) == len(TALKS)
    blob = dict(db.execute("SELECT text_hash, vector FROM embeddings"))
    nan = struct.pack("<f", math.nan) + blob[hashes[0]][4:]  # one NaN component
    tampered = {hashes[0]: nan, hashes[1]: blob[hashes[1]][:-1], hashes[2]: blob[hashes[2]][:-4]}
    with db:
        for h, b in tampered.items():  # NaN, odd length, 383 dimensions
            db.execute("UPDATE embeddings SET vector = ? WHERE text_hash = ?", (b, h))
    db.close()

    out = run_cli(tmp_path, "ingest", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert (result["embedded"], result["cache_hits"]) == (3, 1)
    lines = [line for line in out.stderr.splitlines() if "embedding cache" in line]
    assert len(lines) == 1 and "discarded 3 bad entries" in lines[0], out.stderr
    assert "Traceback" not in out.stderr
    rebuilt = stored_vectors(tmp_path)
    assert rebuilt.keys() == good.keys()
    for h, vector in rebuilt.items():
        np.testing.assert_allclose(vector, good[h], atol=1e-6)
    db = sqlite3.connect(tmp_path / CACHE)  # the cache holds good vectors again
    for h, b in db.execute("SELECT text_hash, vector FROM embeddings"):
        assert len(b) == 4 * 384 and np.isfinite(np.frombuffer(b, "<f4")).all(), h
    db.close()


# ------------------------------------------------------------------------------------------
# a cache file SQLite cannot use is one line, exit 2
# ------------------------------------------------------------------------------------------
def _garbage(path: Path) -> None:
    path.write_bytes(bytes(range(256)) * 64)


def _truncated(path: Path) -> None:
    data = path.read_bytes()
    assert len(data) > 3 * 4096
    path.write_bytes(data[: len(data) // 3 + 100])


def _directory(path: Path) -> None:
    path.unlink()
    path.mkdir()
    (path / "inside").write_text("a directory where the cache file should be")


MOUNT_READ_ONLY = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
# a 64 KiB tmpfs of which a filler file takes all but one page: the first write fails
MOUNT_FULL = (
    'mount -t tmpfs -o size=64k tmpfs "$0" && head -c 61440 /dev/zero > "$0/filler"; exec "$@"'
)


@pytest.mark.parametrize(
    "damage, mount, fragment",
    [
        (_garbage, None, "not a database"),
        (_truncated, None, "malformed"),
        (_directory, None, "is a directory"),
        (None, MOUNT_READ_ONLY, "read-only"),
        (None, MOUNT_FULL, "full"),
    ],
    ids=["garbage", "truncated", "directory", "read-only", "disk-full"],
)
def test_an_unusable_cache_file_is_one_line_and_exit_2(built, tmp_path, damage, mount, fragment):
    copy_built(built, tmp_path)
    cache = tmp_path / CACHE
    if damage:
        damage(cache)
    wrap = ["unshare", "-m", "sh", "-c", mount, str(cache.parent)] if mount else None
    out = run_cli(tmp_path, "ingest", "--json", wrap=wrap)
    assert_one_line_error(out, f"embedding cache {CACHE}", fragment)


# ------------------------------------------------------------------------------------------
# an endpoint's bad answers are refused, never cached; once it is fixed, all is embedded
# ------------------------------------------------------------------------------------------
def _raw_vectors(values: str, n: int) -> Fault:
    data = ",".join(f'{{"object":"embedding","index":{i},"embedding":{values}}}' for i in range(n))
    return Fault.raw(f'{{"object":"list","model":"m","data":[{data}]}}')


GOOD_B64 = base64.b64encode(np.full(16, 0.25, "<f4").tobytes()).decode()


def _base64_answer(n: int, last: str) -> Fault:
    """`n` good base64 vectors (what we ask for), the last one replaced by `last`."""
    rows = [GOOD_B64] * (n - 1) + [last]
    data = [{"object": "embedding", "index": i, "embedding": r} for i, r in enumerate(rows)]
    return Fault.raw(json.dumps({"object": "list", "model": "m", "data": data}))


HTML = "<!DOCTYPE html><html><body><h1>Welcome to nginx!</h1></body></html>"
BAD_ANSWERS = {
    "all zeros": (
        lambda stub, n: setattr(stub, "vectors", lambda t, d: [[0.0] * 16] * len(t)),
        "all-zero vector",
    ),
    "1e308 (inf as float32)": (
        lambda stub, n: setattr(stub, "vectors", lambda t, d: [[1e308] * 16] * len(t)),
        "not finite as float32",
    ),
    "JSON booleans": (
        lambda stub, n: stub.inject(_raw_vectors(json.dumps([True, False] * 8), n)),
        "not lists of numbers",
    ),
    "NaN literals": (
        lambda stub, n: stub.inject(_raw_vectors("[" + ",".join(["NaN"] * 16) + "]", n)),
        "not finite",
    ),
    "base64 truncated by a value": (
        lambda stub, n: stub.inject(_base64_answer(n, GOOD_B64[:-8])),  # 15 of 16 floats
        "vector 2 has 15 float32 values",
    ),
    "garbled base64": (
        lambda stub, n: stub.inject(_base64_answer(n, "%%" + GOOD_B64[2:])),
        "vector 2 is not valid base64",
    ),
    "an HTML page with 200": (
        lambda stub, n: stub.inject(Fault.raw(HTML, content_type="text/html")),
        "answered HTTP 200 with text/html",
    ),
}


@pytest.mark.parametrize("answer", list(BAD_ANSWERS))
def test_bad_endpoint_vectors_are_refused_and_never_cached(make_ctx, tmp_path, answer):
    texts = ["first text", "second text", "third text"]
    with serve() as stub:
        ctx = make_ctx(
            embedding=openai_settings(
                stub, model="text-embedding-3-small", dimensions=16, max_retries=0
            )
        )
        ctx._embedder = make_embedder(ctx.params.embedding, Env())
        normal = stub.vectors
        spoil, fragment = BAD_ANSWERS[answer]
        spoil(stub, len(texts))
        with pytest.raises(EmbeddingError, match=fragment):
            ctx.embed_texts(texts, EmbedCounts())
        assert ctx.cache.count() == 0  # nothing of a bad answer is kept

        stub.vectors = normal  # the endpoint is fixed: everything is embedded, none reused
        counts = EmbedCounts()
        vectors = ctx.embed_texts(texts, counts)
        assert (counts.embedded, counts.cache_hits, ctx.cache.count()) == (3, 0, 3)
        expected = np.array([hash_vector(t, 16) for t in texts])
        expected /= np.linalg.norm(expected, axis=1, keepdims=True)
        np.testing.assert_allclose(vectors, expected, atol=1e-6)


def test_an_html_page_answered_with_200_is_one_line_through_the_cli(tmp_path):
    with serve() as stub:
        write_corpus(
            tmp_path,
            {"embedding": openai_settings(stub, model="text-embedding-3-small", dimensions=16)},
        )
        stub.fail_when(lambda inputs: True, Fault.raw(HTML, content_type="text/html"))
        out = run_cli(tmp_path, "ingest", "--json")
    assert_one_line_error(out, "answered HTTP 200 with text/html", "/v1")
    assert not (tmp_path / CACHE).exists() or sqlite3.connect(tmp_path / CACHE).execute(
        "SELECT COUNT(*) FROM embeddings"
    ).fetchone() == (0,)


def test_the_stub_sends_what_the_bad_answers_claim(tmp_path):
    """The faults are real wire bytes: booleans arrive as JSON true/false, HTML as text/html."""
    import httpx

    with serve() as stub:
        stub.inject(_raw_vectors("[true,false]", 1), Fault.raw(HTML, content_type="text/html"))
        body = {"model": "m", "input": ["x"]}
        first = httpx.post(f"{stub.url}/embeddings", json=body)
        second = httpx.post(f"{stub.url}/embeddings", json=body)
    assert '"embedding":[true,false]' in first.text
    assert second.headers["content-type"].startswith("text/html") and second.status_code == 200
