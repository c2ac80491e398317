"""The one check every vector passes before it is stored or cached.

A vector is usable when it has the collection's dimension, every component is a real number
(a JSON `true` is not one, though Python would count it as 1), every component is finite as
float32 (what Milvus and the cache keep: 1e308 becomes inf there), and its norm is not zero
(cosine similarity of a zero vector is undefined; Milvus would store it and every search
would rank it arbitrarily). Providers call `unit_vectors` on what a model or endpoint gave;
the cache calls `blob_problem` on every entry it reads back.
"""

from __future__ import annotations

import base64
import binascii
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from corpusflow.embedding.base import EmbeddingError

FLOAT32_BYTES = 4


class VectorError(EmbeddingError):
    """A model or endpoint gave vectors that must not be stored."""


def _numbers_only(rows: Sequence[Any]) -> bool:
    """True when every row is a list/tuple of int/float (never bool) values."""
    for row in rows:
        if not isinstance(row, list | tuple):
            return False
        if not {type(x) for x in row} <= {float, int}:
            return False
    return True


def _problem(arr: np.ndarray, dimension: int | None) -> tuple[int, str] | None:
    """(row, what is wrong) for the first unusable row of a 2-D float32 array, else None."""
    if arr.ndim != 2 or (dimension is not None and arr.shape[1] != dimension):
        got = arr.shape[1] if arr.ndim == 2 else "ragged"
        return 0, f"got {got}-dimensional vectors, expected {dimension}"
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        return int(
            np.argmin(finite)
        ), "got values not finite as float32 (NaN, inf or beyond ±3.4e38)"
    norms = np.linalg.norm(arr.astype(np.float64), axis=1)
    if not (norms > 0).all():
        return int(np.argmin(norms > 0)), "got an all-zero vector (or one below float32 precision)"
    return None


def unit_vectors(
    rows: Any, dimension: int | None, source: str, normalize: bool = True
) -> list[list[float]]:
    """Validate `rows` (lists of numbers or a float array) and return them as float32
    vectors, scaled to unit length unless `normalize` is off (a model that already does
    it keeps its exact bits); raise VectorError naming `source` and the first bad row."""
    arr = None
    if isinstance(rows, np.ndarray):
        arr = rows.astype(np.float64) if rows.dtype.kind == "f" else None
    elif _numbers_only(rows):
        if len({len(row) for row in rows}) > 1:
            raise VectorError(f"{source}: vectors of unequal length")
        arr = np.asarray(rows, dtype=np.float64)
    if arr is None:
        raise VectorError(f"{source}: vectors are not lists of numbers (JSON true/false, text?)")
    if not len(arr):
        return []
    with np.errstate(over="ignore"):  # overflow to inf is what _problem reports
        bad = _problem(arr.astype(np.float32), dimension)
        out = arr.astype(np.float32)
        if bad is None and normalize:
            out = (arr / np.linalg.norm(arr, axis=1, keepdims=True)).astype(np.float32)
            bad = _problem(out, dimension)
    if bad is not None:
        row, why = bad
        raise VectorError(f"{source}: {why} (vector {row}); none of these was stored")
    return out.tolist()


def base64_vectors(rows: Sequence[str], dimension: int | None, source: str) -> np.ndarray:
    """Vectors sent as base64 little-endian float32 (`encoding_format="base64"`) as one
    float32 array. A string that is not base64, not whole float32 values, or shorter or
    longer than the others (than `dimension` when some have it) is a VectorError naming the
    row: a truncated or garbled answer is never decoded into a shorter or shifted vector.
    Rows that all have one wrong length are left to `unit_vectors` to report."""

    def refuse(i: int, why: str) -> VectorError:
        return VectorError(f"{source}: vector {i} {why}; none of these was stored")

    blobs: list[bytes] = []
    for i, row in enumerate(rows):
        try:
            blob = base64.b64decode(row, validate=True)
        except (binascii.Error, ValueError):
            raise refuse(i, "is not valid base64") from None
        if not blob or len(blob) % FLOAT32_BYTES:
            raise refuse(i, f"is {len(blob)} bytes of base64, not whole float32 values")
        blobs.append(blob)
    sizes = Counter(len(b) for b in blobs)
    if len(sizes) > 1:
        want = (dimension or 0) * FLOAT32_BYTES
        width = want if want in sizes else sizes.most_common(1)[0][0]
        i = next(i for i, b in enumerate(blobs) if len(b) != width)
        values = f"{len(blobs[i]) // FLOAT32_BYTES} float32 values"
        raise refuse(i, f"has {values} in base64, the others {width // FLOAT32_BYTES}")
    return np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), -1)


def blob_problem(blob: Any, dimension: int | None) -> str | None:
    """Why a cached float32 blob cannot be used (None when it can)."""
    if not isinstance(blob, bytes):
        return f"not bytes but {type(blob).__name__}"
    if len(blob) % FLOAT32_BYTES:
        return f"{len(blob)} bytes, not whole float32 values"
    arr = np.frombuffer(blob, dtype="<f4").reshape(1, -1)
    bad = _problem(arr, dimension)
    return None if bad is None else bad[1]


def vector_blob(vector: Sequence[float]) -> bytes:
    """The cache's storage form: little-endian float32."""
    return np.asarray(vector, dtype="<f4").tobytes()


def blob_vector(blob: bytes) -> list[float]:
    return np.frombuffer(blob, dtype="<f4").tolist()


def blob_vectors(blobs: Sequence[Any], dimension: int) -> list[list[float]] | None:
    """Many cached blobs checked and decoded at once (one array, one check: per-row numpy
    calls cost more than reading them); None if any is unusable (then check them one by
    one with `blob_problem` to know which)."""
    size = dimension * FLOAT32_BYTES
    if not all(isinstance(b, bytes) and len(b) == size for b in blobs):
        return None
    arr = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), dimension)
    return None if _problem(arr, dimension) is not None else arr.tolist()
